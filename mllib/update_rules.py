"""Update rules (更新规则): how a learner turns a gradient into a step.

The course's arc is "learn the bias, then the update rule, then the algorithm". This module is the
middle of that sentence in code: an update rule is an object with two methods,

* ``init(params) -> state``: the rule's memory before the first step (empty for SGD);
* ``step(params, grads, state) -> (params, state)``: one update.

``params`` and ``grads`` are either a dict of tensors (a model's parameters, any shapes; the form
``mllib.inner.adapt`` uses) or one tensor (for example a flat ``[T, P]`` batch of learners, the form
``mllib.learned_optimizer.unroll`` uses). Every rule here is *coordinate-wise*: each coordinate is
updated from its own gradient history only, so the dict and the flat form compute the same numbers.

The rules, from hand-designed to learned:

* ``SGD(lr)``: ``p - lr * g`` (MAML's inner loop; notebook 03).
* ``MetaSGD(rates)``: ``p - rates * g`` with one learned rate per coordinate (Meta-SGD; notebook 06).
* ``Adam(lr)``: Adam with bias correction (a hand-designed rule with memory; notebook 07).
* ``mllib.learned_optimizer.LearnedRule``: a small network maps each coordinate's gradient history to
  its step (notebook 07).

MAML, ANIL and the rest then differ only in *which* parameters adapt and *with which rule*::

    >>> import torch
    >>> from mllib.inner import adapt
    >>> w = {"w": torch.tensor([1.0, -2.0])}
    >>> loss = lambda p, data: (p["w"] ** 2).sum()          # gradient 2 w
    >>> adapt(w, loss, None, steps=1, rule=SGD(0.25), evaluation=True)["w"]
    tensor([ 0.5000, -1.0000])
    >>> adapt(w, loss, None, steps=1, rule=MetaSGD({"w": torch.tensor([0.25, 0.5])}), evaluation=True)["w"]
    tensor([0.5000, 0.0000])
"""
from __future__ import annotations

from typing import Mapping

import torch
from torch import Tensor

from mllib.arguments import check_decay, check_positive

Tree = Tensor | Mapping[str, Tensor]
State = dict


class UpdateRule:
    """The interface every rule has: ``init(params) -> state``, ``step(params, grads, state) -> (params, state)``.

    A subclass says how to update *one* tensor (``init_tensor``, ``step_tensor``); this class applies
    that to each entry of a dict (``name`` is the entry's key, ``None`` for a single tensor), so
    every rule takes a parameter dict and a flat tensor alike. ``detach()`` returns the rule with
    its own tensors (learned rates, a network's weights) detached, for meta-test time.
    """

    def init_tensor(self, theta: Tensor) -> State:
        return {}

    def step_tensor(self, theta: Tensor, grad: Tensor, state: State, name: str | None) -> tuple[Tensor, State]:
        raise NotImplementedError

    def init(self, params: Tree) -> State:
        if isinstance(params, Tensor):
            return self.init_tensor(params)
        return {n: self.init_tensor(p) for n, p in params.items()}

    def step(self, params: Tree, grads: Tree, state: State) -> tuple[Tree, State]:
        if isinstance(params, Tensor):
            return self.step_tensor(params, grads, state, None)
        new, new_state = {}, {}
        for n, g in grads.items():
            new[n], new_state[n] = self.step_tensor(params[n], g, state[n], n)
        return new, new_state

    def detach(self) -> "UpdateRule":
        return self


class SGD(UpdateRule):
    """Plain gradient descent, ``p - lr * g`` (no state)."""

    def __init__(self, lr: float) -> None:
        self.lr = check_positive("lr", lr)

    def step_tensor(self, theta, grad, state, name):
        return theta - self.lr * grad, state

    def __repr__(self) -> str:
        return f"SGD(lr={self.lr:g})"


class MetaSGD(UpdateRule):
    """Meta-SGD's rule, ``p - rates * g``: one (learnable) rate per coordinate (Li et al. 2017).

    ``rates``: a dict with one tensor per adapted parameter, each of that parameter's shape (the
    ``"lr.<name>"`` entries of a Meta-SGD run, without the prefix), or one tensor ``[P]`` for the
    flat form. The rates stay differentiable: the outer loop learns them.
    """

    def __init__(self, rates: Tree) -> None:
        if isinstance(rates, Tensor):
            if rates.dim() != 1:
                raise ValueError(f"rates must be a flat vector [P] or a dict of tensors, got shape {tuple(rates.shape)}")
        elif not isinstance(rates, Mapping) or not rates:
            raise ValueError("rates must be a dict {name: tensor} with one rate per coordinate, or a flat tensor [P]")
        self.rates = rates if isinstance(rates, Tensor) else dict(rates)

    def _rate(self, theta: Tensor, name: str | None) -> Tensor:
        if name is None:
            if not isinstance(self.rates, Tensor) or theta.shape[-1] != self.rates.numel():
                raise ValueError(f"a flat learner [..., P] needs flat rates [P]; got {self._describe()} for "
                                 f"{theta.shape[-1]} coordinates")
            return self.rates
        if not isinstance(self.rates, Mapping) or name not in self.rates:
            raise ValueError(f"MetaSGD has no rate for parameter {name!r} ({self._describe()}); pass one rate "
                             f"tensor per adapted parameter")
        return self.rates[name]

    def _describe(self) -> str:
        if isinstance(self.rates, Tensor):
            return f"flat rates [{self.rates.numel()}]"
        return f"rates for {', '.join(sorted(self.rates))}"

    def init(self, params: Tree) -> State:
        state = super().init(params)
        if isinstance(params, Tensor):
            self._rate(params, None)
        else:
            for n in params:
                self._rate(params[n], n)
        return state

    def step_tensor(self, theta, grad, state, name):
        return theta - self._rate(theta, name) * grad, state

    def detach(self) -> "MetaSGD":
        if isinstance(self.rates, Tensor):
            return MetaSGD(self.rates.detach())
        return MetaSGD({n: r.detach() for n, r in self.rates.items()})

    def __repr__(self) -> str:
        return f"MetaSGD({self._describe()})"


class Adam(UpdateRule):
    """Adam (Kingma and Ba 2015) with bias correction, per coordinate; its state is ``m``, ``v`` and ``t``."""

    def __init__(self, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        self.lr = check_positive("lr", lr)
        self.betas = (check_decay("betas[0]", betas[0]), check_decay("betas[1]", betas[1]))
        self.eps = check_positive("eps", eps)

    def init_tensor(self, theta):
        zero = torch.zeros_like(theta)
        return {"m": zero, "v": zero, "t": torch.zeros((), dtype=theta.dtype, device=theta.device)}

    def step_tensor(self, theta, grad, state, name):
        b1, b2 = self.betas
        t = state["t"] + 1
        m = b1 * state["m"] + (1 - b1) * grad
        v = b2 * state["v"] + (1 - b2) * grad.square()
        m_hat, v_hat = m / (1 - b1 ** t), v / (1 - b2 ** t)
        return theta - self.lr * m_hat / (v_hat.sqrt() + self.eps), {"m": m, "v": v, "t": t}

    def __repr__(self) -> str:
        return f"Adam(lr={self.lr:g})"


def as_rule(rule: UpdateRule | float | Mapping[str, Tensor]) -> UpdateRule:
    """The shorthands ``adapt`` accepts: a number is ``SGD(number)``, a dict of rates is ``MetaSGD(dict)``."""
    if isinstance(rule, UpdateRule):
        return rule
    if isinstance(rule, Mapping):
        return MetaSGD(rule)
    if isinstance(rule, bool) or not isinstance(rule, (int, float)):
        raise ValueError(f"rule must be an update rule (SGD(0.4), MetaSGD(rates), Adam(0.01), a LearnedRule), a "
                         f"learning rate or a dict of per-parameter rates; got {type(rule).__name__}")
    return SGD(rule)


__all__ = ["UpdateRule", "SGD", "MetaSGD", "Adam", "as_rule"]
