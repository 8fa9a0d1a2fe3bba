"""``python -m mllib``: the command line. Each sub-command lives in ``mllib/cli/<name>.py``
and exposes ``add_parser(subparsers)`` (which sets ``func`` on its parser).

Errors end in one line on stderr and exit status 2, never a traceback: bad values
(``ValueError``), missing or damaged files, and file-system errors (``OSError``: the path and
what went wrong, e.g. ``error: no space left on device: runs/demo/checkpoint.pt``). Ctrl-C and
SIGTERM exit with 130 and 143 (``mllib.signals``).
"""
from __future__ import annotations

import argparse
import importlib
import sys

from mllib.files import describe_os_error
from mllib.signals import exit_code, signal_name, terminate_as_interrupt

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
        with terminate_as_interrupt():
            return int(args.func(args) or 0)
    except OSError as err:
        print(f"error: {describe_os_error(err)}", file=sys.stderr)
        return 2
    except (ValueError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:
        print(f"stopped by {signal_name(err)}", file=sys.stderr)
        return exit_code(err)


if __name__ == "__main__":
    sys.exit(main())
