"""Per-task comparisons for heavy-tailed errors, and support against query error along the steps.

Notebook 01 compares learners by their query MSE on the same test tasks. Some of those errors are
heavy-tailed (a high-degree polynomial through ten points can miss a task by a factor of a thousand),
so a mean, and the mean-based interval of :func:`mllib.compare.paired_verdict`, is decided by a few
tasks. This module gives the robust counterparts, percentile-bootstrap intervals of medians:

* :func:`median_ci95`: a median with its 95% bootstrap interval, ``(median, low, high)``;
* :func:`paired_median_verdict`: two methods scored on the *same* tasks; the median of the per-task
  differences ``a - b`` with its 95% bootstrap interval; a :class:`mllib.compare.Verdict`
  (``"higher"`` when the interval lies above 0, ``"lower"`` below, ``"tie"`` when it contains 0), so
  that ``mllib.compare.assert_claim`` can check the sentence's word against it;
* :func:`support_query_curves`: the support and the query MSE of every task after 0, 1, ...,
  ``steps`` plain SGD steps, in one pass: whether fine-tuning overfits the support set (support
  error falling while the query error rises) can be read from them.

    >>> paired_median_verdict([1.0, 2.0, 3.0, 4.0], [2.0, 3.0, 4.0, 5.5])
    'lower'
    >>> median_ci95([1.0, 2.0, 3.0, 100.0])[0]
    2.5
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from mllib.compare import Verdict
from mllib.sine_experiments import support_query_curves  # written once there, beside adaptation_curve

__all__ = ["median_ci95", "paired_median_verdict", "support_query_curves"]

RESAMPLES = 2000


def _scores(values, name: str) -> np.ndarray:
    """``values`` as a 1-D float array of at least 2 finite numbers, or one clear ValueError."""
    try:
        x = np.asarray(torch.as_tensor(values, dtype=torch.float64).cpu(), dtype=float).reshape(-1)
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"{name} must be a sequence of numbers (one per task), got {type(values).__name__}") from None
    if x.size < 2:
        raise ValueError(f"{name} needs at least 2 per-task values for a bootstrap interval, got {x.size}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} must all be finite (a diverged run is not a score; count it separately)")
    return x


def _bootstrap_medians(x: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """Medians of ``resamples`` resamples (with replacement) of ``x``: ``[resamples]``."""
    if int(resamples) != resamples or resamples < 100:
        raise ValueError(f"resamples must be an integer >= 100, got {resamples!r}")
    rng = np.random.default_rng(seed)
    return np.median(x[rng.integers(0, x.size, size=(int(resamples), x.size))], axis=1)


def median_ci95(values: Sequence[float] | Tensor, resamples: int = RESAMPLES, seed: int = 0
                ) -> tuple[float, float, float]:
    """``(median, low, high)``: the median of ``values`` (``[n]``, n >= 2, finite) and its 95%
    percentile-bootstrap interval (``resamples`` resamples, seeded: the same call gives the same numbers)."""
    x = _scores(values, "values")
    medians = _bootstrap_medians(x, resamples, seed)
    low, high = np.percentile(medians, [2.5, 97.5])
    return float(np.median(x)), float(low), float(high)


def paired_median_verdict(a: Sequence[float] | Tensor, b: Sequence[float] | Tensor, resamples: int = RESAMPLES,
                          seed: int = 0) -> Verdict:
    """Compare two methods scored on the same tasks (``a``, ``b``: ``[n_tasks]``, in the same task order)
    by the median of the per-task differences ``a - b`` and its 95% bootstrap interval.

    ``"higher"``: the interval lies above 0 (on a typical task ``a`` scores more than ``b``); ``"lower"``:
    below 0; ``"tie"``: it contains 0. Robust to a few huge per-task errors, unlike a mean.
    """
    x, y = _scores(a, "a"), _scores(b, "b")
    if x.shape != y.shape:
        raise ValueError(f"paired scores must be measured on the same tasks: got {x.size} and {y.size} values; "
                         f"pass one score per task for both methods, in the same task order")
    d = x - y
    median, low, high = median_ci95(d, resamples, seed)
    shown = f"median paired difference {median:.4g} [{low:.4g}, {high:.4g}] over {d.size} tasks"
    if low > 0:
        return Verdict("higher", f"{shown} (the 95% bootstrap interval lies above 0)")
    if high < 0:
        return Verdict("lower", f"{shown} (the 95% bootstrap interval lies below 0)")
    return Verdict("tie", f"{shown} (the 95% bootstrap interval contains 0)")
