"""Checks of notebook 07, learning the update rule: ``check_learned_update``, ``check_support_attention``."""
from __future__ import annotations

import math
from typing import Any, Callable

import torch

from .core import Case, CheckResult, make_cases, random_tensor, run_check

_LAYERS = ("w1", "b1", "w2", "b2", "w3", "b3")


def _mlp(features: torch.Tensor, weights: dict, relu: bool = True) -> torch.Tensor:
    act = torch.relu if relu else (lambda t: t)
    h = act(features @ weights["w1"].T + weights["b1"])
    h = act(h @ weights["w2"].T + weights["b2"])
    return (h @ weights["w3"].T + weights["b3"])[:, 0]


def _learned_update_reference(features: torch.Tensor, grad: torch.Tensor, weights: dict, lr: float,
                              scale: float) -> torch.Tensor:
    return -lr * grad + scale * _mlp(features, weights)


def check_learned_update(fn: Callable) -> CheckResult:
    """Check ``fn(features, grad, weights, lr, scale) -> update``: one learned-optimizer update.

    ``features [N, F]`` (one row per parameter coordinate), ``grad [N]``, ``weights`` a dict with
    ``"w1" [H, F]``, ``"b1" [H]``, ``"w2" [H, H]``, ``"b2" [H]``, ``"w3" [1, H]``, ``"b3" [1]``
    (``nn.Linear``'s layout: a layer computes ``x @ w.T + b``). The result ``[N]`` is
    ``-lr * grad + scale * mlp(features)`` with ``mlp`` = linear, ReLU, linear, ReLU, linear
    (as ``mllib.learned_optimizer.LearnedOptimizer.forward`` with ``lr = exp(log_lr)``).
    """
    def case(gen: torch.Generator, i: int) -> Case:
        n, f, h = [(6, 4, 5), (10, 4, 3), (1, 4, 8)][i]
        weights = {"w1": random_tensor(gen, h, f), "b1": random_tensor(gen, h), "w2": random_tensor(gen, h, h),
                   "b2": random_tensor(gen, h), "w3": random_tensor(gen, 1, h), "b3": random_tensor(gen, 1)}
        return Case((random_tensor(gen, n, f), random_tensor(gen, n), weights, [0.01, 0.1, 0.05][i],
                     [0.1, 1.0, 0.3][i]))

    def diagnose(case: Case, got: Any, want: Any) -> str | None:
        features, grad, weights, lr, scale = case.args
        try:
            got = torch.as_tensor(got).double().reshape(want.shape)
        except (TypeError, ValueError, RuntimeError):
            return f"return one number per coordinate: a tensor of shape [{len(grad)}]"
        net = _mlp(features, weights)
        wrong = {
            "step *against* the gradient: the SGD part is -lr * grad": -(-lr * grad) + scale * net,
            "the network's output is added to the SGD step, not used alone": scale * net,
            "multiply the network's output by scale": -lr * grad + net,
            "put a ReLU after each of the first two linear layers (not after the last)":
                -lr * grad + scale * _mlp(features, weights, relu=False),
            "nn.Linear computes x @ w.T + b: transpose the weights":
                -lr * grad + scale * torch.relu(torch.relu(features @ weights["w1"].T + weights["b1"])
                                                @ weights["w2"] + weights["b2"]) @ weights["w3"].T[:, 0]
                + scale * weights["b3"],
        }
        for message, value in wrong.items():
            if value.shape == got.shape and torch.allclose(got, value, atol=1e-8):
                return message
        return None

    return run_check("learned_update", fn, _learned_update_reference, make_cases(70, 3, case),
                     hint="h = relu(features @ w1.T + b1); h = relu(h @ w2.T + b2); "
                          "update = -lr * grad + scale * (h @ w3.T + b3)[:, 0]", diagnose=diagnose)


def _support_attention_reference(query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    weights = torch.softmax(query @ keys.T / math.sqrt(query.shape[-1]), dim=-1)
    return weights @ values


def check_support_attention(fn: Callable) -> CheckResult:
    """Check ``fn(query, keys, values) -> [Q, d_v]``: attention of the queries over the support set.

    ``query [Q, d]``, ``keys [S, d]``, ``values [S, d_v]``: ``softmax(query @ keys.T / sqrt(d)) @ values``,
    the softmax over the ``S`` support elements (each row of weights sums to 1), as
    ``mllib.incontext.attend``.
    """
    def case(gen: torch.Generator, i: int) -> Case:
        q, s, d, dv = [(3, 5, 4, 2), (1, 7, 8, 3), (4, 1, 2, 5), (2, 3, 16, 4)][i]
        return Case((random_tensor(gen, q, d), random_tensor(gen, s, d), random_tensor(gen, s, dv)))

    def diagnose(case: Case, got: Any, want: Any) -> str | None:
        query, keys, values = case.args
        try:
            got = torch.as_tensor(got).double()
        except (TypeError, ValueError, RuntimeError):
            return "return a tensor [Q, d_v]"
        if got.shape != want.shape:
            return f"the result should have shape [Q, d_v] = {list(want.shape)}, got {list(got.shape)}"
        scores = query @ keys.T
        wrong = {
            "divide the scores by sqrt(d), the width of a query/key row": torch.softmax(scores, -1) @ values,
            "take the softmax over the support set (dim=-1: each query's weights sum to 1)":
                torch.softmax(scores / math.sqrt(query.shape[-1]), 0) @ values,
            "turn the scores into weights with a softmax before mixing the values":
                scores / math.sqrt(query.shape[-1]) @ values,
            "scale by sqrt(d), not by d": torch.softmax(scores / query.shape[-1], -1) @ values,
        }
        for message, value in wrong.items():
            if torch.allclose(got, value, atol=1e-8) and not torch.allclose(value, want, atol=1e-8):
                return message
        return None

    return run_check("support_attention", fn, _support_attention_reference, make_cases(71, 4, case),
                     hint="weights = softmax(query @ keys.T / sqrt(d), dim=-1); return weights @ values",
                     diagnose=diagnose)


__all__ = ["check_learned_update", "check_support_attention"]
