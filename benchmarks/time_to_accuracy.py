"""Time to accuracy of the Omniglot training recipes: validation accuracy against wall-clock seconds.

Every recipe is trained by the public command line (``python -m mllib train ... --max-seconds B``),
one after another, in a fresh process each, from the same seed on the same training-task stream;
its validation curve (the fixed ``VAL_SEED`` tasks, every ``val_every`` steps) comes from the run's
``metrics.jsonl``, whose clock counts meta-steps and validations (not start-up). Then the run's
``best.pt`` is scored on the 600 fixed test tasks (``mllib.evaluate``: mean and 95% CI). Writes a
JSON file and a PNG of validation accuracy against training seconds, one line per recipe.

    python benchmarks/time_to_accuracy.py --budget 300                      # demo recipes, ~15 min
    python benchmarks/time_to_accuracy.py --budget 300 --recipes maml-1000,quick,laptop
    python benchmarks/time_to_accuracy.py --run laptop=runs/laptop --recipes quick   # add a finished run
    python benchmarks/time_to_accuracy.py --recipes '' --keep-existing --run live=runs/live/workers   # add a row

Recipes (``RECIPES``): ``maml-1000`` (the quick profile before issue 17: all-parameter second-order
MAML, constant meta-lr, 1,000 steps, 3 test steps), ``quick`` (the demo: MAML with the zeroing
trick, cosine meta-lr, 2,500 steps), ``maml-cosine`` (all-parameter MAML with the cosine meta-lr,
1,800 steps, 10 test steps), ``laptop`` (zero head, 64 filters, meta-batch 16, 10,000 steps), and
the 20-way ``quick-20w`` and ``laptop-20w``. A recipe stops at its own number of steps or at the
budget, whichever comes first (a cosine schedule is then cut before its end: say so when you
compare). Timings mean something only on an otherwise idle machine; the JSON records the load
average at the start and the end of every run.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MARKS = (0.9, 0.95, 0.98)

RECIPES = {
    "maml-1000": ("MAML, constant meta-lr (quick profile before issue 17)",
                  "--profile quick --head-init learned --meta-lr-schedule constant --steps 1000 "
                  "--inner-steps-test 3 --val-every 100 --checkpoint-every 50"),
    "quick": ("MAML + zeroing trick + cosine meta-lr (quick profile, the demo)", "--profile quick"),
    "maml-cosine": ("MAML, cosine meta-lr, 1,800 steps (10 test steps)",
                    "--profile quick --head-init learned --steps 1800 --inner-steps-test 10 --val-every 150"),
    "laptop": ("MAML + zeroing trick + cosine, 64 filters, meta-batch 16 (laptop profile)", "--profile laptop"),
    "quick-20w": ("20-way: MAML + zeroing trick + cosine (quick profile)", "--profile quick --ways 20"),
    "laptop-20w": ("20-way: MAML + zeroing trick + cosine (laptop profile)", "--profile laptop --ways 20"),
}


def load_average() -> list[float] | None:
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except (OSError, ValueError):
        return None


def train(name: str, flags: str, out: Path, budget: float, seed: int, threads: int, log) -> dict:
    """Train one recipe with the public CLI; ``{"command", "wall_seconds", "loadavg_start", "loadavg_end"}``."""
    args = [sys.executable, "-m", "mllib", "train", *shlex.split(flags), "--seed", str(seed), "--device", "cpu",
            "--max-seconds", f"{budget:g}", "--out", str(out)]
    env = {**os.environ, "MLLIB_THREADS": str(threads), "OMP_NUM_THREADS": str(threads), "CI": "1"}
    log(f"[{name}] " + " ".join(shlex.quote(a) for a in args[1:]))
    start, load = time.perf_counter(), load_average()
    done = subprocess.run(args, env=env, cwd=ROOT, text=True, capture_output=True)
    if done.returncode != 0:
        raise RuntimeError(f"recipe {name} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    log(f"[{name}] " + done.stdout.strip().splitlines()[0])
    return {"command": "python -m mllib " + " ".join(shlex.quote(a) for a in args[3:]),
            "wall_seconds": round(time.perf_counter() - start, 1), "loadavg_start": load,
            "loadavg_end": load_average()}


def summarise(name: str, label: str, run: Path, tasks: int, data) -> dict:
    """The curve, times to 90/95/98% validation and the test accuracy of the finished run in ``run``."""
    from mllib.checkpoint import load_checkpoint, read_metrics, time_to_accuracy
    from mllib.evaluate import evaluate

    records = read_metrics(run)
    state = load_checkpoint(run / "checkpoint.pt")
    profile = state["config"]["profile"]
    result = evaluate(run / "best.pt", data=data, tasks=tasks, device="cpu", progress=False)
    marks = {f"{round(100 * m)}": time_to_accuracy(records, m) for m in MARKS}
    return {
        "name": name, "label": label, "run": str(run), "ways": state["config"]["ways"],
        "steps_done": state["step"], "steps_planned": profile["meta_steps"],
        "train_seconds": records[-1]["seconds"] if records else None,
        "profile": {k: profile.get(k) for k in ("name", "filters", "meta_batch", "query", "inner_steps",
                                                   "inner_steps_test", "inner_lr", "meta_lr", "head_init",
                                                   "meta_lr_schedule")},
        "curve": [{"step": r["step"], "seconds": r["seconds"], "val_accuracy": r["val_accuracy"]}
                  for r in records if r.get("val_accuracy") is not None],
        "time_to_val": {k: v for k, v in marks.items() if v is not None},
        "test": {k: result[k] for k in ("accuracy", "ci95", "tasks", "inner_steps", "query", "bn", "transductive",
                                        "head_init", "step")},
    }


def plot(recipes: list[dict], path: Path, title: str) -> Path:
    """Validation accuracy (%) against training seconds, one line per recipe; written as a PNG."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 4.2), layout="constrained")
    ax = fig.subplots()
    for r in recipes:
        xs = [p["seconds"] for p in r["curve"]]
        ys = [100 * p["val_accuracy"] for p in r["curve"]]
        test = r["test"]
        ax.plot(xs, ys, marker="o", markersize=3,
                label=f"{r['name']}: test {100 * test['accuracy']:.1f}% ± {100 * test['ci95']:.1f}"
                      f" ({r['ways']}-way, {r['steps_done']} steps)")
    low = min([90.0] + [100 * p["val_accuracy"] for r in recipes for p in r["curve"]])
    ax.set_ylim(max(0.0, 5 * ((low - 1) // 5)), 100)
    ax.set_xlim(0, 1.04 * max([1.0] + [p["seconds"] for r in recipes for p in r["curve"]]))
    for mark in MARKS:
        ax.axhline(100 * mark, color="0.8", linewidth=0.8, zorder=0)
    ax.set_xlabel("training seconds (meta-steps + validations)")
    ax.set_ylabel("validation accuracy %")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    fig.savefig(path, dpi=120)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipes", default="maml-1000,quick",
                        help=f"comma-separated recipes to train ({', '.join(RECIPES)}); '' for none")
    parser.add_argument("--run", action="append", default=[], metavar="NAME=PATH",
                        help="also report a finished `mllib train` run folder (not trained here)")
    parser.add_argument("--keep-existing", action="store_true",
                        help="keep the rows already in --out (a row of the same name is replaced)")
    parser.add_argument("--label", action="append", default=[], metavar="NAME=TEXT",
                        help="how to describe the run NAME of --run (default: its folder)")
    parser.add_argument("--budget", type=float, default=300.0, help="training seconds per recipe (default 300)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="torch threads of each training run (default 2)")
    parser.add_argument("--tasks", type=int, default=600, help="test tasks (default 600)")
    parser.add_argument("--out-dir", default="runs/time_to_accuracy", help="run folders (one per recipe)")
    parser.add_argument("--out", default="benchmarks/results/time_to_accuracy.json",
                        help="JSON result; the plot goes next to it (.png)")
    parser.add_argument("--machine", default=None, help="how to describe the machine in the JSON "
                        "(default: its CPU and 'state the load yourself')")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.recipes.split(",") if n.strip()]
    bad = [n for n in names if n not in RECIPES]
    if bad or not (names or args.run):
        parser.error(f"--recipes must name recipes among {', '.join(RECIPES)} (or give --run); got {args.recipes!r}")
    if not args.budget > 0:
        parser.error(f"--budget must be > 0 seconds, got {args.budget}")
    extra = []
    for item in args.run:
        name, sep, path = item.partition("=")
        if not sep or not (Path(path) / "best.pt").is_file():
            parser.error(f"--run must be NAME=PATH of a finished run folder with best.pt, got {item!r}")
        extra.append((name, Path(path)))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    def log(message: str) -> None:
        print(time.strftime("%H:%M:%S"), message, flush=True)

    from mllib.data import load_omniglot
    from mllib.publish import describe_machine
    data = load_omniglot(progress=False)
    rows = []
    for name in names:
        run = Path(args.out_dir) / name
        if (run / "checkpoint.pt").exists():
            raise SystemExit(f"{run} already holds a run: remove it or choose another --out-dir")
        label, flags = RECIPES[name]
        trained = train(name, flags, run, args.budget, args.seed, args.threads, log)
        rows.append({**summarise(name, label, run, args.tasks, data), **trained})
        log(f"[{name}] test {100 * rows[-1]['test']['accuracy']:.2f}% +- {100 * rows[-1]['test']['ci95']:.2f}% "
            f"after {rows[-1]['steps_done']} steps, {rows[-1]['train_seconds']:.0f} s")
    labels = dict(item.partition("=")[::2] for item in args.label)
    for name, run in extra:
        rows.append({**summarise(name, labels.get(name, f"finished run {run}"), run, args.tasks, data), "command": None})
    if args.keep_existing and out.is_file():
        new = {r["name"] for r in rows}
        rows = [r for r in json.loads(out.read_text())["recipes"] if r["name"] not in new] + rows
    result = {
        "kind": "time-to-accuracy", "version": 1, "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": args.machine or describe_machine("cpu") + " (load: see loadavg_start / loadavg_end per run)",
        "budget_seconds": args.budget, "seed": args.seed, "threads": args.threads, "test_tasks": args.tasks,
        "protocol": "maml split; validation: 100 fixed VAL_SEED tasks at the recipe's test inner steps; test: "
                    "600 fixed TEST_SEED tasks, best.pt, 95% CI = 1.96 sd / sqrt(n); bn=batch (transductive)",
        "recipes": rows,
    }
    out.write_text(json.dumps(result, indent=1) + "\n")
    png = plot(rows, out.with_suffix(".png"),
               f"Omniglot 1-shot: validation accuracy over training time (budget {args.budget:g} s per recipe)")
    log(f"wrote {out} and {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
