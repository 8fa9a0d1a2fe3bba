"""Checks of notebook 06, learning the learning algorithm: ``check_metasgd_step``, ``check_anil_step``."""
from __future__ import annotations

from typing import Any, Callable

import torch

from .core import Case, CheckResult, make_cases, random_tensor, run_check


def _metasgd_step_reference(params: dict, grads: dict, rates: dict) -> dict:
    return {k: p - rates[k] * grads[k] for k, p in params.items()}


def check_metasgd_step(fn: Callable) -> CheckResult:
    """Check ``fn(params, grads, rates) -> dict``: one Meta-SGD inner step.

    ``params``, ``grads`` and ``rates`` are dicts with the same keys and tensors of the same
    shape; the result has those keys with ``params[k] - rates[k] * grads[k]`` (an elementwise
    product: every single weight has its own learned rate).
    """
    def case(gen: torch.Generator, i: int) -> Case:
        shapes = {"body.0.weight": (4, 1), "body.0.bias": (4,), "head.weight": (1, 4), "head.bias": (1,)}
        params = {k: random_tensor(gen, *s) for k, s in shapes.items()}
        grads = {k: random_tensor(gen, *s) for k, s in shapes.items()}
        rates = {k: 0.01 * random_tensor(gen, *s).abs() for k, s in shapes.items()}
        return Case((params, grads, rates))

    def diagnose(case: Case, got: Any, want: Any) -> str | None:
        params, grads, rates = case.args
        if not isinstance(got, dict) or set(got) != set(want):
            return "return a dict with the same keys as params"
        if all(torch.allclose(torch.as_tensor(got[k]).double(), params[k] + rates[k] * grads[k]) for k in params):
            return "step *against* the gradient: params - rates * grads"
        if all(torch.allclose(torch.as_tensor(got[k]).double(), params[k] - rates[k].mean() * grads[k]) for k in params):
            return "use each weight's own rate (elementwise), not the mean rate of the tensor"
        return None

    return run_check("metasgd_step", fn, _metasgd_step_reference, make_cases(6, 3, case),
                     hint="{k: params[k] - rates[k] * grads[k] for k in params}", diagnose=diagnose)


def _anil_step_reference(params: dict, grads: dict, lr: float, head: list) -> dict:
    return {k: (p - lr * grads[k]) if k in head else p for k, p in params.items()}


def check_anil_step(fn: Callable) -> CheckResult:
    """Check ``fn(params, grads, lr, head) -> dict``: one ANIL inner step.

    ``params`` and ``grads``: dicts of tensors with the same keys; ``lr`` a float; ``head`` the
    list of the head's parameter names. The head takes an SGD step ``params[k] - lr * grads[k]``;
    every other (body) parameter is returned unchanged. The result has all keys of ``params``.
    """
    def case(gen: torch.Generator, i: int) -> Case:
        shapes = {"blocks.0.conv.weight": (3, 1, 3, 3), "blocks.0.norm.weight": (3,), "head.weight": (5, 3),
                  "head.bias": (5,)}
        params = {k: random_tensor(gen, *s) for k, s in shapes.items()}
        grads = {k: random_tensor(gen, *s) for k, s in shapes.items()}
        return Case((params, grads, [0.4, 0.1, 0.01][i], ["head.weight", "head.bias"]))

    def diagnose(case: Case, got: Any, want: Any) -> str | None:
        params, grads, lr, head = case.args
        if not isinstance(got, dict):
            return "return a dict with every key of params"
        if set(got) == set(head):
            return "keep the body's parameters in the result too (unchanged): the model needs all of them"
        if set(got) == set(params) and all(
                torch.allclose(torch.as_tensor(got[k]).double(), params[k] - lr * grads[k]) for k in params):
            return "that updated every parameter (MAML's inner step); ANIL updates only the names in head"
        return None

    return run_check("anil_step", fn, _anil_step_reference, make_cases(7, 3, case),
                     hint="{k: p - lr * grads[k] if k in head else p for k, p in params.items()}", diagnose=diagnose)


__all__ = ["check_metasgd_step", "check_anil_step"]
