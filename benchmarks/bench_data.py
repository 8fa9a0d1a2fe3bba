"""Benchmark of the Omniglot pipeline; prints JSON.

    MLLIB_DATA=/path/to/omniglot python benchmarks/bench_data.py [--root PATH] [--workers N] [--seconds S]

* ``build``: building the cache from the source into a fresh temporary cache folder
  (budget <= 20 s on 2 cores), in a fresh process;
* ``load``: loading that cache in another fresh process (budget <= 1 s);
* memory: peak RSS of each process, and the peak above the RSS right after ``import torch``
  and ``mllib.data`` (the data's own share; budget <= 200 MB; ``import torch`` alone takes
  about 0.5 GB here). The build's decode workers are forks that share the parent's pages;
  each holds only its chunk of decoded images (1,024 x 784 bytes) beyond that;
* ``sampling``: 5-way 1-shot tasks with 15 queries per class, meta-batches of 32, on the CPU
  (budget >= 2,000 tasks/s), with and without rotations, one and all torch threads, and with the
  sampler's own one-thread limit switched off (``threads=None``).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time


def _rss_mb(who=resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss / 1024  # KiB on Linux


def child(mode: str, root: str | None, cache: str, workers: int | None) -> None:
    import torch  # noqa: F401

    from mllib.data import load_omniglot

    base = _rss_mb()
    start = time.perf_counter()
    data = load_omniglot(root, cache_dir=cache, workers=workers, progress=False)
    seconds = time.perf_counter() - start
    assert data.cache_hit == (mode == "load"), "expected a fresh build / a cache hit"
    print(json.dumps({
        "seconds": round(seconds, 3),
        "peak_rss_mb": round(_rss_mb(), 1),
        "rss_after_imports_mb": round(base, 1),
        "peak_above_imports_mb": round(_rss_mb() - base, 1),
        "images_mb": round(data.images.numel() / 2**20, 1),
        "shape": list(data.images.shape),
        "cache": data.cache_path,
    }))


def run_child(mode: str, args, cache: str) -> dict:
    cmd = [sys.executable, __file__, "--child", mode, "--cache", cache]
    if args.root:
        cmd += ["--root", args.root]
    if args.workers is not None:
        cmd += ["--workers", str(args.workers)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def sampling_rate(data, seconds: float, rotations: bool, threads: int, sampler_threads: int | None = 1) -> float:
    import torch

    from mllib.tasks import OmniglotTasks

    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        sampler = OmniglotTasks(data, split="maml", part="train", ways=5, shots=1, query=15, rotations=rotations,
                                threads=sampler_threads)
        sampler.sample(32)  # warm-up
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            sampler.sample(32)
            count += 32
        return count / (time.perf_counter() - start)
    finally:
        torch.set_num_threads(old)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=None)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds per sampling measurement")
    parser.add_argument("--child", choices=["build", "load"], help=argparse.SUPPRESS)
    parser.add_argument("--cache", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.root, args.cache, args.workers)
        return

    import torch

    from mllib.data import load_omniglot

    load_before = [round(x, 2) for x in os.getloadavg()]  # other processes sharing the CPUs
    with tempfile.TemporaryDirectory(prefix="mllib-bench-cache-") as cache:
        build = run_child("build", args, cache)
        load = run_child("load", args, cache)
        data = load_omniglot(args.root, cache_dir=cache, progress=False)
        threads = torch.get_num_threads()
        sampling = {
            "tasks": "5-way 1-shot, 15 query/class, meta-batch 32, maml train split",
            "rotations_tasks_per_s_1_thread": round(sampling_rate(data, args.seconds, True, 1)),
            "no_rotations_tasks_per_s_1_thread": round(sampling_rate(data, args.seconds, False, 1)),
            f"rotations_tasks_per_s_torch_{threads}_threads_sampler_default": round(
                sampling_rate(data, args.seconds, True, threads)
            ),
            f"rotations_tasks_per_s_torch_{threads}_threads_sampler_threads_None": round(
                sampling_rate(data, args.seconds, True, threads, sampler_threads=None)
            ),
        }
    build.pop("cache"), load.pop("cache")
    print(json.dumps({
        "source": data.source,
        "cpu_count": os.cpu_count(),
        "load_average_before": load_before,
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "workers": args.workers if args.workers is not None else "default",
        "torch": torch.__version__,
        "build": build,
        "load": load,
        "sampling": sampling,
        "budgets": {"build_s": 20, "load_s": 1, "memory_mb": 200, "tasks_per_s": 2000},
    }, indent=2))


if __name__ == "__main__":
    main()
