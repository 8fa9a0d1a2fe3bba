"""What the benchmarks read back from a finished ``mllib train`` folder: its validation curve and its test score.

Shared by ``demo_workers.py`` and ``live_workers.py`` (run as ``python benchmarks/<script>.py``, so
this folder is on ``sys.path``). The test score is the course's default protocol: 600 seeded test
tasks, batch norm with batch statistics, the checkpoint's test steps, 5 query images per class,
test characters as drawn.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SCORE_KEYS = ("accuracy", "ci95", "tasks", "bn", "inner_steps", "query")


def validation_curve(out: Path) -> list[list]:
    """``[[step, training seconds, validation accuracy], ...]`` from ``out/metrics.jsonl``."""
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [[r["step"], r["seconds"], r["val_accuracy"]] for r in records if r.get("val_accuracy") is not None]


def score_best(out: Path) -> dict:
    """``out/best.pt`` on 600 test tasks (``python -m mllib eval --json``, 2 threads): ``SCORE_KEYS`` only."""
    scored = subprocess.run([sys.executable, "-m", "mllib", "eval", "--checkpoint", str(out / "best.pt"),
                             "--tasks", "600", "--json"], capture_output=True, text=True, check=True,
                            env={**os.environ, "MLLIB_THREADS": "2"})
    test = json.loads(scored.stdout[scored.stdout.index("{"):])
    return {key: test[key] for key in SCORE_KEYS}
