"""Checks of notebook 06: ANIL's head-only step (the Meta-SGD rates' meta-gradient: tests/test_exercises.py)."""
from __future__ import annotations

import pytest
import torch

from mllib import checks

from conftest import notebook_reference
from mllib.inner import adapt


pytestmark = pytest.mark.usefixtures("lenient_checks")


def anil_right(params, grads, lr, head):
    out = dict(params)
    for k in head:
        out[k] = params[k] - lr * grads[k]
    return out


def anil_everything(params, grads, lr, head):
    return {k: p - lr * grads[k] for k, p in params.items()}


def anil_head_only_keys(params, grads, lr, head):
    return {k: params[k] - lr * grads[k] for k in head}


def unfinished(*args):
    raise NotImplementedError()


def test_anil_reference_is_adapt_on_the_head():
    params = {"body.w": torch.randn(3, dtype=torch.float64), "head.w": torch.randn(3, dtype=torch.float64)}
    loss = lambda p, x: ((p["body.w"] * p["head.w"] * x).sum()).square()  # noqa: E731
    x = torch.randn(3, dtype=torch.float64)
    grads = torch.func.grad(loss)(params, x)
    want = adapt(params, loss, x, 1, 0.1, names=["head.w"], evaluation=True)
    got = notebook_reference("anil_step")(params, grads, 0.1, ["head.w"])
    assert all(torch.allclose(got[k], want[k]) for k in params)


@pytest.mark.parametrize("check,fn", [(checks.check_anil_step, anil_right)])
def test_pass_correct_implementations(check, fn, capsys):
    result = check(fn)
    assert result and result.passed == result.total
    assert "✅" in capsys.readouterr().out


@pytest.mark.parametrize("check,fn,words", [
    (checks.check_anil_step, anil_everything, "only the names in head"),
    (checks.check_anil_step, anil_head_only_keys, "keep the body"),
])
def test_fail_plausible_mistakes_with_a_hint(check, fn, words, capsys):
    result = check(fn)
    assert not result and result.status == "failed"
    assert words in capsys.readouterr().out


@pytest.mark.parametrize("check", [checks.check_metasgd_rate_gradient, checks.check_anil_step])
def test_not_implemented(check, capsys):
    assert check(unfinished).status == "not_implemented"
    assert "⏳" in capsys.readouterr().out


def test_the_second_hint_of_metasgd_asks_the_questions_without_giving_the_derivative():
    reasoning = checks.hints.hints_of("metasgd_rate_gradient").reasoning
    for recipe in ("minus", "multiplies", "at the adapted parameters", "-"):
        assert recipe not in reasoning, recipe
