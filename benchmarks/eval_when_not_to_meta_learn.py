"""Notebook 09, section 4: a pre-trained embedding with simple classifiers against MAML and ProtoNets.

Every learner is scored on the *same* fixed test tasks (``mllib.evaluate.test_tasks``, seed 600):

* in domain: ``--tasks`` 5-way K-shot tasks of the ``maml`` split's 423 test characters (characters
  as drawn, no rotations: the course's protocol), 5 queries per class;
* domain shift: ``--tasks`` tasks of the same shape from ``--glyph-classes`` printed glyphs
  (``mllib.data.glyphs.glyph_data``, seed 0, 20 renderings each), which no learner saw in training.

Learners, all with batch norm in ``"batch"`` mode (each set normalised with its own statistics:
transductive, as the shipped checkpoints were trained and tested):

* ``pretrain+centroid``, ``pretrain+probe``: ``mllib/checkpoints/pretrained_omniglot_5w1s.pt``
  (``benchmarks/make_pretrained_omniglot.py``), frozen; cosine nearest centroid, or a logistic
  regression on the L2-normalised support features (100 steps, lr 1, L2 0.01) (``mllib.feature_baselines``);
* ``maml_quick``: ``maml_omniglot_5w1s_quick`` (32 filters, 1,000 meta-steps), 3 SGD steps at lr 0.4
  on the support set (its card's test protocol);
* ``protonet_quick``: ``protonet_omniglot_5w1s_quick`` (32 filters, 1,000 meta-steps);
* ``maml_laptop``: ``maml_omniglot_5w1s`` (64 filters, 10,000 meta-steps), 1 step at lr 0.4.

    MLLIB_DATA=... python benchmarks/eval_when_not_to_meta_learn.py --shots 1 5 \\
        --out benchmarks/results/nb09_when_not_to_meta_learn.json

writes per learner, domain and shot count the mean accuracy with its 95% interval, the paired
verdicts (``mllib.compare.paired_verdict``, same tasks) of each pre-training baseline against each
meta-learner, and the per-task accuracies (so the notebook can recompute any comparison).
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

from mllib.compare import paired_verdict
from mllib.data import load_omniglot
from mllib.data.glyphs import glyph_data
from mllib.evaluate import TEST_SEED, load_run, mean_ci95, task_accuracies, test_tasks
from mllib.feature_baselines import PRETRAINED, feature_accuracies, load_pretrained
from mllib.provenance import git_commit

META = {"maml_quick": "maml_omniglot_5w1s_quick", "protonet_quick": "protonet_omniglot_5w1s_quick",
        "maml_laptop": "maml_omniglot_5w1s"}
BASELINES = ("pretrain+centroid", "pretrain+probe")


def score_all(domains: dict, shots: int, count: int, pretrained_path: Path = PRETRAINED,
              learners: tuple[str, ...] = BASELINES + tuple(META)) -> dict:
    """``{domain: {learner: per-task accuracies [count]}}`` on the same tasks for every learner."""
    model, params = load_pretrained(pretrained_path)
    runs = {name: load_run(META[name], "cpu", shots=shots) for name in learners if name in META}
    protocol = runs[next(iter(runs))].protocol if runs else None
    out = {}
    for domain, (data, split) in domains.items():
        tasks = test_tasks(data, protocol.with_changes(shots=shots) if split == "maml" else
                           _with_split(protocol, split), count, seed=TEST_SEED)
        out[domain] = {}
        for name in learners:
            if name == "pretrain+centroid":
                acc = feature_accuracies(model, params, tasks, classifier="centroid", metric="cosine")
            elif name == "pretrain+probe":
                acc = feature_accuracies(model, params, tasks, classifier="probe")
            else:
                acc = task_accuracies(runs[name].model, runs[name].params, runs[name].protocol, tasks)
            out[domain][name] = acc
    return out


def _with_split(protocol, split):
    from dataclasses import replace

    return replace(protocol, split=split)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tasks", type=int, default=600)
    ap.add_argument("--shots", type=int, nargs="+", default=[1])
    ap.add_argument("--glyph-classes", type=int, default=300)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--pretrained", type=Path, default=PRETRAINED)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/nb09_when_not_to_meta_learn.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    domains = {"omniglot": (load_omniglot(progress=False), "maml"),
               "glyphs": (glyph_data(args.glyph_classes, 20, seed=0), None)}
    results = {}
    for shots in args.shots:
        t0 = time.perf_counter()
        scores = score_all(domains, shots, args.tasks, args.pretrained)
        entry = {"seconds": round(time.perf_counter() - t0, 1)}
        for domain, by_learner in scores.items():
            entry[domain] = {
                "accuracy": {n: [round(v, 4) for v in mean_ci95(a)] for n, a in by_learner.items()},
                "paired": {f"{b} vs {m}": str(paired_verdict(by_learner[b], by_learner[m])) + " | "
                           + paired_verdict(by_learner[b], by_learner[m]).detail
                           for b in BASELINES for m in META},
                "per_task": {n: [round(float(v), 4) for v in a] for n, a in by_learner.items()},
            }
        results[f"{shots}shot"] = entry
        print(json.dumps({k: {d: v[d]["accuracy"] for d in ("omniglot", "glyphs")} for k, v in results.items()}),
              flush=True)
    report = {
        "command": "python " + " ".join(sys.argv),
        "protocol": f"{args.tasks} fixed 5-way K-shot tasks per domain (seed {TEST_SEED}), 5 queries per class, "
        "Omniglot: the maml split's 423 test characters as drawn (no rotations); glyphs: "
        f"{args.glyph_classes} printed glyphs (mllib.data.glyphs.glyph_data seed 0, 20 renderings each); "
        "batch norm 'batch' (transductive) for every learner; MAML adapts with its card's inner steps and lr",
        "learners": {"pretrain+centroid": "pretrained_omniglot_5w1s.pt frozen, cosine nearest centroid",
                     "pretrain+probe": "pretrained_omniglot_5w1s.pt frozen, logistic regression on L2-normalised "
                     "features, 100 full-batch steps, lr 1, L2 0.01",
                     **{k: f"{v} (its card's test protocol)" for k, v in META.items()}},
        "accuracy_format": "[mean, 95% half-width]",
        "results": results,
        "seconds": round(time.perf_counter() - start, 1),
        "machine": f"{platform.machine()}, {args.threads} torch thread(s), a 2-core CPU shared with other jobs",
        "git_commit": git_commit(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
