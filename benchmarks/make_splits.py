"""Regenerate the split manifests ``mllib/splits/{lake,maml,vinyals}.json`` from the real Omniglot.

    MLLIB_DATA=/path/to/omniglot python benchmarks/make_splits.py

The rules are in ``mllib/data/splits.py`` (``make_manifests``); the output is deterministic.
"""
from __future__ import annotations

import json
from pathlib import Path

from mllib.data import load_omniglot
from mllib.data.splits import make_manifests


def main() -> None:
    data = load_omniglot()
    if not data.complete:
        raise SystemExit(f"need the full Omniglot (1,623 characters), got {data.num_characters}")
    out = Path(__file__).resolve().parents[1] / "mllib" / "splits"
    out.mkdir(exist_ok=True)
    for split, manifest in make_manifests(data.characters, data.sets).items():
        path = out / f"{split}.json"
        path.write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
        print(path, {p: len(v) for p, v in manifest["parts"].items()})


if __name__ == "__main__":
    main()
