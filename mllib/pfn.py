"""A prior-fitted network: Bayesian inference for Gaussian-process regression, amortised by a transformer.

Notebook 09, section 3 (Mueller et al. 2022, *Transformers Can Do Bayesian Inference*; the idea behind
TabPFN, Hollmann et al. 2023). A *task* is a function ``f ~ GP(0, k)`` on an interval, observed with
noise: ``n`` context points ``(x_i, y_i)``, ``y_i = f(x_i) + eps_i``, ``eps_i ~ N(0, noise^2)``, and
``m`` targets ``(x*_j, y*_j)`` of the same function. Shapes (``T`` tasks, ``n`` context points, ``m``
targets; inputs are scalars):

* ``x [T, n]``, ``y [T, n]``, ``target_x [T, m]``, ``target_y [T, m]``; every predictor returns a
  Gaussian per target: ``(mean [T, m], var [T, m])``, the predictive distribution of ``y*`` (noise
  included).

The exact answer (:func:`gp_posterior`): with ``K = k(x, x) + noise^2 I`` and ``k* = k(x, x*)``,

    ``mean = k*^T K^-1 y``,   ``var = k(x*, x*) - k*^T K^-1 k* + noise^2``,

for the RBF kernel ``k(a, b) = variance * exp(-(a - b)^2 / (2 lengthscale^2))`` (:func:`rbf_kernel`).

The amortised answer: :func:`init_pfn` and :func:`pfn_predict`, a small transformer (parameters in a
plain dict, as the rest of ``mllib``) whose forward pass maps the context and the target inputs to a
mean and a log-variance per target. Context tokens attend to each other (and to a learned "empty"
token, so that ``n = 0`` works); target tokens attend to the context only, never to each other. There
is no positional encoding: the prediction does not depend on the order of the context (tested) and a
target's prediction does not depend on the other targets (tested). :func:`train_pfn` fits it by the
PFN objective: the mean Gaussian negative log-likelihood of targets of tasks drawn afresh from the prior
(:func:`sample_gp_tasks`). In expectation that loss is the exact posterior predictive's loss plus the
expected KL divergence from it to the network's prediction, so minimising it over all tasks drives the
network towards the posterior predictive (Mueller et al. 2022, section 3).

:func:`compare_with_gp` scores any predictor against the exact posterior on the same tasks: per-task
mean negative log predictive density of the targets, the KL divergence from the exact predictive to the
predictor's, and the gaps of mean and standard deviation (all ``[T]``), ready for
``mllib.compare.paired_verdict``.

The network notebook 09 reads, ``mllib/checkpoints/nb09_pfn.pt``, was trained by
``python -m mllib.pfn --out mllib/checkpoints/nb09_pfn.pt --steps 20000`` (:func:`main`: seeded, one CPU
thread, the card with the command, configuration and time saved with the weights and beside them as
``nb09_pfn.train.log``); :func:`load_pfn` reads it with ``weights_only=True``.
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor

from mllib.training_loop import clipped_step

__all__ = ["GPPrior", "rbf_kernel", "gp_posterior", "gaussian_nll", "sample_gp_tasks", "init_pfn", "pfn_predict",
           "train_pfn", "compare_with_gp", "save_pfn", "load_pfn", "main"]


@dataclass(frozen=True)
class GPPrior:
    """The task family: ``f ~ GP(0, RBF(lengthscale, variance))`` on ``[low, high]``, observation noise of
    standard deviation ``noise``."""

    lengthscale: float = 0.3
    variance: float = 1.0
    noise: float = 0.1
    low: float = -1.0
    high: float = 1.0

    def __post_init__(self) -> None:
        if not (self.lengthscale > 0 and self.variance > 0 and self.noise > 0 and self.high > self.low):
            raise ValueError(f"a GP prior needs lengthscale, variance, noise > 0 and high > low; got {self}")


def _check_tasks(x: Tensor, y: Tensor, target_x: Tensor) -> None:
    if x.dim() != 2 or y.shape != x.shape or target_x.dim() != 2 or target_x.shape[0] != x.shape[0]:
        raise ValueError(f"tasks need x [T, n], y [T, n], target_x [T, m] (scalar inputs); got x {tuple(x.shape)}, "
                         f"y {tuple(y.shape)}, target_x {tuple(target_x.shape)}")


def rbf_kernel(a: Tensor, b: Tensor, lengthscale: float, variance: float) -> Tensor:
    """``variance * exp(-(a_i - b_j)^2 / (2 lengthscale^2))``: ``a [..., n]``, ``b [..., m]`` -> ``[..., n, m]``.

        >>> rbf_kernel(torch.tensor([0.0]), torch.tensor([0.0, 1.0]), lengthscale=1.0, variance=2.0)
        tensor([[2.0000, 1.2131]])
    """
    if not (lengthscale > 0 and variance > 0):
        raise ValueError(f"the RBF kernel needs lengthscale > 0 and variance > 0, got {lengthscale}, {variance}")
    d = a.unsqueeze(-1) - b.unsqueeze(-2)
    return variance * torch.exp(-0.5 * (d / lengthscale) ** 2)


def gp_posterior(x: Tensor, y: Tensor, target_x: Tensor, prior: GPPrior) -> tuple[Tensor, Tensor]:
    """The exact posterior predictive of ``y*`` at ``target_x`` given the context: ``(mean [T, m], var [T, m])``.

    Computed in float64 with a Cholesky factor of ``K = k(x, x) + noise^2 I``; ``n = 0`` gives the prior
    predictive ``(0, variance + noise^2)``. Returned in ``x``'s dtype.
    """
    _check_tasks(x, y, target_x)
    xd, yd, td = x.double(), y.double(), target_x.double()
    prior_var = torch.full(target_x.shape, prior.variance + prior.noise ** 2, dtype=torch.float64)
    if x.shape[1] == 0:
        return torch.zeros_like(td).to(x.dtype), prior_var.to(x.dtype)
    K = rbf_kernel(xd, xd, prior.lengthscale, prior.variance) + prior.noise ** 2 * torch.eye(x.shape[1],
                                                                                           dtype=torch.float64)
    L = torch.linalg.cholesky(K)                                           # [T, n, n]
    k_star = rbf_kernel(xd, td, prior.lengthscale, prior.variance)         # [T, n, m]
    alpha = torch.cholesky_solve(yd.unsqueeze(-1), L)                      # K^-1 y: [T, n, 1]
    mean = (k_star * alpha).sum(dim=1)                                     # [T, m]
    v = torch.linalg.solve_triangular(L, k_star, upper=False)              # L^-1 k*: [T, n, m]
    var = prior_var - (v ** 2).sum(dim=1)
    return mean.to(x.dtype), var.clamp_min(prior.noise ** 2).to(x.dtype)


def gaussian_nll(mean: Tensor, var: Tensor, y: Tensor) -> Tensor:
    """Negative log density of ``y`` under ``N(mean, var)``, elementwise: ``0.5 log(2 pi var) + (y - mean)^2 / (2 var)``.

        >>> float(gaussian_nll(torch.tensor(0.0), torch.tensor(1.0), torch.tensor(0.0)))  # 0.5 log(2 pi)
        0.9189385175704956
    """
    if not bool((var > 0).all()):
        raise ValueError("gaussian_nll needs var > 0 everywhere (a variance, not a log-variance)")
    return 0.5 * torch.log(2 * math.pi * var) + (y - mean) ** 2 / (2 * var)


def sample_gp_tasks(num: int, n_context: int, n_target: int, prior: GPPrior,
                    generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``num`` tasks from the prior: ``(x [num, n_context], y [num, n_context], target_x [num, n_target],
    target_y [num, n_target])``, all float32.

    Inputs are uniform on ``[prior.low, prior.high]``; ``f`` at all ``n_context + n_target`` inputs is one
    draw of ``N(0, k(X, X))`` (Cholesky, a jitter of ``1e-6 variance``), and every ``y`` adds its own noise.

        >>> x, y, tx, ty = sample_gp_tasks(3, 4, 2, GPPrior(), torch.Generator().manual_seed(0))
        >>> tuple(x.shape), tuple(ty.shape)
        ((3, 4), (3, 2))
    """
    if num < 1 or n_context < 0 or n_target < 1:
        raise ValueError(f"need num >= 1, n_context >= 0, n_target >= 1; got {num}, {n_context}, {n_target}")
    total = n_context + n_target
    xs = prior.low + (prior.high - prior.low) * torch.rand(num, total, generator=generator, dtype=torch.float64)
    K = rbf_kernel(xs, xs, prior.lengthscale, prior.variance)
    K = K + 1e-6 * prior.variance * torch.eye(total, dtype=torch.float64)
    f = (torch.linalg.cholesky(K) @ torch.randn(num, total, 1, generator=generator, dtype=torch.float64)).squeeze(-1)
    ys = f + prior.noise * torch.randn(num, total, generator=generator, dtype=torch.float64)
    xs, ys = xs.float(), ys.float()
    return xs[:, :n_context], ys[:, :n_context], xs[:, n_context:], ys[:, n_context:]


# ----------------------------------------------------------------------------- the transformer

def init_pfn(width: int = 64, layers: int = 3, heads: int = 4, hidden: int = 64,
             generator: torch.Generator | None = None) -> dict[str, Tensor]:
    """The network's parameters, a dict of leaf tensors (``requires_grad=True``).

    ``embed.*``: ``x -> width`` by an MLP with ``hidden`` tanh units, shared by context and targets;
    ``embed.y`` ``[width]``: the context adds ``y * embed.y``; ``empty`` ``[width]``: the extra context
    token; ``{l}.*`` for each of ``layers`` pre-norm blocks (``heads``-head attention over the context,
    then an MLP ``width -> 2 width -> width``); ``out.*``: layer norm and ``width -> 2`` (mean,
    log-variance). Weights ``N(0, 1/fan_in)``, biases 0, the last layer scaled by 0.1.
    """
    if width < 1 or layers < 1 or heads < 1 or hidden < 1 or width % heads:
        raise ValueError(f"need width, layers, heads, hidden >= 1 and heads dividing width; got width={width}, "
                         f"layers={layers}, heads={heads}, hidden={hidden}")

    def w(fan_in: int, fan_out: int, scale: float = 1.0) -> Tensor:
        return scale * torch.randn(fan_in, fan_out, generator=generator) / math.sqrt(fan_in)

    p = {"embed.w1": 2.0 * torch.randn(1, hidden, generator=generator), "embed.b1": torch.zeros(hidden),
         "embed.w2": w(hidden, width), "embed.b2": torch.zeros(width),
         "embed.y": torch.randn(width, generator=generator), "empty": torch.randn(width, generator=generator)}
    for i in range(layers):
        p.update({f"{i}.ln1.g": torch.ones(width), f"{i}.ln1.b": torch.zeros(width),
                  f"{i}.q": w(width, width), f"{i}.k": w(width, width), f"{i}.v": w(width, width),
                  f"{i}.o": w(width, width), f"{i}.ln2.g": torch.ones(width), f"{i}.ln2.b": torch.zeros(width),
                  f"{i}.mlp.w1": w(width, 2 * width), f"{i}.mlp.b1": torch.zeros(2 * width),
                  f"{i}.mlp.w2": w(2 * width, width), f"{i}.mlp.b2": torch.zeros(width)})
    p.update({"out.g": torch.ones(width), "out.b": torch.zeros(width), "out.w": w(width, 2, 0.1),
              "out.b2": torch.zeros(2)})
    p = {k: v.clone().requires_grad_(True) for k, v in p.items()}
    p["heads"] = torch.tensor(heads)                     # an integer setting stored with the weights
    return p


def _layers(params: dict[str, Tensor]) -> int:
    return sum(1 for k in params if k.endswith(".ln1.g"))


def _norm(h: Tensor, g: Tensor, b: Tensor) -> Tensor:
    return torch.nn.functional.layer_norm(h, h.shape[-1:], g, b)


def pfn_predict(params: dict[str, Tensor], x: Tensor, y: Tensor, target_x: Tensor) -> tuple[Tensor, Tensor]:
    """The network's predictive Gaussian for every target: ``(mean [T, m], log_var [T, m])``.

    ``x [T, n]``, ``y [T, n]`` (``n >= 0``), ``target_x [T, m]``. Tokens: context ``e(x_i) + y_i embed.y``
    and the learned ``empty`` token ``[T, n+1, width]``; targets ``e(x*_j)`` ``[T, m, width]``. Each block:
    every token (context and target) attends, by softmax attention, to the ``n + 1`` context tokens only;
    then an MLP; residual connections around both.
    """
    _check_tasks(x, y, target_x)
    heads = int(params["heads"])

    def embed(v: Tensor) -> Tensor:                                   # [T, k] -> [T, k, width]
        h = torch.tanh(v.unsqueeze(-1) @ params["embed.w1"] + params["embed.b1"])
        return h @ params["embed.w2"] + params["embed.b2"]

    T, n = x.shape
    empty = params["empty"].expand(T, 1, -1)
    tokens = torch.cat([empty, embed(x) + y.unsqueeze(-1) * params["embed.y"], embed(target_x)], dim=1)
    width, c = tokens.shape[-1], n + 1                                # the first c tokens are the context
    dh = width // heads
    for i in range(_layers(params)):
        h = _norm(tokens, params[f"{i}.ln1.g"], params[f"{i}.ln1.b"])
        q = (h @ params[f"{i}.q"]).view(T, -1, heads, dh).transpose(1, 2)           # [T, heads, c+m, dh]
        k = (h[:, :c] @ params[f"{i}.k"]).view(T, c, heads, dh).transpose(1, 2)     # [T, heads, c, dh]
        v = (h[:, :c] @ params[f"{i}.v"]).view(T, c, heads, dh).transpose(1, 2)
        attn = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(dh), dim=-1)       # [T, heads, c+m, c]
        tokens = tokens + (attn @ v).transpose(1, 2).reshape(T, -1, width) @ params[f"{i}.o"]
        h = _norm(tokens, params[f"{i}.ln2.g"], params[f"{i}.ln2.b"])
        h = torch.relu(h @ params[f"{i}.mlp.w1"] + params[f"{i}.mlp.b1"])
        tokens = tokens + h @ params[f"{i}.mlp.w2"] + params[f"{i}.mlp.b2"]
    out = _norm(tokens[:, c:], params["out.g"], params["out.b"]) @ params["out.w"] + params["out.b2"]
    return out[..., 0], out[..., 1]


def train_pfn(params: dict[str, Tensor], prior: GPPrior, steps: int, batch: int = 64, max_context: int = 20,
              n_target: int = 20, lr: float = 1e-3, clip: float = 1.0, seed: int = 0) -> list[float]:
    """Fit ``params`` in place by the PFN objective, with Adam (rate cosine-annealed to 0; gradient norm
    clipped at ``clip``). Every step draws ``batch`` fresh tasks from ``prior`` with one context size
    ``n ~ U{0..max_context}`` and ``n_target`` targets each, and minimises the mean over targets of
    ``gaussian_nll(mean, exp(log_var), y*)``. Returns the loss of every step."""
    if steps < 1 or batch < 1 or max_context < 0 or n_target < 1:
        raise ValueError(f"need steps, batch, n_target >= 1 and max_context >= 0; got {steps}, {batch}, "
                         f"{n_target}, {max_context}")
    gen = torch.Generator().manual_seed(seed)
    weights = [v for v in params.values() if v.is_floating_point()]
    optimizer = torch.optim.Adam(weights, lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    losses = []
    for _ in range(steps):
        n = int(torch.randint(0, max_context + 1, (1,), generator=gen))
        x, y, tx, ty = sample_gp_tasks(batch, n, n_target, prior, gen)
        mean, log_var = pfn_predict(params, x, y, tx)
        loss = gaussian_nll(mean, log_var.exp(), ty).mean()
        value = clipped_step(loss, optimizer, weights, clip, "PFN training", len(losses), lr)
        schedule.step()
        losses.append(value)
    return losses


# ----------------------------------------------------------------------------- the comparison

Predictor = Callable[[Tensor, Tensor, Tensor], "tuple[Tensor, Tensor]"]


def compare_with_gp(predict: Predictor, tasks: tuple[Tensor, Tensor, Tensor, Tensor],
                    prior: GPPrior) -> dict[str, Tensor]:
    """Score ``predict(x, y, target_x) -> (mean [T, m], var [T, m])`` against the exact posterior of ``prior``
    on the same ``tasks`` ``(x, y, target_x, target_y)``. Every entry is per task, ``[T]`` (float64),
    averaged over the task's targets:

    * ``"nll"``, ``"gp_nll"``: the negative log predictive density of ``target_y`` under each;
    * ``"kl"``: ``KL(exact || predicted)`` of the two Gaussians;
    * ``"mean_gap"``: the root mean square of ``mean - gp_mean``;
    * ``"sd_ratio"``: the mean of ``sqrt(var / gp_var)`` (1 when the uncertainty is right).

    Under the prior, ``E[nll - gp_nll] = E[kl]``: the PFN objective is the KL up to a constant.
    """
    x, y, tx, ty = tasks
    _check_tasks(x, y, tx)
    if ty.shape != tx.shape:
        raise ValueError(f"target_y must have target_x's shape {tuple(tx.shape)}, got {tuple(ty.shape)}")
    with torch.no_grad():
        mean, var = (v.double() for v in predict(x, y, tx))
        gp_mean, gp_var = (v.double() for v in gp_posterior(x, y, tx, prior))
    if mean.shape != tx.shape or var.shape != tx.shape:
        raise ValueError(f"predict must return (mean, var) of shape {tuple(tx.shape)}, got {tuple(mean.shape)}, "
                         f"{tuple(var.shape)}")
    ty = ty.double()
    kl = 0.5 * (torch.log(var / gp_var) + (gp_var + (gp_mean - mean) ** 2) / var - 1)
    return {"nll": gaussian_nll(mean, var, ty).mean(1), "gp_nll": gaussian_nll(gp_mean, gp_var, ty).mean(1),
            "kl": kl.mean(1), "mean_gap": ((mean - gp_mean) ** 2).mean(1).sqrt(),
            "sd_ratio": (var / gp_var).sqrt().mean(1)}


# ----------------------------------------------------------------------------- the shipped network

def save_pfn(path: str | Path, params: dict[str, Tensor], card: dict) -> Path:
    """Write ``{"params": ..., "card": card}`` to ``path`` (loadable with ``weights_only=True``) and the card,
    as JSON, beside it (``<name>.train.log``). Returns ``path``."""
    path = Path(path)
    torch.save({"params": {k: v.detach().clone() for k, v in params.items()}, "card": card}, path)
    path.with_suffix(".train.log").write_text(json.dumps(card, indent=1) + "\n", encoding="utf-8")
    return path


def load_pfn(path: str | Path) -> tuple[dict[str, Tensor], dict]:
    """``(params, card)`` from a file :func:`save_pfn` wrote (read with ``weights_only=True``); the
    parameters do not require gradients."""
    saved = torch.load(path, weights_only=True)
    if not isinstance(saved, dict) or "params" not in saved or "heads" not in saved["params"]:
        raise ValueError(f"{path} is not a prior-fitted network written by mllib.pfn.save_pfn; "
                         f"write one with `python -m mllib.pfn --out {path}`")
    return {k: v.requires_grad_(False) for k, v in saved["params"].items()}, saved["card"]


def main(argv: list[str] | None = None) -> Path:
    """``python -m mllib.pfn --out FILE``: train the prior-fitted network of notebook 09 (one CPU thread,
    seeded) and write it with its card (:func:`save_pfn`)."""
    parser = argparse.ArgumentParser(prog="python -m mllib.pfn", description=main.__doc__)
    parser.add_argument("--out", required=True, help="the checkpoint to write (.pt)")
    parser.add_argument("--steps", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    config = dict(width=64, layers=3, heads=4, hidden=64, steps=args.steps, batch=64, max_context=20,
                  n_target=20, lr=1e-3, seed=args.seed)
    prior = GPPrior()
    torch.set_num_threads(1)
    params = init_pfn(width=64, layers=3, heads=4, hidden=64, generator=torch.Generator().manual_seed(args.seed))
    start = time.perf_counter()
    losses = train_pfn(params, prior, args.steps, batch=64, max_context=20, n_target=20, lr=1e-3, seed=args.seed)
    card = {"what": "the prior-fitted network of notebook 09, section 3 (mllib.pfn)",
            "command": f"python -m mllib.pfn --out {args.out} --steps {args.steps} --seed {args.seed}",
            "config": config, "prior": asdict(prior), "seconds": round(time.perf_counter() - start, 1),
            "machine": f"{platform.machine()} CPU, 1 thread",
            "torch": str(torch.__version__), "final_loss": round(sum(losses[-500:]) / len(losses[-500:]), 4),
            "losses_every_500_steps": [round(v, 4) for v in losses[::500]]}
    return save_pfn(args.out, params, card)


if __name__ == "__main__":
    main()
