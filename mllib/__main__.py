"""``python -m mllib``: the command line. Each sub-command lives in ``mllib/cli/<name>.py``
and exposes ``add_parser(subparsers)`` (which sets ``func`` on its parser)."""
from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = ("data", "train", "eval", "publish", "bench", "course")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mllib",
        description="Learning to Learn: Omniglot data, MAML-family meta-training, evaluation and benchmarks.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"mllib.cli.{name}")
        except ModuleNotFoundError as err:  # a command still being built
            if err.name != f"mllib.cli.{name}":
                raise
            continue
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
