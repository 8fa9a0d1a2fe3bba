"""mllib.rl: the point-navigation environment, the Gaussian policy, rollouts and the REINFORCE loss."""
import math

import pytest
import torch

from mllib.models import params_of
from mllib.rl import (Episodes, GaussianMLPPolicy, PointNavigation, gaussian_log_prob, leave_one_out_baseline,
                      log_probs, policy_distribution, policy_loss_fn, reinforce_loss, reward_to_go, rollout,
                      seeded_policy)

pytestmark = pytest.mark.usefixtures("one_thread")
D = torch.float64


# ----------------------------------------------------------------------------- environment
def test_step_clips_the_velocity_and_rewards_minus_the_distance():
    env = PointNavigation(max_speed=0.1)
    pos = torch.tensor([[[0.0, 0.0], [0.2, 0.1]]], dtype=D)            # 1 task, 2 episodes
    act = torch.tensor([[[0.3, -0.05], [-0.02, 0.5]]], dtype=D)
    goal = torch.tensor([[0.1, 0.1]], dtype=D)
    nxt, reward = env.step(pos, act, goal)
    # episode 0: velocity (0.1, -0.05) -> (0.1, -0.05); distance to (0.1, 0.1) = 0.15
    # episode 1: velocity (-0.02, 0.1) -> (0.18, 0.2); distance = sqrt(0.08^2 + 0.1^2)
    assert torch.allclose(nxt, torch.tensor([[[0.1, -0.05], [0.18, 0.2]]], dtype=D))
    assert torch.allclose(reward, torch.tensor([[-0.15, -math.sqrt(0.0064 + 0.01)]], dtype=D))
    _, squared = PointNavigation(max_speed=0.1, reward="squared").step(pos, act, goal)
    assert torch.allclose(squared, torch.tensor([[-0.0225, -0.0164]], dtype=D))


def test_goals_in_the_square_seeded_and_reset_at_the_origin():
    env = PointNavigation(goal_range=0.5)
    a = env.sample_goals(500, torch.Generator().manual_seed(3))
    b = env.sample_goals(500, torch.Generator().manual_seed(3))
    c = env.sample_goals(500, torch.Generator().manual_seed(4))
    assert a.shape == (500, 2) and torch.equal(a, b) and not torch.equal(a, c)
    assert a.abs().max() <= 0.5 and a.min() < -0.4 and a.max() > 0.4
    assert torch.equal(env.reset(a[:3], 4), torch.zeros(3, 4, 2))


@pytest.mark.parametrize("kwargs,words", [
    ({"horizon": 0}, "horizon"), ({"horizon": 2.0}, "horizon"), ({"max_speed": 0}, "max_speed"),
    ({"goal_range": -1.0}, "goal_range"), ({"goal_range": math.inf}, "goal_range"), ({"reward": "l1"}, "reward"),
])
def test_bad_environment_arguments(kwargs, words):
    with pytest.raises(ValueError, match=words):
        PointNavigation(**kwargs)


def test_bad_step_arguments():
    env = PointNavigation()
    with pytest.raises(ValueError, match="tasks"):
        env.sample_goals(0)
    with pytest.raises(ValueError, match="goals"):
        env.reset(torch.zeros(3), 2)
    with pytest.raises(ValueError, match="episodes"):
        env.reset(torch.zeros(3, 2), 0)
    with pytest.raises(ValueError, match="positions and actions"):
        env.step(torch.zeros(2, 3, 2), torch.zeros(2, 3), torch.zeros(2, 2))
    with pytest.raises(ValueError, match="one row per task"):
        env.step(torch.zeros(2, 3, 2), torch.zeros(2, 3, 2), torch.zeros(3, 2))


# ----------------------------------------------------------------------------- policy
def test_policy_shapes_names_and_log_prob_against_torch_distributions():
    policy = seeded_policy(0, dtype=D, hidden=(5, 4), init_std=0.3)
    assert sorted(params_of(policy)) == ["body.0.bias", "body.0.weight", "body.2.bias", "body.2.weight",
                                         "log_std", "mean.bias", "mean.weight"]
    obs = torch.randn(3, 6, 2, dtype=D)
    mean, log_std = policy_distribution(policy, params_of(policy), obs)
    assert mean.shape == log_std.shape == (3, 6, 2)
    assert torch.allclose(log_std, torch.full_like(log_std, math.log(0.3)))
    actions = torch.randn(3, 6, 2, dtype=D)
    want = torch.distributions.Normal(mean, log_std.exp()).log_prob(actions).sum(-1)
    assert torch.allclose(gaussian_log_prob(mean, log_std, actions), want)
    assert torch.allclose(log_probs(policy, params_of(policy), obs, actions), want)


def test_seeded_policy_is_reproducible_and_leaves_the_global_generator_alone():
    torch.manual_seed(0)
    before = torch.random.get_rng_state()
    a, b, c = seeded_policy(1), seeded_policy(1), seeded_policy(2)
    assert torch.equal(torch.random.get_rng_state(), before)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a.mean.weight, c.mean.weight)


def test_per_task_parameters_match_a_loop_over_tasks():
    policy = seeded_policy(0, dtype=D, hidden=(4,))
    base = params_of(policy)
    per_task = {k: torch.stack([v + 0.1 * i for i in range(3)]) for k, v in base.items()}
    obs = torch.randn(3, 5, 2, dtype=D)
    mean, log_std = policy_distribution(policy, per_task, obs, per_task=True)
    for i in range(3):
        m, s = policy_distribution(policy, {k: v[i] for k, v in per_task.items()}, obs[i])
        assert torch.allclose(mean[i], m) and torch.allclose(log_std[i], s)
    with pytest.raises(ValueError, match="leading task dimension"):
        policy_distribution(policy, per_task, obs[:2], per_task=True)


def test_fixed_std_is_a_buffer_not_a_parameter():
    policy = GaussianMLPPolicy(hidden=(), init_std=0.5, learn_std=False)
    assert sorted(params_of(policy)) == ["mean.bias", "mean.weight"]
    _, log_std = policy(torch.zeros(4, 2))
    assert torch.allclose(log_std, torch.full((4, 2), math.log(0.5)))


@pytest.mark.parametrize("kwargs,words", [
    ({"obs_dim": 0}, "obs_dim"), ({"action_dim": 1.5}, "action_dim"), ({"hidden": (4, 0)}, "hidden"),
    ({"init_std": 0.0}, "init_std"), ({"init_std": math.nan}, "init_std"),
])
def test_bad_policy_arguments(kwargs, words):
    with pytest.raises(ValueError, match=words):
        GaussianMLPPolicy(**kwargs)


# ----------------------------------------------------------------------------- rollouts
def test_rollout_shapes_consistency_and_seeding():
    env = PointNavigation(horizon=4)
    policy = seeded_policy(0, hidden=(8,), init_std=0.2)
    params = params_of(policy)
    goals = env.sample_goals(3, torch.Generator().manual_seed(0))
    a = rollout(policy, params, env, goals, 5, torch.Generator().manual_seed(1))
    b = rollout(policy, params, env, goals, 5, torch.Generator().manual_seed(1))
    assert isinstance(a, Episodes) and a.observations.shape == a.actions.shape == (3, 5, 4, 2)
    assert a.rewards.shape == a.log_probs.shape == (3, 5, 4) and a.returns().shape == (3, 5)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a.actions, rollout(policy, params, env, goals, 5, torch.Generator().manual_seed(2)).actions)
    # replaying the stored actions through the environment gives the stored positions and rewards
    pos = env.reset(goals, 5)
    for t in range(4):
        assert torch.equal(a.observations[:, :, t], pos)
        pos, r = env.step(pos, a.actions[:, :, t], goals)
        assert torch.allclose(a.rewards[:, :, t], r)
    assert torch.equal(a.final_positions, pos) and a.trajectories().shape == (3, 5, 5, 2)
    assert torch.allclose(a.log_probs, log_probs(policy, params, a.observations, a.actions))
    assert not a.log_probs.requires_grad


def test_rollout_with_one_policy_per_task_matches_separate_rollouts():
    env = PointNavigation(horizon=3)
    policy = seeded_policy(0, dtype=D, hidden=(4,))
    base = params_of(policy)
    per_task = {k: torch.stack([v, v + 0.3]) for k, v in base.items()}
    goals = torch.tensor([[0.2, 0.1], [-0.3, 0.4]], dtype=D)
    both = rollout(policy, per_task, env, goals, 2, torch.Generator().manual_seed(5), per_task=True)
    gen = torch.Generator().manual_seed(5)
    # the per-task rollout draws all tasks' noise at once; replay it task by task
    noise = [torch.randn(2, 2, 2, generator=gen, dtype=torch.float64) for _ in range(3)]
    for i in range(2):
        p = {k: v[i] for k, v in per_task.items()}
        pos = env.reset(goals[i:i + 1], 2)
        for t in range(3):
            mean, log_std = policy_distribution(policy, p, pos)
            act = mean + log_std.exp() * noise[t][i:i + 1]
            assert torch.allclose(both.actions[i, :, t], act[0])
            pos, _ = env.step(pos, act, goals[i:i + 1])


# ----------------------------------------------------------------------------- REINFORCE
def test_reward_to_go_and_leave_one_out_baseline_by_hand():
    r = torch.tensor([[1.0, 2.0, 3.0], [0.0, -1.0, 4.0], [2.0, 2.0, 2.0]], dtype=D)
    g = reward_to_go(r)
    assert torch.equal(g, torch.tensor([[6.0, 5.0, 3.0], [3.0, 3.0, 4.0], [6.0, 4.0, 2.0]], dtype=D))
    b = leave_one_out_baseline(r)
    assert torch.allclose(b[0], (g[1] + g[2]) / 2) and torch.allclose(b[2], (g[0] + g[1]) / 2)
    with pytest.raises(ValueError, match="episodes >= 2"):
        leave_one_out_baseline(r[:1])


def test_reinforce_loss_by_hand_and_its_gradient():
    lp = torch.tensor([[0.5, -1.0], [2.0, 0.25]], dtype=D, requires_grad=True)
    r = torch.tensor([[1.0, 2.0], [-1.0, 3.0]], dtype=D)
    b = torch.tensor([[0.5, 0.5], [1.0, 1.0]], dtype=D)
    # advantages G - b: [[2.5, 1.5], [1.0, 2.0]]
    loss = reinforce_loss(lp, r, b)
    assert loss.item() == pytest.approx(-((0.5 * 2.5 - 1.5) + (2.0 + 0.5)) / 2)
    (grad,) = torch.autograd.grad(loss, lp)
    assert torch.allclose(grad, -torch.tensor([[2.5, 1.5], [1.0, 2.0]], dtype=D) / 2)
    with pytest.raises(ValueError, match="one shape"):
        reinforce_loss(lp, r[:, :1], b)


def test_reinforce_gradient_is_unbiased_on_a_one_step_gaussian():
    """E[grad] = grad E[r] for r = -(a - g)^2, a ~ N(mu, 1): grad_mu = -2 (mu - g)."""
    torch.manual_seed(0)
    mu = torch.tensor(0.7, dtype=D, requires_grad=True)
    a = (mu.detach() + torch.randn(200000, 1, dtype=D))
    r = -(a - 0.2).square()
    lp = -0.5 * (a - mu).square()
    rewards = r.reshape(-1, 2, 1)                     # pairs of episodes: leave-one-out baseline
    (grad,) = torch.autograd.grad(reinforce_loss(lp.reshape(-1, 2, 1), rewards, leave_one_out_baseline(rewards)), mu)
    assert -grad.item() == pytest.approx(-2 * (0.7 - 0.2), abs=0.02)


def test_policy_loss_fn_is_reinforce_with_the_leave_one_out_baseline():
    env = PointNavigation(horizon=3)
    policy = seeded_policy(0, dtype=D, hidden=(4,))
    params = params_of(policy)
    ep = rollout(policy, params, env, env.sample_goals(2, torch.Generator().manual_seed(0), D), 3,
                 torch.Generator().manual_seed(1))
    want = reinforce_loss(log_probs(policy, params, ep.observations, ep.actions), ep.rewards,
                          leave_one_out_baseline(ep.rewards))
    assert torch.allclose(policy_loss_fn(policy)(params, ep), want)
