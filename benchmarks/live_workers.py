"""Notebook 05's live MAML run: one process with 2 threads against 2 single-thread worker processes.

Trains the live run's recipe (quick profile, 5-way 1-shot, 1,800 meta-steps, 2 query images per class
in training tasks, validation every 450 steps on 50 tasks, seed 0) twice on the CPU:

* ``threads``: ``mllib.train.meta_train`` in one process with 2 torch threads;
* ``workers``: ``mllib.local_workers.train_on_cores(workers=2)``, what the notebook calls: two
  spawned single-thread processes, each adapting to 4 of the 8 tasks, gradients all-reduced.

Then scores each ``best.pt`` on the 600 fixed test tasks (``mllib eval``: bn=batch, 1 inner step,
5 query images per class, test characters as drawn) and writes
``benchmarks/results/live_workers.json``. Run it on an idle machine (it records the load average):

    MLLIB_DATA=/path/to/omniglot python benchmarks/live_workers.py
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from trained_run import score_best, validation_curve   # benchmarks/ is on sys.path

OUT = Path(__file__).resolve().parent / "results" / "live_workers.json"
RECIPE = dict(algo="maml", ways=5, shots=1, profile="quick", steps=1800, seed=0, device="cpu",
              overrides={"val_every": 450, "val_tasks": 50, "query": 2})
TRAIN = """
import json, sys, time
from mllib.device import cpu_threads
from mllib.local_workers import train_on_cores
from mllib.train import TrainConfig
if __name__ == "__main__":
    how, out, recipe = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    start = time.perf_counter()
    config = TrainConfig(out=out, progress=False, **recipe)
    if how == "threads":
        with cpu_threads(2):
            run = train_on_cores(config, workers=1, log=lambda m: None)
    else:
        run = train_on_cores(config, workers=2, log=lambda m: None)
    print(json.dumps({"train_seconds": run.seconds, "wall_seconds": time.perf_counter() - start,
                      "steps": run.step, "best_val_accuracy": run.best_val_accuracy}))
"""


def run_one(how: str, folder: Path) -> dict:
    script = folder / "train_live.py"
    script.write_text(TRAIN)
    out = folder / how
    done = subprocess.run([sys.executable, str(script), how, str(out), json.dumps(RECIPE)],
                          capture_output=True, text=True, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["validation"] = validation_curve(out)   # [step, training seconds, accuracy]
    result.update(score_best(out))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--keep", type=Path, default=None, help="keep the two run folders here (default: deleted)")
    args = parser.parse_args()
    results = {"recipe": RECIPE, "load_average_before": os.getloadavg()[0], "python": platform.python_version(),
               "cpus": os.cpu_count(), "created": time.strftime("%Y-%m-%d"),
               "protocol": "600 test tasks, bn=batch (transductive), 1 inner step, 5 queries per class, "
                           "maml split, test characters as drawn"}
    with tempfile.TemporaryDirectory(prefix="live_workers_") as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        for how in ("threads", "workers"):
            results[how] = run_one(how, folder)
            print(how, json.dumps(results[how]), flush=True)
    results["speedup"] = results["threads"]["train_seconds"] / results["workers"]["train_seconds"]
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}: 2 workers {results['speedup']:.2f}x faster than 2 threads")


if __name__ == "__main__":
    main()
