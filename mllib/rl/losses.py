"""Policy-gradient losses: REINFORCE with a baseline.

For episodes of a policy ``pi_theta``, the expected return ``J(theta) = E[sum_t r_t]`` has the
gradient (the score-function or REINFORCE estimator, averaged over episodes)

    grad J = E[ sum_t grad log pi_theta(a_t | s_t) (G_t - b_t) ],   G_t = sum_{t' >= t} r_t',

for any baseline ``b_t`` that does not depend on ``a_t`` or later actions (it lowers the variance and
leaves the mean unchanged). ``reinforce_loss`` is the surrogate whose gradient is exactly that
estimate (with a minus sign, to be minimised): the sampled actions and rewards are data, only the
log-likelihoods depend on ``theta``.

Its second derivative (with the episodes held fixed) is what the meta-gradient needs when it
differentiates through an inner step taken on those episodes (``mllib.rl.maml``); the dependence
of the episodes themselves on ``theta`` is a separate term there, not a job for this loss.
"""
from __future__ import annotations

from typing import Callable

from torch import Tensor, nn

from .policy import log_probs as policy_log_probs
from .rollout import Episodes


def reward_to_go(rewards: Tensor) -> Tensor:
    """``G_t = sum_{t' >= t} r_t'`` along the last (time) dimension: ``[..., horizon]`` -> same shape."""
    return rewards.flip(-1).cumsum(-1).flip(-1)


def leave_one_out_baseline(rewards: Tensor) -> Tensor:
    """Per-step baseline ``b_t`` for episode ``i``: the mean reward-to-go of the *other* episodes.

    ``rewards [..., episodes, horizon]`` -> ``[..., episodes, horizon]``. Leaving episode ``i`` out keeps
    ``b_t`` independent of episode ``i``'s actions, so the gradient estimate stays unbiased.
    """
    if rewards.dim() < 2 or rewards.shape[-2] < 2:
        raise ValueError(f"rewards must be [..., episodes, horizon] with episodes >= 2, got {tuple(rewards.shape)}")
    g = reward_to_go(rewards)
    n = g.shape[-2]
    return (g.sum(-2, keepdim=True) - g) / (n - 1)


def _check_same_shape(**tensors: Tensor) -> None:
    shapes = {name: tuple(t.shape) for name, t in tensors.items()}
    if len(set(shapes.values())) != 1 or next(iter(shapes.values())) == ():
        raise ValueError("expected tensors of one shape [..., episodes, horizon], got "
                         + ", ".join(f"{k} {v}" for k, v in shapes.items()))


def reinforce_loss(log_probs: Tensor, rewards: Tensor, baseline: Tensor) -> Tensor:
    """REINFORCE surrogate with a baseline (a scalar to minimise).

    ``log_probs``, ``rewards``, ``baseline``: ``[..., episodes, horizon]`` (``log_probs``
    differentiable). Returns ``-mean over episodes of sum_t log_probs_t * (G_t - baseline_t)``, with the
    advantage ``G_t - b_t`` treated as a constant.
    """
    _check_same_shape(log_probs=log_probs, rewards=rewards, baseline=baseline)
    advantage = (reward_to_go(rewards) - baseline).detach()
    return -(log_probs * advantage).sum(-1).mean()


def policy_loss_fn(policy: nn.Module, per_task: bool = False) -> Callable[[dict, Episodes], Tensor]:
    """``loss_fn(params, episodes)``: ``reinforce_loss`` of ``episodes`` with the leave-one-out baseline.

    Fits ``mllib.inner.adapt``: one policy-gradient step is ``adapt(params, policy_loss_fn(policy),
    episodes, 1, lr)``. ``episodes`` of one task (``[episodes, horizon, ...]``) or of several
    (``[tasks, episodes, horizon, ...]``; the loss then averages over all episodes of all tasks).
    ``per_task=True``: ``params`` has a leading task dimension (one policy per task).
    """
    def loss_fn(params: dict, episodes: Episodes) -> Tensor:
        lp = policy_log_probs(policy, params, episodes.observations, episodes.actions, per_task)
        return reinforce_loss(lp, episodes.rewards, leave_one_out_baseline(episodes.rewards))
    return loss_fn
