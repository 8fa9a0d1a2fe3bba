"""Cost of one training meta-step of a prototypical network against the zero-head MAML recipe (notebook 05).

The shipped ProtoNet checkpoint (``protonet_omniglot_5w1s_quick``: 1,000 meta-steps of 8 tasks) was
trained on a loaded shared machine, so its card's training seconds cannot be set against the zero-head
MAML card's idle seconds (``maml_omniglot_5w1s_zerohead_quick``: 2,500 meta-steps, 229 s, idle, 2 threads).
This times one meta-step of each (sample the meta-batch, meta-gradient, Adam step: what ``mllib train``
does per step) back to back in every round, and the ratio ProtoNet / MAML is taken within the round, so
load on a shared machine hits both alike. An idle-machine estimate of the ProtoNet run's training time is
then ``ratio x (229 s / 2,500) x 1,000`` (the zero-head card's seconds include its validations, so the
estimate charges ProtoNet for validation in the same proportion).

    OMP_NUM_THREADS=1 python benchmarks/protonet_step_cost.py --rounds 40 --threads 1 \\
        --out benchmarks/results/protonet_step_cost.json

The shipped result was measured so on the shared 2-core machine under a load average of about 11:
ratio 0.94 (quartiles 0.91 and 1.05). A first try with 2 threads under that load spent about 14 s per
step on both sides (threads waiting on each other) and its ratios scattered from 0.7 to 1.4; it was
discarded. On an idle machine the ratio should be measured again.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch

from mllib.algorithms import MetaConfig, init_meta_params, meta_step
from mllib.config import resolve_profile
from mllib.data import load_omniglot
from mllib.models import build_conv_learner
from mllib.tasks import OmniglotTasks


def make_step(algo: str, data, seed: int = 0):
    """A function timing one meta-step of ``algo`` with the quick profile (5-way 1-shot, 32 filters, 8 tasks)."""
    profile = resolve_profile("quick", 5)
    cfg = MetaConfig.from_profile(algo, profile, form="loop")
    torch.manual_seed(seed)
    model = build_conv_learner(5, profile.filters)
    params = init_meta_params(model, cfg)
    optimizer = torch.optim.Adam(list(params.values()), lr=profile.meta_lr)
    tasks = OmniglotTasks(data, split="maml", part="train", ways=5, shots=1, query=profile.query, seed=seed)

    def step() -> float:
        start = time.perf_counter()
        meta_step(model, params, tasks.sample(profile.meta_batch), cfg, optimizer)
        return time.perf_counter() - start

    return step


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    data = load_omniglot(progress=False)
    steps = {"maml": make_step("maml", data), "protonet": make_step("protonet", data)}
    for step in steps.values():
        for _ in range(args.warmup):
            step()
    times = {name: [] for name in steps}
    load_start = open("/proc/loadavg").read().split()[:3]
    names = list(steps)
    for i in range(args.rounds):
        for k in range(len(names)):
            name = names[(i + k) % len(names)]
            times[name].append(steps[name]())
    ratios = sorted(p / m for p, m in zip(times["protonet"], times["maml"]))
    q = statistics.quantiles(ratios, n=4)
    result = {"kind": "protonet-step-cost", "rounds": args.rounds, "threads": args.threads,
              "loadavg_start": load_start, "loadavg_end": open("/proc/loadavg").read().split()[:3],
              "torch": torch.__version__, "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "note": "ratio per round of one ProtoNet meta-step to one zero-head MAML meta-step (quick profile: "
                      "5-way 1-shot, 32 filters, meta-batch 8, 5 queries per class); seconds are this machine's "
                      "under the load averages recorded (a shared machine: only the ratio is meant to transfer)",
              "ratio_median": round(statistics.median(ratios), 3), "ratio_q25": round(q[0], 3),
              "ratio_q75": round(q[2], 3),
              "median_s": {name: round(statistics.median(t), 4) for name, t in times.items()},
              "command": "python benchmarks/protonet_step_cost.py " + " ".join(argv or sys.argv[1:])}
    print(json.dumps(result, indent=1))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
