"""Checks of notebook 07: one learned-optimizer update and the attention over the support set."""
from __future__ import annotations

import math

import pytest
import torch

from mllib import checks

from conftest import notebook_reference
from mllib.incontext import attend
from mllib.learned_optimizer import LearnedOptimizer

pytestmark = pytest.mark.usefixtures("lenient_checks")


def mlp(features, w, relu=True):
    act = torch.relu if relu else (lambda t: t)
    h = act(features @ w["w1"].T + w["b1"])
    h = act(h @ w["w2"].T + w["b2"])
    return (h @ w["w3"].T + w["b3"])[:, 0]


def update_right(features, grad, weights, lr, scale):
    return -lr * grad + scale * mlp(features, weights)


def update_plus(features, grad, weights, lr, scale):
    return lr * grad + scale * mlp(features, weights)


def update_network_only(features, grad, weights, lr, scale):
    return scale * mlp(features, weights)


def update_no_relu(features, grad, weights, lr, scale):
    return -lr * grad + scale * mlp(features, weights, relu=False)


def update_no_scale(features, grad, weights, lr, scale):
    return -lr * grad + mlp(features, weights)


def attention_right(query, keys, values):
    return torch.softmax(query @ keys.T / math.sqrt(query.shape[-1]), dim=-1) @ values


def attention_unscaled(query, keys, values):
    return torch.softmax(query @ keys.T, dim=-1) @ values


def attention_wrong_axis(query, keys, values):
    return torch.softmax(query @ keys.T / math.sqrt(query.shape[-1]), dim=0) @ values


def attention_no_softmax(query, keys, values):
    return query @ keys.T / math.sqrt(query.shape[-1]) @ values


def unfinished(*args):
    raise NotImplementedError()


def test_learned_update_reference_is_the_library_rule():
    torch.manual_seed(0)
    opt = LearnedOptimizer(hidden=6, lr=0.03, output_scale=0.2).double()
    with torch.no_grad():
        opt.mlp[-1].weight.normal_()
        opt.mlp[-1].bias.normal_()
    layers = [m for m in opt.mlp if isinstance(m, torch.nn.Linear)]
    weights = {}
    for i, layer in enumerate(layers, start=1):
        weights[f"w{i}"], weights[f"b{i}"] = layer.weight.detach(), layer.bias.detach()
    features, grad = torch.randn(9, 4, dtype=torch.float64), torch.randn(9, dtype=torch.float64)
    want = opt(features, grad).detach()
    got = notebook_reference("learned_update")(features, grad, weights, math.exp(float(opt.log_lr.detach())), 0.2)
    assert torch.allclose(got, want)


def test_support_attention_reference_is_the_library_attention():
    q, k, v = torch.randn(3, 4, dtype=torch.float64), torch.randn(6, 4, dtype=torch.float64), torch.randn(6, 2)
    assert torch.allclose(notebook_reference("support_attention")(q, k, v.double()), attend(q, k, v.double()))


@pytest.mark.parametrize("check,fn", [(checks.check_learned_update, update_right),
                                      (checks.check_support_attention, attention_right)])
def test_pass_correct_implementations(check, fn, capsys):
    result = check(fn)
    assert result and result.passed == result.total
    assert "✅" in capsys.readouterr().out


@pytest.mark.parametrize("check,fn,words", [
    (checks.check_learned_update, update_plus, "against"),
    (checks.check_learned_update, update_network_only, "added to the SGD step"),
    (checks.check_learned_update, update_no_relu, "ReLU"),
    (checks.check_learned_update, update_no_scale, "scale"),
    (checks.check_support_attention, attention_unscaled, "square root of d"),
    (checks.check_support_attention, attention_wrong_axis, "over the support set"),
    (checks.check_support_attention, attention_no_softmax, "softmax"),
])
def test_fail_plausible_mistakes_with_a_hint(check, fn, words, capsys):
    result = check(fn)
    assert not result and result.status == "failed"
    assert words in capsys.readouterr().out


@pytest.mark.parametrize("check", [checks.check_learned_update, checks.check_support_attention])
def test_not_implemented(check, capsys):
    assert check(unfinished).status == "not_implemented"
    assert "⏳" in capsys.readouterr().out
