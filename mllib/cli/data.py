"""``python -m mllib data``: locate or prepare Omniglot and print a JSON summary.

    python -m mllib data [--root PATH] [--cache DIR] [--download] [--workers N]

Output: ``source`` (root folder and the zip or folder of each set), ``characters`` (per part of the
``lake``, ``maml`` and ``vinyals`` splits), ``images`` (characters x drawers), ``image_shape``,
``cache`` (the cache file), ``cache_hit``, ``seconds`` and ``check`` (per set: ``upstream``, the
upstream zip; ``upstream-images``, a rebuilt zip of the same images; ``custom``, accepted with
``MLLIB_DATA_CUSTOM=1``; ``folder``, an extracted folder, not checked).
"""
from __future__ import annotations

import argparse
import json

import mllib.data
from mllib.data import SPLITS, split_characters, verify_zip


def run(args: argparse.Namespace) -> int:
    data = mllib.data.load_omniglot(args.root, cache_dir=args.cache, download=args.download, workers=args.workers)
    summary = {
        "source": {"root": data.source, **data.source_paths},
        "characters": {
            split: {part: len(split_characters(split, part, data.characters)) for part in parts}
            for split, parts in SPLITS.items()
        },
        "complete": data.complete,
        "images": data.images.shape[0] * data.images.shape[1],
        "image_shape": list(data.images.shape),
        "cache": data.cache_path,
        "cache_hit": data.cache_hit,
        "seconds": round(data.seconds, 3),
        "check": {s: verify_zip(p, s) if p.endswith(".zip") else "folder"
                  for s, p in data.source_paths.items()},
    }
    print(json.dumps(summary, indent=2))
    return 0


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "data",
        help="locate or prepare Omniglot and print a JSON summary",
        description="Locate Omniglot (--root, then $MLLIB_DATA, then data/, then --download), "
        "build the 28x28 cache if needed, and print a JSON summary.",
    )
    parser.add_argument("--root", default=None, help="folder with images_background.zip and images_evaluation.zip (or the extracted folders)")
    parser.add_argument("--cache", default=None, help="cache folder (default: $MLLIB_CACHE, else data/cache)")
    parser.add_argument("--download", action="store_true", help="download the upstream zips when no data is found")
    parser.add_argument("--workers", type=int, default=None, help="decode processes for a cache build (default: 2 on Linux)")
    parser.set_defaults(func=run)
    return parser
