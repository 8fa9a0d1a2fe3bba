"""Issue 28, lever: all tasks of the meta-batch in one grouped convolution (task-batched MAML).

The library's loop form runs each task's support and query passes on its own (small batches:
5 support and 75 query images). Here the T tasks of the meta-batch share every call: task t's
channels are channels ``t*C .. (t+1)*C - 1`` of one ``[N, T*C, H, W]`` tensor, each convolution is
one ``F.conv2d(..., groups=T)`` with the T per-task weights stacked, batch norm over the T*C
channels gives every task its own statistics, and the head is one ``einsum``. The per-task
parameters are the meta-parameters tiled T times, so one support backward gives every task its
own inner gradient and the query loss differentiates back to the shared meta-parameters: the
same meta-gradient (checked in float64), one pass for all tasks. Paper setting as the benchmark's
(64 filters, meta-batch 32, 15 queries, one inner step at 0.4, learned head, one thread); the
rounds interleave the library's meta-gradient and the grouped one (channels-last and NCHW).

    OMP_NUM_THREADS=1 python benchmarks/grouped_conv_probe.py --rounds 4 --out benchmarks/results/grouped_conv_probe.json
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

from forward_over_reverse_probe import largest_relative_difference, setup   # benchmarks/ is on sys.path
from mllib.algorithms import meta_gradient


def grouped_forward(p, x, T: int, channels_last: bool):
    """Logits ``[N, T, ways]`` of ``x [N, T*C_in, H, W]`` under per-task parameters ``p``.

    Conv weights ``[T*C, C_in, 3, 3]``, batch norm ``[T*C]``, head weight ``[T, ways, C]``, bias ``[T, ways]``.
    """
    for i in range(4):
        w = p[f"blocks.{i}.conv.weight"]
        if channels_last:
            w = w.contiguous(memory_format=torch.channels_last)
            x = x.contiguous(memory_format=torch.channels_last)
        x = F.conv2d(x, w, padding=1, groups=T)
        x = F.batch_norm(x, None, None, p[f"blocks.{i}.norm.weight"], p[f"blocks.{i}.norm.bias"], True, 0.0, 1e-5)
        x = torch.relu(F.max_pool2d(x, 2))
    N = x.shape[0]
    feats = x.reshape(N, T, -1)                       # [N, T, C]
    return torch.einsum("ntc,tkc->ntk", feats, p["head.weight"]) + p["head.bias"]   # [N, T, ways]


def grouped_meta_gradient(params, batch, alpha: float, cl: bool = True) -> dict:
    """The mean one-step MAML meta-gradient over the tasks of ``batch``, all tasks in one pass."""
    T = len(batch)
    sx, sy, qx, qy = (torch.stack([task[i] for task in batch]) for i in range(4))   # [T, N, ...]
    sxg = sx.squeeze(2).transpose(0, 1).contiguous()          # [T, S, 1, H, W] -> [S, T, H, W]
    qxg = qx.squeeze(2).transpose(0, 1).contiguous()

    def tile(k, v):   # task t's copy: rows t*C .. (t+1)*C - 1 (head: a leading task dimension)
        if k.startswith("head."):
            return v.unsqueeze(0).expand(T, *v.shape)
        return v.repeat(T, *([1] * (v.dim() - 1)))

    tiled = {k: tile(k, v) for k, v in params.items()}
    out = grouped_forward(tiled, sxg, T, cl)                      # [S, T, ways]
    loss_s = F.cross_entropy(out.reshape(-1, out.shape[-1]), sy.t().reshape(-1), reduction="sum") / sx.shape[1]
    keys = list(tiled)
    gs = torch.autograd.grad(loss_s, [tiled[k] for k in keys], create_graph=True)
    adapted = {k: tiled[k] - alpha * g for k, g in zip(keys, gs)}
    outq = grouped_forward(adapted, qxg, T, cl)
    loss_q = F.cross_entropy(outq.reshape(-1, outq.shape[-1]), qy.t().reshape(-1), reduction="sum") / qx.shape[1] / T
    ks = list(params)
    g = torch.autograd.grad(loss_q, [params[k] for k in ks])
    return dict(zip(ks, g))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", 1)))
    model, batch, cfg, params = setup(torch.float64)
    ref, _ = meta_gradient(model, params, batch[:4], cfg)
    new = grouped_meta_gradient(params, batch[:4], cfg.inner_lr, cl=False)
    error = largest_relative_difference(ref, new)
    print(f"float64, 4 tasks: largest relative difference {error:.1e}")
    model, batch, cfg, params = setup(torch.float32)
    meta_gradient(model, params, batch, cfg)
    grouped_meta_gradient(params, batch, cfg.inner_lr)          # warm-up
    rounds = []
    for r in range(args.rounds):
        t0 = time.perf_counter()
        meta_gradient(model, params, batch, cfg)
        t1 = time.perf_counter()
        grouped_meta_gradient(params, batch, cfg.inner_lr, cl=True)
        t2 = time.perf_counter()
        grouped_meta_gradient(params, batch, cfg.inner_lr, cl=False)
        t3 = time.perf_counter()
        rounds.append({"library_s": t1 - t0, "grouped_channels_last_s": t2 - t1, "grouped_nchw_s": t3 - t2})
        print(f"round {r}: library {t1 - t0:.3f} s, grouped channels-last {t2 - t1:.3f} s "
              f"({(t2 - t1) / (t1 - t0):.2f}x), grouped NCHW {t3 - t2:.3f} s ({(t3 - t2) / (t1 - t0):.2f}x)", flush=True)
    result = {"float64_relative_difference": error, "rounds": rounds,
              "median_ratio_channels_last": statistics.median(r["grouped_channels_last_s"] / r["library_s"] for r in rounds),
              "median_ratio_nchw": statistics.median(r["grouped_nchw_s"] / r["library_s"] for r in rounds),
              "threads": torch.get_num_threads(), "load_average": os.getloadavg()}
    print(f"median grouped / library: channels-last {result['median_ratio_channels_last']:.2f}, "
          f"NCHW {result['median_ratio_nchw']:.2f}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
