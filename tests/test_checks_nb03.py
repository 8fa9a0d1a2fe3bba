"""Checks of notebook 03 (inner loop): pass on correct answers, fail on plausible mistakes."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from mllib import checks
from mllib.inner import adapt


pytestmark = pytest.mark.usefixtures("lenient_checks")


def _mse(model, params, x, y):
    return F.mse_loss(functional_call(model, params, (x,)), y)


# ---------------------------------------------------------------- sgd_step
def step_right(model, params, x, y, lr):
    grads = torch.autograd.grad(_mse(model, params, x, y), list(params.values()), create_graph=True)
    return {name: p - lr * g for (name, p), g in zip(params.items(), grads)}


def step_with_torch_func(model, params, x, y, lr):
    grads = torch.func.grad(lambda p: _mse(model, p, x, y))(params)
    return {name: p - lr * grads[name] for name, p in params.items()}


def step_first_order(model, params, x, y, lr):
    grads = torch.autograd.grad(_mse(model, params, x, y), list(params.values()))
    return {name: p - lr * g for (name, p), g in zip(params.items(), grads)}


def step_detached(model, params, x, y, lr):
    grads = torch.autograd.grad(_mse(model, params, x, y), list(params.values()))
    return {name: (p - lr * g).detach() for (name, p), g in zip(params.items(), grads)}


def step_ascent(model, params, x, y, lr):
    grads = torch.autograd.grad(_mse(model, params, x, y), list(params.values()), create_graph=True)
    return {name: p + lr * g for (name, p), g in zip(params.items(), grads)}


def step_missing_key(model, params, x, y, lr):
    out = step_right(model, params, x, y, lr)
    out.pop("head.bias")
    return out


def step_unfinished(model, params, x, y, lr):
    raise NotImplementedError()


@pytest.mark.parametrize("fn", [step_right, step_with_torch_func])
def test_sgd_step_passes(fn):
    result = checks.check_sgd_step(fn)
    assert result and result.status == "passed", result.message


@pytest.mark.parametrize("fn, words", [
    (step_first_order, "keep the graph of the gradient computation"),
    (step_detached, "not connected"),
    (step_ascent, "adapted["),
    (step_missing_key, "missing ['head.bias']"),
])
def test_sgd_step_mistakes_fail(fn, words):
    result = checks.check_sgd_step(fn)
    assert not result and result.status == "failed", result.message
    assert words in result.message


def test_sgd_step_error_names_learner_line():
    def step_typo(model, params, x, y, lr):
        return {name: p - lr * undefined_name for name, p in params.items()}  # noqa: F821

    result = checks.check_sgd_step(step_typo)
    assert result.status == "error" and "NameError" in result.message and "line" in result.message
    assert checks.check_sgd_step(step_unfinished).status == "not_implemented"


# ---------------------------------------------------------------- adaptation_curve
def curve_right(model, params, support_x, support_y, query_x, query_y, steps, lr):
    current, curve = params, []
    for k in range(steps + 1):
        with torch.no_grad():
            curve.append(_mse(model, current, query_x, query_y).item())
        if k < steps:
            grads = torch.autograd.grad(_mse(model, current, support_x, support_y), list(current.values()))
            current = {n: (p - lr * g).detach().requires_grad_(True) for (n, p), g in zip(current.items(), grads)}
    return curve


def curve_with_adapt(model, params, support_x, support_y, query_x, query_y, steps, lr):
    loss = lambda p, data: _mse(model, p, *data)  # noqa: E731
    return torch.stack([_mse(model, adapt(params, loss, (support_x, support_y), k, lr, evaluation=True),
                             query_x, query_y) for k in range(steps + 1)])


def curve_no_start(model, params, support_x, support_y, query_x, query_y, steps, lr):
    return curve_right(model, params, support_x, support_y, query_x, query_y, steps, lr)[1:]


def curve_on_support(model, params, support_x, support_y, query_x, query_y, steps, lr):
    return curve_right(model, params, support_x, support_y, support_x, support_y, steps, lr)


def curve_trains_on_query(model, params, support_x, support_y, query_x, query_y, steps, lr):
    return curve_right(model, params, query_x, query_y, query_x, query_y, steps, lr)


def curve_unfinished(*args):
    raise NotImplementedError()


def test_adaptation_curve_refuses_the_library_adapt():
    result = checks.check_adaptation_curve(curve_with_adapt)   # right values, but mllib.inner.adapt did the work
    assert not result and "the course library's own version" in result.message


@pytest.mark.parametrize("fn", [curve_right])
def test_adaptation_curve_passes(fn):
    result = checks.check_adaptation_curve(fn)
    assert result and result.status == "passed", result.message


@pytest.mark.parametrize("fn, words", [
    (curve_no_start, "steps + 1 numbers"),
    (curve_on_support, "measure the curve on the query set"),
    (curve_trains_on_query, "differs"),
])
def test_adaptation_curve_mistakes_fail(fn, words):
    result = checks.check_adaptation_curve(fn)
    assert not result and result.status == "failed", result.message
    assert words in result.message


def test_adaptation_curve_not_implemented_and_fast():
    import time
    start = time.perf_counter()
    assert checks.check_adaptation_curve(curve_unfinished).status == "not_implemented"
    assert checks.check_adaptation_curve(curve_right)
    assert checks.check_sgd_step(step_right)
    assert time.perf_counter() - start < 5
