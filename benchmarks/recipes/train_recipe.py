"""Train named recipes one after another; validation accuracy against meta-steps, then the test protocol.

Each recipe (``RECIPES``) is trained from the same seed on the same training-task stream as
``mllib train`` (``OmniglotTasks(..., part="train", seed=seed)``), validated on the library's
validation tasks (``VAL_SEED``, maml split, ``test_query`` queries per class) every ``val_every``
meta-steps, then scored on the 600 fixed test tasks (``TEST_SEED``), batch norm with batch
statistics (transductive, as the shipped cards). Accuracy against steps is load-independent;
seconds are shared-machine figures (cost comparisons use ``step_cost.py`` ratios instead).

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/recipes/train_recipe.py zero_head_cos cos
writes ``benchmarks/recipes/results/train_<name>.json`` and ``runs/recipes/<name>.pt`` (ignored).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch  # noqa: E402

from common import RESULTS, Recipe, env_setup, evaluate, init_params, meta_grad, meta_lr_at, proto_grad  # noqa: E402
from common import test_accuracy  # noqa: E402

_CL = dict(channels_last_input=True)
RECIPES = {
    "baseline": Recipe(name="baseline", **_CL),
    "cos": Recipe(name="cos", cosine=True, **_CL),
    "zero_head": Recipe(name="zero_head", zero_head=True, **_CL),
    "zero_head_cos": Recipe(name="zero_head_cos", zero_head=True, cosine=True, **_CL),
    "zero_head_cos_mb16": Recipe(name="zero_head_cos_mb16", zero_head=True, cosine=True, meta_batch=16, **_CL),
    "zero_head_cos_2500": Recipe(name="zero_head_cos_2500", zero_head=True, cosine=True, steps=2500, **_CL),
    "fo_then_so_cos": Recipe(name="fo_then_so_cos", cosine=True, first_order_until=500, **_CL),
    "lslr_cos": Recipe(name="lslr_cos", lslr=True, cosine=True, **_CL),
    "proto_warm_cos": Recipe(name="proto_warm_cos", protonet_steps=300, cosine=True, **_CL),
    "cos_lr5e-3": Recipe(name="cos_lr5e-3", cosine=True, meta_lr=5e-3, **_CL),
    "zero_head_cos_20w_pilot": Recipe(name="zero_head_cos_20w_pilot", ways=20, zero_head=True, cosine=True,
                                      inner_lr=1.6, steps=600, val_every=200, inner_steps_test=1,
                                      extra_test_steps=[], **_CL),
    "zero_head_cos_64f_mb16": Recipe(name="zero_head_cos_64f_mb16", zero_head=True, cosine=True, filters=64,
                                     meta_batch=16, steps=10000, val_every=500, inner_steps_test=1,
                                     extra_test_steps=[], **_CL),
    "zero_head_cos_lr5e-3": Recipe(name="zero_head_cos_lr5e-3", zero_head=True, cosine=True, meta_lr=5e-3, **_CL),
}


def run(r: Recipe, data, out_dir: str, log) -> dict:
    from mllib.tasks import OmniglotTasks
    from mllib.train import VAL_SEED
    torch.manual_seed(r.seed)
    params = init_params(r)
    learn = [v for v in params.values() if v.requires_grad]
    opt = torch.optim.Adam(learn, lr=r.meta_lr)
    tasks = OmniglotTasks(data, split="maml", part="train", ways=r.ways, shots=r.shots, query=r.query, seed=r.seed)
    val = OmniglotTasks(data, split="maml", part="val", ways=r.ways, shots=r.shots, query=r.test_query,
                        seed=VAL_SEED).sample(r.val_tasks)
    curve, train_s, best = [], 0.0, (-1.0, 0, None)
    for step in range(r.steps):
        t0 = time.perf_counter()
        for g in opt.param_groups:
            g["lr"] = meta_lr_at(r, step)
        batch = tasks.sample(r.meta_batch)
        if step < r.protonet_steps:
            grads, loss, acc = proto_grad(params, r, batch)
        else:
            grads, loss, acc = meta_grad(params, r, batch, step)
        for k, p in params.items():
            if p.requires_grad:
                p.grad = grads.get(k, torch.zeros_like(p))
        opt.step()
        opt.zero_grad(set_to_none=True)
        train_s += time.perf_counter() - t0
        done = step + 1
        if done % r.val_every == 0 or done == r.steps:
            v0 = time.perf_counter()
            acc_val = float(evaluate(params, r, val, r.inner_steps_test).mean())
            curve.append({"step": done, "val_accuracy": round(acc_val, 4), "train_seconds_shared": round(train_s, 1),
                          "val_seconds_shared": round(time.perf_counter() - v0, 1), "train_loss": round(loss, 4)})
            log(f"{r.name} step {done}: val {acc_val:.4f} loss {loss:.3f} ({train_s:.0f} s train, shared machine)")
            if acc_val > best[0]:
                best = (acc_val, done, {k: v.detach().clone() for k, v in params.items()})
    final = {k: v.detach().clone() for k, v in params.items()}
    tests = {}
    for label, p in (("last", final), ("best_val", best[2])):
        for steps in [r.inner_steps_test] + [s for s in r.extra_test_steps if s != r.inner_steps_test]:
            if label == "best_val" and best[1] == r.steps:
                tests[f"{label}@{steps}"] = tests[f"last@{steps}"]
                continue
            tests[f"{label}@{steps}"] = test_accuracy(p, r, data, steps)
            log(f"{r.name} test ({label}, {steps} steps): {100 * tests[f'{label}@{steps}']['accuracy']:.2f}% "
                f"+- {100 * tests[f'{label}@{steps}']['ci95']:.2f}%")
    os.makedirs(out_dir, exist_ok=True)
    torch.save({"recipe": r.to_dict(), "meta_params": final}, os.path.join(out_dir, f"{r.name}.pt"))
    return {"kind": "issue17-recipe-run", "recipe": r.to_dict(), "curve": curve, "best_val": best[0],
            "best_step": best[1], "test": tests, "train_seconds_shared_machine": round(train_s, 1),
            "seconds_per_step_shared_machine": round(train_s / r.steps, 4),
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "torch": torch.__version__,
            "machine": "shared 2-core CPU, 1 torch thread, nice 10 (seconds are not idle-machine figures)"}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("recipes", nargs="+", help=f"names from {sorted(RECIPES)}")
    ap.add_argument("--steps", type=int, help="override the recipe's meta-steps (name gets a suffix)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out-dir", default="runs/recipes")
    args = ap.parse_args()
    env_setup(args.threads)
    from mllib.data import load_omniglot
    data = load_omniglot(progress=False)

    def log(msg):
        print(time.strftime("%H:%M:%S"), msg, flush=True)
    for name in args.recipes:
        r = RECIPES[name]
        if args.steps:
            r = replace(r, name=f"{name}_{args.steps}", steps=args.steps,
                        first_order_until=r.first_order_until * args.steps // r.steps,
                        protonet_steps=r.protonet_steps * args.steps // r.steps)
        result = run(r, data, args.out_dir, log)
        os.makedirs(RESULTS, exist_ok=True)
        with open(os.path.join(RESULTS, f"train_{r.name}.json"), "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
