"""The loop around a training algorithm, written once: the steps, the progress bar, the time budget, Ctrl-C.

The six small trainers (``sine_experiments.meta_train_sinusoid`` and ``pretrain_sinusoid``,
``baselines.pretrain``, ``learned_optimizer.meta_train_optimizer``, ``incontext.train_incontext`` and
``rl.maml``'s ``meta_train`` / ``pretrain_joint``) keep only their algorithm inside the loop::

    with TrainingLoop(steps, "meta-train maml", progress=progress, max_seconds=max_seconds) as loop:
        for step in loop:                          # 1, 2, ..., steps
            loss = ...                             # the algorithm: sample tasks, meta-gradient, step
            loop.log(loss=loss)                    # history["loss"], and the bar shows it
    loop.history    # {"step": [1, ...], "loss": [...], "interrupted": False, "stopped": False, "seconds": ...}

* the bar: :func:`mllib.progress.progress_bar` (hidden when ``$CI`` is set or ``progress=False``);
* the time budget: :class:`mllib.timing.TimeBudget` stops *before* a step would overrun ``max_seconds``
  and prints its notice; with ``stop_after=True``, :func:`mllib.timing.budget_spent` stops silently
  *after* the step that uses it up (``mllib.train.meta_train``'s rule);
* Ctrl-C or SIGTERM (any ``KeyboardInterrupt``, :mod:`mllib.signals`) during a step ends the block,
  keeping the steps finished so far and setting ``interrupted``; with ``interruptible=False`` it
  reaches the caller (a trainer with nothing worth keeping half-way).

>>> with TrainingLoop(3, "demo", progress=False) as loop:
...     for step in loop:
...         loop.log(loss=1.0 / step)
>>> loop.history["step"], loop.history["loss"][1], loop.interrupted, loop.stopped
([1, 2, 3], 0.5, False, False)
"""
from __future__ import annotations

import math
from typing import Iterable, Iterator

import torch

from mllib.progress import progress_bar
from mllib.timing import TimeBudget, budget_spent, check_max_seconds, now


class TrainingLoop:
    """Steps ``done + 1, ..., steps`` of a training run, with its progress bar, time budget and Ctrl-C.

    * ``steps``: the run's total number of steps; ``done``: steps an earlier call already ran (a
      resumed run: the bar starts there).
    * ``desc``: the bar's label; ``what``: what a step is called in the time budget's notice.
    * ``max_seconds``: a wall-clock budget, None for none (the module's docstring: ``stop_after``).
    * ``keys``: the series :meth:`log` records, present (empty) even when no step runs;
      ``show_every``: the bar shows the logged values every this many steps.

    Use it as a context manager (``with``), then iterate. After the block: ``history``
    (``"step"``, the ``keys``, ``"interrupted"``, ``"stopped"``: the budget ended it early, and
    ``"seconds"``: time inside the block), and the same as attributes.
    """

    def __init__(self, steps: int, desc: str, *, progress: bool = True, max_seconds: float | None = None,
                 what: str = "steps", keys: tuple[str, ...] = ("loss",), show_every: int = 25, done: int = 0,
                 stop_after: bool = False, interruptible: bool = True) -> None:
        self.max_seconds = check_max_seconds(max_seconds)
        self.budget = TimeBudget(range(done + 1, steps + 1), None if stop_after else max_seconds, what=what)
        self.desc, self.progress, self.total, self.initial = desc, progress, steps, min(done, steps)
        self.stop_after, self.interruptible, self.show_every = stop_after, interruptible, show_every
        self.history: dict = {"step": [], **{k: [] for k in keys}, "interrupted": False, "stopped": False,
                              "seconds": 0.0}
        self.step, self.bar, self._start, self._spent = done, None, 0.0, False

    def __enter__(self) -> "TrainingLoop":
        self._start = now()
        self.bar = progress_bar(total=self.total, initial=self.initial, desc=self.desc, enabled=self.progress)
        return self

    def __iter__(self) -> Iterator[int]:
        if self.bar is None:
            raise RuntimeError("iterate a TrainingLoop inside its block: `with TrainingLoop(...) as loop:`")
        for step in self.budget:
            self.step = step
            yield step
            self.bar.update(1)
            if self.stop_after and budget_spent(self.max_seconds, now() - self._start):
                self._spent = self.step < self.total
                return

    def log(self, **values: float) -> None:
        """Record this step's ``values`` (``history[name]``, and ``history["step"]``); every ``show_every``
        steps the bar shows them."""
        self.history["step"].append(self.step)
        for name, value in values.items():
            self.history.setdefault(name, []).append(value)
        if self.step % self.show_every == 0:
            self.bar.set_postfix({name: f"{value:.3f}" for name, value in values.items()}, refresh=False)

    def __exit__(self, kind, error, traceback) -> bool:
        self.bar.close()
        self.history["seconds"] = now() - self._start
        self.history["stopped"] = self.budget.stopped or self._spent
        self.history["interrupted"] = kind is not None and issubclass(kind, KeyboardInterrupt)
        return self.interruptible and self.history["interrupted"]

    @property
    def interrupted(self) -> bool:
        return self.history["interrupted"]

    @property
    def stopped(self) -> bool:
        return self.history["stopped"]

    @property
    def seconds(self) -> float:
        return self.history["seconds"]


__all__ = ["TrainingLoop"]


def clipped_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, parameters: Iterable[torch.Tensor],
                 clip: float, what: str, step: int, lr: float) -> float:
    """One optimiser step on the scalar ``loss``, the gradient norm clipped at ``clip``; returns the loss.

    A loss that is not finite stops the run before the step spoils the parameters:
    ``FloatingPointError`` naming ``what`` (e.g. ``"meta-training"``), the ``step`` and the rate ``lr``.
    """
    value = float(loss.detach())
    if not math.isfinite(value):
        raise FloatingPointError(f"{what} diverged at step {step} (loss {value}); use a smaller lr than {lr}")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(parameters, clip)
    optimizer.step()
    return value
