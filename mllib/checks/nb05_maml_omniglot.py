"""Checks of notebook 05, MAML on Omniglot: ``check_confidence_interval``, ``check_prototypes``."""
from __future__ import annotations

import math
from typing import Any, Callable

import torch

from .core import Case, CheckResult, make_cases, random_tensor, run_check


def _ci95_reference(values: torch.Tensor) -> tuple[float, float]:
    v = values.double()
    n = v.numel()
    mean = v.mean().item()
    sd = math.sqrt(((v - mean) ** 2).sum().item() / (n - 1))
    return mean, 1.96 * sd / math.sqrt(n)


def check_confidence_interval(fn: Callable) -> CheckResult:
    """Check ``fn(values) -> (mean, half_width)``: the mean and the 95% confidence interval.

    ``values`` is a 1-D float tensor ``[n]`` (n >= 2) of per-task scores, e.g. the query
    accuracies of 600 test tasks. ``half_width = 1.96 * sd / sqrt(n)`` where ``sd`` is the
    *sample* standard deviation (divisor ``n - 1``, i.e. ``torch.std`` with its default
    ``correction=1``, or ``numpy.std(..., ddof=1)``). Both results may be Python floats or
    one-element tensors; tolerance 1e-6 relative.
    """
    sizes = [2, 5, 30, 600, 7]

    def case(gen: torch.Generator, i: int) -> Case:
        n = sizes[i]
        if i == 4:  # every task scored the same: the interval has zero width
            return Case((torch.full((n,), 0.8, dtype=torch.float64),), label="7 equal values")
        return Case((torch.rand(n, generator=gen, dtype=torch.float64),))

    def diagnose(case: Case, got: Any, want: Any) -> str | None:
        try:
            _, half = got
            half = float(half)
        except (TypeError, ValueError):
            return "return a pair (mean, half_width), e.g. `return mean, half_width`"
        v = case.args[0].double()
        n = v.numel()
        sd0 = v.std(correction=0).item()
        if math.isclose(half, 1.96 * sd0 / math.sqrt(n), rel_tol=1e-6):
            return "you used the population standard deviation (divide by n); use the sample one (divide by n - 1)"
        if math.isclose(half, 1.96 * v.std().item(), rel_tol=1e-6):
            return "divide the standard deviation by sqrt(n): the interval is about the mean, not one task"
        return None

    return run_check("confidence_interval", fn, _ci95_reference, make_cases(95, len(sizes), case),
                     hint="mean = values.mean(); half_width = 1.96 * sd / sqrt(n) with the sample sd (n - 1)",
                     diagnose=diagnose)


def _prototypes_reference(embeddings: torch.Tensor, labels: torch.Tensor, ways: int) -> torch.Tensor:
    return torch.stack([embeddings[labels == c].mean(0) for c in range(ways)])


def check_prototypes(fn: Callable) -> CheckResult:
    """Check ``fn(embeddings, labels, ways) -> prototypes``: the class means of prototypical networks.

    ``embeddings`` ``[S, D]`` float (the support set's embeddings), ``labels`` ``[S]`` long in
    ``0..ways-1`` (every class present, in any order); the result is ``[ways, D]`` with row ``c``
    the mean embedding of the support examples labelled ``c``.
    """
    shapes = [(5, 1, 8), (5, 5, 16), (20, 1, 4), (3, 4, 6)]

    def case(gen: torch.Generator, i: int) -> Case:
        ways, shots, dim = shapes[i]
        labels = torch.arange(ways).repeat_interleave(shots)
        labels = labels[torch.randperm(len(labels), generator=gen)]
        return Case((random_tensor(gen, ways * shots, dim), labels, ways))

    def diagnose(case: Case, got: Any, want: Any) -> str | None:
        emb, labels, ways = case.args
        if isinstance(got, torch.Tensor) and got.shape == want.shape:
            sums = torch.stack([emb[labels == c].sum(0) for c in range(ways)])
            if torch.allclose(got.double(), sums, atol=1e-6) and not torch.allclose(sums, want):
                return "you summed the embeddings of each class: divide by the number of shots (take the mean)"
            if torch.allclose(got.double(), emb.mean(0).expand_as(want), atol=1e-6):
                return "that is the mean over the whole support set: average each class separately"
        if isinstance(got, torch.Tensor) and got.shape == want.shape[::-1]:
            return "return [ways, D] (one row per class), not [D, ways]"
        return None

    return run_check("prototypes", fn, _prototypes_reference, make_cases(5, len(shapes), case),
                     hint="for each class c in range(ways): embeddings[labels == c].mean(0); stack the rows",
                     diagnose=diagnose)


__all__ = ["check_confidence_interval", "check_prototypes"]
