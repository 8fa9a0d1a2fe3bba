"""How far does the in-context learner get on Omniglot 5-way 1-shot in a fixed CPU time budget?

Trains ``mllib.incontext.omniglot_incontext`` with the plain ``train_incontext`` loop (Adam, training
tasks of the MAML split with rotations), in rounds of ``--round-seconds``; after each round it
prints the accuracy on fixed validation tasks. At the end it evaluates on the test split (600 tasks
by default, 15 queries per class, mean and 95% CI with ``mllib.evaluate.mean_ci95``) and writes a
JSON summary, plus the model (``--save``, a plain dict ``{"state_dict", "config", "result"}``).

    MLLIB_DATA=... nice -n 10 python benchmarks/incontext_omniglot_cpu.py --minutes 15 \
        --save build/incontext_cpu.pt --json build/incontext_cpu.json

The shipped checkpoint ``mllib/checkpoints/incontext_omniglot_5w1s.pt`` (notebook 07, the README
results) comes from the course's trainer instead (``python -m mllib train --algo incontext``; the
command is on its model card); this script stays as the plain-loop reference (with gradient
clipping and its own validation rounds) for experiments outside the trainer.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from mllib.checkpoint import atomic_save
from mllib.provenance import git_commit
from mllib.data import load_omniglot
from mllib.evaluate import TEST_SEED, mean_ci95
from mllib.incontext import evaluate_incontext, omniglot_incontext, train_incontext
from mllib.tasks import OmniglotTasks

VAL_SEED = 2017


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=15.0, help="training wall-time budget")
    ap.add_argument("--round-seconds", type=float, default=120.0, help="training time between validations")
    ap.add_argument("--ways", type=int, default=5)
    ap.add_argument("--shots", type=int, default=1)
    ap.add_argument("--query", type=int, default=2, help="query images per class in training tasks")
    ap.add_argument("--meta-batch", type=int, default=8)
    ap.add_argument("--filters", type=int, default=32)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--depth", type=int, default=2)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--val-tasks", type=int, default=100)
    ap.add_argument("--test-tasks", type=int, default=600)
    ap.add_argument("--test-query", type=int, default=15)
    ap.add_argument("--form", default="batched", choices=("batched", "vmap", "loop"))
    ap.add_argument("--save", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    data = load_omniglot(progress=False)
    model = omniglot_incontext(args.ways, filters=args.filters, dim=args.dim, depth=args.depth, heads=args.heads)
    train = OmniglotTasks(data, part="train", ways=args.ways, shots=args.shots, query=args.query, seed=args.seed)
    val = OmniglotTasks(data, part="val", ways=args.ways, shots=args.shots, query=args.test_query,
                        seed=VAL_SEED).sample(args.val_tasks)
    budget, spent, steps, curve = 60 * args.minutes, 0.0, 0, []
    optimizer_state = None
    while spent < budget:
        history = train_incontext(model, train, steps=10**9, meta_batch=args.meta_batch, lr=args.lr, form=args.form,
                                  seed=args.seed + steps, max_seconds=min(args.round_seconds, budget - spent),
                                  progress=False, optimizer_state=optimizer_state)
        optimizer_state = history["optimizer_state"]
        spent += history["seconds"]
        steps += len(history["step"])
        model.eval()
        val_acc = float(evaluate_incontext(model, val).mean())
        curve.append({"step": steps, "seconds": round(spent, 1), "val_accuracy": round(val_acc, 4),
                      "train_loss": round(sum(history["loss"][-20:]) / max(1, len(history["loss"][-20:])), 4)})
        print(json.dumps(curve[-1]), flush=True)

    test_tasks = OmniglotTasks(data, part="test", ways=args.ways, shots=args.shots, query=args.test_query,
                               seed=TEST_SEED)
    t0 = time.perf_counter()
    accs = torch.cat([evaluate_incontext(model, test_tasks.sample(min(100, args.test_tasks - i)))
                      for i in range(0, args.test_tasks, 100)])
    mean, ci = mean_ci95(accs)
    result = {
        "algo": "incontext", "ways": args.ways, "shots": args.shots, "accuracy": mean, "ci95": ci,
        "tasks": args.test_tasks, "query": args.test_query, "split": "test", "split_name": "maml", "seed": TEST_SEED,
        "eval_seconds": round(time.perf_counter() - t0, 1), "train_seconds": round(spent, 1), "steps": steps,
        "config": vars(args) | {"save": str(args.save), "json": str(args.json)},
        "curve": curve, "machine": f"{platform.machine()} CPU, {args.threads} threads (shared: see the report)",
        "torch": torch.__version__, "git_commit": git_commit(),
    }
    print(f"in-context {args.ways}-way {args.shots}-shot: {100 * mean:.2f}% +- {100 * ci:.2f}% "
          f"({args.test_tasks} test tasks, {steps} steps, {spent / 60:.1f} min of training)", flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))
    if args.save:
        atomic_save({"state_dict": model.state_dict(), "config": result["config"], "result": result}, args.save)


if __name__ == "__main__":
    main()
