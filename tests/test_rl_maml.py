"""mllib.rl.maml: the inner step, the meta-gradient estimators (exact and finite-difference checks), training."""
import math

import numpy as np
import pytest
import torch

import mllib.rl.maml as rl_maml
from mllib.inner import adapt
from mllib.models import params_of
from mllib.rl import (ESTIMATORS, GaussianMLPPolicy, PointNavigation, adapt_policies, adaptation_returns,
                      joint_gradient, meta_gradient, meta_surrogate, meta_train, policy_loss_fn,
                      pretrain_joint, rollout, sample_meta_batch, seeded_policy,
                      tuned_adaptation_returns)

pytestmark = pytest.mark.usefixtures("one_thread")
D = torch.float64


def tiny(horizon=3, hidden=(3,), tasks=2, episodes=3, seed=0):
    env = PointNavigation(horizon=horizon)
    policy = seeded_policy(seed, dtype=D, hidden=hidden, init_std=0.2)
    goals = env.sample_goals(tasks, torch.Generator().manual_seed(seed), D)
    return env, policy, params_of(policy), goals, episodes


def test_adapt_policies_is_adapt_per_task():
    env, policy, params, goals, episodes = tiny()
    pre = rollout(policy, params, env, goals, episodes, torch.Generator().manual_seed(1))
    both = adapt_policies(policy, params, pre, 0.05, steps=2)
    again = adapt_policies(policy, both, pre, 0.05, per_task=True, evaluation=True)
    for i in range(goals.shape[0]):
        task = type(pre)(*(x[i] for x in pre))
        one = adapt(params, policy_loss_fn(policy), task, 2, 0.05)
        more = adapt(one, policy_loss_fn(policy), task, 1, 0.05)
        assert all(torch.allclose(both[k][i], one[k]) for k in params)
        assert all(torch.allclose(again[k][i], more[k]) for k in params)
    assert not any(v.requires_grad for v in again.values())
    with pytest.raises(ValueError, match="lr"):
        adapt_policies(policy, params, pre, 0.0)


# ----------------------------------------------------------------------------- the meta-gradient
def test_second_order_estimator_is_unbiased_against_the_exact_meta_gradient():
    """One step, squared-distance reward, no clipping, fixed std, 2 pre-update episodes per task.

    With mean ``b`` and ``a_i = b + sigma z_i``, the inner step on the leave-one-out REINFORCE loss is
    ``b' = b + alpha / 2 sum_i (z_i / sigma)(r_i - r_j)`` and ``J(b') = -(|b' - g|^2 + 2 sigma^2)``, a
    polynomial of degree 6 in ``z``: Gauss-Hermite quadrature with 5 nodes per dimension gives
    ``F(b) = E[J(b')]`` exactly, and autograd its gradient. The estimators are averaged over
    8 x 4000 tasks with the same goal; the unbiased one must agree within 4 standard errors, the
    two biased ones must not.
    """
    sigma, alpha = 0.5, 0.3
    b0, goal = torch.tensor([0.3, -0.2], dtype=D), torch.tensor([0.1, 0.25], dtype=D)
    x, w = np.polynomial.hermite_e.hermegauss(5)
    x, w = torch.tensor(x, dtype=D), torch.tensor(w, dtype=D) / math.sqrt(2 * math.pi)
    z = torch.stack(torch.meshgrid(x, x, x, x, indexing="ij"), -1).reshape(-1, 2, 2)       # [nodes, episode, dim]
    weight = torch.stack(torch.meshgrid(w, w, w, w, indexing="ij"), -1).reshape(-1, 4).prod(-1)

    def expected_post_return(b):
        r = -(b + sigma * z - goal).square().sum(-1)                                         # [nodes, 2]
        b_adapted = b + alpha / 2 * (z / sigma * (r - r.flip(-1))[..., None]).sum(1)
        return (weight * -((b_adapted - goal).square().sum(-1) + 2 * sigma ** 2)).sum()

    b = b0.clone().requires_grad_(True)
    (exact,) = torch.autograd.grad(expected_post_return(b), b)

    env = PointNavigation(horizon=1, max_speed=1e6, reward="squared")
    policy = GaussianMLPPolicy(hidden=(), init_std=sigma, learn_std=False).to(D)
    start = {**params_of(policy), "mean.bias": b0}
    goals, gen = goal.expand(4000, 2).clone(), torch.Generator().manual_seed(0)
    for estimator in ESTIMATORS:
        estimates = []
        for _ in range(8):
            params = {k: v.detach().clone().requires_grad_(True) for k, v in start.items()}
            pre, post = sample_meta_batch(policy, params, env, goals, 2, alpha, gen)
            loss = meta_surrogate(policy, params, pre, post, alpha, estimator)
            estimates.append(-torch.autograd.grad(loss, params["mean.bias"])[0])
        est = torch.stack(estimates)
        z_score = ((est.mean(0) - exact) / (est.std(0) / math.sqrt(len(est)))).abs().max()
        if estimator == "second_order":
            assert z_score < 4, (estimator, est.mean(0), exact)
        else:
            assert z_score > 8, (estimator, est.mean(0), exact)


@pytest.mark.parametrize("estimator", ["second_order", "no_sampling_term"])
def test_meta_surrogate_gradient_matches_finite_differences_with_common_random_numbers(estimator):
    """With the sampled episodes held fixed (common random numbers), the surrogate is a smooth function
    of theta; its autograd gradient (through the inner gradient) must match central differences."""
    env, policy, params, goals, episodes = tiny()
    pre, post = sample_meta_batch(policy, params, env, goals, episodes, 0.05, torch.Generator().manual_seed(2))
    leaves = {k: v.detach().requires_grad_(True) for k, v in params.items()}
    grads = torch.autograd.grad(meta_surrogate(policy, leaves, pre, post, 0.05, estimator), list(leaves.values()))
    gen = torch.Generator().manual_seed(3)
    for _ in range(3):
        direction = {k: torch.randn(v.shape, generator=gen, dtype=D) for k, v in params.items()}
        eps = 1e-5
        with torch.no_grad():
            plus, minus = (meta_surrogate(policy, {k: v + sign * eps * direction[k] for k, v in params.items()},
                                          pre, post, 0.05, estimator) for sign in (1, -1))
        numeric = float((plus - minus) / (2 * eps))
        analytic = sum(float((g * direction[k]).sum()) for g, k in zip(grads, params))
        assert analytic == pytest.approx(numeric, rel=1e-6, abs=1e-9)


def test_first_order_is_the_post_update_policy_gradient_at_the_adapted_parameters():
    env, policy, params, goals, episodes = tiny()
    pre, post = sample_meta_batch(policy, params, env, goals, episodes, 0.05, torch.Generator().manual_seed(2))
    leaves = {k: v.detach().requires_grad_(True) for k, v in params.items()}
    got = torch.autograd.grad(meta_surrogate(policy, leaves, pre, post, 0.05, "first_order"), list(leaves.values()))
    adapted = adapt_policies(policy, params, pre, 0.05, evaluation=True)
    adapted = {k: v.detach().requires_grad_(True) for k, v in adapted.items()}
    want = torch.autograd.grad(policy_loss_fn(policy, per_task=True)(adapted, post), list(adapted.values()))
    for g, w in zip(got, want):
        assert torch.allclose(g, w.sum(0))
    second = torch.autograd.grad(meta_surrogate(policy, leaves, pre, post, 0.05, "no_sampling_term"),
                                 list(leaves.values()))
    assert not all(torch.allclose(g, s) for g, s in zip(got, second))


def test_meta_gradient_and_joint_gradient_return_every_parameter_and_the_returns():
    env, policy, params, goals, episodes = tiny()
    gen = torch.Generator().manual_seed(4)
    grads, stats = meta_gradient(policy, params, env, goals, episodes, 0.05, "second_order", gen)
    assert set(grads) == set(params) and all(torch.isfinite(g).all() for g in grads.values())
    assert set(stats) == {"return_before", "return_after"}
    pre, post = sample_meta_batch(policy, params, env, goals, episodes, 0.05, torch.Generator().manual_seed(4))
    assert stats["return_before"] == pytest.approx(float(pre.returns().mean()))
    assert stats["return_after"] == pytest.approx(float(post.returns().mean()))
    grads, stats = joint_gradient(policy, params, env, goals, episodes, torch.Generator().manual_seed(5))
    batch = rollout(policy, params, env, goals, episodes, torch.Generator().manual_seed(5))
    leaves = {k: v.detach().requires_grad_(True) for k, v in params.items()}
    want = torch.autograd.grad(policy_loss_fn(policy)(leaves, batch), list(leaves.values()))
    assert all(torch.allclose(grads[k], w) for k, w in zip(params, want))
    assert stats["return"] == pytest.approx(float(batch.returns().mean()))
    with pytest.raises(ValueError, match="estimator"):
        meta_gradient(policy, params, env, goals, episodes, 0.05, "dice")
    with pytest.raises(ValueError, match="episodes"):
        meta_gradient(policy, params, env, goals, 0, 0.05)


# ----------------------------------------------------------------------------- training and evaluation
def small_run(iterations, resume=None, estimator="first_order", seed=0):
    env = PointNavigation(horizon=3)
    policy = seeded_policy(0, hidden=(8,), init_std=0.2)
    return meta_train(policy, env, iterations, meta_batch=2, episodes=2, inner_lr=0.01, meta_lr=0.01,
                      estimator=estimator, seed=seed, resume=resume, progress=False)


def test_meta_train_is_seeded_and_resumes_exactly():
    straight = small_run(4)
    again = small_run(4)
    resumed = small_run(4, resume=small_run(2))
    assert straight.iterations_done == resumed.iterations_done == 4 and not straight.interrupted
    assert straight.history == again.history == resumed.history
    assert set(straight.history) == {"iteration", "return_before", "return_after"}
    assert all(torch.equal(straight.params[k], resumed.params[k]) for k in straight.params)
    start = dict(seeded_policy(0, hidden=(8,), init_std=0.2).named_parameters())
    assert any(not torch.equal(straight.params[k], start[k]) for k in start)
    assert not all(torch.equal(straight.params[k], small_run(4, seed=1).params[k]) for k in start)
    with pytest.raises(ValueError, match="other settings"):
        small_run(4, resume=small_run(2), estimator="second_order")


def test_meta_train_stops_cleanly_on_ctrl_c(monkeypatch):
    calls = []
    real = rl_maml.meta_gradient

    def interrupted_at_the_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(rl_maml, "meta_gradient", interrupted_at_the_third)
    run = small_run(5)
    assert run.interrupted and run.iterations_done == 2 and len(run.history["iteration"]) == 2
    monkeypatch.setattr(rl_maml, "meta_gradient", real)
    assert small_run(5, resume=run).iterations_done == 5


def test_pretrain_joint_is_seeded_resumable_and_validated():
    env = PointNavigation(horizon=3)

    def run(iterations, resume=None):
        return pretrain_joint(seeded_policy(0, hidden=(8,)), env, iterations, meta_batch=2, episodes=2, lr=0.01,
                              resume=resume, progress=False)

    straight, resumed = run(3), run(3, resume=run(1))
    assert straight.history == resumed.history and set(straight.history) == {"iteration", "return"}
    assert all(torch.equal(straight.params[k], resumed.params[k]) for k in straight.params)
    with pytest.raises(ValueError, match="iterations"):
        run(-1)
    with pytest.raises(ValueError, match="meta_lr"):
        pretrain_joint(seeded_policy(0, hidden=(8,)), env, 1, lr=0.0)


def test_adaptation_returns_shapes_and_stages():
    env, policy, params, goals, episodes = tiny(tasks=3)
    returns, stages = adaptation_returns(policy, params, env, goals, episodes, steps=2, lr=0.05,
                                         generator=torch.Generator().manual_seed(6))
    assert returns.shape == (3, 3) and len(stages) == 3
    gen = torch.Generator().manual_seed(6)
    first = rollout(policy, params, env, goals, episodes, gen)
    assert torch.allclose(returns[:, 0], first.returns().mean(1))
    adapted = adapt_policies(policy, params, first, 0.05, evaluation=True)
    second = rollout(policy, adapted, env, goals, episodes, gen, per_task=True)
    assert torch.allclose(returns[:, 1], second.returns().mean(1))
    assert torch.equal(stages[1].actions, second.actions)
    zero, _ = adaptation_returns(policy, params, env, goals, episodes, steps=0, lr=0.05)
    assert zero.shape == (3, 1)
    with pytest.raises(ValueError, match="steps"):
        adaptation_returns(policy, params, env, goals, episodes, steps=-1)



def test_tuned_adaptation_returns_uses_the_best_validation_step_size_per_budget():
    env, policy, params, goals, episodes = tiny(tasks=4)
    validation = env.sample_goals(3, torch.Generator().manual_seed(11), D)
    lrs = [0.001, 0.05, 0.3]
    got, chosen = tuned_adaptation_returns(policy, params, env, validation, goals, lrs, episodes, steps=2, seed=9)
    assert got.shape == (4, 3) and chosen[0] is None and len(chosen) == 3
    val = {lr: adaptation_returns(policy, params, env, validation, episodes, 2, lr,
                                  torch.Generator().manual_seed(9))[0].mean(0) for lr in lrs}
    for k in (1, 2):
        assert chosen[k] == max(lrs, key=lambda lr: float(val[lr][k]))
        test, _ = adaptation_returns(policy, params, env, goals, episodes, 2, chosen[k],
                                     torch.Generator().manual_seed(10))
        assert torch.allclose(got[:, k], test[:, k]) and torch.allclose(got[:, 0], test[:, 0])
    with pytest.raises(ValueError, match="lrs"):
        tuned_adaptation_returns(policy, params, env, validation, goals, [], episodes)
    with pytest.raises(ValueError, match="lrs"):
        tuned_adaptation_returns(policy, params, env, validation, goals, [0.1, -1.0], episodes)
    with pytest.raises(ValueError, match="steps"):
        tuned_adaptation_returns(policy, params, env, validation, goals, [0.1], episodes, steps=0)
