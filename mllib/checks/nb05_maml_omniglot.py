"""Checks of notebook 05, MAML on Omniglot: ``check_confidence_interval``, ``check_prototypes``."""
from __future__ import annotations

from typing import Any, Callable

import torch

from .core import Case, CheckResult, make_cases, random_tensor
from .exercise import VISIBLE, ExerciseSpec, register, visible_check
from .hints import Hints
from .i18n import message
from .properties import Properties, declare

# what this module's checks say (English; other languages: mllib/checks/i18n/, MLLIB_LANG)
SAY = {key: message(f"nb05.{key}", english) for key, english in {
    "pair": "return a pair (mean, half_width)",
    "unbalanced": "your answer works only for the special case of classes of equal size: here the classes have "
                  "different numbers of examples, and each prototype is still the mean of its own class's rows",
    "transposed": "one row per class: the result is [ways, D], not [D, ways]",
    "equal_case": "7 equal values",
    "proto_case": "embeddings [{rows}, {dim}], classes of {counts} examples",
}.items()}


def _ci_cases(kind: str) -> list[Case]:
    sizes = [2, 5, 30, 7] if kind == VISIBLE else [600, 3, 200, 10, 7]

    def case(gen: torch.Generator, i: int) -> Case:
        n = sizes[i]
        if n == 7:  # every task scored the same: the interval has zero width
            return Case((torch.full((n,), 0.8, dtype=torch.float64),), label=SAY["equal_case"]())
        return Case((torch.rand(n, generator=gen, dtype=torch.float64),))

    return make_cases(95 if kind == VISIBLE else 195, len(sizes), case)


def _ci_structure(case: Case, got: Any, want: Any) -> str | None:
    try:
        _, half = got
        float(half)
    except (TypeError, ValueError):
        return SAY["pair"]()
    return None


CONFIDENCE_INTERVAL = register(ExerciseSpec(
    name="confidence_interval",
    cases=_ci_cases,
    hints=Hints(
        concept="the interval describes how precisely the *mean* over the tasks is known, so its width shrinks "
                "as the number of tasks grows; revisit notebook 05, section 3",
        reasoning="estimate the spread of one task's score from the sample (with the divisor that makes the "
                  "estimate unbiased), turn it into the spread of the mean of n scores, and take 1.96 of those "
                  "on either side of the mean"),
    mistakes={
        "population_sd": "you used the population standard deviation (divide by n); the sample one divides "
                         "by n - 1",
        "no_sqrt_n": "that is the spread of one task's score; the interval is about the mean of n of them",
        "variance": "use the standard deviation (the square root of the variance)",
    },
    forbidden=("mllib.evaluate.mean_ci95",), diagnose=_ci_structure,
))
declare(CONFIDENCE_INTERVAL.name, Properties())


def check_confidence_interval(fn: Callable) -> CheckResult:
    """Check ``fn(values) -> (mean, half_width)``: the mean and the 95% confidence interval.

    ``values`` is a 1-D float tensor ``[n]`` (n >= 2) of per-task scores, e.g. the query
    accuracies of 600 test tasks. ``half_width = 1.96 * sd / sqrt(n)`` where ``sd`` is the
    *sample* standard deviation (divisor ``n - 1``, i.e. ``torch.std`` with its default
    ``correction=1``, or ``numpy.std(..., ddof=1)``). Both results may be Python floats or
    one-element tensors; tolerance 1e-6 relative. Calling ``mllib.evaluate.mean_ci95`` fails.
    """
    return visible_check(CONFIDENCE_INTERVAL, fn)


UNBALANCED_HINT = SAY["unbalanced"]()


def _proto_cases(kind: str) -> list[Case]:
    """Balanced support sets (ways, shots, dim), then unbalanced ones (examples per class, dim): a
    prototype is a mean per class whatever the class sizes, so reshaping into [ways, shots, D] fails."""
    shapes = [(5, 1, 8), (5, 5, 16), (3, 4, 6), ((1, 3, 2, 5), 6)] if kind == VISIBLE else \
        [(20, 1, 4), (2, 3, 5), (5, 2, 3), (1, 4, 2), ((4, 1, 2), 5), ((2, 6), 3)]

    def case(gen: torch.Generator, i: int) -> Case:
        counts, dim = (shapes[i][0], shapes[i][1]) if len(shapes[i]) == 2 else ((shapes[i][1],) * shapes[i][0], shapes[i][2])
        labels = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts))
        labels = labels[torch.randperm(len(labels), generator=gen)]
        label = SAY["proto_case"](rows=len(labels), dim=dim, counts=", ".join(map(str, counts))) \
            if len(set(counts)) > 1 else ""
        hint = (UNBALANCED_HINT if len(set(counts)) > 1 else "")
        return Case((random_tensor(gen, len(labels), dim), labels, len(counts)), label=label, hint=hint)

    return make_cases(5 if kind == VISIBLE else 105, len(shapes), case)


def _proto_structure(case: Case, got: Any, want: Any) -> str | None:
    if isinstance(got, torch.Tensor) and got.shape == want.shape[::-1] and got.shape != want.shape:
        return SAY["transposed"]()
    return None


PROTOTYPES = register(ExerciseSpec(
    name="prototypes",
    cases=_proto_cases,
    hints=Hints(
        concept="a prototype summarises one class by the average of its support embeddings; revisit "
                "notebook 05, section 4",
        reasoning="for each class label in turn, select the rows of the embeddings whose label is that class "
                  "and average them; the rows of the result follow the class order 0..ways-1"),
    mistakes={
        "sum": "you summed the embeddings of each class: a prototype is their mean",
        "overall_mean": "that is the mean over the whole support set: average each class separately",
    },
    diagnose=_proto_structure,
))
declare(PROTOTYPES.name, Properties(typed=True))


def check_prototypes(fn: Callable) -> CheckResult:
    """Check ``fn(embeddings, labels, ways) -> prototypes``: the class means of prototypical networks.

    ``embeddings`` ``[S, D]`` float (the support set's embeddings), ``labels`` ``[S]`` long in
    ``0..ways-1`` (every class present, in any order, not necessarily equally often); the result is
    ``[ways, D]``, the dtype of ``embeddings``, with row ``c`` the mean embedding of the support
    examples labelled ``c``.
    """
    return visible_check(PROTOTYPES, fn)


__all__ = ["check_confidence_interval", "check_prototypes"]
