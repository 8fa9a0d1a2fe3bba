"""Checks of notebook 04, outer loop: ``check_task_meta_gradient``, ``check_reptile_update``."""
from __future__ import annotations

import copy
from typing import Any, Callable

import torch

from mllib.algorithms import support_loss_fn
from mllib.inner import adapt
from mllib.models import call_model

from .core import Case, CheckResult, compare_values, make_cases, random_tensor, run_check
from .sine_inputs import _sine_task


def _task_meta_gradient_reference(model, params, support_x, support_y, query_x, query_y, inner_lr, first_order):
    adapted = adapt(params, support_loss_fn(model), (support_x, support_y), 1, inner_lr, first_order=first_order)
    loss = torch.nn.functional.mse_loss(call_model(model, adapted, query_x), query_y)
    return dict(zip(params, torch.autograd.grad(loss, list(params.values()))))


def check_task_meta_gradient(fn: Callable) -> CheckResult:
    """Check ``fn(model, params, support_x, support_y, query_x, query_y, inner_lr, first_order) -> grads``.

    One task of MAML with ONE inner step: ``adapted = params - inner_lr * grad(support MSE)``,
    then ``grads[k] = d (query MSE of adapted) / d params[k]`` (a dict with the keys of ``params``).
    ``first_order=False``: second-order MAML, the gradient flows through the inner gradient
    (``create_graph=True``). ``first_order=True``: first-order MAML, the inner gradient is a
    constant (detached), so ``grads`` is the query gradient evaluated at ``adapted``.
    ``model`` is a float64 ``SineMLP(hidden=8)``, ``params`` a dict of leaf tensors requiring grad,
    ``support_x, support_y [K, 1]``, ``query_x, query_y [Q, 1]``; tolerance 1e-6 relative.
    """
    settings = [(0.1, False), (0.1, True), (0.5, False), (0.03, True), (0.3, False), (0.3, True)]

    def case(gen: torch.Generator, i: int) -> Case:
        model, params, sx, sy, qx, qy = _sine_task(gen, 10, 10)
        lr, first_order = settings[i]
        return Case((model, params, sx, sy, qx, qy, lr, first_order),
                    label=f"SineMLP(hidden=8), support/query [10, 1], inner_lr={lr}, first_order={first_order}")

    def diagnose(case: Case, got: Any, want: Any) -> str | None:
        if not isinstance(got, dict) or set(got) != set(want):
            return "return a dict {name: gradient} with the keys of params (e.g. dict(zip(params, grads)))"
        *args, lr, first_order = case.args
        other = _task_meta_gradient_reference(*copy.deepcopy(args), lr, not first_order)
        if compare_values(got, other, 1e-6, 1e-9) is None:
            if first_order:
                return "first_order=True must treat the inner gradient as a constant: detach it (or no create_graph)"
            return ("this is the first-order answer: with first_order=False pass create_graph=True to the inner "
                    "torch.autograd.grad so the outer gradient flows through it")
        model, params, sx, sy, qx, qy = copy.deepcopy(args)
        loss = torch.nn.functional.mse_loss(call_model(model, params, qx), qy)
        plain = dict(zip(params, torch.autograd.grad(loss, list(params.values()))))
        if compare_values(got, plain, 1e-6, 1e-9) is None:
            return "adapt first: take the inner SGD step on the support set, then the query loss of the adapted params"
        return None

    return run_check("task_meta_gradient", fn, _task_meta_gradient_reference, make_cases(40, len(settings), case),
                     rtol=1e-6, atol=1e-9, diagnose=diagnose,
                     hint="inner: g = torch.autograd.grad(support MSE, params, create_graph=not first_order); "
                          "adapted = p - inner_lr * g (detach g when first_order); outer: "
                          "torch.autograd.grad(query MSE of adapted, params)")


def _reptile_update_reference(params, adapted, epsilon):
    return {k: p.detach() + epsilon * (sum(a[k].detach() for a in adapted) / len(adapted) - p.detach())
            for k, p in params.items()}


def check_reptile_update(fn: Callable) -> CheckResult:
    """Check ``fn(params, adapted, epsilon) -> new_params``: Reptile's meta-update of a meta-batch.

    ``params``: a dict of tensors (the current start); ``adapted``: a list of dicts with the same
    keys and shapes, one per task (the parameters after the task's inner SGD); ``epsilon``: the
    outer step size. ``new_params[k] = params[k] + epsilon * (mean over tasks of adapted[i][k] - params[k])``.
    Tolerance 1e-6 relative.
    """
    def case(gen: torch.Generator, i: int) -> Case:
        tasks = [1, 3, 4, 2, 5][i]
        params = {"w": random_tensor(gen, 4, 3), "b": random_tensor(gen, 4)}
        adapted = [{k: p + 0.3 * random_tensor(gen, *p.shape) for k, p in params.items()} for _ in range(tasks)]
        eps = [0.1, 0.5, 1.0, 0.25, 0.05][i]
        return Case((params, adapted, eps),
                    label=f"params {{'w': [4, 3], 'b': [4]}}, a list of {tasks} adapted dict(s), epsilon={eps}")

    def diagnose(case: Case, got: Any, want: Any) -> str | None:
        params, adapted, eps = case.args
        if not isinstance(got, dict) or set(got) != set(params):
            return "return a dict with the keys of params"
        guesses = {
            "move TOWARDS the adapted parameters: params + epsilon * (adapted - params), not minus":
                {k: p - eps * (sum(a[k] for a in adapted) / len(adapted) - p) for k, p in params.items()},
            "average the tasks' adapted parameters (divide the sum by the number of tasks)":
                {k: p + eps * (sum(a[k] for a in adapted) - p) for k, p in params.items()},
            "use every task of the meta-batch, not only the last one":
                {k: p + eps * (adapted[-1][k] - p) for k, p in params.items()},
        }
        for text, guess in guesses.items():
            if len(adapted) > 1 or "TOWARDS" in text:
                if compare_values(got, guess, 1e-6, 1e-9) is None:
                    return text
        return None

    return run_check("reptile_update", fn, _reptile_update_reference, make_cases(41, 5, case),
                     diagnose=diagnose,
                     hint="for each key: mean of the tasks' adapted values, then params + epsilon * (mean - params)")


__all__ = ["check_task_meta_gradient", "check_reptile_update"]
