"""Checks of notebook 01, learning bias: ``check_polynomial_fit``."""
from __future__ import annotations

import math
from typing import Any, Callable

import torch

from mllib.sine_experiments import fit_polynomial

from .core import Case, CheckResult, _to_tensor, compare_values, make_cases, run_check


def _polynomial_fit_reference(x: torch.Tensor, y: torch.Tensor, degree: int) -> torch.Tensor:
    return fit_polynomial(x, y, degree)


def check_polynomial_fit(fn: Callable) -> CheckResult:
    """Check ``fn(x, y, degree) -> coefficients``: the least-squares polynomial of a given degree.

    ``x`` and ``y`` are 1-D float64 tensors ``[K]`` (K > degree, the points of one task);
    the result is a 1-D tensor (or array) ``[degree + 1]`` with the *constant term first*:
    ``y_hat = c[0] + c[1] x + ... + c[degree] x^degree`` minimising ``sum (y_hat_i - y_i)^2``.
    Tolerance 1e-5 relative (normal equations, ``lstsq`` and ``pinv`` all pass).
    """
    settings = [(10, 1), (10, 3), (5, 2), (20, 5), (4, 0), (8, 4)]

    def case(gen: torch.Generator, i: int) -> Case:
        k, degree = settings[i]
        x = torch.rand(k, generator=gen, dtype=torch.float64) * 10 - 5
        amplitude = 0.1 + 4.9 * torch.rand(1, generator=gen, dtype=torch.float64)
        phase = math.pi * torch.rand(1, generator=gen, dtype=torch.float64)
        return Case((x, amplitude * torch.sin(x - phase), degree))

    def diagnose(case: Case, got: Any, want: Any) -> str | None:
        t = _to_tensor(got)
        if t is None:
            return None
        if t.numel() == want.numel() and t.dim() != 1:
            return "return a 1-D tensor of degree + 1 coefficients (e.g. `solution[:, 0]` or `.reshape(-1)`)"
        if t.numel() == want.numel() and compare_values(t.flip(0), want, 1e-5, 1e-6) is None:
            return ("your coefficients are in reverse order (highest power first, like numpy.polyfit); "
                    "put the constant term first")
        if t.numel() != want.numel():
            return "a polynomial of degree d has d + 1 coefficients: columns x**0, x**1, ..., x**d"
        return None

    return run_check("polynomial_fit", fn, _polynomial_fit_reference, make_cases(1, len(settings), case),
                     hint="build the design matrix X[i, d] = x[i] ** d for d = 0..degree, then solve the "
                          "least-squares problem X c ~ y (torch.linalg.lstsq(X, y[:, None]).solution[:, 0])",
                     rtol=1e-5, atol=1e-6, diagnose=diagnose)


__all__ = ["check_polynomial_fit"]
