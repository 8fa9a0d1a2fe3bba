"""Checks of notebook 08: the REINFORCE loss with a baseline and the differentiable policy-gradient step."""
import pytest
import torch

from mllib import checks

from conftest import notebook_reference
from mllib.rl import reinforce_loss

pytestmark = pytest.mark.usefixtures("lenient_checks")


def to_go(r):
    return r.flip(-1).cumsum(-1).flip(-1)


def loss_right(log_probs, rewards, baseline):
    G = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(rewards.shape[1])):       # a loop, not the library's flip/cumsum
        running = running + rewards[:, t]
        G[:, t] = running
    return -(log_probs * (G - baseline)).sum(1).mean()


def loss_no_minus(lp, r, b):
    return (lp * (to_go(r) - b)).sum(-1).mean()


def loss_no_baseline(lp, r, b):
    return -(lp * to_go(r)).sum(-1).mean()


def loss_immediate_reward(lp, r, b):
    return -(lp * (r - b)).sum(-1).mean()


def loss_whole_return(lp, r, b):
    return -(lp * (r.sum(-1, keepdim=True) - b)).sum(-1).mean()


def loss_sum_over_episodes(lp, r, b):
    return -(lp * (to_go(r) - b)).sum()


def loss_mean_over_time(lp, r, b):
    return -(lp * (to_go(r) - b)).mean()


def step_right(params, loss_fn, episodes, lr):
    grads = torch.autograd.grad(loss_fn(params, episodes), list(params.values()), create_graph=True)
    return {k: p - lr * g for (k, p), g in zip(params.items(), grads)}


def step_func_grad(params, loss_fn, episodes, lr):
    grads = torch.func.grad(loss_fn)(params, episodes)
    return {k: params[k] - lr * grads[k] for k in params}


def step_uphill(params, loss_fn, episodes, lr):
    grads = torch.func.grad(loss_fn)(params, episodes)
    return {k: params[k] + lr * grads[k] for k in params}


def step_first_order(params, loss_fn, episodes, lr):
    grads = torch.autograd.grad(loss_fn(params, episodes), list(params.values()))   # no create_graph
    return {k: p - lr * g for (k, p), g in zip(params.items(), grads)}


def step_detached(params, loss_fn, episodes, lr):
    grads = torch.func.grad(loss_fn)(params, episodes)
    return {k: (params[k] - lr * grads[k]).detach() for k in params}


def step_only_some_keys(params, loss_fn, episodes, lr):
    grads = torch.func.grad(loss_fn)(params, episodes)
    return {k: params[k] - lr * grads[k] for k in params if k != "log_std"}


def step_crashes(params, loss_fn, episodes, lr):
    return {k: params[k] - lr * missing_name for k in params}  # noqa: F821


def unfinished(*args):
    raise NotImplementedError()


def test_reference_is_the_library_loss():
    lp, r, b = torch.randn(3, 3, 4, dtype=torch.float64)
    assert torch.equal(notebook_reference("reinforce_loss")(lp, r, b), reinforce_loss(lp, r, b))
    assert torch.allclose(loss_right(lp, r, b), reinforce_loss(lp, r, b))


@pytest.mark.parametrize("check,fn", [(checks.check_reinforce_loss, loss_right),
                                      (checks.check_adapted_policy, step_right),
                                      (checks.check_adapted_policy, step_func_grad)])
def test_pass_correct_implementations(check, fn, capsys):
    result = check(fn)
    assert result and result.passed == result.total
    assert "✅" in capsys.readouterr().out


@pytest.mark.parametrize("check,fn,words", [
    (checks.check_reinforce_loss, loss_no_minus, "*minus* the surrogate"),
    (checks.check_reinforce_loss, loss_no_baseline, "subtract the baseline"),
    (checks.check_reinforce_loss, loss_immediate_reward, "not by that step's reward alone"),
    (checks.check_reinforce_loss, loss_whole_return, "whole episode"),
    (checks.check_reinforce_loss, loss_sum_over_episodes, "*average* over the episodes"),
    (checks.check_reinforce_loss, loss_mean_over_time, "shrinks the gradient"),
    (checks.check_adapted_policy, step_uphill, "step *down*"),
    (checks.check_adapted_policy, step_first_order, "keep the graph through it"),
    (checks.check_adapted_policy, step_detached, "cut off from params"),
    (checks.check_adapted_policy, step_only_some_keys, "every key of params"),
])
def test_fail_plausible_mistakes_with_a_hint(check, fn, words, capsys):
    result = check(fn)
    assert not result and result.status == "failed"
    assert words in capsys.readouterr().out


def test_an_error_names_the_learners_line(capsys):
    result = checks.check_adapted_policy(step_crashes)
    out = capsys.readouterr().out
    assert result.status == "error" and "NameError" in out and "(line " in out and "missing_name" in out


@pytest.mark.parametrize("check", [checks.check_reinforce_loss, checks.check_adapted_policy])
def test_not_implemented_and_not_a_function(check, capsys):
    assert check(unfinished).status == "not_implemented"
    assert "⏳" in capsys.readouterr().out
    assert check(3).status == "error"


def test_strict_mode_raises(monkeypatch):
    monkeypatch.setenv(checks.STRICT_ENV, "1")
    with pytest.raises(AssertionError, match="reinforce_loss"):
        checks.check_reinforce_loss(loss_no_baseline)


def test_the_second_hint_of_reinforce_asks_the_questions_without_giving_the_recipe():
    reasoning = checks.hints.hints_of("reinforce_loss").reasoning
    for recipe in ("rewards-to-go", "subtract the baseline", "average over the episodes", "flip the sign", "sum of"):
        assert recipe not in reasoning, recipe
