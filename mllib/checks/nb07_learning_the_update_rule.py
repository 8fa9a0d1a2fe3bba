"""Checks of notebook 07, learning the update rule: ``check_learned_update``, ``check_support_attention``."""
from __future__ import annotations

from typing import Any, Callable

import torch

from .core import Case, CheckResult, make_cases, random_tensor
from .exercise import VISIBLE, ExerciseSpec, register, visible_check
from .hints import Hints
from .i18n import message
from .properties import Properties, declare

# what this module's checks say (English; other languages: mllib/checks/i18n/, MLLIB_LANG)
SAY = {key: message(f"nb07.{key}", english) for key, english in {
    "per_coordinate": "return one number per coordinate: a tensor of shape [{size}]",
    "not_tensor": "return a tensor [Q, d_v]: one mixture of the values per query",
    "shape": "the result should have shape [Q, d_v] = {want}, got {got}",
}.items()}


def _update_cases(kind: str) -> list[Case]:
    shapes = [(6, 4, 5), (10, 4, 3), (1, 4, 8)] if kind == VISIBLE else [(7, 4, 6), (3, 2, 4), (12, 4, 20), (2, 4, 1)]
    rates = [0.01, 0.1, 0.05, 0.2]
    scales = [0.1, 1.0, 0.3, 2.0]

    def case(gen: torch.Generator, i: int) -> Case:
        n, f, h = shapes[i]
        weights = {"w1": random_tensor(gen, h, f), "b1": random_tensor(gen, h), "w2": random_tensor(gen, h, h),
                   "b2": random_tensor(gen, h), "w3": random_tensor(gen, 1, h), "b3": random_tensor(gen, 1)}
        return Case((random_tensor(gen, n, f), random_tensor(gen, n), weights, rates[i], scales[i]))

    return make_cases(70 if kind == VISIBLE else 170, len(shapes), case)


def _update_structure(case: Case, got: Any, want: Any) -> str | None:
    try:
        torch.as_tensor(got).double().reshape(want.shape)
    except (TypeError, ValueError, RuntimeError):
        return SAY["per_coordinate"](size=len(case.args[1]))
    return None


LEARNED_UPDATE = register(ExerciseSpec(
    name="learned_update",
    cases=_update_cases,
    hints=Hints(
        concept="the learned rule is plain SGD plus a correction that a small network computes from each "
                "coordinate's features; revisit notebook 07, section 2 (the update formula)",
        reasoning="run the features through the three linear layers in nn.Linear's convention, with a ReLU after "
                  "each of the first two; keep one output per coordinate, scale it, and add it to the SGD part, "
                  "which steps against the gradient at the given rate"),
    mistakes={
        "step_up": "the SGD part steps *against* the gradient",
        "net_alone": "the network's output is added to the SGD step, not used alone",
        "no_scale": "multiply the network's output by scale",
        "no_relu": "put a ReLU after each of the first two linear layers (not after the last)",
        "w2_not_transposed": "nn.Linear computes x times the *transposed* weight plus the bias, in every layer",
    },
    forbidden=("mllib.learned_optimizer.LearnedOptimizer.forward",), diagnose=_update_structure,
))
declare(LEARNED_UPDATE.name, Properties(typed=True))


def check_learned_update(fn: Callable) -> CheckResult:
    """Check ``fn(features, grad, weights, lr, scale) -> update``: one learned-optimizer update.

    ``features [N, F]`` (one row per parameter coordinate), ``grad [N]``, ``weights`` a dict with
    ``"w1" [H, F]``, ``"b1" [H]``, ``"w2" [H, H]``, ``"b2" [H]``, ``"w3" [1, H]``, ``"b3" [1]``
    (``nn.Linear``'s layout: a layer computes ``x @ w.T + b``). The result ``[N]`` is
    ``-lr * grad + scale * mlp(features)`` with ``mlp`` = linear, ReLU, linear, ReLU, linear
    (as ``mllib.learned_optimizer.LearnedOptimizer.forward`` with ``lr = exp(log_lr)``).
    """
    return visible_check(LEARNED_UPDATE, fn)


def _attention_cases(kind: str) -> list[Case]:
    shapes = [(3, 5, 4, 2), (1, 7, 8, 3), (4, 1, 2, 5)] if kind == VISIBLE else \
        [(2, 3, 16, 4), (5, 5, 1, 1), (3, 9, 4, 2), (1, 2, 3, 6)]

    def case(gen: torch.Generator, i: int) -> Case:
        q, s, d, dv = shapes[i]
        return Case((random_tensor(gen, q, d), random_tensor(gen, s, d), random_tensor(gen, s, dv)))

    return make_cases(71 if kind == VISIBLE else 171, len(shapes), case)


def _attention_structure(case: Case, got: Any, want: Any) -> str | None:
    try:
        got = torch.as_tensor(got)
    except (TypeError, ValueError, RuntimeError):
        return SAY["not_tensor"]()
    if got.shape != want.shape:
        return SAY["shape"](want=list(want.shape), got=list(got.shape))
    return None


SUPPORT_ATTENTION = register(ExerciseSpec(
    name="support_attention",
    cases=_attention_cases,
    hints=Hints(
        concept="each query mixes the support set's values, weighted by how well it matches each support "
                "key; revisit notebook 07, section 3 (the attend formula)",
        reasoning="score every query against every key with a dot product, scale the scores by the square root "
                  "of the key width, turn each query's scores over the support set into weights that sum to one, "
                  "and use those weights to average the values"),
    mistakes={
        "no_scale": "divide the scores by the square root of d, the width of a query/key row",
        "softmax_over_queries": "normalise each query's weights over the support set (each row sums to 1)",
        "no_softmax": "turn the scores into weights with a softmax before mixing the values",
        "scale_by_d": "scale by the square root of d, not by d",
    },
    forbidden=("mllib.incontext.attend",), diagnose=_attention_structure,
))
declare(SUPPORT_ATTENTION.name, Properties(typed=True))


def check_support_attention(fn: Callable) -> CheckResult:
    """Check ``fn(query, keys, values) -> [Q, d_v]``: attention of the queries over the support set.

    ``query [Q, d]``, ``keys [S, d]``, ``values [S, d_v]``: ``softmax(query @ keys.T / sqrt(d)) @ values``,
    the softmax over the ``S`` support elements (each row of weights sums to 1), as
    ``mllib.incontext.attend``.
    """
    return visible_check(SUPPORT_ATTENTION, fn)


__all__ = ["check_learned_update", "check_support_attention"]
