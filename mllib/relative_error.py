"""Regression errors on the scale of the task family: relative to predicting zero, with 95% intervals.

A query MSE grows with the size of a family's targets: sinusoids with amplitudes in ``[5, 10]`` have
about 6.9 times the target variance of those in ``[0.1, 5]``, so a learner that learns nothing (its
prediction stays near zero) is about 6.9 times "worse" there without being any worse at all. Dividing
by the MSE of **predicting zero on the same query points** puts two families on one scale: 1 is no
better than predicting zero, 0 is perfect (notebook 07, section 2).

* :func:`zero_predictor_mse`: the per-task query MSE of the constant prediction 0, ``[T]``;
* :func:`ratio_of_means`: ``sum(num) / sum(den)`` over the same tasks with its 95% interval (the
  delta method for a ratio estimator: the residuals ``num - R * den`` carry the noise of both);
* :func:`log_ratio`: ``log(a / b)`` of two independent estimates ``a +- a_ci``, ``b +- b_ci`` with the
  half-width of its 95% interval, to compare *growth factors* (``a`` off-family, ``b`` in-family) of two
  methods with :func:`mllib.compare.verdict`.

    >>> ratio_of_means([1.0, 2.0, 3.0], [2.0, 2.0, 2.0])[0]
    1.0
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor

__all__ = ["zero_predictor_mse", "ratio_of_means", "log_ratio"]

Z95 = 1.96


def zero_predictor_mse(query_y: Tensor) -> Tensor:
    """``query_y [T, Q]`` or ``[T, Q, 1]`` (a TaskBatch's query targets) -> ``[T]``: mean of ``y**2`` per task."""
    y = torch.as_tensor(query_y)
    if y.dim() < 2:
        raise ValueError(f"query_y must be [tasks, query points] or [tasks, query points, 1], got shape "
                         f"{tuple(y.shape)}; pass a TaskBatch's query_y")
    return y.detach().to(torch.float64).flatten(1).pow(2).mean(1)


def _vector(values, name: str) -> Tensor:
    x = torch.as_tensor(values, dtype=torch.float64).flatten()
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} must all be finite (a diverged run has no error: leave it out of both, or "
                         f"count it separately)")
    return x


def ratio_of_means(num: Sequence[float] | Tensor, den: Sequence[float] | Tensor) -> tuple[float, float]:
    """``(R, ci95)``: ``R = mean(num) / mean(den)`` over the same tasks (``num``, ``den`` of shape ``[T]``,
    ``T >= 2``), and the half-width of its 95% interval, ``1.96 * sd(num - R den) / (sqrt(T) mean(den))``."""
    x, d = _vector(num, "num"), _vector(den, "den")
    if x.shape != d.shape:
        raise ValueError(f"num and den must be measured on the same tasks: got {x.numel()} and {d.numel()} "
                         f"values; pass one value per task for both, in the same order")
    if x.numel() < 2:
        raise ValueError(f"a ratio with an interval needs at least 2 tasks, got {x.numel()}")
    if float(d.mean()) <= 0:
        raise ValueError(f"den must have a positive mean (an error of predicting zero), got {float(d.mean()):.3g}")
    ratio = float(x.mean() / d.mean())
    residual = x - ratio * d
    return ratio, float(Z95 * residual.std(unbiased=True) / (math.sqrt(x.numel()) * d.mean()))


def log_ratio(a: float, a_ci95: float, b: float, b_ci95: float) -> tuple[float, float]:
    """``(log(a / b), half-width)`` for independent estimates ``a +- a_ci95`` and ``b +- b_ci95`` (positive
    means, 95% half-widths): the delta method, ``sqrt((a_ci95 / a)**2 + (b_ci95 / b)**2)``."""
    values = {"a": a, "a_ci95": a_ci95, "b": b, "b_ci95": b_ci95}
    for name, value in values.items():
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number, got {value!r}")
    if a <= 0 or b <= 0 or a_ci95 < 0 or b_ci95 < 0:
        raise ValueError(f"log_ratio needs positive means and half-widths >= 0, got a={a}, a_ci95={a_ci95}, "
                         f"b={b}, b_ci95={b_ci95}")
    return math.log(a / b), math.hypot(a_ci95 / a, b_ci95 / b)
