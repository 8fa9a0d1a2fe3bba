"""mllib.rl.rl2: the recurrent (RL^2) policy, its trials, its loss and its training loop."""
import pytest
import torch

from mllib.rl import PointNavigation
from mllib.rl.losses import reward_to_go
from mllib.rl.rl2 import (INPUT_DIM, RecurrentGaussianPolicy, load_rl2_policy, rl2_returns, rollout_trials,
                          seeded_rl2_policy, train_rl2, trial_log_probs, trial_loss)

pytestmark = pytest.mark.usefixtures("one_thread")
D = torch.float64
ENV = PointNavigation(horizon=5)


def _policy(seed=0):
    policy = seeded_rl2_policy(seed, D, hidden=8, init_std=0.3)
    with torch.no_grad():   # a larger recurrent weight: the hidden state matters visibly
        policy.gru.weight_hh_l0.mul_(3.0)
    return policy


def _goals(n=3, seed=1):
    return ENV.sample_goals(n, torch.Generator().manual_seed(seed), D)


def _noise(tasks, trials, episodes, seed=2):
    return torch.randn(tasks, trials, episodes, ENV.horizon, 2, generator=torch.Generator().manual_seed(seed), dtype=D)


def test_hidden_state_is_carried_across_the_episodes_of_a_trial():
    policy, goals = _policy(), _goals()
    batch = rollout_trials(policy, ENV, goals, 2, 3, noise=_noise(3, 2, 3))
    # the step-by-step rollout and one GRU pass over the whole trial from a zero state agree...
    assert torch.allclose(batch.log_probs, trial_log_probs(policy, batch), atol=1e-10)
    # ...and the second episode from a fresh state would be a different policy: the state matters
    h = ENV.horizon
    second = batch._replace(inputs=batch.inputs[:, :, h:2 * h], actions=batch.actions[:, :, h:2 * h])
    assert (trial_log_probs(policy, second) - batch.log_probs[:, :, h:2 * h]).abs().max() > 1e-3
    # every episode restarts at the origin and its first input carries the start flag
    assert torch.equal(batch.positions[:, :, :, 0], torch.zeros(3, 2, 3, 2, dtype=D))
    flags = batch.inputs[..., -1].reshape(3, 2, 3, h)
    assert torch.equal(flags[..., 0], torch.ones(3, 2, 3, dtype=D)) and flags[..., 1:].abs().sum() == 0


def test_hidden_state_is_reset_between_tasks():
    policy, goals, noise = _policy(), _goals(), _noise(3, 1, 2)
    together = rollout_trials(policy, ENV, goals, 1, 2, noise=noise)
    rollout_trials(policy, ENV, goals[:1] * 0.3, 1, 2, noise=noise[:1])          # another task first
    alone = rollout_trials(policy, ENV, goals[2:], 1, 2, noise=noise[2:])
    assert torch.allclose(alone.actions, together.actions[2:], atol=1e-12)
    # the first action of every trial comes from a zero hidden state and a zero previous step
    x = torch.zeros(1, 1, INPUT_DIM, dtype=D)
    x[..., -1] = 1.0
    mean, log_std, _ = policy(x)
    first = mean[0, 0] + log_std.exp()[0, 0] * noise[:, 0, 0, 0]
    assert torch.allclose(together.actions[:, 0, 0], first, atol=1e-12)


def test_vectorised_rollout_equals_a_loop_over_tasks_and_trials():
    policy, goals, noise = _policy(), _goals(4), _noise(4, 3, 2)
    batch = rollout_trials(policy, ENV, goals, 3, 2, noise=noise)
    for i in range(4):
        for j in range(3):
            one = rollout_trials(policy, ENV, goals[i:i + 1], 1, 2, noise=noise[i:i + 1, j:j + 1])
            for got, want in zip(one, batch):
                assert torch.allclose(got[0, 0], want[i, j], atol=1e-12)
    seeded = [rollout_trials(policy, ENV, goals, 3, 2, torch.Generator().manual_seed(5)) for _ in range(2)]
    assert torch.equal(seeded[0].actions, seeded[1].actions)
    assert rl2_returns(policy, ENV, goals, 3, torch.Generator().manual_seed(5)).shape == (4, 3)


def test_trial_loss_credits_the_whole_trial_and_its_gradient_reaches_the_gru():
    policy, goals = _policy(), _goals(2)
    batch = rollout_trials(policy, ENV, goals, 3, 2, noise=_noise(2, 3, 2))
    loss = trial_loss(policy, batch)
    # REINFORCE written out: the reward-to-go runs to the end of the trial, across episode boundaries
    rewards = batch.rewards.reshape(2, 3, -1)
    g = reward_to_go(rewards)
    baseline = (g.sum(1, keepdim=True) - g) / 2
    expected = -(trial_log_probs(policy, batch) * (g - baseline)).sum(-1).mean()
    assert torch.allclose(loss, expected, atol=1e-12)
    # discounted: the reward t' - t steps ahead weighs gamma^(t' - t)
    steps = rewards.shape[-1]
    power = torch.arange(steps, dtype=D)
    ahead = torch.where(power[None] >= power[:, None], 0.8 ** (power[None] - power[:, None]), 0.0)   # [t, t']
    g = rewards @ ahead.T
    baseline = (g.sum(1, keepdim=True) - g) / 2
    expected = -(trial_log_probs(policy, batch) * (g - baseline)).sum(-1).mean()
    assert torch.allclose(trial_loss(policy, batch, 0.8), expected, atol=1e-10)
    grads = torch.autograd.grad(loss, [policy.gru.weight_hh_l0, policy.gru.weight_ih_l0])
    assert all(gr.abs().max() > 1e-6 for gr in grads)
    # the recurrent weights' gradient against a central finite difference (float64)
    direction = torch.randn(policy.gru.weight_hh_l0.shape, generator=torch.Generator().manual_seed(3), dtype=D)
    eps, values = 1e-6, []
    for sign in (1, -1):
        with torch.no_grad():
            policy.gru.weight_hh_l0.add_(sign * eps * direction)
            values.append(float(trial_loss(policy, batch)))
            policy.gru.weight_hh_l0.sub_(sign * eps * direction)
    assert abs((values[0] - values[1]) / (2 * eps) - float((grads[0] * direction).sum())) < 1e-6


def test_load_rl2_policy_reads_the_shipped_file_and_refuses_others(tmp_path):
    policy, card = load_rl2_policy()
    assert isinstance(policy, RecurrentGaussianPolicy) and card["iterations_done"] >= 1
    assert rl2_returns(policy, PointNavigation(), _goals(2).float(), 2, torch.Generator().manual_seed(0)).shape == (2, 2)
    with pytest.raises(FileNotFoundError, match="no RL\\^2 policy at"):
        load_rl2_policy(tmp_path / "missing.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="is not an RL\\^2 policy file"):
        load_rl2_policy(tmp_path / "other.pt")


def test_train_rl2_steps_and_logs():
    policy = seeded_rl2_policy(0, hidden=8)
    before = policy.gru.weight_hh_l0.detach().clone()
    history = train_rl2(policy, ENV, 2, meta_batch=2, trials=2, episodes=2, progress=False)
    assert history["step"] == [1, 2] and len(history["return_last"]) == 2 and not history["interrupted"]
    assert not torch.equal(before, policy.gru.weight_hh_l0)


@pytest.mark.parametrize("call, words", [
    (lambda p: rollout_trials(p, ENV, _goals(2).float(), 1, 0), "episodes must be an integer >= 1"),
    (lambda p: rollout_trials(p, ENV, _goals(2), 1, 1), "goals must have the policy's dtype"),
    (lambda p: rollout_trials(p, ENV, _goals(2).float(), 1, 2, noise=torch.zeros(2, 1, 2, 5)),
     "noise must be [tasks, trials, episodes, horizon, 2]"),
    (lambda p: trial_loss(p, rollout_trials(p, ENV, _goals(2).float(), 1, 2)), "needs trials >= 2"),
    (lambda p: p(torch.zeros(1, 4, 3)), "inputs must be [batch, time, 6]"),
    (lambda p: trial_loss(p, rollout_trials(p, ENV, _goals(2).float(), 2, 1), 1.5), "discount must be a number in"),
    (lambda p: RecurrentGaussianPolicy(hidden=0), "hidden must be an integer >= 1"),
])
def test_bad_input_is_one_sentence(call, words):
    with pytest.raises(ValueError) as info:
        call(RecurrentGaussianPolicy(hidden=4))
    assert words in str(info.value) and "\n" not in str(info.value)
