"""Memorization (meta-overfitting): tasks that are not mutually exclusive, and the label permutation that cures it.

Notebook 09, section 1 (Yin et al. 2020, *Meta-Learning without Memorization*). A small synthetic
few-shot classification family, fast enough to meta-train twice in a notebook:

* a **class** is a prototype ``mu_c ~ N(0, I_dim)``; its examples are ``mu_c + noise * eps``;
* the classes are split into **training** and **new** classes (:class:`PrototypeClasses`);
* a **task** (:func:`sample_tasks`) takes the classes of a pool in ``ways`` fixed groups (class number
  ``i`` of the pool is in group ``i % ways``) and draws one class from every group, ``shots`` support
  and ``query`` query examples each. Its labels are either the **group** (``permute=False``: every
  class keeps the same label in every task, so the tasks are *not mutually exclusive*: one function
  ``x -> label`` solves all of them and the support set can be ignored) or a fresh **random
  permutation** of ``0..ways-1`` per task (``permute=True``, as ``mllib.tasks.OmniglotTasks`` does:
  the label of a class means something only inside its task, so the learner must read the support set).

Output: a :class:`~mllib.tasks.TaskBatch` with ``support_x [T, ways*shots, dim]`` (float32),
``support_y [T, ways*shots]`` (long), ``query_x [T, ways*query, dim]``, ``query_y [T, ways*query]``; rows
class by class. :class:`MLPClassifier` is a learner the course's algorithms (``mllib.algorithms``) accept.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from mllib.tasks import TaskBatch

__all__ = ["PrototypeClasses", "PrototypeTasks", "sample_tasks", "shuffle_support_labels", "MLPClassifier"]


class PrototypeClasses:
    """``num_train + num_new`` class prototypes ``[num_classes, dim]`` drawn from ``N(0, I)`` with ``seed``;
    ``train`` and ``new`` are the two pools (``[num_train, dim]``, ``[num_new, dim]``); ``noise`` is the
    standard deviation of an example around its prototype.

        >>> classes = PrototypeClasses(num_train=10, num_new=5, dim=4)
        >>> tuple(classes.train.shape), tuple(classes.new.shape)
        ((10, 4), (5, 4))
    """

    def __init__(self, num_train: int = 40, num_new: int = 20, dim: int = 16, noise: float = 0.5,
                 seed: int = 0) -> None:
        if num_train < 1 or num_new < 1 or dim < 1:
            raise ValueError(f"need num_train, num_new, dim >= 1; got {num_train}, {num_new}, {dim}")
        if not noise >= 0:
            raise ValueError(f"noise must be >= 0, got {noise}")
        prototypes = torch.randn(num_train + num_new, dim, generator=torch.Generator().manual_seed(seed))
        self.train, self.new = prototypes[:num_train], prototypes[num_train:]
        self.dim, self.noise = dim, noise


def sample_tasks(prototypes: Tensor, noise: float, num_tasks: int, ways: int = 5, shots: int = 1,
                 query: int = 5, permute: bool = True, generator: torch.Generator | None = None) -> TaskBatch:
    """``num_tasks`` tasks from the pool ``prototypes [C, dim]`` (see the module docstring): one class of
    every group ``i % ways``, labelled by its group (``permute=False``) or by a random permutation per
    task (``permute=True``). ``C`` must be a multiple of ``ways``, at least ``ways``.

        >>> pool = torch.randn(10, 3)
        >>> batch = sample_tasks(pool, 0.1, 4, ways=5, shots=2, query=3, permute=False)
        >>> tuple(batch.support_x.shape), batch.support_y[0].tolist()
        ((4, 10, 3), [0, 0, 1, 1, 2, 2, 3, 3, 4, 4])
    """
    if prototypes.dim() != 2:
        raise ValueError(f"prototypes must be [classes, dim], got shape {tuple(prototypes.shape)}")
    classes = prototypes.shape[0]
    if ways < 2 or classes % ways or classes < ways:
        raise ValueError(f"the pool's {classes} classes must split into ways={ways} equal groups (a multiple "
                         f"of ways, ways >= 2); use a pool of {max(ways, classes - classes % ways)} classes")
    if num_tasks < 1 or shots < 1 or query < 1:
        raise ValueError(f"need num_tasks, shots, query >= 1; got {num_tasks}, {shots}, {query}")
    per_group = classes // ways
    member = torch.randint(0, per_group, (num_tasks, ways), generator=generator)
    chosen = member * ways + torch.arange(ways)                                    # [T, ways]: class i of group i
    labels = (torch.rand(num_tasks, ways, generator=generator).argsort(dim=1) if permute
              else torch.arange(ways).expand(num_tasks, ways))                      # [T, ways]
    per_class = shots + query
    eps = torch.randn(num_tasks, ways, per_class, prototypes.shape[1], generator=generator)
    x = prototypes[chosen].unsqueeze(2) + noise * eps                              # [T, ways, per_class, dim]
    y = labels.unsqueeze(2).expand(num_tasks, ways, per_class)
    flat = lambda t: t.reshape(num_tasks, -1, *t.shape[3:])  # noqa: E731
    return TaskBatch(flat(x[:, :, :shots]).float(), flat(y[:, :, :shots]).long(),
                     flat(x[:, :, shots:]).float(), flat(y[:, :, shots:]).long())


def shuffle_support_labels(batch: TaskBatch, generator: torch.Generator | None = None) -> TaskBatch:
    """The same tasks with every support label replaced by an independent random label of ``0..ways-1``
    (the query labels unchanged): a learner that reads the support set loses its accuracy, one that
    ignores it does not."""
    ways = int(batch.query_y.max()) + 1
    noise = torch.randint(0, ways, batch.support_y.shape, generator=generator)
    return TaskBatch(batch.support_x, noise, batch.query_x, batch.query_y)


class MLPClassifier(nn.Module):
    """``dim -> hidden -> hidden -> ways`` with ReLU: ``x [N, dim]`` -> logits ``[N, ways]``; a ``body`` and
    a ``head`` as the course's learners (``mllib.models``), so MAML, ANIL and ProtoNets accept it.

        >>> MLPClassifier(dim=16, ways=5)(torch.zeros(3, 16)).shape
        torch.Size([3, 5])
    """

    def __init__(self, dim: int, ways: int, hidden: int = 64) -> None:
        super().__init__()
        if dim < 1 or ways < 2 or hidden < 1:
            raise ValueError(f"need dim >= 1, ways >= 2, hidden >= 1; got {dim}, {ways}, {hidden}")
        self.body = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.head = nn.Linear(hidden, ways)
        self.ways, self.feature_dim = ways, hidden

    def features(self, x: Tensor, stats_rows: int | None = None) -> Tensor:
        """Hidden features ``[N, hidden]`` (``stats_rows`` accepted and ignored: no batch norm)."""
        return self.body(x)

    def forward(self, x: Tensor, stats_rows: int | None = None) -> Tensor:
        """Logits ``[N, ways]`` (``stats_rows`` accepted and ignored: no batch norm)."""
        return self.head(self.body(x))


class PrototypeTasks:
    """A task sampler over one pool (``sample(n) -> TaskBatch``, as ``mllib.tasks`` samplers), for the
    course's training loops (``mllib.incontext.train_incontext``): :func:`sample_tasks` with a seeded
    generator of its own.

        >>> PrototypeTasks(torch.randn(10, 3), 0.5, permute=False).sample(2).support_y.tolist()
        [[0, 1, 2, 3, 4], [0, 1, 2, 3, 4]]
    """

    def __init__(self, prototypes: Tensor, noise: float, ways: int = 5, shots: int = 1, query: int = 5,
                 permute: bool = True, seed: int = 0) -> None:
        sample_tasks(prototypes, noise, 1, ways, shots, query, permute)        # fail early on bad input
        self.prototypes, self.noise, self.permute = prototypes, noise, permute
        self.ways, self.shots, self.query = ways, shots, query
        self.generator = torch.Generator().manual_seed(seed)

    def sample(self, num_tasks: int) -> TaskBatch:
        return sample_tasks(self.prototypes, self.noise, num_tasks, self.ways, self.shots, self.query,
                            self.permute, self.generator)
