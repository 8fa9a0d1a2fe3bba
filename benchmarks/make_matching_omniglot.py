"""Train a matching network with the quick ProtoNet's network and budget, then compare the two on one task set.

Notebook 07, sections 3 and 4 (issue 25). The matching network (:mod:`mllib.matching`: softmax over the
support of a scaled cosine, ``-log`` of the attention mass on the query's class; no full-context
embeddings) is trained exactly as the shipped ``protonet_omniglot_5w1s_quick`` was (its card): the
course's conv learner with 32 filters (``build_learner("protonet", 5, 32)``, initialised after
``torch.manual_seed(seed)`` as ``mllib.train`` does), 5-way 1-shot training tasks of the ``maml``
split's ``train`` part (rotations, 5 queries per class, ``OmniglotTasks(seed=seed)``), meta-batch 8,
Adam at a constant 3e-3, 1,000 meta-steps, batch norm ``batch`` (support and query each with their own
statistics, transductive), validation every 100 steps on the trainer's 100 fixed ``val`` tasks
(``VAL_SEED``, 5 queries per class) and the parameters of the best validation kept. One extra
meta-parameter: the cosine scale ``s`` (starts at 10).

Then both are scored on the same 600 test tasks (``mllib.evaluate.test_tasks`` with the ProtoNet's
protocol: ``maml`` split, test characters as drawn, 5 queries per class, ``bn="batch"``): each embedding
with each read-out (matching attention, prototypes), per task, with 95% intervals and paired
differences (``mllib.compare.paired_verdict``). In 1-shot tasks the matching read-out's prediction is
the cosine nearest support image whatever the scale, the ProtoNet's the Euclidean nearest one.

    MLLIB_DATA=... MLLIB_CACHE=... OMP_NUM_THREADS=1 nice -n 10 python benchmarks/make_matching_omniglot.py
    ... python benchmarks/make_matching_omniglot.py --eval-only     # the comparison only

writes ``mllib/checkpoints/matching_omniglot_5w1s_quick.pt`` (``mllib.matching.save_matching``), its
``.train.log`` (the training log, then the card as one JSON line), and
``benchmarks/results/matching_vs_protonet.json``.
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from mllib.compare import paired_verdict
from mllib.data import load_omniglot
from mllib.evaluate import TEST_SEED, load_run, mean_ci95, task_accuracies, test_tasks
from mllib.learners import build_learner
from mllib.matching import INITIAL_SCALE, batch_loss, load_matching, readout_accuracies, save_matching
from mllib.provenance import git_commit
from mllib.tasks import OmniglotTasks
from mllib.train import VAL_SEED

ROOT = Path(__file__).resolve().parents[1]
CKPT = ROOT / "mllib" / "checkpoints" / "matching_omniglot_5w1s_quick.pt"
RESULTS = ROOT / "benchmarks" / "results" / "matching_vs_protonet.json"
PROTONET = "protonet_omniglot_5w1s_quick"
MACHINE = "2-core CPU shared with other engineers' jobs, 1 torch thread, nice 10: times are not idle-machine times"


def log(path: Path, line: str) -> None:
    stamped = f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M:%S} {line}"
    print(stamped, flush=True)
    with path.open("a") as handle:
        handle.write(stamped + "\n")


def train(args, data, log_path: Path) -> dict:
    torch.manual_seed(args.seed)
    model = build_learner("protonet", 5, args.filters)       # the ProtoNet's conv learner, same init
    params = {k: v.detach().clone().requires_grad_(True) for k, v in model.named_parameters()}
    scale = torch.tensor(INITIAL_SCALE, requires_grad=True)
    body = {k: v for k, v in params.items() if not k.startswith("head.")}   # the head is unused
    optimizer = torch.optim.Adam(list(body.values()) + [scale], lr=args.meta_lr)
    tasks = OmniglotTasks(data, split="maml", part="train", ways=5, shots=1, query=args.query, seed=args.seed)
    val = OmniglotTasks(data, split="maml", part="val", ways=5, shots=1, query=5, seed=VAL_SEED).sample(args.val_tasks)
    log(log_path, f"matching network 5-way 1-shot | cpu (1 thread) | bn batch | {args.steps} steps, meta-batch "
        f"{args.meta_batch}, query {args.query}, filters {args.filters}, Adam {args.meta_lr} constant, "
        f"scale starts at {INITIAL_SCALE}, seed {args.seed}")
    best, curve, start = None, [], time.perf_counter()
    for step in range(1, args.steps + 1):
        loss, acc = batch_loss(model, params, scale, tasks.sample(args.meta_batch), 5, "batch")
        if not math.isfinite(float(loss.detach())):
            raise SystemExit(f"the loss is {float(loss)} at step {step}: training diverged")
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % args.val_every == 0 or step == args.steps:
            v = float(readout_accuracies(model, params, val, 5, "matching", scale).mean())
            seconds = time.perf_counter() - start
            if best is None or v > best["val_accuracy"]:
                best = {"step": step, "val_accuracy": v, "seconds": seconds, "scale": float(scale.detach()),
                        "params": {k: p.detach().clone() for k, p in params.items()}}
            curve.append({"step": step, "val_accuracy": round(v, 4), "seconds": round(seconds, 1)})
            log(log_path, f"step {step}: loss {float(loss):.4f}, train acc {float(acc.mean()):.4f}, val acc "
                f"{v:.4f} (best {best['val_accuracy']:.4f} at step {best['step']}), scale {float(scale.detach()):.2f}, "
                f"{seconds:.0f} s")
    total = time.perf_counter() - start
    config = {"algo": "matching", "ways": 5, "shots": 1, "query_train": args.query, "filters": args.filters,
              "bn": "batch", "meta_steps": args.steps, "meta_batch": args.meta_batch, "meta_lr": args.meta_lr,
              "meta_lr_schedule": "constant", "val_every": args.val_every, "val_tasks": args.val_tasks,
              "seed": args.seed, "best_step": best["step"], "best_val_accuracy": round(best["val_accuracy"], 4),
              "scale": round(best["scale"], 3), "train_seconds": round(total, 1), "machine": MACHINE,
              "val_curve": curve, "git_commit": git_commit(), "torch": str(torch.__version__),
              "python": platform.python_version(), "command": "python benchmarks/make_matching_omniglot.py"}
    save_matching(args.out, model, best["params"], torch.tensor(best["scale"]), config)
    log(log_path, f"done: {args.steps} steps in {total:.0f} s; best val acc {best['val_accuracy']:.4f} at step "
        f"{best['step']}; wrote {args.out}")
    return config


def compare(args, data) -> dict:
    proto = load_run(PROTONET, "cpu")
    protocol = proto.protocol
    assert protocol.meta_config.bn == "batch" and protocol.query == 5 and protocol.split == "maml"
    tasks = test_tasks(data, protocol, args.test_tasks)
    match_model, match_params, scale, config = load_matching(args.out)
    start = time.perf_counter()
    scores = {
        "protonet (course evaluate)": task_accuracies(proto.model, proto.params, protocol, tasks),
        "protonet embedding, prototype read-out": readout_accuracies(proto.model, proto.params, tasks, 5, "prototype"),
        "protonet embedding, matching read-out": readout_accuracies(proto.model, proto.params, tasks, 5, "matching",
                                                                    scale),
        "matching embedding, matching read-out": readout_accuracies(match_model, match_params, tasks, 5, "matching",
                                                                    scale),
        "matching embedding, prototype read-out": readout_accuracies(match_model, match_params, tasks, 5,
                                                                     "prototype"),
    }
    seconds = time.perf_counter() - start
    same = torch.equal(scores["protonet (course evaluate)"], scores["protonet embedding, prototype read-out"])
    assert same, "mllib.matching's prototype read-out must reproduce the course's ProtoNet evaluation per task"
    del scores["protonet (course evaluate)"]
    entries = {name: dict(zip(("accuracy", "ci95"), mean_ci95(s))) for name, s in scores.items()}
    pairs = {
        "matching network - protonet (each its own read-out)": ("matching embedding, matching read-out",
                                                                 "protonet embedding, prototype read-out"),
        "protonet embedding: matching - prototype read-out": ("protonet embedding, matching read-out",
                                                              "protonet embedding, prototype read-out"),
        "matching embedding: matching - prototype read-out": ("matching embedding, matching read-out",
                                                              "matching embedding, prototype read-out"),
        "matching read-out: matching - protonet embedding": ("matching embedding, matching read-out",
                                                             "protonet embedding, matching read-out"),
        "prototype read-out: matching - protonet embedding": ("matching embedding, prototype read-out",
                                                              "protonet embedding, prototype read-out"),
    }
    paired = {}
    for name, (a, b) in pairs.items():
        d = mean_ci95(scores[a] - scores[b])
        paired[name] = {"a": a, "b": b, "difference": d[0], "ci95": d[1],
                        "verdict": str(paired_verdict(scores[a].tolist(), scores[b].tolist()))}
    card = json.loads((ROOT / "mllib" / "checkpoints" / f"{PROTONET}.json").read_text())
    return {
        "description": "matching network (mllib.matching, trained by benchmarks/make_matching_omniglot.py) against "
                       "the shipped quick ProtoNet: each embedding scored with each read-out on the same test tasks",
        "protocol": {"tasks": args.test_tasks, "seed": TEST_SEED, "split": "maml", "part": "test",
                     "classes": "test characters as drawn (no rotated classes)", "ways": 5, "shots": 1,
                     "query_per_class": protocol.query, "bn": "batch (support and query each with their own "
                     "statistics: transductive)", "same_tasks": "mllib.evaluate.test_tasks(data, protocol, 600)"},
        "budgets": {"protonet": {"checkpoint": PROTONET, "meta_steps": card["meta_steps"],
                                 "meta_batch": card["meta_batch"], "filters": card["filters"],
                                 "meta_lr": card["meta_lr"], "best_step": card["best_step"],
                                 "train_seconds": card["train_seconds"], "machine": card["card"]},
                    "matching": {k: config[k] for k in ("meta_steps", "meta_batch", "filters", "meta_lr",
                                                        "best_step", "train_seconds", "machine", "scale")}},
        "entries": entries, "paired": paired, "eval_seconds_shared_cpu": round(seconds, 1),
        "protonet_reproduced_per_task": same, "git_commit": git_commit(),
        "per_task": {name: [round(float(x), 4) for x in s] for name, s in scores.items()},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=CKPT)
    ap.add_argument("--results", type=Path, default=RESULTS)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--meta-batch", type=int, default=8)
    ap.add_argument("--query", type=int, default=5)
    ap.add_argument("--filters", type=int, default=32)
    ap.add_argument("--meta-lr", type=float, default=3e-3)
    ap.add_argument("--val-every", type=int, default=100)
    ap.add_argument("--val-tasks", type=int, default=100)
    ap.add_argument("--test-tasks", type=int, default=600)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--eval-only", action="store_true", help="score the existing checkpoint, do not train")
    args = ap.parse_args()
    torch.set_num_threads(1)
    data = load_omniglot()
    log_path = args.out.with_name(args.out.stem + ".train.log")
    if not args.eval_only:
        log_path.write_text("")
        config = train(args, data, log_path)
        with log_path.open("a") as handle:
            handle.write("card: " + json.dumps(config) + "\n")
    result = compare(args, data)
    args.results.write_text(json.dumps(result, indent=1) + "\n")
    for name, e in result["entries"].items():
        print(f"{name:42} {100 * e['accuracy']:.2f} +- {100 * e['ci95']:.2f}")
    for name, p in result["paired"].items():
        print(f"{name:52} {100 * p['difference']:+.2f} +- {100 * p['ci95']:.2f}  {p['verdict']}")


if __name__ == "__main__":
    main()
