"""``TaskBatch``: the one batch structure shared by every task family.

Shapes (``T`` tasks):

* Omniglot: ``support_x [T, ways*shots, 1, 28, 28]`` (float, strokes = 1),
  ``support_y [T, ways*shots]`` (long, labels in ``0..ways-1``),
  ``query_x [T, ways*query, 1, 28, 28]``, ``query_y [T, ways*query]``.
* Sinusoid: ``support_x [T, shots, 1]``, ``support_y [T, shots, 1]`` (float), same for query.

Iterating a batch gives one task at a time, the four tensors without the task dimension
(notebook 02, section 7)::

    for support_x, support_y, query_x, query_y in batch:
        ...
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Iterator

import torch
from torch import Tensor


@dataclass
class TaskBatch:
    """Support and query tensors of ``T`` tasks, task dimension first (see the module docstring).

    Notebook 02, section 7 (a meta-batch).

        >>> batch = TaskBatch(torch.zeros(3, 5, 1), torch.zeros(3, 5, 1), torch.ones(3, 7, 1), torch.ones(3, 7, 1))
        >>> len(batch), batch[1:].num_tasks
        (3, 2)
        >>> [tuple(query_x.shape) for support_x, support_y, query_x, query_y in batch]
        [(7, 1), (7, 1), (7, 1)]
    """

    support_x: Tensor
    support_y: Tensor
    query_x: Tensor
    query_y: Tensor

    def __post_init__(self) -> None:
        sizes = {f.name: getattr(self, f.name).shape[0] for f in fields(self)}
        if len(set(sizes.values())) != 1:
            raise ValueError(f"every TaskBatch field needs the same number of tasks on dim 0, got {sizes}")

    @property
    def num_tasks(self) -> int:
        """``T``, the size of the task dimension."""
        return self.support_x.shape[0]

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "TaskBatch":
        """The whole batch on ``device``."""
        return TaskBatch(*(getattr(self, f.name).to(device, non_blocking=non_blocking) for f in fields(self)))

    def __getitem__(self, index) -> "TaskBatch":
        """Select tasks (an int, a slice or an index tensor) on the task dimension."""
        if isinstance(index, int):
            index = slice(index, index + 1)
        return TaskBatch(*(getattr(self, f.name)[index] for f in fields(self)))

    def __len__(self) -> int:
        return self.num_tasks

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor, Tensor, Tensor]]:
        """One task at a time: ``(support_x, support_y, query_x, query_y)`` without the task dimension."""
        for t in range(self.num_tasks):
            yield self.support_x[t], self.support_y[t], self.query_x[t], self.query_y[t]

    def tensors(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(support_x, support_y, query_x, query_y)``, each with the task dimension first."""
        return self.support_x, self.support_y, self.query_x, self.query_y

    def chunk(self, parts: int) -> list["TaskBatch"]:
        """Split into ``parts`` consecutive groups of tasks (e.g. one per distributed rank).

            >>> batch = TaskBatch(*(torch.zeros(4, 1) for _ in range(4)))
            >>> [len(part) for part in batch.chunk(2)], len(TaskBatch.cat(batch.chunk(2)))
            ([2, 2], 4)
        """
        if not 1 <= parts <= self.num_tasks:
            raise ValueError(f"parts must be in 1..{self.num_tasks} (the number of tasks), got {parts}")
        bounds = torch.linspace(0, self.num_tasks, parts + 1).round().long().tolist()
        return [self[a:b] for a, b in zip(bounds[:-1], bounds[1:])]

    @staticmethod
    def cat(batches: list["TaskBatch"]) -> "TaskBatch":
        """Concatenate batches along the task dimension."""
        return TaskBatch(*(torch.cat([getattr(b, f.name) for b in batches]) for f in fields(TaskBatch)))
