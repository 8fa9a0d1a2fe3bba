"""Cost of one training meta-step of each profile's recipe, as a ratio to the quick profile before issue 17.

What is timed is what ``mllib train`` does per step: sample the meta-batch from Omniglot, the
meta-gradient (``mllib.algorithms.meta_step``) and the Adam step, in this process, one thread by
default. Each round times one step of every recipe back to back (first one rotated), and the
ratio to ``before`` is computed within the round (load changes on a shared machine hit a round
alike); the median and quartiles over the rounds are printed and written as JSON. ``before`` is
the quick recipe as it was: learned head, constant meta-lr, and the 1-channel input *not* viewed
channels-last (``mllib.fast_ops.channels_last_view`` switched off for that recipe only).

    OMP_NUM_THREADS=1 python benchmarks/recipe_step_cost.py --rounds 20 --out benchmarks/results/recipe_step_cost.json

An idle-machine estimate of a run's training time is then ``seconds per step of before`` x
``ratio`` x steps (the quick card before issue 17: 196 s for 1,000 steps with validations, idle, 2 threads).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from contextlib import contextmanager

import torch

import mllib.fast_ops as fast_ops
from mllib.algorithms import MetaConfig, init_meta_params, meta_step
from mllib.config import resolve_profile
from mllib.data import load_omniglot
from mllib.models import build_conv_learner
from mllib.tasks import OmniglotTasks

RECIPES = {  # name: (profile, ways, overrides, channels-last input view)
    "before": ("quick", 5, {"head_init": "learned", "meta_lr_schedule": "constant"}, False),
    "maml-now": ("quick", 5, {"head_init": "learned"}, True),
    "quick": ("quick", 5, {}, True),
    "laptop": ("laptop", 5, {}, True),
    "quick-20w": ("quick", 20, {}, True),
    "laptop-20w": ("laptop", 20, {}, True),
}


@contextmanager
def input_view(enabled: bool):
    real = fast_ops.channels_last_view
    if not enabled:
        fast_ops.channels_last_view = lambda x: x
    try:
        yield
    finally:
        fast_ops.channels_last_view = real


def make(name: str, data, seed: int):
    profile_name, ways, overrides, view = RECIPES[name]
    profile = resolve_profile(profile_name, ways, **overrides)
    cfg = MetaConfig.from_profile("maml", profile, form="loop")
    torch.manual_seed(seed)
    model = build_conv_learner(ways, profile.filters)
    params = init_meta_params(model, cfg)
    optimizer = torch.optim.Adam(list(params.values()), lr=profile.meta_lr)
    tasks = OmniglotTasks(data, split="maml", part="train", ways=ways, shots=1, query=profile.query, seed=seed)

    def step() -> float:
        start = time.perf_counter()
        with input_view(view):
            meta_step(model, params, tasks.sample(profile.meta_batch), cfg, optimizer)
        return time.perf_counter() - start

    return step, profile


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipes", default=",".join(RECIPES))
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None)
    parser.add_argument("--note", default="ratios per round to 'before' (the quick recipe before issue 17); "
                        "seconds are this machine's under the load averages recorded")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    names = [n for n in args.recipes.split(",") if n]
    if "before" not in names:
        names.insert(0, "before")
    data = load_omniglot(progress=False)
    steps = {n: make(n, data, seed=0) for n in names}
    for n in names:
        for _ in range(args.warmup):
            steps[n][0]()
    times = {n: [] for n in names}
    load_start = open("/proc/loadavg").read().split()[:3]
    for i in range(args.rounds):
        for k in range(len(names)):
            n = names[(i + k) % len(names)]
            times[n].append(steps[n][0]())
        print(f"round {i + 1}/{args.rounds}: " + ", ".join(f"{n} {times[n][-1]:.3f}" for n in names), flush=True)
    rows = {}
    for n in names:
        ratios = sorted(t / b for t, b in zip(times[n], times["before"]))
        q = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
        profile = steps[n][1]
        rows[n] = {"ratio_median": round(statistics.median(ratios), 3), "ratio_q25": round(q[0], 3),
                   "ratio_q75": round(q[2], 3), "median_s": round(statistics.median(times[n]), 4),
                   "meta_steps": profile.meta_steps, "filters": profile.filters, "meta_batch": profile.meta_batch,
                   "ways": RECIPES[n][1], "head_init": profile.head_init}
        print(f"{n:12s} ratio {rows[n]['ratio_median']:.3f} [{rows[n]['ratio_q25']:.3f}, {rows[n]['ratio_q75']:.3f}]"
              f"  median {rows[n]['median_s']:.3f} s (load average {load_start[0]} at start)")
    result = {"kind": "recipe-step-cost", "rounds": args.rounds, "threads": args.threads,
              "loadavg_start": load_start, "loadavg_end": open("/proc/loadavg").read().split()[:3],
              "torch": torch.__version__, "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "note": args.note,
              "recipes": rows}
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
