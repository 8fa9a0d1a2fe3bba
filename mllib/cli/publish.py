"""``python -m mllib publish``: a finished run becomes a pretrained checkpoint with its model card.

Example::

    python -m mllib publish runs/quick --name maml_omniglot_5w1s          # into ./checkpoints
    python -m mllib publish runs/gpu --name maml_omniglot_20w1s --dest $OUT/checkpoints
    python -m mllib publish runs/quick --name maml_omniglot_5w1s --dest mllib/checkpoints   # ship it (checkout)

The destination, the name (an existing one is replaced only with ``--overwrite``), ``--card`` and
``--set`` are checked before the evaluation; an installed package is never written to.
"""
from __future__ import annotations

import argparse
import json

from mllib.publish import DEFAULT_DEST, publish


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "publish", help="ship a run's best.pt as a pretrained checkpoint with a measured model card",
        description="Evaluate RUN/best.pt on fixed test tasks and write DEST/NAME.pt (no optimiser state), "
                    "DEST/NAME.json (the model card the README results are generated from) and "
                    "DEST/NAME.train.log.",
    )
    parser.add_argument("run", help="a `mllib train` output folder (with best.pt and metrics.jsonl)")
    parser.add_argument("--name", required=True, help="file stem, e.g. maml_omniglot_5w1s")
    parser.add_argument("--dest", default=DEFAULT_DEST,
                        help="folder to write into (default: %(default)s, in the working directory; "
                             "mllib/checkpoints in a checkout ships the checkpoint with the package)")
    parser.add_argument("--tasks", type=int, default=600, help="test tasks (>= 600, the published protocol)")
    parser.add_argument("--device", default=None, help="auto|cpu|cuda|mps (default: $MLLIB_DEVICE, else auto)")
    parser.add_argument("--card", default=None, help="the machine that trained the run (default: this one)")
    parser.add_argument("--notes", default="", help="free text for the card (what the numbers do and do not show)")
    parser.add_argument("--set", dest="extra", action="append", default=[], metavar="KEY=JSON",
                        help="an extra card entry, e.g. --set train_peak_rss_mb=816 (repeatable; not one "
                             "of the fields publish measures or records, such as accuracy or ci95)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace DEST/NAME.pt and NAME.json when they exist (refused otherwise, "
                             "before the evaluation)")
    parser.add_argument("--allow-partial-data", action="store_true",
                        help="evaluate on a copy of Omniglot that lacks characters of the test split: the card "
                             "is marked non-standard")
    parser.set_defaults(func=run)
    return parser


def _extra(pairs: list[str]) -> dict:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--set takes KEY=VALUE, got {pair!r}")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value  # plain text
    return out


def run(args: argparse.Namespace) -> int:
    card = publish(args.run, args.name, dest=args.dest, tasks=args.tasks, device=args.device, card=args.card,
                   notes=args.notes, extra=_extra(args.extra), allow_partial_data=args.allow_partial_data,
                   overwrite=args.overwrite)
    print(json.dumps(card, indent=2))
    return 0
