"""The inner loop (内循环): a few steps of an update rule from the meta-learned start.

Taught in notebook 03 (section "The inner loop in mllib"). ``adapt`` takes the update rule as an
object (``mllib.update_rules``): with ``SGD(lr)`` it is plain gradient descent on a dict of
parameters, ``params[n] - lr * grad[n]``; Meta-SGD and the learned optimizer are other rules for the
same loop. With ``create_graph=True`` the inner gradient is itself
differentiable: when the start requires grad, the outer ``torch.autograd.grad`` differentiates
through it (the second-order term of MAML). The same function runs inside a Python loop over
tasks and inside ``torch.func.vmap`` over the task dimension (see ``inner_gradients``).
"""
from __future__ import annotations

from typing import Callable, Iterable, Mapping

import torch
from torch import Tensor

from mllib.arguments import check_int
from mllib.fast_ops import under_vmap
from mllib.models import Params
from mllib.update_rules import SGD, UpdateRule, as_rule



def adapt(params: Mapping[str, Tensor], loss_fn: Callable[[Params, object], Tensor], support,
          steps: int, rule: UpdateRule | float | Mapping[str, Tensor], first_order: bool = False,
          names: Iterable[str] | None = None, evaluation: bool = False) -> Params:
    """``steps`` updates by ``rule`` on ``loss_fn(params, support)``; returns the adapted dict (same keys).

    * ``rule``: the update rule (``mllib.update_rules``): ``SGD(lr)`` for MAML, ``MetaSGD(rates)``
      for Meta-SGD, ``Adam(lr)``, or a learned rule (``mllib.learned_optimizer.LearnedRule``). A
      number is short for ``SGD(number)``, a dict of per-parameter rates for ``MetaSGD(dict)``.
    * ``first_order``: the inner gradients are constants for the outer loop (FOMAML).
      Otherwise the graph through them is kept (second order, MAML).
    * ``names``: adapt only these parameters (ANIL: the head); the others stay as they are.
    * ``evaluation``: build no autograd graph at all (meta-test time); the result is detached.

    The loop is the same for every rule: gradient, then ``rule.step``. Notebook 03, section 1
    (exercise ``sgd_step`` is one step of it). Example: one step on ``loss = sum(w ** 2)``,
    whose gradient is ``2 w``::

        >>> w = {"w": torch.tensor([1.0, -2.0], requires_grad=True)}
        >>> adapt(w, lambda p, data: (p["w"] ** 2).sum(), None, steps=1, rule=SGD(0.25))["w"]
        tensor([ 0.5000, -1.0000], grad_fn=<SubBackward0>)
    """
    check_int("steps", steps, 0)
    rule = as_rule(rule)
    names = list(params) if names is None else list(names)
    if evaluation:  # meta-test time: no graph; constant inner gradients cost the same either way
        params, rule, first_order = _detached(params), rule.detach(), True
    params = dict(params)
    state = rule.init({n: params[n] for n in names})
    for _ in range(steps):
        grads = inner_gradients(loss_fn, params, support, names, create_graph=not first_order)
        adapted, state = rule.step({n: params[n] for n in names}, grads, state)
        params.update(adapted)
    return params


def inner_gradients(loss_fn: Callable[[Params, object], Tensor], params: Mapping[str, Tensor], support,
                    names: list[str], create_graph: bool) -> Params:
    """``{n: d loss_fn(params, support) / d params[n]}`` for ``n`` in ``names``.

    ``create_graph=True`` keeps the graph through the gradient (MAML's second-order term);
    otherwise the gradient is computed on detached copies, a constant for any outer gradient.
    Plain ``torch.autograd.grad`` computes it (so ``torch.autograd.graph`` hooks see every
    saved tensor); under ``torch.func.vmap``, where ``autograd.grad`` cannot run, the same
    gradient comes from ``torch.func.grad`` (equal values, tested). Notebook 03, section 5.

        >>> w = {"w": torch.tensor([3.0], requires_grad=True)}
        >>> inner_gradients(lambda p, data: (p["w"] ** 2).sum(), w, None, ["w"], create_graph=True)
        {'w': tensor([6.], grad_fn=<MulBackward0>)}
    """
    if not create_graph:
        params = {k: v.detach() for k, v in params.items()}
    if under_vmap():
        grad = torch.func.grad(lambda fast, rest: loss_fn({**rest, **fast}, support))
        return grad({n: params[n] for n in names}, params)
    # a tensor that does not require grad has no outer graph: differentiate a detached copy of it
    params = {k: v if k not in names or v.requires_grad else v.detach().requires_grad_() for k, v in params.items()}
    with torch.enable_grad():
        loss = loss_fn(params, support)
        grads = torch.autograd.grad(loss, [params[n] for n in names], create_graph=create_graph)
    return dict(zip(names, grads))


def _detached(values: Mapping[str, Tensor | float]) -> dict:
    return {k: v.detach() if isinstance(v, Tensor) else v for k, v in values.items()}
