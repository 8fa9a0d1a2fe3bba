"""Sinusoid regression tasks (Finn et al. 2017, section 5.1).

A task is ``y = amplitude * sin(x - phase)`` with ``amplitude ~ U[0.1, 5]``, ``phase ~ U[0, pi]``;
inputs ``x ~ U[-5, 5]``, drawn independently for the support and the query points.
Everything comes from one explicit, seeded ``torch.Generator``.

``sample(T)`` returns a :class:`~mllib.tasks.TaskBatch` with float32 ``support_x [T, shots, 1]``,
``support_y [T, shots, 1]``, ``query_x [T, query, 1]``, ``query_y [T, query, 1]``.
"""
from __future__ import annotations

import math

import torch

from mllib.arguments import check_int
from mllib.tasks.batch import TaskBatch


def sinusoid(x: torch.Tensor, amplitude: torch.Tensor, phase: torch.Tensor) -> torch.Tensor:
    """``amplitude * sin(x - phase)``; ``x [T, K, 1]``, ``amplitude`` and ``phase`` ``[T]`` (notebook 02, section 2).

        >>> sinusoid(torch.zeros(1, 2, 1), torch.tensor([2.0]), torch.tensor([-torch.pi / 2]))
        tensor([[[2.],
                 [2.]]])
    """
    return amplitude[:, None, None] * torch.sin(x - phase[:, None, None])


class SinusoidTasks:
    """Sinusoid regression tasks with ``shots`` support and ``query`` query points each.

    Notebook 02, section 2 (and notebooks 01, 03, 04, 06).

        >>> batch = SinusoidTasks(shots=10, query=5, seed=0).sample(4)
        >>> tuple(batch.support_x.shape), tuple(batch.query_y.shape)
        ((4, 10, 1), (4, 5, 1))
    """

    def __init__(
        self,
        shots: int = 10,
        query: int = 10,
        seed: int = 0,
        amplitude: tuple[float, float] = (0.1, 5.0),
        phase: tuple[float, float] = (0.0, math.pi),
        x_range: tuple[float, float] = (-5.0, 5.0),
    ) -> None:
        check_int("shots", shots, 1)
        check_int("query", query, 1)
        for name, (lo, hi) in (("amplitude", amplitude), ("phase", phase), ("x_range", x_range)):
            if not lo <= hi:
                raise ValueError(f"{name} must be a (low, high) pair with low <= high, got {(lo, hi)}")
        self.shots, self.query, self.seed = shots, query, int(seed)
        self.amplitude, self.phase, self.x_range = tuple(amplitude), tuple(phase), tuple(x_range)
        self.generator = torch.Generator().manual_seed(self.seed)

    def __repr__(self) -> str:
        return f"SinusoidTasks(shots={self.shots}, query={self.query}, seed={self.seed})"

    def _uniform(self, shape, bounds) -> torch.Tensor:
        lo, hi = bounds
        return torch.rand(shape, generator=self.generator) * (hi - lo) + lo

    def sample(self, num_tasks: int, return_params: bool = False):
        """``num_tasks`` tasks; with ``return_params`` also ``(amplitude [T], phase [T])``."""
        check_int("num_tasks", num_tasks, 1)
        amplitude = self._uniform((num_tasks,), self.amplitude)
        phase = self._uniform((num_tasks,), self.phase)
        support_x = self._uniform((num_tasks, self.shots, 1), self.x_range)
        query_x = self._uniform((num_tasks, self.query, 1), self.x_range)
        batch = TaskBatch(
            support_x=support_x,
            support_y=sinusoid(support_x, amplitude, phase),
            query_x=query_x,
            query_y=sinusoid(query_x, amplitude, phase),
        )
        if return_params:
            return batch, amplitude, phase
        return batch

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "shots": self.shots, "query": self.query, "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        if (state.get("shots"), state.get("query"), state.get("seed")) != (self.shots, self.query, self.seed):
            raise ValueError("state_dict comes from a SinusoidTasks with other shots/query/seed")
        self.generator.set_state(state["generator"])
