"""Checks of notebook 06, learning the learning algorithm: ``check_metasgd_rate_gradient``, ``check_anil_step``."""
from __future__ import annotations

from typing import Any, Callable

import torch

from .core import Case, CheckResult, _to_tensor, make_cases, random_tensor
from .exercise import VISIBLE, ExerciseSpec, register, visible_check
from .hints import Hints
from .i18n import message
from .properties import Properties, declare
from .sine_inputs import _sine_task

# what this module's checks say (English; other languages: mllib/checks/i18n/, MLLIB_LANG)
SAY = {key: message(f"nb06.{key}", english) for key, english in {
    "rate_dict": "return a dict with one entry per rate tensor (the keys of rates)",
    "rate_shape": "every single weight has its own rate, so the gradient has one number per weight: {key} needs"
                  " shape {shape}",
    "partial_head": "your answer works only for the special case where head holds every 'head.' name: the head is"
                    " exactly the list given, whatever the names look like",
    "anil_dict": "return a dict with every key of params",
    "keep_body": "keep the body's parameters in the result too (unchanged): the model needs all of them",
    "rate_case": "SineMLP(hidden={hidden}) params and rates, support [{k}, 1], query [10, 1]",
}.items()}


def _rate_cases(kind: str) -> list[Case]:
    sizes, hidden = ([10, 5, 3], 4) if kind == VISIBLE else ([10, 1, 20, 7], 8)

    def case(gen: torch.Generator, i: int) -> Case:
        model, params, sx, sy, qx, qy = _sine_task(gen, sizes[i], 10, hidden)
        rates = {k: 0.02 + 0.05 * torch.rand(p.shape, generator=gen, dtype=torch.float64) for k, p in params.items()}
        return Case((model, params, rates, sx, sy, qx, qy),
                    label=SAY["rate_case"](hidden=hidden, k=sizes[i]))

    return make_cases(60 if kind == VISIBLE else 160, len(sizes), case)


def _rate_structure(case: Case, got: Any, want: Any) -> str | None:
    if not isinstance(got, dict) or set(got) != set(want):
        return SAY["rate_dict"]()
    for key, value in got.items():
        t = _to_tensor(value)
        if t is not None and t.shape != want[key].shape:
            return SAY["rate_shape"](key=repr(key), shape=tuple(want[key].shape))
    return None


METASGD_RATE_GRADIENT = register(ExerciseSpec(
    name="metasgd_rate_gradient",
    cases=_rate_cases,
    hints=Hints(
        concept="the rates enter the query loss only through the adapted parameters, and the adapted "
                "parameters depend on the rates linearly; the chain rule then needs just two ordinary "
                "gradients; revisit notebook 06, section 1",
        reasoning="write one adapted weight as a function of its own rate and ask which parts of that expression "
                  "change when the rate changes (where is the support gradient evaluated?); then ask where the "
                  "query loss is evaluated, since its gradient must be taken at that point; the chain rule combines "
                  "the two factors weight by weight. Work both out on paper for a single weight before writing "
                  "code"),
    mistakes={
        "no_minus": "the adapted weight *decreases* as its rate grows (start minus rate times gradient): "
                    "check the sign",
        "query_gradient_at_start": "the query loss is evaluated at the *adapted* parameters, so its gradient "
                                   "must be taken there, not at the start",
        "times_rate": "the adapted weight is linear in its rate: its derivative with respect to the rate does "
                      "not contain the rate itself",
        "start_gradient": "that is the meta-gradient with respect to the *start*; this exercise asks for the "
                          "gradient with respect to the *rates*",
    },
    forbidden=("mllib.inner.adapt", "mllib.inner.inner_gradients", "mllib.algorithms.meta_gradient",
               "mllib.algorithms.meta_step", "mllib.algorithms.query_loss_and_metric"),
    diagnose=_rate_structure, rtol=1e-6, atol=1e-10,
))
declare(METASGD_RATE_GRADIENT.name, Properties(typed=True))


def check_metasgd_rate_gradient(fn: Callable) -> CheckResult:
    """Check ``fn(model, params, rates, support_x, support_y, query_x, query_y) -> dict``.

    Meta-SGD's inner step ``adapted[k] = params[k] - rates[k] * g[k]`` with ``g`` the gradient of the
    support MSE at ``params``; the result is ``{k: d (query MSE of adapted) / d rates[k]}``, one
    number per weight (same shapes as ``rates``). ``model`` is a float64 ``SineMLP``; ``params``
    and ``rates`` dicts of tensors with the same keys and shapes; ``support_x, support_y [K, 1]``,
    ``query_x, query_y [Q, 1]``. The expected values were computed by autograd through the step;
    tolerance 1e-6 relative.
    """
    return visible_check(METASGD_RATE_GRADIENT, fn)


PARTIAL_HEAD_HINT = SAY["partial_head"]()


def _anil_cases(kind: str) -> list[Case]:
    # case 4 (index 3) adapts only part of the "head." parameters: the head is the list given, not a name pattern
    rates = [0.4, 0.1, 0.01, 0.2] if kind == VISIBLE else [0.3, 1.0, 0.05, 0.2]

    def case(gen: torch.Generator, i: int) -> Case:
        shapes = {"blocks.0.conv.weight": (3, 1, 3, 3), "blocks.0.norm.weight": (3,), "head.weight": (5, 3),
                  "head.bias": (5,)}
        params = {k: random_tensor(gen, *s) for k, s in shapes.items()}
        grads = {k: random_tensor(gen, *s) for k, s in shapes.items()}
        head = ["head.weight", "head.bias"] if i != 3 else ["head.bias"]
        return Case((params, grads, rates[i], head), hint=PARTIAL_HEAD_HINT if i == 3 else "")

    return make_cases(7 if kind == VISIBLE else 107, len(rates), case)


def _anil_structure(case: Case, got: Any, want: Any) -> str | None:
    params, grads, lr, head = case.args
    if not isinstance(got, dict):
        return SAY["anil_dict"]()
    if set(got) == set(head):
        return SAY["keep_body"]()
    return None


ANIL_STEP = register(ExerciseSpec(
    name="anil_step",
    cases=_anil_cases,
    hints=Hints(
        concept="ANIL's inner loop adapts the head only; the body is shared by all tasks and stays as it is; "
                "revisit notebook 06, section 2",
        reasoning="go through every parameter: a name listed in head takes an SGD step with its gradient, any "
                  "other name keeps its current value, and the result still holds every name"),
    mistakes={
        "all_updated": "that updated every parameter (MAML's inner step); ANIL updates only the names in head",
        "step_up": "a descent step goes *against* the gradient",
    },
    forbidden=("mllib.inner.adapt", "mllib.inner.inner_gradients"), diagnose=_anil_structure,
))
declare(ANIL_STEP.name, Properties(typed=True))


def check_anil_step(fn: Callable) -> CheckResult:
    """Check ``fn(params, grads, lr, head) -> dict``: one ANIL inner step.

    ``params`` and ``grads``: dicts of tensors with the same keys; ``lr`` a float; ``head`` the
    list of the head's parameter names. The head takes an SGD step ``params[k] - lr * grads[k]``;
    every other (body) parameter is returned unchanged. The result has all keys of ``params``.
    """
    return visible_check(ANIL_STEP, fn)


__all__ = ["check_metasgd_rate_gradient", "check_anil_step"]
