"""Sampling episodes of a policy in ``PointNavigation``, batched over tasks and episodes.

``rollout`` runs without an autograd graph: in the score-function (policy-gradient) view the
sampled actions are data, and a loss recomputes their log-likelihoods from the stored
observations with whatever parameters it differentiates (``mllib.rl.losses``).
"""
from __future__ import annotations

from typing import Mapping, NamedTuple

import torch
from torch import Tensor, nn

from .env import PointNavigation
from .policy import gaussian_log_prob, policy_distribution


class Episodes(NamedTuple):
    """Episodes of ``tasks`` tasks, ``episodes`` each, ``horizon`` steps (a pytree: ``vmap`` maps it).

    * ``observations [tasks, episodes, horizon, 2]``: the position before each action.
    * ``actions [tasks, episodes, horizon, 2]``: the sampled (unclipped) Gaussian actions.
    * ``rewards [tasks, episodes, horizon]``.
    * ``log_probs [tasks, episodes, horizon]``: log-likelihood of each action under the policy that
      sampled it (detached; the score term of ``mllib.rl.maml.meta_surrogate`` subtracts it).
    * ``final_positions [tasks, episodes, 2]``.
    """

    observations: Tensor
    actions: Tensor
    rewards: Tensor
    log_probs: Tensor
    final_positions: Tensor

    def returns(self) -> Tensor:
        """Undiscounted return of every episode: ``[tasks, episodes]``."""
        return self.rewards.sum(-1)

    def trajectories(self) -> Tensor:
        """Positions visited, start and end included: ``[tasks, episodes, horizon + 1, 2]``."""
        return torch.cat([self.observations, self.final_positions.unsqueeze(-2)], dim=-2)


def rollout(policy: nn.Module, params: Mapping[str, Tensor], env: PointNavigation, goals: Tensor,
            episodes: int, generator: torch.Generator | None = None, per_task: bool = False) -> Episodes:
    """Sample ``episodes`` episodes per goal (``goals [tasks, 2]``) with the Gaussian policy ``params``.

    ``per_task=True``: ``params`` holds one policy per task (leading dimension ``[tasks, ...]``).
    The action noise comes from ``generator``; actions are ``mean + exp(log_std) * noise``.
    """
    positions = env.reset(goals, episodes)
    obs, acts, rews, lps = [], [], [], []
    with torch.no_grad():
        params = {k: v.detach() for k, v in params.items()}
        for _ in range(env.horizon):
            mean, log_std = policy_distribution(policy, params, positions, per_task)
            noise = torch.randn(mean.shape, generator=generator, dtype=torch.float64).to(mean)
            actions = mean + torch.exp(log_std) * noise
            obs.append(positions)
            acts.append(actions)
            lps.append(gaussian_log_prob(mean, log_std, actions))
            positions, reward = env.step(positions, actions, goals)
            rews.append(reward)
    return Episodes(torch.stack(obs, 2), torch.stack(acts, 2), torch.stack(rews, 2), torch.stack(lps, 2), positions)
