"""Notebook 05's live MAML run in the gpu profile on a Colab T4, played on the CPU with a fake clock.

No T4 was available. The run a learner gets there is fixed by the budget (``mllib.budget``: at most
``LIVE_TRAINING["05 maml"].gpu`` meta-steps, stopped by the time budget ``.seconds``) and by how long
one meta-step takes on the card, which is estimated here (``T4_MAML_STEP_SECONDS``, low and high). This
script trains exactly the run the budget allows for each estimate: the same code, seed, tasks and
cosine schedule (planned over the gpu steps) as the notebook's cell, on the CPU, with a clock that
advances the estimated T4 seconds per meta-step (validation counted as free), then scores it on 600
test tasks (1 inner step, bn=batch); when two estimates allow the same steps the run is trained once.
Writes ``benchmarks/results/t4_budget_estimate.json``: the step
times are the estimate; the steps and accuracies of the runs they allow are measured.

These estimates are course material, not library code: notebook 05 quotes the JSON's runs (its cell
``T4_REPLAY``, which ``tests/test_budget.py`` keeps equal to the file), and nothing in ``mllib`` reads
them.

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/t4_budget_estimate.py
"""
from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import mllib.train
from mllib.budget import live_budget, steps_within
from mllib.data import load_omniglot
from mllib.evaluate import evaluate
from mllib.timing import use_clock
from mllib.train import TrainConfig, meta_train

OUT = Path(__file__).resolve().parent / "results" / "t4_budget_estimate.json"

#: Notebook 05's live MAML run on a Colab T4 (an estimate, never measured): seconds per quick-profile
#: meta-step (5-way 1-shot, meta-batch 8, 5 queries, 32 filters, second order, vmap form), low and
#: high. Derived from measurements in the project's field notes: on an H100 the full profile's
#: meta-step (meta-batch 32, 15 queries, 64 filters: about 40 times the work of a quick step) took
#: 0.034 s in vmap form. A T4 has about 1/8 of an H100's fp32 throughput (8.1 against 67 TFLOPS)
#: and 1/10 of its memory bandwidth (320 against 3,350 GB/s), so the quick step's arithmetic takes
#: about 0.034 * 10 / 40 = 0.009 s there; the rest is a per-step overhead (kernel launches, Python)
#: that does not shrink with the work, at most the H100's whole 0.034 s step. Hence 0.02-0.04 s.
#: (Derived for the quick profile's earlier all-parameter step; the zero-head step of today's quick
#: recipe does less work, 0.39x on the CPU, so the range is on the slow side.)
T4_MAML_STEP_SECONDS = (0.02, 0.04)


def main() -> None:
    data = load_omniglot(progress=False)
    budget = live_budget("05 maml", "gpu")
    results = {"budget": {"steps": budget.steps, "max_seconds": budget.max_seconds},
               "t4_step_seconds": list(T4_MAML_STEP_SECONDS), "runs": []}
    real_step = mllib.train.meta_step
    for step_seconds in sorted(T4_MAML_STEP_SECONDS, reverse=True):   # notebook 05's cell, 2 training queries
        steps = steps_within("05 maml", step_seconds)
        if results["runs"] and results["runs"][-1]["expected_steps"] == steps:   # the same run again
            results["runs"].append(dict(results["runs"][-1], t4_step_seconds=step_seconds))
            continue
        clock = [0.0]

        def timed(*args, **kwargs):
            out = real_step(*args, **kwargs)
            clock[0] += step_seconds
            return out

        mllib.train.meta_step = timed
        config = TrainConfig(algo="maml", ways=5, shots=1, profile="gpu", steps=budget.steps,
                             overrides={"val_every": max(50, budget.steps // 4), "val_tasks": 50, "query": 2},
                             device="cpu", seed=0, out=tempfile.mkdtemp(prefix="t4_estimate_"),
                             max_seconds=budget.max_seconds, progress=False)
        t0 = time.perf_counter()
        with use_clock(lambda: clock[0]):
            run = meta_train(config, data=data, log=lambda line: None)
        cpu_seconds = time.perf_counter() - t0
        mllib.train.meta_step = real_step
        result = evaluate(run, data=data, tasks=600, device="cpu", progress=False)
        results["runs"].append({"t4_step_seconds": step_seconds, "steps": run.step,
                                "expected_steps": steps_within("05 maml", step_seconds),
                                "accuracy": result["accuracy"], "ci95": result["ci95"],
                                "tasks": 600, "bn": "batch", "inner_steps_test": result["inner_steps"],
                                "cpu_seconds_shared_machine": round(cpu_seconds, 1)})
        print(results["runs"][-1], flush=True)
    OUT.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
