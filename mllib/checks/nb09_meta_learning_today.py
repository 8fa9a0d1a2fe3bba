"""Checks of notebook 09, meta-learning today: ``check_pfn_nll`` (section 3, the PFN objective).

Its other exercises are written quizzes, graded by hand.
"""
from __future__ import annotations

from typing import Any, Callable

import torch

from .core import Case, CheckResult, make_cases, random_tensor
from .exercise import VISIBLE, ExerciseSpec, register, visible_check
from .hints import Hints
from .i18n import message
from .properties import Properties, declare

# what this module's checks say (English; other languages: mllib/checks/i18n/, MLLIB_LANG)
SAY = {key: message(f"nb09.{key}", english) for key, english in {
    "per_target": "that is one negative log-likelihood per target: the loss is their mean, one number",
}.items()}


def _nll_cases(kind: str) -> list[Case]:
    """Targets of a batch of tasks (``[tasks, targets]``), 1-D and 3-D batches too; log-variances from
    about -4 to 4 (all positive in the first case), so a variance is never confused with a standard
    deviation or its logarithm."""
    shapes = [(4, 5), (1, 3), (6,), (2, 20)] if kind == VISIBLE else [(3, 7), (10, 20), (1,), (2, 3, 4), (5, 1)]

    def case(gen: torch.Generator, i: int) -> Case:
        shape = shapes[i]
        mean, log_var = random_tensor(gen, *shape), 1.5 * random_tensor(gen, *shape)
        if i == 0:   # every variance above 1: a log-variance misread as the variance stays a finite number
            log_var = log_var.abs() + 0.1
        y = mean + (0.5 * log_var).exp() * random_tensor(gen, *shape) + 0.3 * random_tensor(gen, *shape)
        return Case((mean, log_var, y))

    return make_cases(90 if kind == VISIBLE else 190, len(shapes), case)


def _nll_structure(case: Case, got: Any, want: Any) -> str | None:
    if isinstance(got, torch.Tensor) and got.numel() > 1 and got.shape == case.args[0].shape:
        return SAY["per_target"]()
    return None


PFN_NLL = register(ExerciseSpec(
    name="pfn_nll",
    cases=_nll_cases,
    hints=Hints(
        concept="the PFN objective is the negative log-density of each target under the network's Gaussian, "
                "whose variance is the exponential of the predicted log-variance, averaged over every target; "
                "revisit notebook 09, section 3 (the PFN objective)",
        reasoning="turn the log-variance into the variance first; the negative log-density of one target under "
                  "a Gaussian is half the logarithm of two pi times the variance, plus the squared error divided "
                  "by twice the variance; compute it for every target at once, then take the mean"),
    mistakes={
        "no_constant": "keep the constant half log(2 pi): it does not change the gradient, but the section "
                       "compares the loss in nats with the exact posterior's, which includes it",
        "log_var_as_var": "the network predicts the *logarithm* of the variance: the variance is its exponential",
        "sd_for_var": "the squared error is divided by twice the variance, not by twice the standard deviation",
        "no_half_log": "the log term is half the logarithm of the variance (the density has the square root "
                       "of the variance in its normaliser)",
        "sum": "average over the targets instead of summing: the loss must not grow with the number of targets",
        "log_likelihood": "that is the log-likelihood; the loss to minimise is its negative",
    },
    forbidden=("mllib.pfn.gaussian_nll",), diagnose=_nll_structure,
))
declare(PFN_NLL.name, Properties(typed=True, loss_of=1))


def check_pfn_nll(fn: Callable) -> CheckResult:
    """Check ``fn(mean, log_var, y) -> loss``: the PFN objective on a batch of targets.

    ``mean``, ``log_var`` and ``y`` have the same shape (e.g. ``[tasks, targets]``, any number of
    dimensions): the network's predictive mean and log-variance of every target and the target.
    The result is a scalar tensor (shape ``[]``, the dtype of the inputs) with its gradient: the mean
    over every target of ``-log N(y; mean, exp(log_var)) = 0.5 log(2 pi var) + (y - mean)^2 / (2 var)``.
    Calling ``mllib.pfn.gaussian_nll`` fails.
    """
    return visible_check(PFN_NLL, fn)


__all__ = ["check_pfn_nll"]
