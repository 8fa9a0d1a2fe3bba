"""Speed-up of 2 gloo processes over 1 for the quick-profile meta-step on the CPU; prints JSON.

    MLLIB_DATA=/path/to/omniglot python benchmarks/bench_distributed.py [--steps 15] [--rounds 2]

One meta-step of the quick profile (MAML 5-way 1-shot, meta-batch 8, 5 queries per class,
32 filters, 1 inner step): sample the batch, meta-gradient, (all-reduce), Adam step.

* ``one_process``: one process with all 8 tasks, with 2 torch threads (the machine's 2 cores) and
  with 1 thread (``--threads`` lists the counts);
* ``two_ranks``: ``torchrun --nproc_per_node=2`` (loopback, gloo), 1 thread each, 4 tasks each
  plus the gradient all-reduce.

Each configuration runs in a fresh process, ``--rounds`` times in alternation (the CPU may be
shared with other work, which the JSON records as the load average); the figures are the medians
of the per-step medians. ``--worker`` is the measuring process itself (started by this script).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.abspath(__file__)


def worker(steps: int, warmup: int) -> None:
    import torch

    from mllib import distributed
    from mllib.algorithms import MetaConfig, init_meta_params, meta_gradient
    from mllib.config import resolve_profile
    from mllib.data import load_omniglot
    from mllib.models import build_conv_learner
    from mllib.tasks import OmniglotTasks

    env = distributed.detect()
    rank, world = (env.rank, env.world_size) if env else (0, 1)
    if env:
        from datetime import timedelta

        torch.distributed.init_process_group("gloo", timeout=timedelta(seconds=300))
    profile = resolve_profile("quick", 5)
    cfg = MetaConfig.from_profile("maml", profile, "batch", "loop")
    data = load_omniglot(progress=False)
    torch.manual_seed(0)
    model = build_conv_learner(5, profile.filters)
    params = {k: v.detach().clone().requires_grad_(True) for k, v in init_meta_params(model, cfg).items()}
    optimizer = torch.optim.Adam(list(params.values()), lr=profile.meta_lr)
    tasks = OmniglotTasks(data, "maml", "train", ways=5, shots=1, query=profile.query, seed=0)
    times = []
    for i in range(warmup + steps):
        if world > 1:
            torch.distributed.barrier()  # every rank starts the step together
        t0 = time.perf_counter()
        batch = tasks.sample(profile.meta_batch)
        if world > 1:
            batch = batch.chunk(world)[rank]
        grads, _ = meta_gradient(model, params, batch, cfg)
        if world > 1:
            grads = distributed.average(grads, world)
        for k, p in params.items():
            p.grad = grads[k]
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t0)
    times = times[warmup:]
    if world > 1:  # a step lasts as long as its slowest rank
        t = torch.tensor(times, dtype=torch.float64)
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
        times = t.tolist()
        torch.distributed.destroy_process_group()
    if rank == 0:
        print("RESULT " + json.dumps({
            "median_s": statistics.median(times), "mean_s": statistics.fmean(times),
            "threads": torch.get_num_threads(), "world_size": world,
            "tasks_per_rank": profile.meta_batch // world, "steps": len(times),
        }), flush=True)


def _run(cmd: list[str], threads: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), CI="1")
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1200)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"benchmark process failed ({done.returncode}): {done.stderr[-2000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def main() -> None:
    from mllib.local_workers import free_port

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=15, help="timed meta-steps per process")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2, help="alternating runs of each configuration")
    parser.add_argument("--threads", type=int, nargs="+", default=[2, 1],
                        help="torch thread counts of the single process (the first is the headline)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    for name in ("steps", "rounds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be an integer >= 1")
    if min(args.threads) < 1:
        parser.error("--threads must be integers >= 1")
    if args.warmup < 0:
        parser.error("--warmup must be an integer >= 0")
    if args.worker:
        worker(args.steps, args.warmup)
        return
    base = [HERE, "--worker", "--steps", str(args.steps), "--warmup", str(args.warmup)]
    one = {t: [] for t in args.threads}
    two = []
    load_before = os.getloadavg()
    for _ in range(args.rounds):
        for t in args.threads:
            one[t].append(_run([sys.executable, *base], threads=t))
        two.append(_run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                         "--master_addr=127.0.0.1", f"--master_port={free_port()}", *base], threads=1))
    one_s = {t: statistics.median(r["median_s"] for r in runs) for t, runs in one.items()}
    two_s = statistics.median(r["median_s"] for r in two)
    head = args.threads[0]
    print(json.dumps({
        "meta_step": "quick profile: maml 5-way 1-shot, meta-batch 8, query 5, filters 32, 1 inner step, loop form",
        "one_process_step_s": {f"{t}_threads": round(s, 4) for t, s in one_s.items()},
        "two_ranks_step_s": round(two_s, 4),
        "two_ranks_threads_each": 1,
        "speedup": round(one_s[head] / two_s, 3),
        "speedup_is_over": f"one process with {head} threads",
        "speedup_over": {f"{t}_threads": round(s / two_s, 3) for t, s in one_s.items()},
        "rounds": {**{f"one_process_{t}_threads": [round(r["median_s"], 4) for r in runs] for t, runs in one.items()},
                   "two_ranks": [round(r["median_s"], 4) for r in two]},
        "steps_per_round": args.steps,
        "cpu_count": os.cpu_count(),
        "loadavg_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        "note": "CPU shared with other users: load averages above the core count mean contended timings",
    }, indent=2))


if __name__ == "__main__":
    main()
