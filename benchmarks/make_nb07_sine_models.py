"""Train the sinusoid models notebook 07 compares, and save them in one small file with a card.

Every model sees the course's sinusoid family (``mllib.tasks.SinusoidTasks``: amplitude U[0.1, 5],
phase U[0, pi], 10 support points) and the same adaptation budget of ``--inner-steps`` steps:

* ``maml``, ``metasgd``: starts (and Meta-SGD's per-weight rates) meta-trained with
  ``mllib.sine_experiments.meta_train_sinusoid`` with ``inner_steps = --inner-steps`` at ``--inner-lr``;
* ``lo_random``: the learned optimizer (``mllib.learned_optimizer``) meta-trained from a fresh random
  initialisation per task, unroll horizon ``--inner-steps`` (no truncation);
* ``lo_maml``: the same, every task starting from MAML's start;
* ``incontext``: the in-context regressor (``mllib.incontext.sine_incontext``) trained with 1..20
  support points.

    nice -n 10 python benchmarks/make_nb07_sine_models.py --out mllib/checkpoints/nb07_sine_models.pt

writes the ``.pt`` file (``{"models": {name: state dict or meta-parameters}, "config", "card"}``)
and its card as text next to it (``.train.log``: the command, per-model training seconds and steps,
the machine, git commit; not ``.json``, which in ``mllib/checkpoints`` means an Omniglot model card
of ``python -m mllib publish``). Seeded: the same arguments give the same models on the same machine.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

from mllib.checkpoint import atomic_save
from mllib.provenance import git_commit
from mllib.incontext import sine_incontext, train_incontext
from mllib.learned_optimizer import LearnedOptimizer, meta_train_optimizer
from mllib.models import SineMLP
from mllib.sine_experiments import meta_train_sinusoid
from mllib.tasks import SinusoidTasks


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("mllib/checkpoints/nb07_sine_models.pt"))
    ap.add_argument("--inner-steps", type=int, default=5, help="adaptation budget (and unroll horizon)")
    ap.add_argument("--inner-lr", type=float, default=0.01)
    ap.add_argument("--shots", type=int, default=10)
    ap.add_argument("--maml-steps", type=int, default=4000)
    ap.add_argument("--meta-batch", type=int, default=10)
    ap.add_argument("--maml-lr", type=float, default=1e-3, help="meta learning rate of MAML")
    ap.add_argument("--metasgd-lr", type=float, default=3e-4, help="meta learning rate of Meta-SGD")
    ap.add_argument("--metasgd-steps", type=int, default=2000)
    ap.add_argument("--lo-steps", type=int, default=1500)
    ap.add_argument("--lo-batch", type=int, default=16)
    ap.add_argument("--lo-lr", type=float, default=3e-3)
    ap.add_argument("--lo-hidden", type=int, default=20)
    ap.add_argument("--ic-steps", type=int, default=5000)
    ap.add_argument("--ic-batch", type=int, default=32)
    ap.add_argument("--ic-lr", type=float, default=1e-3)
    ap.add_argument("--ic-max-support", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", nargs="*", default=None, help="train only these models (others are kept from --out)")
    args = ap.parse_args()
    torch.set_num_threads(1)

    saved = torch.load(args.out, weights_only=True) if args.only and args.out.exists() else None
    models = dict(saved["models"]) if saved else {}
    runs = dict(saved["card"]["runs"]) if saved else {}
    wanted = set(args.only or ["maml", "metasgd", "lo_random", "lo_maml", "incontext"])

    def timed(name, fn):
        t0 = time.perf_counter()
        result = fn()
        runs[name] = {"seconds": round(time.perf_counter() - t0, 1)}
        print(f"{name}: {runs[name]['seconds']} s", flush=True)
        return result

    for algo, steps, lr in (("maml", args.maml_steps, args.maml_lr), ("metasgd", args.metasgd_steps, args.metasgd_lr)):
        if algo in wanted:
            _, params, history = timed(algo, lambda: meta_train_sinusoid(
                algo, steps=steps, meta_batch=args.meta_batch, shots=args.shots, inner_lr=args.inner_lr,
                meta_lr=lr, inner_steps=args.inner_steps, seed=args.seed, progress=False))
            if not all(torch.isfinite(v).all() for v in params.values()):
                raise SystemExit(f"{algo} diverged (non-finite meta-parameters): lower its meta learning rate or steps")
            models[algo] = {k: v.detach().clone() for k, v in params.items()}
            runs[algo] |= {"steps": steps, "meta_lr": lr, "final_loss": round(sum(history["loss"][-100:]) / 100, 4)}

    for name, start in (("lo_random", None), ("lo_maml", "maml")):
        if name in wanted:
            torch.manual_seed(args.seed)
            opt = LearnedOptimizer(hidden=args.lo_hidden, lr=args.inner_lr)
            start_params = None if start is None else models[start]
            phi, history = timed(name, lambda: meta_train_optimizer(
                opt, SineMLP(), start=start_params, steps=args.lo_steps, meta_batch=args.lo_batch,
                horizon=args.inner_steps, meta_lr=args.lo_lr, shots=args.shots, seed=args.seed, progress=False))
            models[name] = phi
            runs[name] |= {"steps": args.lo_steps, "final_loss": round(sum(history["loss"][-100:]) / 100, 4)}

    if "incontext" in wanted:
        torch.manual_seed(args.seed)
        model = sine_incontext()
        history = timed("incontext", lambda: train_incontext(
            model, SinusoidTasks(shots=args.ic_max_support, query=args.ic_max_support, seed=args.seed),
            steps=args.ic_steps, meta_batch=args.ic_batch, lr=args.ic_lr,
            support_sizes=list(range(1, args.ic_max_support + 1)), seed=args.seed, progress=False))
        models["incontext"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        runs["incontext"] |= {"steps": args.ic_steps, "final_loss": round(sum(history["loss"][-100:]) / 100, 4)}

    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "only"}
    card = {
        "what": "sinusoid models of notebook 07 (see benchmarks/make_nb07_sine_models.py)",
        "command": "python " + " ".join(sys.argv),
        "config": config, "runs": runs,
        "machine": f"{platform.machine()} CPU, 1 thread, shared with other jobs (times are not idle timings)",
        "torch": str(torch.__version__), "git_commit": git_commit(),
    }
    atomic_save({"models": models, "config": config, "card": card}, args.out)
    args.out.with_suffix(".train.log").write_text(json.dumps(card, indent=1) + "\n")
    print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KB)")


if __name__ == "__main__":
    main()
