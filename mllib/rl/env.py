"""A family of 2-D point-navigation tasks (the MAML paper's RL example, section 5.3), torch only.

A point agent starts at the origin of the plane; each step its action is a velocity, clipped
coordinate-wise to ``[-max_speed, max_speed]``, and it is rewarded with minus its distance to
the task's goal (``reward="squared"``: minus the squared distance). Every task has its own goal,
drawn uniformly in the square ``[-goal_range, goal_range]^2``; the agent never observes the goal
(its observation is its position), so it can only find the goal through the rewards it gets.
Episodes have a fixed length, ``horizon``, and never end early.

Everything is batched over tasks and episodes: positions ``[tasks, episodes, 2]``, goals
``[tasks, 2]``. Randomness comes only from the ``torch.Generator`` passed in.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

REWARDS = ("distance", "squared")


class PointNavigation:
    """Point navigation in the plane; one task = one goal.

    * ``horizon``: steps per episode (>= 1).
    * ``max_speed``: bound of each velocity coordinate per step (> 0); the MAML paper uses 0.1.
    * ``goal_range``: goals are uniform in ``[-goal_range, goal_range]^2`` (> 0); 0.5 gives the
      unit square of the paper, centred on the start.
    * ``reward``: ``"distance"`` (minus the distance to the goal after the step) or
      ``"squared"`` (minus the squared distance).
    """

    observation_dim = 2
    action_dim = 2

    def __init__(self, horizon: int = 20, max_speed: float = 0.1, goal_range: float = 0.5,
                 reward: str = "distance") -> None:
        if isinstance(horizon, bool) or not isinstance(horizon, int) or horizon < 1:
            raise ValueError(f"horizon must be an integer >= 1, got {horizon!r}")
        for name, value in (("max_speed", max_speed), ("goal_range", goal_range)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
        if reward not in REWARDS:
            raise ValueError(f"reward must be one of {', '.join(REWARDS)}; got {reward!r}")
        self.horizon, self.reward = horizon, reward
        self.max_speed, self.goal_range = float(max_speed), float(goal_range)

    def __repr__(self) -> str:
        return (f"PointNavigation(horizon={self.horizon}, max_speed={self.max_speed}, "
                f"goal_range={self.goal_range}, reward={self.reward!r})")

    def sample_goals(self, tasks: int, generator: torch.Generator | None = None,
                     dtype: torch.dtype = torch.float32) -> Tensor:
        """``tasks`` goals ``[tasks, 2]``, uniform in the square, drawn from ``generator``."""
        if isinstance(tasks, bool) or not isinstance(tasks, int) or tasks < 1:
            raise ValueError(f"tasks must be an integer >= 1, got {tasks!r}")
        u = torch.rand(tasks, 2, generator=generator, dtype=torch.float64)
        return ((2 * u - 1) * self.goal_range).to(dtype)

    def reset(self, goals: Tensor, episodes: int) -> Tensor:
        """Start positions ``[tasks, episodes, 2]`` (the origin) for goals ``[tasks, 2]``."""
        _check_goals(goals)
        if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 1:
            raise ValueError(f"episodes must be an integer >= 1, got {episodes!r}")
        return goals.new_zeros(goals.shape[0], episodes, 2)

    def step(self, positions: Tensor, actions: Tensor, goals: Tensor) -> tuple[Tensor, Tensor]:
        """One step: ``(next_positions [T, E, 2], rewards [T, E])``.

        ``positions`` and ``actions`` ``[T, E, 2]``, ``goals`` ``[T, 2]``. The velocity is the action
        clipped to ``[-max_speed, max_speed]`` per coordinate; the reward is measured at the new position.
        """
        _check_goals(goals)
        if positions.shape != actions.shape or positions.dim() != 3 or positions.shape[-1] != 2:
            raise ValueError(f"positions and actions must both be [tasks, episodes, 2], got "
                             f"{tuple(positions.shape)} and {tuple(actions.shape)}")
        if positions.shape[0] != goals.shape[0]:
            raise ValueError(f"goals must have one row per task: {goals.shape[0]} goals for "
                             f"{positions.shape[0]} tasks")
        nxt = positions + actions.clamp(-self.max_speed, self.max_speed)
        squared = (nxt - goals[:, None, :]).square().sum(-1)
        return nxt, -(squared if self.reward == "squared" else squared.sqrt())


def _check_goals(goals: Tensor) -> None:
    if not isinstance(goals, Tensor) or goals.dim() != 2 or goals.shape[1] != 2:
        shape = tuple(goals.shape) if isinstance(goals, Tensor) else type(goals).__name__
        raise ValueError(f"goals must be a tensor [tasks, 2], got {shape}")
    if not torch.isfinite(goals).all():
        raise ValueError("goals must be finite numbers (a goal holds a NaN or an infinity: no agent can reach it)")
