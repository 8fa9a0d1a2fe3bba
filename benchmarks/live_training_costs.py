"""Seconds per step of every live training run of the notebooks (``mllib.budget.LIVE_TRAINING``).

Times a few steps of each run (after a 2-step warm-up) with the notebook's quick-profile settings on
the CPU, one torch thread, through the same trainers the notebooks call, and writes
``benchmarks/results/live_training_costs.json``
(``{key: seconds per step}``). The table's ``cpu_step_seconds`` come from here; on a shared machine say
so (the figures scale with the load).

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/live_training_costs.py
"""
from __future__ import annotations

import json
import platform
import tempfile
import time
from pathlib import Path

import torch

from mllib.budget import LIVE_TRAINING

OUT = Path(__file__).resolve().parent / "results" / "live_training_costs.json"


def timed(fn, steps: int) -> float:
    fn(2)                                  # warm-up: first-call costs are not per step
    t0 = time.perf_counter()
    fn(steps)
    return (time.perf_counter() - t0) / steps


def main() -> None:
    torch.set_num_threads(1)
    from mllib import baselines
    from mllib.data import load_omniglot
    from mllib.learned_optimizer import LearnedOptimizer, meta_train_optimizer
    from mllib.models import SineMLP
    from mllib.rl import PointNavigation, meta_train, pretrain_joint, seeded_policy
    from mllib.sine_experiments import meta_train_sinusoid, pretrain_sinusoid
    from mllib.train import TrainConfig, meta_train as omniglot_train

    sine = dict(meta_batch=10, shots=10, inner_lr=0.01, meta_lr=3e-3, progress=False)
    data = load_omniglot(progress=False)
    env = PointNavigation(horizon=20)

    def omniglot(algo, overrides):
        def run(steps):
            omniglot_train(TrainConfig(algo=algo, ways=5, shots=1, profile="quick", steps=steps,
                                       overrides=overrides, device="cpu", seed=0,
                                       out=tempfile.mkdtemp(prefix="costs_"), progress=False),
                           data=data, log=lambda line: None)
        return run

    runs = {
        "sine pretrain": (lambda n: pretrain_sinusoid(steps=n, batch=10, shots=10, lr=3e-3, progress=False), 300),
        "sine maml": (lambda n: meta_train_sinusoid("maml", steps=n, **sine), 300),
        "06 sinusoid": (lambda n: [meta_train_sinusoid(a, steps=n, **sine) for a in ("maml", "metasgd", "anil")],
                        100),
        "05 maml": (omniglot("maml", {"val_every": 50, "val_tasks": 50}), 100),
        "05 pretrain": (lambda n: baselines.pretrain(data, steps=n, batch_size=128, lr=1e-2, filters=32,
                                                     progress=False), 40),
        "07 learned optimizer": (lambda n: meta_train_optimizer(LearnedOptimizer(lr=0.01), SineMLP(), steps=n,
                                                                horizon=5, progress=False), 10),
        "07 protonet": (omniglot("protonet", {"val_every": 100, "val_tasks": 20}), 100),
        "08 maml": (lambda n: meta_train(seeded_policy(0), env, n, 20, 20, 0.002, 3e-3,
                                         estimator="first_order", progress=False), 10),
        "08 pretrain": (lambda n: pretrain_joint(seeded_policy(0), env, n, 20, 40, 3e-3, progress=False), 10),
    }
    measured = {}
    for name, (fn, steps) in runs.items():
        measured[name] = round(timed(fn, steps), 5)
        print(f"{name:22s} {measured[name]:.5f} s per step ({steps} steps)", flush=True)
    same_run = {"01 pretrain": "sine pretrain", "04 pretrain": "sine pretrain",
                "01 maml": "sine maml", "03 maml": "sine maml", "04 maml": "sine maml"}
    per_key = {key: measured[same_run.get(key, key)] / LIVE_TRAINING[key].runs for key in LIVE_TRAINING}
    OUT.write_text(json.dumps({"machine": f"{platform.processor() or platform.machine()}, 1 torch thread",
                               "seconds_per_step": per_key}, indent=1) + "\n")


if __name__ == "__main__":
    main()
