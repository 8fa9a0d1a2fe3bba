"""A Gaussian MLP policy, used through ``torch.func.functional_call`` with a dict of parameters.

``GaussianMLPPolicy`` maps an observation ``[..., obs_dim]`` to the mean ``[..., action_dim]`` of a
Gaussian over actions (an MLP with ReLU hidden layers; the MAML paper uses two layers of 100) and
carries one learned, state-independent log standard deviation per action coordinate
(``"log_std" [action_dim]``). As in ``mllib.models``, parameters live in plain dicts
(``mllib.models.params_of(policy)``), so an adapted policy is just another dict.

Per-task parameters (one adapted policy per task) have a leading task dimension on every tensor;
``policy_distribution(..., per_task=True)`` maps them over the tasks with ``torch.func.vmap``.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap

from mllib.models import Params

_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


class GaussianMLPPolicy(nn.Module):
    """``obs [..., obs_dim] -> (mean [..., action_dim], log_std [..., action_dim])``.

    ``hidden``: sizes of the ReLU hidden layers (``()`` gives a linear policy); ``init_std`` (> 0)
    the initial standard deviation of every action coordinate, learned unless ``learn_std=False``
    (then a fixed buffer, absent from the parameter dict). Parameter names: ``body.<i>.*``
    for the hidden layers, ``mean.weight``, ``mean.bias`` and ``log_std``.
    """

    def __init__(self, obs_dim: int = 2, action_dim: int = 2, hidden: Sequence[int] = (100, 100),
                 init_std: float = 0.1, learn_std: bool = True) -> None:
        super().__init__()
        for name, value in (("obs_dim", obs_dim), ("action_dim", action_dim)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        hidden = tuple(hidden)
        if any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in hidden):
            raise ValueError(f"hidden must be a sequence of integers >= 1, got {hidden!r}")
        if isinstance(init_std, bool) or not isinstance(init_std, (int, float)) or not 0 < init_std < math.inf:
            raise ValueError(f"init_std must be a finite number > 0, got {init_std!r}")
        layers: list[nn.Module] = []
        width = obs_dim
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        self.body = nn.Sequential(*layers)
        self.mean = nn.Linear(width, action_dim)
        log_std = torch.full((action_dim,), math.log(init_std))
        if learn_std:
            self.log_std = nn.Parameter(log_std)
        else:  # a buffer: not in the parameter dict, so neither adapted nor meta-learned
            self.register_buffer("log_std", log_std)
        self.obs_dim, self.action_dim, self.hidden = obs_dim, action_dim, hidden

    def forward(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        mean = self.mean(self.body(obs))
        return mean, self.log_std.expand_as(mean)


def seeded_policy(seed: int, dtype: torch.dtype = torch.float32, **kwargs) -> GaussianMLPPolicy:
    """A ``GaussianMLPPolicy(**kwargs)`` initialised from ``seed`` without touching the global random state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return GaussianMLPPolicy(**kwargs).to(dtype)


def policy_distribution(policy: nn.Module, params: Mapping[str, Tensor], obs: Tensor,
                        per_task: bool = False) -> tuple[Tensor, Tensor]:
    """``(mean, log_std)`` of the action distribution, both ``[..., action_dim]``, for ``obs [..., obs_dim]``.

    ``per_task=True``: every tensor of ``params`` has a leading task dimension ``[tasks, ...]`` and
    ``obs`` is ``[tasks, ...]``; task ``i``'s observations go through task ``i``'s parameters.
    """
    if not per_task:
        return functional_call(policy, dict(params), (obs,))
    tasks = {int(v.shape[0]) for v in params.values()}
    if len(tasks) != 1 or obs.shape[0] not in tasks:
        raise ValueError(f"per_task=True needs params and obs with the same leading task dimension, got "
                         f"params {sorted(tasks)} and obs {obs.shape[0]}")
    return vmap(lambda p, o: functional_call(policy, p, (o,)))(dict(params), obs)


def gaussian_log_prob(mean: Tensor, log_std: Tensor, actions: Tensor) -> Tensor:
    """``log N(actions; mean, diag(exp(log_std))^2)`` summed over the last (action) dimension: ``[...]``."""
    z = (actions - mean) * torch.exp(-log_std)
    return (-0.5 * z.square() - log_std - _LOG_SQRT_2PI).sum(-1)


def log_probs(policy: nn.Module, params: Mapping[str, Tensor], obs: Tensor, actions: Tensor,
              per_task: bool = False) -> Tensor:
    """Log-likelihood of ``actions [..., action_dim]`` taken at ``obs [..., obs_dim]``: ``[...]``."""
    mean, log_std = policy_distribution(policy, params, obs, per_task)
    return gaussian_log_prob(mean, log_std, actions)
