"""Checks of notebook 01, learning bias: ``check_polynomial_fit``."""
from __future__ import annotations

import math
from typing import Any, Callable

import torch

from .core import Case, CheckResult, _to_tensor, make_cases
from .exercise import VISIBLE, ExerciseSpec, register, visible_check
from .hints import Hints
from .i18n import message
from .properties import Properties, declare

# what this module's checks say (English; other languages: mllib/checks/i18n/, MLLIB_LANG)
SAY = {key: message(f"nb01.{key}", english) for key, english in {
    "not_1d": "return a 1-D tensor of degree + 1 coefficients, not a column or a matrix",
    "count": "a polynomial of degree d has d + 1 coefficients, one per power of x from x**0 to x**d",
}.items()}


def _cases(kind: str) -> list[Case]:
    settings = [(10, 1), (10, 3), (5, 2)] if kind == VISIBLE else \
        [(20, 5), (4, 0), (8, 4), (6, 5), (30, 2), (3, 1), (12, 6)]

    def case(gen: torch.Generator, i: int) -> Case:
        k, degree = settings[i]
        x = torch.rand(k, generator=gen, dtype=torch.float64) * 10 - 5
        amplitude = 0.1 + 4.9 * torch.rand(1, generator=gen, dtype=torch.float64)
        phase = math.pi * torch.rand(1, generator=gen, dtype=torch.float64)
        return Case((x, amplitude * torch.sin(x - phase), degree))

    return make_cases(1 if kind == VISIBLE else 101, len(settings), case)


def _structure(case: Case, got: Any, want: Any) -> str | None:
    t = _to_tensor(got)
    if t is None:
        return None
    if t.numel() == want.numel() and t.dim() != 1:
        return SAY["not_1d"]()
    if t.numel() != want.numel():
        return SAY["count"]()
    return None


SPEC = register(ExerciseSpec(
    name="polynomial_fit",
    cases=_cases,
    hints=Hints(
        concept="fitting a polynomial is a linear least-squares problem in its coefficients; revisit "
                "section 3 (the design matrix) of notebook 01",
        reasoning="each row of the design matrix holds the powers of one input point, one column per "
                  "coefficient from the constant term up; the coefficients are then the least-squares "
                  "solution of (design matrix) times (coefficients) close to the targets, which torch's "
                  "linear-algebra module solves for you"),
    mistakes={
        "reversed_order": "your coefficients come highest power first (numpy.polyfit's order); this "
                          "exercise wants the constant term first",
        "no_constant_column": "your design matrix starts at x**1: the constant term, x**0, is missing",
    },
    forbidden=("mllib.sine_experiments.fit_polynomial", "mllib.sine_experiments.polynomial_mse"),
    diagnose=_structure, rtol=1e-5, atol=1e-6,
))
declare(SPEC.name, Properties())


def check_polynomial_fit(fn: Callable) -> CheckResult:
    """Check ``fn(x, y, degree) -> coefficients``: the least-squares polynomial of a given degree.

    ``x`` and ``y`` are 1-D float64 tensors ``[K]`` (K > degree, the points of one task);
    the result is a 1-D tensor (or array) ``[degree + 1]`` with the *constant term first*:
    ``y_hat = c[0] + c[1] x + ... + c[degree] x^degree`` minimising ``sum (y_hat_i - y_i)^2``.
    Tolerance 1e-5 relative (normal equations, ``lstsq`` and ``pinv`` all pass).
    """
    return visible_check(SPEC, fn)


__all__ = ["check_polynomial_fit"]
