"""Checks of notebook 03, inner loop: ``check_sgd_step``, ``check_adaptation_curve``."""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch.func import functional_call

from mllib.sine_experiments import adaptation_curve
from mllib.tasks.batch import TaskBatch

from .core import Case, CheckResult, _to_tensor, compare_values, make_cases, run_check
from .sine_inputs import _sine_task


def _sgd_step_reference(model, params, x, y, lr):
    loss = torch.nn.functional.mse_loss(functional_call(model, params, (x,)), y)
    grads = torch.autograd.grad(loss, list(params.values()), create_graph=True)
    return {name: p - lr * g for (name, p), g in zip(params.items(), grads)}


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
        if set(adapted) != set(params):
            return {"adapted": values, "meta_gradient": None}
        loss = torch.nn.functional.mse_loss(functional_call(model, adapted, (query_x,)), query_y)
        if not loss.requires_grad:
            return {"adapted": values, "meta_gradient": None}
        grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
        return {"adapted": values,
                "meta_gradient": {k: (torch.zeros_like(p) if g is None else g) for (k, p), g in zip(params.items(), grads)}}


def check_sgd_step(fn: Callable) -> CheckResult:
    """Check ``fn(model, params, x, y, lr) -> adapted``: one differentiable inner-loop SGD step.

    ``model`` is a ``SineMLP`` (float64), ``params`` a dict of its parameters (leaf tensors
    requiring grad), ``x, y [K, 1]`` one task's support set, ``lr`` a float. ``adapted`` is a
    new dict with the same keys: ``params[k] - lr * d MSE(f_params(x), y) / d params[k]``.
    The step must keep the autograd graph (``create_graph=True``), so that a query loss of the
    adapted parameters can be differentiated with respect to the *start* ``params`` (the
    second-order meta-gradient of MAML); the check compares both the values and that
    meta-gradient with the reference.
    """
    rates = [0.01, 0.1, 0.5, 0.03]

    def case(gen: torch.Generator, i: int) -> Case:
        model, params, x, y, qx, qy = _sine_task(gen, [10, 5, 10, 3][i], 10)
        return Case((model, params, x, y, rates[i], qx, qy),
                    label=f"SineMLP(hidden=8) params, x/y [{len(x)}, 1], lr={rates[i]}")

    def compare(got: Any, want: Any) -> str | None:
        if not isinstance(got, dict) or "adapted" not in got:
            return f"the result should be a dict of adapted parameters, got {type(got).__name__}"
        problem = compare_values(got["adapted"], want["adapted"], 1e-6, 1e-9, path="adapted")
        if problem:
            return problem
        if got["meta_gradient"] is None:
            return ("the adapted parameters are not connected to the starting parameters in the autograd "
                    "graph, so the outer loop cannot differentiate through your step")
        if compare_values(got["meta_gradient"], want["meta_gradient"], 1e-5, 1e-9) is not None:
            return ("the values are right, but the gradient of a query loss through your step with respect "
                    "to the start differs from second-order MAML's: the inner gradient was treated as a constant")
        return None

    def diagnose(case: Case, got: Any, want: Any) -> str | None:
        if not isinstance(got, dict) or "adapted" not in got:
            return None
        if compare_values(got["adapted"], want["adapted"], 1e-6, 1e-9) is not None:
            return None
        if got["meta_gradient"] is None:
            return ("compute the new values from params themselves (no .detach(), no torch.no_grad(), "
                    "no in-place update), with create_graph=True in torch.autograd.grad")
        return "pass create_graph=True to torch.autograd.grad so the step itself can be differentiated"


    return run_check("sgd_step", _ThroughStep(fn), _ThroughStep(_sgd_step_reference),
                     make_cases(3, len(rates), case), compare=compare, diagnose=diagnose,
                     hint="new value = params[k] - lr * (gradient of the support MSE, F.mse_loss of "
                          "functional_call(model, params, (x,)) and y, with respect to params[k]); "
                          "a step *down* the gradient, one entry per key")


def _adaptation_curve_reference(model, params, support_x, support_y, query_x, query_y, steps, lr):
    batch = TaskBatch(support_x[None], support_y[None], query_x[None], query_y[None])
    return adaptation_curve(model, params, batch, steps, lr)


def check_adaptation_curve(fn: Callable) -> CheckResult:
    """Check ``fn(model, params, support_x, support_y, query_x, query_y, steps, lr) -> curve``.

    One task's adaptation curve: ``curve[k]`` is the query MSE after ``k`` plain SGD steps (rate
    ``lr``) on the support MSE, starting from ``params``, for ``k = 0, 1, ..., steps``; so the
    result has ``steps + 1`` numbers (a 1-D tensor, a list or an array) and ``curve[0]`` is the
    query MSE of the start itself. ``model`` is a float64 ``SineMLP``, ``params`` a dict of leaf
    tensors, ``support_x, support_y [K, 1]``, ``query_x, query_y [Q, 1]``. Tolerance 1e-5 relative.
    """
    settings = [(3, 0.01), (1, 0.1), (0, 0.05), (5, 0.02)]

    def case(gen: torch.Generator, i: int) -> Case:
        model, params, sx, sy, qx, qy = _sine_task(gen, 10, 20)
        steps, lr = settings[i]
        return Case((model, params, sx, sy, qx, qy, steps, lr),
                    label=f"SineMLP(hidden=8), support [10, 1], query [20, 1], steps={steps}, lr={lr}")

    def diagnose(case: Case, got: Any, want: Any) -> str | None:
        t = _to_tensor(got)
        if t is None:
            return None
        steps = case.args[6]
        if t.numel() == steps:
            return "return steps + 1 numbers: the query MSE before any step, then after each of the steps"
        if t.numel() == steps + 1:
            model, params, sx, sy = case.args[:4]
            on_support = _adaptation_curve_reference(model, params, sx, sy, sx, sy, steps, case.args[7])
            if compare_values(t, on_support, 1e-5, 1e-8) is None:
                return "train on the support set but measure the curve on the query set"
        return None

    return run_check("adaptation_curve", fn, _adaptation_curve_reference, make_cases(4, len(settings), case),
                     rtol=1e-5, atol=1e-8, diagnose=diagnose,
                     hint="keep a dict `current` = params; for k in 0..steps: record the query MSE of `current` "
                          "(under torch.no_grad()), then, if k < steps, replace `current` by one SGD step on the "
                          "support MSE (torch.autograd.grad, then p - lr * g, detached)")


__all__ = ["check_sgd_step", "check_adaptation_curve"]
