"""The time budget of a training loop, written once: the clock, the check of ``max_seconds``, the loop.

Every trainer that takes ``max_seconds=`` keeps to it with these pieces and reads the time from
:func:`now`, which tests replace with a fake clock (:func:`use_clock`) to play a slow device:

* :class:`TimeBudget`: the step numbers of a loop, stopped *before* a step would overrun the budget
  (it estimates the next step's duration from the last one, and always runs at least one step):
  ``mllib.sine_experiments``, ``mllib.baselines``, ``mllib.learned_optimizer``, ``mllib.rl``, through
  ``mllib.training_loop.TrainingLoop``;
* :func:`budget_spent`: stop *after* the step that uses the budget up (``mllib.train.meta_train``,
  which then validates: its ``--max-seconds`` semantics, and ``mllib.incontext.train_incontext``,
  through ``TrainingLoop(stop_after=True)``).

How long each notebook's live training may take is course data, not this module's: ``mllib.budget``.

>>> clock = iter([0.0, 1.0, 2.0, 3.0, 4.0])
>>> with use_clock(lambda: next(clock)):
...     loop = TimeBudget(range(1, 11), max_seconds=2.5, say=None)
...     [step for step in loop]
[1, 2]
>>> budget_spent(None, 1e9), budget_spent(2.5, 2.5)
(False, True)
"""
from __future__ import annotations

import math
import time
from contextlib import contextmanager
from typing import Callable, Iterable, Iterator

_clock: Callable[[], float] | None = None   # None: time.perf_counter, looked up at every call
BUDGET_ROUNDING = 1 + 1e-9   # a step that ends exactly on the budget fits, whatever the float sums


def now() -> float:
    """Seconds from the budget clock (``time.perf_counter`` unless a test installed a fake)."""
    return time.perf_counter() if _clock is None else _clock()


@contextmanager
def use_clock(clock: Callable[[], float]) -> Iterator[None]:
    """Read the time from ``clock`` (a function returning seconds) inside the block: a fake device."""
    global _clock
    previous, _clock = _clock, clock
    try:
        yield
    finally:
        _clock = previous


def check_max_seconds(max_seconds: float | None) -> float | None:
    """``max_seconds`` if it is ``None`` or a finite number of seconds > 0, else ``ValueError``."""
    if max_seconds is None:
        return None
    if (isinstance(max_seconds, bool) or not isinstance(max_seconds, (int, float))
            or not math.isfinite(max_seconds) or max_seconds <= 0):
        raise ValueError(f"max_seconds must be a number of seconds > 0 (or None for no budget), "
                         f"got {max_seconds!r}")
    return float(max_seconds)


def budget_spent(max_seconds: float | None, elapsed: float) -> bool:
    """Whether ``elapsed`` seconds use up ``max_seconds`` (never, when it is ``None``)."""
    return max_seconds is not None and elapsed >= max_seconds


class TimeBudget:
    """The step numbers of a training loop, stopped before they overrun ``max_seconds``.

    ``for step in TimeBudget(range(1, steps + 1), max_seconds, what="meta-steps"):`` runs every
    step when ``max_seconds`` is None. Otherwise, before each step after the first, it checks that
    the time used so far plus the last step's duration stays within ``max_seconds``; if not, it
    stops, sets ``stopped``, and prints (``say``) a notice naming the steps done and planned.
    At least one step always runs. ``done``: steps run; ``elapsed``: seconds from the first step
    to the end of the last (both updated as it goes).
    """

    def __init__(self, steps: Iterable[int], max_seconds: float | None, what: str = "steps",
                 say: Callable[[str], None] | None = print) -> None:
        self.steps = steps
        self.max_seconds = check_max_seconds(max_seconds)
        self.what = what
        self.say = say
        self.done = 0
        self.elapsed = 0.0
        self.stopped = False

    def __len__(self) -> int:
        return len(self.steps)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[int]:
        start = last = now()
        for step in self.steps:
            if self.done:
                t = now()
                self.elapsed, duration, last = t - start, t - last, t
                if self.max_seconds is not None and self.elapsed + duration > self.max_seconds * BUDGET_ROUNDING:
                    self.stopped = True
                    if self.say is not None:
                        self.say(self.notice())
                    return
            yield step
            self.done += 1
        if self.done:
            self.elapsed = now() - start

    def notice(self) -> str:
        """What a stopped run prints: the budget, the steps done, the steps planned."""
        planned = f" of {len(self.steps)}" if hasattr(self.steps, "__len__") else ""
        return (f"time budget of {self.max_seconds:g} s: stopped after {self.done}{planned} {self.what} "
                f"({self.elapsed:.1f} s); the gpu profile bounds every live training run "
                f"(MLLIB_PROFILE=full runs them all)")


__all__ = ["now", "use_clock", "check_max_seconds", "budget_spent", "TimeBudget"]
