"""Issue 28, lever 1: MAML's one-step meta-gradient by forward-over-reverse differentiation.

For one inner step, theta' = theta - alpha g(theta) with g the support gradient, and the
meta-gradient is v - alpha H v, where v = grad L_query(theta') and H the support Hessian at
theta. The library differentiates through g by reverse-over-reverse (``create_graph=True`` and
one backward pass through the support backward). Here H v is a Hessian-vector product computed
forward-over-reverse: ``torch.func.jvp(torch.func.grad(L_support), (theta,), (v,))``. The
maths is the same, so the two agree to rounding (checked in float64); the probe times both,
interleaved round by round in one process, on the benchmark's paper setting (64 filters,
meta-batch 32, 15 queries, one inner step at 0.4, learned head, one thread).

    OMP_NUM_THREADS=1 python benchmarks/forward_over_reverse_probe.py --rounds 8 --out /tmp/fwdrev.json
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, jvp

from mllib.algorithms import MetaConfig, init_meta_params, meta_gradient
from mllib.bench.spec import BenchSpec, synthetic_batch
from mllib.models import ConvLearner


def setup(dtype: torch.dtype):
    torch.manual_seed(0)
    model = ConvLearner(5, filters=64).to(dtype)
    cfg = MetaConfig(algo="maml", inner_steps=1, inner_lr=0.4, form="loop")
    return model, synthetic_batch(BenchSpec(), dtype), cfg, init_meta_params(model, cfg)


def largest_relative_difference(ref: dict, new: dict) -> float:
    """max over parameters of ``max|ref - new| / max|ref|``: how far two meta-gradients are apart."""
    return max(((ref[k] - new[k]).abs().max() / ref[k].abs().max()).item() for k in ref)


def forward_over_reverse(model, params, batch, alpha: float) -> dict:
    """The mean one-step MAML meta-gradient over the tasks of ``batch``, H v by ``jvp`` of ``grad``."""
    theta = {k: v.detach() for k, v in params.items()}
    total = {k: torch.zeros_like(v) for k, v in theta.items()}
    for sx, sy, qx, qy in batch:
        def support_loss(p):
            return F.cross_entropy(functional_call(model, p, (sx,)), sy)

        g = grad(support_loss)(theta)
        v = grad(lambda p: F.cross_entropy(functional_call(model, p, (qx,)), qy))(
            {k: theta[k] - alpha * g[k] for k in theta})
        _, hv = jvp(grad(support_loss), (theta,), (v,))
        for k in total:
            total[k] += v[k] - alpha * hv[k]
    return {k: t / len(batch) for k, t in total.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", 1)))
    model, batch, cfg, params = setup(torch.float64)
    ref, _ = meta_gradient(model, params, batch[:4], cfg)
    new = forward_over_reverse(model, params, batch[:4], cfg.inner_lr)
    error = largest_relative_difference(ref, new)
    print(f"float64, 4 tasks: largest relative difference {error:.1e}")
    model, batch, cfg, params = setup(torch.float32)
    ratios = []
    for r in range(args.rounds):
        t0 = time.perf_counter()
        meta_gradient(model, params, batch, cfg)
        t1 = time.perf_counter()
        forward_over_reverse(model, params, batch, cfg.inner_lr)
        t2 = time.perf_counter()
        ratios.append((t2 - t1) / (t1 - t0))
        print(f"round {r}: library {t1 - t0:.3f} s, forward-over-reverse {t2 - t1:.3f} s, ratio {ratios[-1]:.3f}")
    result = {"float64_relative_difference": error, "ratios": ratios,
              "median_ratio": statistics.median(ratios), "load_average": os.getloadavg()}
    print(f"median forward-over-reverse / library: {result['median_ratio']:.3f}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
