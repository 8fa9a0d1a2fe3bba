"""RL^2: black-box meta-RL with a recurrent policy whose hidden state is the learning algorithm.

Duan et al. 2016 ("RL^2: fast reinforcement learning via slow reinforcement learning") and Wang et
al. 2016 ("Learning to reinforcement learn"): a recurrent policy sees, at every step, the observation,
its previous action, the previous reward and a flag that marks the first step of an episode. Its
hidden state is kept across the ``episodes`` episodes of one task (a *trial*) and reset to zero
between tasks, so what it learned about the task in episode 1 (where the goal seems to be) can steer
episode 2. Training maximises the return of the whole trial with a policy gradient; at test time
nothing is differentiated: the policy adapts in its forward pass.

* ``RecurrentGaussianPolicy``: a GRU and a linear Gaussian head, ``log_std`` learned.
* ``rollout_trials``: trials batched over tasks and independent trials per task; the noise is drawn
  up front (``[tasks, trials, episodes, horizon, 2]``), so a looped rollout reproduces it exactly.
* ``trial_loss``: REINFORCE over the whole trial (``mllib.rl.losses.reinforce_loss``, the
  leave-one-out baseline over the trials of a task); the log-likelihoods are recomputed by one GRU
  pass over the stored inputs, as ``mllib.rl.losses`` recomputes them from stored observations.
* ``train_rl2`` (``mllib.training_loop.TrainingLoop``: bar, time budget, Ctrl-C) and
  ``rl2_returns`` (the return of every episode of one trial per test goal).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, NamedTuple

import torch
from torch import Tensor, nn

from mllib.arguments import check_int, check_positive
from mllib.training_loop import TrainingLoop, clipped_step

from .env import PointNavigation
from .losses import leave_one_out_baseline, reinforce_loss
from .policy import gaussian_log_prob

INPUT_DIM = 6   # observation (2), previous action (2), previous reward (1), episode-start flag (1)


class RecurrentGaussianPolicy(nn.Module):
    """``inputs [B, T, 6], hidden [B, hidden] -> (mean [B, T, 2], log_std [B, T, 2], hidden [B, hidden])``.

    One GRU layer of ``hidden`` units, a mean ``mean_bound * tanh(linear(h))`` (bounded: a mean far
    beyond the environment's speed clip would leave every sampled action clipped alike, and the policy
    gradient without a signal), a learned state-independent ``log_std`` (initial standard deviation
    ``init_std``). ``hidden=None`` in ``forward`` starts from zeros (a new task).
    """

    def __init__(self, hidden: int = 64, init_std: float = 0.1, mean_bound: float = 0.1) -> None:
        super().__init__()
        check_int("hidden", hidden, 1)
        check_positive("init_std", init_std)
        self.mean_bound = check_positive("mean_bound", mean_bound)
        self.gru = nn.GRU(INPUT_DIM, hidden, batch_first=True)
        self.mean = nn.Linear(hidden, 2)
        self.log_std = nn.Parameter(torch.full((2,), math.log(init_std)))
        self.hidden_size = hidden

    def forward(self, inputs: Tensor, hidden: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        if inputs.dim() != 3 or inputs.shape[-1] != INPUT_DIM:
            raise ValueError(f"inputs must be [batch, time, {INPUT_DIM}], got {tuple(inputs.shape)}")
        if hidden is None:
            hidden = inputs.new_zeros(inputs.shape[0], self.hidden_size)
        out, last = self.gru(inputs, hidden.unsqueeze(0))
        mean = self.mean_bound * torch.tanh(self.mean(out))
        return mean, self.log_std.expand_as(mean), last.squeeze(0)


def seeded_rl2_policy(seed: int, dtype: torch.dtype = torch.float32, **kwargs) -> RecurrentGaussianPolicy:
    """A ``RecurrentGaussianPolicy(**kwargs)`` initialised from ``seed`` without touching the global random state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return RecurrentGaussianPolicy(**kwargs).to(dtype)


class Trials(NamedTuple):
    """Trials of ``tasks`` goals, ``trials`` per goal, ``episodes`` episodes of ``horizon`` steps each.

    * ``inputs [tasks, trials, episodes * horizon, 6]``: what the policy saw at every step.
    * ``actions [tasks, trials, episodes * horizon, 2]``: the sampled (unclipped) actions.
    * ``rewards [tasks, trials, episodes, horizon]``.
    * ``log_probs [tasks, trials, episodes * horizon]``: of each action when sampled (detached).
    * ``positions [tasks, trials, episodes, horizon + 1, 2]``: every episode's path, start included.
    """

    inputs: Tensor
    actions: Tensor
    rewards: Tensor
    log_probs: Tensor
    positions: Tensor

    def returns(self) -> Tensor:
        """The return of every episode: ``[tasks, trials, episodes]``."""
        return self.rewards.sum(-1)


def _step_input(positions: Tensor, action: Tensor, reward: Tensor, start: bool, max_speed: float) -> Tensor:
    """``[tasks, trials, 6]``: position, previous velocity / max_speed, previous reward, start flag."""
    velocity = action.clamp(-max_speed, max_speed) / max_speed
    flag = torch.full_like(reward, 1.0 if start else 0.0)
    return torch.cat([positions, velocity, reward[..., None], flag[..., None]], -1)


def rollout_trials(policy: RecurrentGaussianPolicy, env: PointNavigation, goals: Tensor, trials: int,
                   episodes: int, generator: torch.Generator | None = None,
                   noise: Tensor | None = None) -> Trials:
    """Sample ``trials`` trials of ``episodes`` episodes for every goal of ``goals [tasks, 2]`` (no graph).

    The hidden state starts at zero for every trial and is carried across its episodes; every
    episode starts at the origin. ``noise [tasks, trials, episodes, horizon, 2]`` (standard normal;
    drawn from ``generator`` when None) makes the actions ``mean + exp(log_std) * noise``.
    """
    check_int("trials", trials, 1)
    check_int("episodes", episodes, 1)
    tasks, horizon, dtype = goals.shape[0], env.horizon, next(policy.parameters()).dtype
    if goals.dtype != dtype:
        raise ValueError(f"goals must have the policy's dtype {dtype}, got {goals.dtype} (convert one of them)")
    shape = (tasks, trials, episodes, horizon, 2)
    if noise is None:
        noise = torch.randn(shape, generator=generator, dtype=torch.float64).to(dtype)
    elif tuple(noise.shape) != shape:
        raise ValueError(f"noise must be [tasks, trials, episodes, horizon, 2] = {list(shape)}, got {list(noise.shape)}")
    hidden = goals.new_zeros(tasks * trials, policy.hidden_size, dtype=dtype)
    action, reward = goals.new_zeros(tasks, trials, 2), goals.new_zeros(tasks, trials)
    inputs, actions, rewards, log_probs, paths = [], [], [], [], []
    with torch.no_grad():
        for e in range(episodes):
            positions = env.reset(goals, trials)
            paths.append([positions])
            for t in range(horizon):
                x = _step_input(positions, action, reward, t == 0, env.max_speed)
                mean, log_std, hidden = policy(x.reshape(tasks * trials, 1, INPUT_DIM), hidden)
                mean, log_std = mean.reshape(tasks, trials, 2), log_std.reshape(tasks, trials, 2)
                action = mean + torch.exp(log_std) * noise[:, :, e, t]
                positions, reward = env.step(positions, action, goals)
                inputs.append(x), actions.append(action), rewards.append(reward), paths[-1].append(positions)
                log_probs.append(gaussian_log_prob(mean, log_std, action))
    return Trials(torch.stack(inputs, 2), torch.stack(actions, 2),
                  torch.stack(rewards, 2).reshape(tasks, trials, episodes, horizon), torch.stack(log_probs, 2),
                  torch.stack([torch.stack(p, 2) for p in paths], 2))


def trial_log_probs(policy: RecurrentGaussianPolicy, batch: Trials) -> Tensor:
    """Log-likelihoods ``[tasks, trials, episodes * horizon]`` of ``batch``'s actions under ``policy``,
    differentiable: one GRU pass per trial over its stored inputs, from a zero hidden state."""
    tasks, trials, steps, _ = batch.inputs.shape
    mean, log_std, _ = policy(batch.inputs.reshape(tasks * trials, steps, INPUT_DIM))
    return gaussian_log_prob(mean, log_std, batch.actions.reshape(tasks * trials, steps, 2)).reshape(tasks, trials, steps)


def trial_loss(policy: RecurrentGaussianPolicy, batch: Trials, discount: float = 1.0) -> Tensor:
    """REINFORCE over whole trials (a scalar to minimise): the reward-to-go of step ``t`` runs to the
    trial's end, so an exploring move in episode 1 is credited with what it taught later episodes.
    Baseline: the leave-one-out mean over the other trials of the same task (``trials >= 2``).

    ``discount`` (gamma in (0, 1]) weights the reward ``t' - t`` steps ahead by ``gamma^(t' - t)``:
    ``reinforce_loss`` of the rewards ``gamma^t' r_t'`` and log-likelihoods ``gamma^-t log pi_t`` is
    exactly that (lower variance, shorter credit; RL^2 used 0.99).
    """
    tasks, trials = batch.rewards.shape[:2]
    if trials < 2:
        raise ValueError(f"trial_loss needs trials >= 2 per task for its leave-one-out baseline, got {trials}")
    if isinstance(discount, bool) or not isinstance(discount, (int, float)) or not 0 < discount <= 1:
        raise ValueError(f"discount must be a number in (0, 1], got {discount!r}")
    rewards = batch.rewards.reshape(tasks, trials, -1)                      # [tasks, trials, episodes * horizon]
    log_probs = trial_log_probs(policy, batch)
    if discount < 1:
        weights = discount ** torch.arange(rewards.shape[-1], dtype=torch.float64).to(rewards)
        rewards, log_probs = rewards * weights, log_probs / weights
    return reinforce_loss(log_probs, rewards, leave_one_out_baseline(rewards))


def train_rl2(policy: RecurrentGaussianPolicy, env: PointNavigation, iterations: int, meta_batch: int = 20,
              trials: int = 4, episodes: int = 2, lr: float = 3e-3, clip: float = 1.0, discount: float = 1.0,
              seed: int = 0, progress: bool = True, max_seconds: float | None = None,
              callback: Callable[[int], None] | None = None) -> dict:
    """Train ``policy`` in place: ``iterations`` Adam steps, each on ``meta_batch`` new goals with
    ``trials`` trials of ``episodes`` episodes each (gradient norm clipped at ``clip``; ``discount``
    as in :func:`trial_loss`). ``callback(step)``, if given, runs after every step (e.g. to validate
    and keep the best weights).

    Returns the ``TrainingLoop`` history: ``"loss"``, ``"return_first"`` and ``"return_last"`` (mean
    return of the first and last episode of the trials), ``"interrupted"``, ``"stopped"``, ``"seconds"``.
    """
    check_int("iterations", iterations, 0)
    check_int("meta_batch", meta_batch, 1)
    check_positive("lr", lr)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(policy.parameters(), lr=lr)
    dtype = next(policy.parameters()).dtype
    with TrainingLoop(iterations, "RL^2", progress=progress, max_seconds=max_seconds, what="iterations",
                      keys=("loss", "return_first", "return_last")) as loop:
        for step in loop:
            goals = env.sample_goals(meta_batch, generator, dtype)
            batch = rollout_trials(policy, env, goals, trials, episodes, generator)
            loss = clipped_step(trial_loss(policy, batch, discount), optimizer, policy.parameters(), clip, "RL^2 training",
                                step, lr)
            returns = batch.returns()
            loop.log(loss=loss, return_first=float(returns[..., 0].mean()), return_last=float(returns[..., -1].mean()))
            if callback is not None:
                callback(step)
    return loop.history


def rl2_returns(policy: RecurrentGaussianPolicy, env: PointNavigation, goals: Tensor, episodes: int,
                generator: torch.Generator | None = None) -> Tensor:
    """The return of every episode of one trial per goal: ``[tasks, episodes]`` (no gradients)."""
    return rollout_trials(policy, env, goals, 1, episodes, generator).returns()[:, 0]


SHIPPED = Path(__file__).resolve().parents[1] / "checkpoints" / "rl2_navigation.pt"


def load_rl2_policy(path: str | Path = SHIPPED) -> tuple[RecurrentGaussianPolicy, dict]:
    """``(policy, card)`` from a file written by ``benchmarks/make_rl2_navigation.py`` (the shipped one by
    default): ``{"state_dict", "config", "card"}``, read with ``weights_only=True``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no RL^2 policy at {path}; train one with benchmarks/make_rl2_navigation.py")
    saved = torch.load(path, weights_only=True)
    if not isinstance(saved, dict) or not {"state_dict", "config", "card"} <= set(saved):
        raise ValueError(f"{path} is not an RL^2 policy file (it needs state_dict, config and card)")
    policy = RecurrentGaussianPolicy(hidden=saved["config"]["hidden"], mean_bound=saved["config"]["mean_bound"])
    policy.load_state_dict(saved["state_dict"])
    return policy.eval(), saved["card"]


__all__ = ["RecurrentGaussianPolicy", "seeded_rl2_policy", "Trials", "rollout_trials", "trial_log_probs",
           "trial_loss", "train_rl2", "rl2_returns", "load_rl2_policy", "INPUT_DIM"]
