"""Where the time of one meta-step goes: the kernels that any exact step runs, and the rest.

Issue 28 asks for the second-order meta-step of the paper's setting (5-way 1-shot, 15 queries per
class, 64 filters, meta-batch 32, one inner step at lr 0.4) at or below 0.8x the fastest of
learn2learn and higher in every round, and the first-order step at or below 0.6x. This probe asks how far below the references an exact step
can go at all on this CPU. It profiles one meta-gradient of each implementation with
``torch.profiler`` (one thread) and sums the self CPU time of each ATen operator family:

* ``convolution``: forward, backward and the backward's own backward of the 3x3 convolutions;
* ``batch norm``: forward, backward and double backward;
* ``pooling``, ``relu``, ``linear`` (the head's matrix products), ``loss`` (softmax cross-entropy);
* ``other``: every other operator (element-wise updates, copies, views, the autograd engine's
  accumulations).

The first six families are the network's own arithmetic: a step that computes the same meta-gradient runs
them (an exact lever can only make them faster kernels, not fewer). Their time in the library's
step, divided by the fastest reference's wall-clock step, is the ratio the library would reach if
everything else cost nothing: a floor for exact levers written in Python on top of these kernels.

    OMP_NUM_THREADS=1 python benchmarks/meta_step_floor.py --rounds 5 --out benchmarks/results/meta_step_floor.json
    OMP_NUM_THREADS=1 python benchmarks/meta_step_floor.py --algo fomaml --rounds 5 \
        --out benchmarks/results/meta_step_floor_fomaml.json        # the first-order step

The three implementations run in this one process (the benchmark, ``python -m mllib bench``, gives
each its own worker), so their seconds here are a little higher than the benchmark's; the ratios
are taken within this process.

The references need ``higher`` and ``learn2learn`` importable (as for ``python -m mllib bench``).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from mllib.bench import BenchSpec, host_info, make_step, round_ratios

FAMILIES = {   # operator family: substrings of ATen operator names (first match wins)
    "convolution": ("conv",),
    "batch norm": ("batch_norm",),
    "pooling": ("max_pool",),
    "relu": ("relu", "threshold"),
    "linear": ("addmm", "aten::mm", "aten::linear", "aten::matmul"),
    "loss": ("log_softmax", "nll_loss", "cross_entropy"),
}
ARITHMETIC = tuple(FAMILIES)   # the network's own arithmetic: every exact step runs it


def family(op_name: str) -> str:
    """The family of an ATen operator name, ``"other"`` when none matches."""
    for name, parts in FAMILIES.items():
        if any(part in op_name for part in parts):
            return name
    return "other"


def arithmetic_seconds(by_family: dict[str, float]) -> float:
    """Seconds per step in the network's own arithmetic: the :data:`ARITHMETIC` families summed."""
    return sum(by_family.get(k, 0.0) for k in ARITHMETIC)


def profile_step(step, repeats: int) -> dict[str, float]:
    """Seconds per step by family: the self CPU time of the step's operators, summed per family."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(repeats):
            step()
    totals: dict[str, float] = {}
    for event in prof.key_averages():
        if event.key.startswith("aten::") or event.key.startswith("autograd::"):
            key = family(event.key)
            totals[key] = totals.get(key, 0.0) + event.self_cpu_time_total / 1e6 / repeats
    return totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds (no profiler)")
    parser.add_argument("--profiled", type=int, default=2, help="profiled steps per implementation")
    parser.add_argument("--impls", default="mllib-loop,higher,learn2learn")
    parser.add_argument("--algo", default="maml", choices=("maml", "fomaml"), help="second or first order")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    load_before = os.getloadavg()[0]
    impls = args.impls.split(",")
    steps = {impl: make_step(BenchSpec(algo=args.algo, impl=impl))[0] for impl in impls}
    for step in steps.values():   # warm-up
        step()
    seconds = {impl: [] for impl in impls}
    for r in range(args.rounds):   # interleaved, start rotated
        for impl in impls[r % len(impls):] + impls[:r % len(impls)]:
            start = time.perf_counter()
            steps[impl]()
            seconds[impl].append(time.perf_counter() - start)
    by_family = {impl: profile_step(steps[impl], args.profiled) for impl in impls}
    wall = {impl: statistics.median(times) for impl, times in seconds.items()}
    references = [impl for impl in impls if not impl.startswith("mllib")]
    fastest = min(references, key=wall.get) if references else None
    result = {"created": time.strftime("%Y-%m-%d"), "host": host_info("cpu"),
              "load_average_before": load_before,
              "load_average_after": os.getloadavg()[0], "threads": 1,
              "setting": f"{args.algo}, 5-way 1-shot, 15 queries, 64 filters, meta-batch 32, 1 inner step",
              "seconds": seconds, "median_seconds": wall, "by_family": by_family}
    for impl in impls:
        print(f"{impl:12s} median {wall[impl]:.3f} s/step; profiled: arithmetic "
              f"{arithmetic_seconds(by_family[impl]):.3f} s, other "
              f"{by_family[impl].get('other', 0.0):.3f} s | "
              + ", ".join(f"{k} {v:.3f}" for k, v in sorted(by_family[impl].items(), key=lambda kv: -kv[1])))
    if fastest and "mllib-loop" in impls:
        result["fastest_reference"] = fastest
        result["ratios"] = round_ratios(seconds["mllib-loop"], [seconds[ref] for ref in references])
        result["floor_ratio"] = arithmetic_seconds(by_family["mllib-loop"]) / wall[fastest]
        print(f"mllib-loop / fastest reference of each round: {result['ratios']['ratio_median']:.3f} (median), "
              f"worst {result['ratios']['ratio_worst']:.3f}; the library's arithmetic alone / {fastest}: "
              f"{result['floor_ratio']:.3f}")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
