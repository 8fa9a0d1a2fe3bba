"""The inner loop: a few steps of gradient descent from the meta-learned start.

``adapt`` is plain functional SGD on a dict of parameters. It works unchanged inside a Python
loop over tasks and inside ``torch.func.vmap`` over the task dimension, because it takes its
gradients with ``torch.func.grad``. That gradient is itself differentiable: when the starting
parameters require grad, the outer ``torch.autograd.grad`` differentiates through the inner
gradient (the second-order term of MAML, what ``create_graph=True`` gives in plain autograd).
"""
from __future__ import annotations

from typing import Callable, Iterable, Mapping

import torch
from torch import Tensor

Params = dict[str, Tensor]


def adapt(params: Mapping[str, Tensor], loss_fn: Callable[[Params, object], Tensor], support,
          steps: int, lr: float | Mapping[str, Tensor], first_order: bool = False,
          names: Iterable[str] | None = None, evaluation: bool = False) -> Params:
    """``steps`` SGD steps on ``loss_fn(params, support)``; returns the adapted dict (same keys).

    * ``lr``: a float, or a dict of per-parameter rates with the parameters' shapes (Meta-SGD).
    * ``first_order``: the inner gradients are detached (FOMAML): the outer gradient treats
      them as constants. Otherwise the graph through them is kept (second order, MAML).
    * ``names``: adapt only these parameters (ANIL: the head); the others stay as they are.
    * ``evaluation``: build no autograd graph at all (meta-test time); the result is detached.
    """
    if not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be an integer >= 0, got {steps!r}")
    if evaluation:
        with torch.no_grad():  # torch.func.grad still computes the inner gradients
            rates = lr if not isinstance(lr, Mapping) else {k: v.detach() for k, v in lr.items()}
            return adapt({k: v.detach() for k, v in params.items()}, loss_fn, support, steps, rates, names=names)
    params = dict(params)
    names = list(params) if names is None else list(names)
    inner_grad = torch.func.grad(lambda fast, rest: loss_fn({**rest, **fast}, support))
    for _ in range(steps):
        if first_order:
            # the inner gradient is a constant for the outer loop: compute it on detached copies so
            # that no outer graph is recorded for it (same values, less work and memory)
            grads = inner_grad({n: params[n].detach() for n in names}, {k: v.detach() for k, v in params.items()})
        else:
            grads = inner_grad({n: params[n] for n in names}, params)
        for n in names:
            g = grads[n].detach() if first_order else grads[n]
            params[n] = params[n] - (lr[n] if isinstance(lr, Mapping) else lr) * g
    return params
