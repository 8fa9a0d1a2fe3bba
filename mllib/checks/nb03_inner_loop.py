"""Checks of notebook 03, inner loop: ``check_sgd_step``, ``check_adaptation_curve``."""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch.func import functional_call

from .core import Case, CheckResult, _to_tensor, compare_values, make_cases
from .exercise import VISIBLE, ExerciseSpec, register, visible_check
from .hints import Hints
from .i18n import message
from .properties import Properties, declare
from .sine_inputs import _sine_task

# what this module's checks say (English; other languages: mllib/checks/i18n/, MLLIB_LANG)
SAY = {key: message(f"nb03.{key}", english) for key, english in {
    "not_dict": "the result should be a dict of adapted parameters, got {kind}",
    "not_connected": "the adapted parameters are not connected to the starting parameters in the autograd graph, "
                     "so the outer loop cannot differentiate through your step",
    "meta_gradient": "the values are right, but the gradient of a query loss through your step with respect to the"
                     " start differs from second-order MAML's",
    "new_dict": "return a new dict with one adapted tensor per key of params",
    "in_graph": "the new values must be computed from params themselves, inside the autograd graph: no "
                "detaching, no no-grad block, no in-place update",
    "curve_start": "the curve starts *before* the first step: steps + 1 numbers in all",
    "step_case": "SineMLP(hidden={hidden}) params, x/y [{k}, 1], lr={lr}",
    "curve_case": "SineMLP(hidden=8), support [10, 1], query [20, 1], steps={steps}, lr={lr}",
}.items()}

INNER_LOOP_FUNCTIONS = ("mllib.inner.adapt", "mllib.inner.inner_gradients",
                        "mllib.sine_experiments.adapt_sine_learner")


class _ThroughStep:
    """Call an ``sgd_step`` function, then report its adapted values and the meta-gradient through it.

    Carries the wrapped function's ``__code__`` so a verdict names the learner's line.
    """

    def __init__(self, fn: Callable) -> None:
        self.fn = fn
        self.__code__ = getattr(fn, "__code__", None)

    def __call__(self, model, params, x, y, lr, query_x, query_y):
        adapted = self.fn(model, params, x, y, lr)
        if not isinstance(adapted, dict):
            return adapted
        values = {k: (v.detach() if isinstance(v, torch.Tensor) else v) for k, v in adapted.items()}
        if set(adapted) != set(params) or any(not isinstance(v, torch.Tensor) or v.dtype != params[k].dtype
                                              for k, v in adapted.items()):
            return {"adapted": values, "meta_gradient": None}   # the comparison says what is wrong
        loss = torch.nn.functional.mse_loss(functional_call(model, adapted, (query_x,)), query_y)
        if not loss.requires_grad:
            return {"adapted": values, "meta_gradient": None}
        grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
        return {"adapted": values,
                "meta_gradient": {k: (torch.zeros_like(p) if g is None else g) for (k, p), g in zip(params.items(), grads)}}


def _step_cases(kind: str) -> list[Case]:
    rates, sizes, hidden = ([0.01, 0.1, 0.5], [10, 5, 3], 4) if kind == VISIBLE else \
        ([0.03, 0.2, 0.05, 1.0, 0.1], [10, 1, 20, 4, 7], 8)

    def case(gen: torch.Generator, i: int) -> Case:
        model, params, x, y, qx, qy = _sine_task(gen, sizes[i], 10, hidden)
        return Case((model, params, x, y, rates[i], qx, qy),
                    label=SAY["step_case"](hidden=hidden, k=len(x), lr=rates[i]))

    return make_cases(3 if kind == VISIBLE else 103, len(rates), case)


def _step_compare(got: Any, want: Any) -> str | None:
    if not isinstance(got, dict) or "adapted" not in got:
        return SAY["not_dict"](kind=type(got).__name__)
    problem = compare_values(got["adapted"], want["adapted"], 1e-6, 1e-9, path="adapted")
    if problem:
        return problem
    if got["meta_gradient"] is None:
        return SAY["not_connected"]()
    if compare_values(got["meta_gradient"], want["meta_gradient"], 1e-5, 1e-9) is not None:
        return SAY["meta_gradient"]()
    return None


def _step_structure(case: Case, got: Any, want: Any) -> str | None:
    if not isinstance(got, dict) or "adapted" not in got:
        return SAY["new_dict"]()
    if compare_values(got["adapted"], want["adapted"], 1e-6, 1e-9) is None and got["meta_gradient"] is None:
        return SAY["in_graph"]()
    return None


SGD_STEP = register(ExerciseSpec(
    name="sgd_step",
    cases=_step_cases,
    hints=Hints(
        concept="one inner step moves every parameter against the gradient of the support loss, and the "
                "outer loop must be able to differentiate through that move; revisit notebook 03, section 1",
        reasoning="compute the support MSE of the network called with params, take its gradient with respect "
                  "to every entry of params while asking autograd to record that gradient computation too, "
                  "and build a new dict in which each entry is the old one minus the rate times its gradient"),
    mistakes={
        "no_create_graph": "the values are right, but the inner gradient was treated as a constant: ask "
                           "autograd to keep the graph of the gradient computation itself",
        "step_up": "a descent step goes *against* the gradient",
        "sum_loss": "the support loss is the mean squared error, not the sum of squared errors",
    },
    forbidden=INNER_LOOP_FUNCTIONS,
    wrap=_ThroughStep, compare=_step_compare, diagnose=_step_structure,
))
declare(SGD_STEP.name, Properties(typed=True))


def check_sgd_step(fn: Callable) -> CheckResult:
    """Check ``fn(model, params, x, y, lr) -> adapted``: one differentiable inner-loop SGD step.

    ``model`` is a ``SineMLP`` (float64), ``params`` a dict of its parameters (leaf tensors
    requiring grad), ``x, y [K, 1]`` one task's support set, ``lr`` a float. ``adapted`` is a
    new dict with the same keys: ``params[k] - lr * d MSE(f_params(x), y) / d params[k]``.
    The step must keep the autograd graph (``create_graph=True``), so that a query loss of the
    adapted parameters can be differentiated with respect to the *start* ``params`` (the
    second-order meta-gradient of MAML); the check compares both the values and that
    meta-gradient with fixed expected values.
    """
    return visible_check(SGD_STEP, fn)


def _curve_cases(kind: str) -> list[Case]:
    settings = [(3, 0.01), (1, 0.1), (0, 0.05)] if kind == VISIBLE else \
        [(5, 0.02), (2, 0.3), (0, 0.1), (4, 0.01), (1, 1.0)]

    def case(gen: torch.Generator, i: int) -> Case:
        model, params, sx, sy, qx, qy = _sine_task(gen, 10, 20)
        steps, lr = settings[i]
        return Case((model, params, sx, sy, qx, qy, steps, lr),
                    label=SAY["curve_case"](steps=steps, lr=lr))

    return make_cases(4 if kind == VISIBLE else 104, len(settings), case)


def _curve_structure(case: Case, got: Any, want: Any) -> str | None:
    t = _to_tensor(got)
    steps = case.args[6]
    if t is not None and t.numel() == steps:
        return SAY["curve_start"]()
    return None


ADAPTATION_CURVE = register(ExerciseSpec(
    name="adaptation_curve",
    cases=_curve_cases,
    hints=Hints(
        concept="an adaptation curve records how good the adapted parameters are on *fresh* points of the "
                "task after 0, 1, 2, ... inner steps; revisit notebook 03, section 2",
        reasoning="keep the current parameters in a variable; at each k from 0 to steps first record the query "
                  "MSE of the current parameters, then (except after the last record) replace them by one "
                  "plain SGD step on the support MSE; no graph needs to be kept at test time"),
    mistakes={
        "measured_on_support": "train on the support set but measure the curve on the query set",
        "no_update": "the curve never changes: each step must replace the current parameters by the "
                     "stepped ones",
        "step_up": "a descent step goes *against* the gradient",
    },
    forbidden=("mllib.sine_experiments.adaptation_curve", "mllib.sine_experiments.support_query_curves",
               *INNER_LOOP_FUNCTIONS),
    diagnose=_curve_structure, rtol=1e-5, atol=1e-8,
))
declare(ADAPTATION_CURVE.name, Properties())


def check_adaptation_curve(fn: Callable) -> CheckResult:
    """Check ``fn(model, params, support_x, support_y, query_x, query_y, steps, lr) -> curve``.

    One task's adaptation curve: ``curve[k]`` is the query MSE after ``k`` plain SGD steps (rate
    ``lr``) on the support MSE, starting from ``params``, for ``k = 0, 1, ..., steps``; so the
    result has ``steps + 1`` numbers (a 1-D tensor, a list or an array) and ``curve[0]`` is the
    query MSE of the start itself. ``model`` is a float64 ``SineMLP``, ``params`` a dict of leaf
    tensors, ``support_x, support_y [K, 1]``, ``query_x, query_y [Q, 1]``. Tolerance 1e-5 relative.
    """
    return visible_check(ADAPTATION_CURVE, fn)


__all__ = ["check_sgd_step", "check_adaptation_curve"]
