"""Does ``torch.compile`` speed up a MAML meta-gradient on the CPU? A probe for issue 17's levers.

Two questions, one process, one meta-batch of Omniglot tasks (the quick or laptop recipe):

1. The all-parameter second-order step (learned head): the inner gradient is taken with
   ``create_graph=True`` and the outer gradient differentiates through it. The probe compiles the
   learner's forward pass and reports whether that double backward runs at all.
2. The zero-head step (the quick and laptop profiles): from a zero head the first inner step moves
   the head only, ``W' = -lr * dL/dW``, which is linear in the support features. The outer
   gradient then needs only a *single* backward pass through the body, so the body alone can be
   compiled while the tiny head algebra stays eager. The probe checks that this gives the library's
   meta-gradient (``mllib.algorithms.meta_gradient``) and times both after warm-up, in interleaved
   rounds (the ratio is computed per round), and reports the one-off compile time.

    OMP_NUM_THREADS=2 python benchmarks/compile_probe.py --recipe quick --threads 2 --rounds 12 \\
        --out benchmarks/results/compile_probe_quick.json

A probe, not a library feature: ``mllib`` keeps its eager code (the textbook form).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch
import torch.nn.functional as F

from mllib.algorithms import MetaConfig, init_meta_params, meta_gradient
from mllib.config import resolve_profile
from mllib.data import load_omniglot
from mllib.models import build_conv_learner, call_model, head_names
from mllib.tasks import OmniglotTasks


def zero_head_meta_gradient(features, body, head_shape, batch, lr):
    """The zero-head recipe's meta-gradient over ``body`` (dict), one inner step, ``bn="batch"``.

    ``features(body, x [N, 1, 28, 28]) -> [N, D]``; ``head_shape = (ways, D)``. Per task the
    adapted head is ``W' = -lr dL_s/dW``, ``b' = -lr dL_s/db`` at ``W = 0, b = 0``.
    """
    total = 0.0
    for sx, sy, qx, qy in zip(batch.support_x, batch.support_y, batch.query_x, batch.query_y):
        w = torch.zeros(head_shape, requires_grad=True)
        b = torch.zeros(head_shape[0], requires_grad=True)
        support_loss = F.cross_entropy(features(body, sx) @ w.T + b, sy)
        gw, gb = torch.autograd.grad(support_loss, (w, b), create_graph=True)
        total = total + F.cross_entropy(features(body, qx) @ (-lr * gw).T + (-lr * gb), qy)
    loss = total / batch.num_tasks
    return dict(zip(body, torch.autograd.grad(loss, list(body.values())))), float(loss.detach())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", choices=("quick", "laptop"), default="quick")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    profile = resolve_profile(args.recipe, 5)
    cfg = MetaConfig.from_profile("maml", profile, form="loop")
    torch.manual_seed(0)
    model = build_conv_learner(5, profile.filters)
    params = init_meta_params(model, cfg)
    tasks = OmniglotTasks(load_omniglot(progress=False), split="maml", part="train", ways=5, shots=1,
                          query=profile.query, seed=0)
    batch = tasks.sample(profile.meta_batch)
    head = set(head_names(model))
    body = {k: v for k, v in params.items() if k not in head}
    head_shape = tuple(params["head.weight"].shape)

    def eager_features(p, x):
        return call_model(model, p, x, features=True)

    report = {"recipe": args.recipe, "threads": args.threads, "torch": torch.__version__,
              "meta_batch": profile.meta_batch, "filters": profile.filters, "query": profile.query}

    # 1. all-parameter second order through a compiled forward
    compiled_forward = torch.compile(lambda p, x: call_model(model, p, x), dynamic=False)
    learned = dict(params)
    sx, sy, qx, qy = (t[0] for t in (batch.support_x, batch.support_y, batch.query_x, batch.query_y))
    try:
        inner = torch.autograd.grad(F.cross_entropy(compiled_forward(learned, sx), sy),
                                    list(learned.values()), create_graph=True)
        adapted = {k: v - profile.inner_lr * g for (k, v), g in zip(learned.items(), inner)}
        torch.autograd.grad(F.cross_entropy(compiled_forward(adapted, qx), qy), list(learned.values()))
        report["second_order_compiled"] = "ran"
    except Exception as error:  # noqa: BLE001 - the probe reports what torch says
        report["second_order_compiled"] = f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"
    print("all-parameter second order, compiled forward:", report["second_order_compiled"])

    # 2. zero head: compiled body against the library
    compiled_features = torch.compile(eager_features, dynamic=False)
    reference, _ = meta_gradient(model, params, batch, cfg)
    start = time.perf_counter()
    compiled_grads, _ = zero_head_meta_gradient(compiled_features, body, head_shape, batch, profile.inner_lr)
    report["compile_seconds"] = round(time.perf_counter() - start, 1)
    eager_grads, _ = zero_head_meta_gradient(eager_features, body, head_shape, batch, profile.inner_lr)
    scale = max(float(g.abs().max()) for g in reference.values() if g.abs().max() > 0)
    report["max_grad_difference_eager_rewrite_vs_library"] = max(
        float((eager_grads[k] - reference[k]).abs().max()) for k in body) / scale
    report["max_grad_difference_compiled_vs_library"] = max(
        float((compiled_grads[k] - reference[k]).abs().max()) for k in body) / scale
    print(f"compile (first call): {report['compile_seconds']} s; relative gradient difference to "
          f"mllib: eager rewrite {report['max_grad_difference_eager_rewrite_vs_library']:.1e}, "
          f"compiled {report['max_grad_difference_compiled_vs_library']:.1e}")

    timers = {
        "mllib": lambda: meta_gradient(model, params, batch, cfg),
        "compiled body": lambda: zero_head_meta_gradient(compiled_features, body, head_shape, batch,
                                                         profile.inner_lr),
    }
    seconds = {name: [] for name in timers}
    for r in range(args.rounds + 1):
        for name in (list(timers) if r % 2 == 0 else list(timers)[::-1]):
            start = time.perf_counter()
            timers[name]()
            if r:  # round 0 is a warm-up
                seconds[name].append(time.perf_counter() - start)
    ratios = [c / m for c, m in zip(seconds["compiled body"], seconds["mllib"])]
    q = statistics.quantiles(ratios, n=4)
    report.update(seconds={k: [round(s, 4) for s in v] for k, v in seconds.items()},
                  median_seconds={k: round(statistics.median(v), 4) for k, v in seconds.items()},
                  ratio_median=round(statistics.median(ratios), 3), ratio_quartiles=[round(x, 3) for x in q],
                  ratio_worst=round(max(ratios), 3), ratio_best=round(min(ratios), 3),
                  command="python benchmarks/compile_probe.py " + " ".join(argv or sys.argv[1:]))
    saved = statistics.median(seconds["mllib"]) - statistics.median(seconds["compiled body"])
    report["break_even_steps"] = round(report["compile_seconds"] / saved) if saved > 0 else None
    print(f"meta-gradient, median of {args.rounds} rounds: mllib {report['median_seconds']['mllib']:.3f} s, "
          f"compiled body {report['median_seconds']['compiled body']:.3f} s; compiled / mllib = "
          f"{report['ratio_median']} (quartiles {q[0]:.2f}-{q[2]:.2f}, worst {max(ratios):.2f}); "
          f"compile time repaid after {report['break_even_steps']} steps")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(report, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
