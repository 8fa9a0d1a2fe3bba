"""`make demo`'s recipe on two single-thread worker processes: accuracy against training seconds.

Each recipe is ``python -m mllib train --algo maml --ways 5 --shots 1 --profile quick --workers W``
plus its own flags (seed 0), timed on this machine, then scored on the 600 fixed test tasks
(``mllib eval``: bn=batch, 1 inner step, 5 query images per class, maml split, test characters as
drawn). Appends one record per recipe to ``benchmarks/results/demo_workers.json``. Run it on an idle
machine (it records the load average before each run):

    MLLIB_DATA=/path/to/omniglot python benchmarks/demo_workers.py \\
        --recipe "quick 3600=--steps 3600 --val-every 600" --recipe "2q 4500=--query 2 --steps 4500"
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from trained_run import score_best, validation_curve   # benchmarks/ is on sys.path

OUT = Path(__file__).resolve().parent / "results" / "demo_workers.json"
BASE = ["-m", "mllib", "train", "--algo", "maml", "--ways", "5", "--shots", "1", "--profile", "quick",
        "--device", "cpu", "--seed", "0"]
PROTOCOL = ("600 test tasks, bn=batch (transductive), 1 inner step, 5 queries per class, maml split, "
            "test characters as drawn")


def run_recipe(name: str, flags: list[str], workers: int, folder: Path) -> dict:
    out = folder / name.replace(" ", "_")
    command = [sys.executable, *BASE, "--workers", str(workers), "--out", str(out), *flags]
    load = os.getloadavg()[0]
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return {"name": name, "flags": flags, "workers": workers, "load_average_before": load,
            "train_seconds": records[-1]["seconds"], "wall_seconds_with_startup": round(wall, 1),
            "steps": records[-1]["step"], "validation": validation_curve(out),
            "command": "python " + " ".join(shlex.quote(part) for part in command[1:]).replace(str(out), "runs/demo"),
            **score_best(out)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", action="append", required=True, metavar="NAME=FLAGS",
                        help="a name and the extra flags of mllib train, e.g. 'quick 3600=--steps 3600'")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--keep", type=Path, default=None, help="keep the run folders here (default: deleted)")
    args = parser.parse_args()
    results = json.loads(args.out.read_text()) if args.out.exists() else {
        "python": platform.python_version(), "cpus": os.cpu_count(), "protocol": PROTOCOL, "runs": []}
    with tempfile.TemporaryDirectory(prefix="demo_workers_") as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        for text in args.recipe:
            name, _, flags = text.partition("=")
            record = run_recipe(name.strip(), shlex.split(flags), args.workers, folder)
            record["created"] = time.strftime("%Y-%m-%d %H:%M")
            results["runs"].append(record)
            args.out.write_text(json.dumps(results, indent=2) + "\n")
            print(f"{record['name']}: {record['steps']} steps in {record['train_seconds']:.0f} s, "
                  f"test {100 * record['accuracy']:.2f} +- {100 * record['ci95']:.2f}%", flush=True)


if __name__ == "__main__":
    main()
