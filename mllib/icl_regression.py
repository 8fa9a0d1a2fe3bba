"""In-context learning of linear regression, and the hand-designed algorithms it is measured against.

Notebook 09, section 2 (Garg et al. 2022; von Oswald et al. 2023). A *prompt* is a linear-regression
task written as a sequence: ``n`` context pairs ``(x_i, y_i)`` with ``y_i = w . x_i + noise`` and
queries ``x_q`` whose ``y_q`` must be predicted; ``w ~ N(0, I_d)`` is new for every prompt,
``x ~ N(0, I_d)``. Shapes (``T`` prompts, ``n`` context pairs, ``m`` queries, ``d`` inputs):

* ``x [T, n, d]``, ``y [T, n]``, ``query_x [T, m, d]``, ``query_y [T, m]``; every predictor returns
  ``[T, m]``.

Hand-designed learners, all batched over prompts: :func:`least_squares` (minimum-norm, ``pinv``),
:func:`ridge` (``lam = noise**2`` is the posterior mean under the prior ``w ~ N(0, I)``: the best
possible predictor in mean squared error), :func:`gd_steps` (``k`` steps of gradient descent from
``w = 0`` on ``(1/2n) ||X w - y||^2``).

The meta-learned one: :class:`LinearSelfAttention`, a transformer made of linear self-attention
layers (no softmax, no MLP) as in von Oswald et al. (2023). Tokens are ``e = (x, y)`` in ``R^(d+1)``
(queries with ``y = 0``); every layer adds to every token ``e_j``

    ``W_PV (1/n) sum_i e_i e_i^T W_KQ e_j``    (the sum over the context tokens only),

and the prediction is minus the query token's last coordinate. :func:`gd_construction` gives weights
with which ``L`` layers compute exactly ``L`` steps of gradient descent (tested), so the question the
notebook measures is which algorithm meta-training finds.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from mllib.training_loop import clipped_step

__all__ = ["sample_prompts", "least_squares", "ridge", "gd_steps", "tune_gd_rate", "LinearSelfAttention",
           "gd_construction", "meta_train_lsa", "query_errors"]


def _check_prompt(x: Tensor, y: Tensor, query_x: Tensor) -> None:
    if x.dim() != 3 or y.shape != x.shape[:2] or query_x.dim() != 3 or query_x.shape[0] != x.shape[0] \
            or query_x.shape[2] != x.shape[2]:
        raise ValueError(f"prompts need x [T, n, d], y [T, n], query_x [T, m, d]; got x {tuple(x.shape)}, "
                         f"y {tuple(y.shape)}, query_x {tuple(query_x.shape)}")


def sample_prompts(num: int, n: int, d: int = 5, queries: int = 1, noise: float = 0.1,
                   generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``num`` prompts of ``n`` context pairs: ``(x [num, n, d], y [num, n], query_x [num, queries, d],
    query_y [num, queries])``, ``w ~ N(0, I_d)`` per prompt, ``x ~ N(0, I_d)``, noise ``N(0, noise^2)``.

        >>> x, y, qx, qy = sample_prompts(3, 4, d=2, generator=torch.Generator().manual_seed(0))
        >>> tuple(x.shape), tuple(y.shape), tuple(qx.shape), tuple(qy.shape)
        ((3, 4, 2), (3, 4), (3, 1, 2), (3, 1))
    """
    if num < 1 or n < 0 or d < 1 or queries < 1:
        raise ValueError(f"need num >= 1, n >= 0, d >= 1, queries >= 1; got num={num}, n={n}, d={d}, "
                         f"queries={queries}")
    if not noise >= 0:
        raise ValueError(f"noise must be >= 0, got {noise}")
    w = torch.randn(num, d, generator=generator)
    xs = torch.randn(num, n + queries, d, generator=generator)
    ys = torch.einsum("tnd,td->tn", xs, w) + noise * torch.randn(num, n + queries, generator=generator)
    return xs[:, :n], ys[:, :n], xs[:, n:], ys[:, n:]


def least_squares(x: Tensor, y: Tensor, query_x: Tensor) -> Tensor:
    """Minimum-norm least squares ``w = pinv(X) y`` per prompt; predictions ``[T, m]``.

        >>> x = torch.eye(2).expand(1, 2, 2); least_squares(x, torch.tensor([[1., 2.]]), x)
        tensor([[1., 2.]])
    """
    _check_prompt(x, y, query_x)
    w = torch.linalg.pinv(x) @ y.unsqueeze(-1)              # [T, d, 1]
    return (query_x @ w).squeeze(-1)


def ridge(x: Tensor, y: Tensor, query_x: Tensor, lam: float) -> Tensor:
    """Ridge regression ``w = (X^T X + lam I)^-1 X^T y`` per prompt; predictions ``[T, m]``.

    With ``lam = noise**2`` and the prior ``w ~ N(0, I)`` this is the posterior mean (Bayes optimal).
    """
    _check_prompt(x, y, query_x)
    if not lam > 0:
        raise ValueError(f"lam must be > 0 (lam = 0 is least_squares), got {lam}")
    d = x.shape[-1]
    gram = x.transpose(1, 2) @ x + lam * torch.eye(d, dtype=x.dtype)
    w = torch.linalg.solve(gram, x.transpose(1, 2) @ y.unsqueeze(-1))
    return (query_x @ w).squeeze(-1)


def gd_steps(x: Tensor, y: Tensor, query_x: Tensor, steps: int, lr: float) -> Tensor:
    """``steps`` steps of gradient descent from ``w = 0`` on ``(1/2n) ||X w - y||^2`` (rate ``lr``),
    every prompt at once; predictions ``[T, m]``. With ``n = 0`` the prediction stays 0."""
    _check_prompt(x, y, query_x)
    if steps < 0 or not lr > 0:
        raise ValueError(f"need steps >= 0 and lr > 0, got steps={steps}, lr={lr}")
    n = max(x.shape[1], 1)
    w = torch.zeros(x.shape[0], x.shape[2], dtype=x.dtype)
    for _ in range(steps):
        residual = torch.einsum("tnd,td->tn", x, w) - y
        w = w - lr * torch.einsum("tn,tnd->td", residual, x) / n
    return torch.einsum("tmd,td->tm", query_x, w)


def query_errors(prediction: Tensor, query_y: Tensor) -> Tensor:
    """Squared error per prompt, averaged over its queries: ``[T]``."""
    return ((prediction - query_y) ** 2).mean(dim=1)


def tune_gd_rate(prompts, steps: int, rates: tuple[float, ...] = tuple(round(0.05 * k, 2) for k in range(1, 21))
                 ) -> float:
    """The rate of ``rates`` with the lowest mean query error of ``gd_steps(..., steps, rate)`` over
    ``prompts``: a list of ``(x, y, query_x, query_y)`` sets (for example one per context size, so that
    one rate serves them all, as one set of transformer weights must)."""
    if not prompts or not rates:
        raise ValueError("tune_gd_rate needs at least one prompt set (x, y, query_x, query_y) and one rate")

    def error(lr: float) -> float:
        return sum(float(query_errors(gd_steps(x, y, qx, steps, lr), qy).mean()) for x, y, qx, qy in prompts)

    errors = [error(lr) for lr in rates]
    return rates[min(range(len(rates)), key=errors.__getitem__)]


class LinearSelfAttention(nn.Module):
    """``layers`` linear self-attention layers on tokens ``(x, y)`` (see the module docstring).

    ``forward(x [T, n, d], y [T, n], query_x [T, m, d]) -> [T, m]``. Queries read the context, never
    each other, so each query's prediction does not depend on the other queries, and the order of the
    context pairs does not matter (a sum over them). Weights start at ``N(0, init_std^2)``.
    """

    def __init__(self, d: int, layers: int = 1, init_std: float = 0.02) -> None:
        super().__init__()
        if d < 1 or layers < 1:
            raise ValueError(f"need d >= 1 and layers >= 1, got d={d}, layers={layers}")
        self.d, self.layers = d, layers
        self.kq = nn.Parameter(init_std * torch.randn(layers, d + 1, d + 1))
        self.pv = nn.Parameter(init_std * torch.randn(layers, d + 1, d + 1))

    def forward(self, x: Tensor, y: Tensor, query_x: Tensor) -> Tensor:
        _check_prompt(x, y, query_x)
        if x.shape[2] != self.d:
            raise ValueError(f"this model reads d={self.d} inputs, the prompts have d={x.shape[2]}")
        context = torch.cat([x, y.unsqueeze(-1)], dim=-1)                          # [T, n, d+1]
        queries = torch.cat([query_x, torch.zeros_like(query_x[..., :1])], dim=-1)  # [T, m, d+1]
        n = max(x.shape[1], 1)
        for layer in range(self.layers):
            moments = context.transpose(1, 2) @ context / n                            # [T, d+1, d+1]
            update = self.pv[layer] @ moments @ self.kq[layer]                         # [T, d+1, d+1]
            context, queries = (context + context @ update.transpose(1, 2),
                                queries + queries @ update.transpose(1, 2))
        return -queries[..., -1]


def gd_construction(d: int, lr: float, layers: int = 1) -> LinearSelfAttention:
    """Weights with which ``layers`` layers compute exactly ``gd_steps(..., steps=layers, lr=lr)``
    (von Oswald et al. 2023, proposition 1): ``W_KQ = [[I, 0], [0, 0]]``, ``W_PV``'s last row
    ``(0, ..., 0, -lr)``. Each layer turns the context's ``y_i`` into the residual of the current ``w``
    and adds the step to the query's running ``-prediction``."""
    model = LinearSelfAttention(d, layers)
    with torch.no_grad():
        model.kq.zero_()
        model.pv.zero_()
        model.kq[:, :d, :d] = torch.eye(d)
        model.pv[:, d, d] = -lr
    return model


def meta_train_lsa(model: LinearSelfAttention, steps: int, batch: int = 128, max_context: int = 10,
                   noise: float = 0.1, lr: float = 3e-3, clip: float = 1.0, seed: int = 0) -> list[float]:
    """Meta-train ``model`` with Adam on fresh prompts: every step draws ``batch`` prompts with one
    context size ``n ~ U{1..max_context}`` and 4 queries each, and minimises the query MSE (gradient norm
    clipped at ``clip``). Returns the loss of every step."""
    if steps < 1 or batch < 1 or max_context < 1:
        raise ValueError(f"need steps, batch, max_context >= 1; got {steps}, {batch}, {max_context}")
    gen = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        n = int(torch.randint(1, max_context + 1, (1,), generator=gen))
        x, y, qx, qy = sample_prompts(batch, n, model.d, queries=4, noise=noise, generator=gen)
        loss = query_errors(model(x, y, qx), qy).mean()
        losses.append(clipped_step(loss, optimizer, model.parameters(), clip, "meta-training", len(losses), lr))
    return losses
