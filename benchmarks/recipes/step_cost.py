"""Cost per meta-step of recipe variants RELATIVE to today's ``mllib.algorithms.meta_gradient``.

Interleaved A/B timing in one process: every round runs one meta-step of each variant in a fresh
random order on the same Omniglot task batch; the ratio variant / library is taken per round and
summarised by its median and inter-quartile range (robust to the load of a shared machine).
Before timing, ``--check`` compares each variant's meta-gradient with the library's in float64.

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/recipes/step_cost.py --rounds 20 \
        --out benchmarks/recipes/results/step_cost.json
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch  # noqa: E402

from common import RESULTS, Recipe, env_setup, init_params, meta_grad, proto_grad  # noqa: E402


def variants() -> dict[str, tuple[Recipe, str]]:
    base = dict(channels_last_input=True)
    return {
        "lib (today)": (Recipe(), "lib"),
        "script, NCHW input (= lib)": (Recipe(channels_last_input=False), "maml"),
        "channels-last input": (Recipe(**base), "maml"),
        "channels-last, first order": (Recipe(**base, first_order_until=10**9), "maml"),
        "channels-last, zero head, skip zero grads": (Recipe(**base, zero_head=True), "maml"),
        "channels-last, zero head, no skip": (Recipe(**base, zero_head=True, skip_zero_grads=False), "maml"),
        "channels-last, LSLR": (Recipe(**base, lslr=True), "maml"),
        "channels-last, 2 inner steps + MSL": (Recipe(**base, inner_steps=2, msl=True), "maml"),
        "channels-last, zero head, 2 inner steps": (Recipe(**base, zero_head=True, inner_steps=2), "maml"),
        "channels-last, protonet step": (Recipe(**base), "proto"),
        "channels-last, meta-batch 16 query 2": (Recipe(**base, meta_batch=16, query=2), "maml"),
        "channels-last, meta-batch 16 query 5": (Recipe(**base, meta_batch=16), "maml"),
        "channels-last, zero head, meta-batch 16": (Recipe(**base, zero_head=True, meta_batch=16), "maml"),
        "channels-last, 64 filters": (Recipe(**base, filters=64), "maml"),
    }


def make(recipe: Recipe, kind: str, data, dtype=torch.float32):
    from mllib.algorithms import MetaConfig, init_meta_params, meta_gradient
    from mllib.models import ConvLearner
    from mllib.tasks import OmniglotTasks
    tasks = OmniglotTasks(data, split="maml", part="train", ways=recipe.ways, shots=recipe.shots,
                          query=recipe.query, seed=123)
    batch = tasks.sample(recipe.meta_batch)
    batch = type(batch)(batch.support_x.to(dtype), batch.support_y, batch.query_x.to(dtype), batch.query_y)
    if kind == "lib":
        torch.manual_seed(recipe.seed)
        model = ConvLearner(recipe.ways, filters=recipe.filters).to(dtype)
        cfg = MetaConfig(algo="maml", inner_steps=recipe.inner_steps, inner_lr=recipe.inner_lr, form="loop")
        params = init_meta_params(model, cfg)
        return lambda: meta_gradient(model, params, batch, cfg)[0], tasks
    params = {k: v.detach().to(dtype).requires_grad_(v.requires_grad) for k, v in init_params(recipe).items()}
    if kind == "proto":
        return lambda: proto_grad(params, recipe, batch)[0], tasks
    return lambda: meta_grad(params, recipe, batch, step=0)[0], tasks


def rel_err(a: dict, b: dict) -> float:
    keys = [k for k in a if k in b]
    num = sum(float((a[k] - b[k]).norm() ** 2) for k in keys) ** 0.5
    den = sum(float(b[k].norm() ** 2) for k in keys) ** 0.5
    return num / max(den, 1e-300)


def check(data) -> list[dict]:
    """float64 agreement: script vs library (both input layouts), zero-head skip vs no skip."""
    rows = []
    lib = make(Recipe(meta_batch=2), "lib", data, torch.float64)[0]()
    for name, r in (("script NCHW vs lib", Recipe(meta_batch=2, channels_last_input=False)),
                    ("script channels-last vs lib", Recipe(meta_batch=2))):
        rows.append({"check": name, "rel_err": rel_err(make(r, "maml", data, torch.float64)[0](), lib)})
    for steps in (1, 2):
        a = make(Recipe(meta_batch=2, zero_head=True, inner_steps=steps), "maml", data, torch.float64)[0]()
        b = make(Recipe(meta_batch=2, zero_head=True, skip_zero_grads=False, inner_steps=steps), "maml", data,
                 torch.float64)[0]()
        rows.append({"check": f"zero head skip vs no skip ({steps} inner steps)", "rel_err": rel_err(a, b)})
    # finite differences for an LSLR rate and a conv weight entry (float64, second order)
    r = Recipe(meta_batch=1, lslr=True, inner_steps=2)
    from mllib.tasks import OmniglotTasks
    batch = OmniglotTasks(data, split="maml", part="train", ways=5, shots=1, query=5, seed=7).sample(1)
    batch = type(batch)(batch.support_x.double(), batch.support_y, batch.query_x.double(), batch.query_y)
    p = {k: v.detach().double().requires_grad_(True) for k, v in init_params(r).items()}
    g = meta_grad(p, r, batch)[0]
    import torch.nn.functional as F
    from common import adapt_with_recipe, logits

    def loss_at(q):
        fast, _ = adapt_with_recipe(q, r, batch.support_x[0], batch.support_y[0], r.inner_steps, False, True)
        return float(F.cross_entropy(logits(fast, batch.query_x[0]), batch.query_y[0]))
    for key, idx in (("lslr.blocks.1.conv.weight.1", ()), ("blocks.0.conv.weight", (3, 0, 1, 1)),
                     ("blocks.2.norm.weight", (5,))):
        eps = 1e-6
        hi = {k: v.detach().clone().requires_grad_(True) for k, v in p.items()}
        lo = {k: v.detach().clone().requires_grad_(True) for k, v in p.items()}
        with torch.no_grad():
            hi[key][idx] += eps
            lo[key][idx] -= eps
        fd = (loss_at(hi) - loss_at(lo)) / (2 * eps)
        an = float(g[key][idx])
        rows.append({"check": f"finite differences {key}{list(idx)}", "analytic": an, "fd": fd,
                     "rel_err": abs(an - fd) / max(abs(fd), 1e-12)})
    for row in rows:
        print(f"check {row['check']}: rel err {row['rel_err']:.1e}", flush=True)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--only", nargs="*", help="substrings of variant names to time (lib always)")
    ap.add_argument("--no-check", action="store_true")
    ap.add_argument("--out", default=os.path.join(RESULTS, "step_cost.json"))
    args = ap.parse_args()
    env_setup(args.threads)
    from mllib.data import load_omniglot
    data = load_omniglot(progress=False)
    checks = [] if args.no_check else check(data)
    chosen = {k: v for k, v in variants().items()
              if k.startswith("lib") or not args.only or any(s in k for s in args.only)}
    steps, samplers = {}, {}
    for name, (recipe, kind) in chosen.items():
        steps[name], samplers[name] = make(recipe, kind, data)
        steps[name]()  # warm-up
    times = {name: [] for name in steps}
    ratios = {name: [] for name in steps}
    rng = random.Random(0)
    for rnd in range(args.rounds):
        order = list(steps)
        rng.shuffle(order)
        this = {}
        for name in order:
            t0 = time.perf_counter()
            steps[name]()
            this[name] = time.perf_counter() - t0
        for name in steps:
            times[name].append(this[name])
            ratios[name].append(this[name] / this["lib (today)"])
        print(f"round {rnd + 1}/{args.rounds}: lib {this['lib (today)']:.3f} s", flush=True)
    # task sampling cost (meta-batch 8, query 5) for scale
    t0 = time.perf_counter()
    for _ in range(20):
        samplers["lib (today)"].sample(8)
    sample_s = (time.perf_counter() - t0) / 20

    def q(xs, f):
        xs = sorted(xs)
        return xs[min(len(xs) - 1, int(f * len(xs)))]
    rows = []
    for name in steps:
        rows.append({"variant": name, "median_s_shared_machine": round(statistics.median(times[name]), 4),
                     "ratio_median": round(statistics.median(ratios[name]), 3),
                     "ratio_q25": round(q(ratios[name], 0.25), 3), "ratio_q75": round(q(ratios[name], 0.75), 3),
                     "ratios": [round(x, 3) for x in ratios[name]]})
        print(f"{name:45s} {rows[-1]['median_s_shared_machine']:7.3f} s  ratio {rows[-1]['ratio_median']:.3f} "
              f"[{rows[-1]['ratio_q25']:.3f}, {rows[-1]['ratio_q75']:.3f}]")
    print(f"sampling 8 tasks: {sample_s * 1000:.1f} ms")
    result = {"kind": "issue17-step-cost", "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "machine": f"shared 2-core CPU, {args.threads} torch thread(s), nice 10 (absolute seconds are "
                         "shared-machine figures; ratios are per round)",
              "torch": torch.__version__, "rounds": args.rounds, "task": "5-way 1-shot Omniglot, maml split train",
              "defaults": Recipe().to_dict(), "checks": checks, "sample_8_tasks_s": round(sample_s, 4),
              "results": rows}
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print("wrote", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
