"""Detecting a call to the library function that an exercise asks the learner to write.

Where the learner's function must equal a function of ``mllib`` (the 95% interval is
``mllib.evaluate.mean_ci95``, the polynomial fit is ``mllib.sine_experiments.fit_polynomial``, ...),
calling that function would pass any comparison. A check therefore runs the learner's function
under a profiler (``sys.setprofile``) that records every Python function called, and fails the
case when one of the exercise's ``forbidden`` functions was among them, however it was imported
or renamed. Only the learner's own call is watched, not the check's code around it.

    >>> from mllib.evaluate import mean_ci95
    >>> guard = CallGuard(lambda v: mean_ci95(v), ["mllib.evaluate.mean_ci95"])
    >>> _ = guard([0.5, 0.7]); guard.calls
    ['mllib.evaluate.mean_ci95']
"""
from __future__ import annotations

import importlib
import inspect
import sys
from functools import lru_cache
from typing import Any, Callable, Iterable

from .i18n import message

LIBRARY_CALL_HINT = message("library.hint", "this exercise is about writing that computation yourself; use torch "
                                            "operations, not the course library's finished function")()
LIBRARY_CALLS = message("library.calls", "your function calls {names}, the course library's own version of what "
                                         "this exercise asks you to write")


@lru_cache(maxsize=None)
def resolve(dotted: str) -> Any:
    """The object named ``dotted`` (``package.module.function`` or ``package.module.Class.method``)."""
    parts = dotted.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attribute in parts[cut:]:
            obj = getattr(obj, attribute)
        return obj
    raise ValueError(f"cannot resolve {dotted!r}: give a dotted name such as 'mllib.evaluate.mean_ci95'")


def _code_of(dotted: str):
    obj = inspect.unwrap(resolve(dotted))
    code = getattr(obj, "__code__", None)
    if code is None:
        raise ValueError(f"{dotted!r} is not a Python function (no __code__ to watch for)")
    return code


def library_call_message(calls: list[str]) -> str:
    names = ", ".join(f"`{c}`" for c in calls)
    return LIBRARY_CALLS(names=names)


class CallGuard:
    """Calls ``fn`` and records which of the ``forbidden`` functions ran during the call (in ``calls``).

    Carries ``fn``'s ``__code__``, so a verdict can still name the learner's line.
    """

    def __init__(self, fn: Callable, forbidden: Iterable[str] = ()) -> None:
        self.fn = fn
        self.__code__ = getattr(fn, "__code__", None)
        self.watched = {_code_of(name): name for name in forbidden}
        self.calls: list[str] = []

    def __call__(self, *args, **kwargs):
        if not self.watched:
            return self.fn(*args, **kwargs)
        watched, calls = self.watched, self.calls

        def profile(frame, event, arg):
            if event == "call":
                name = watched.get(frame.f_code)
                if name is not None and name not in calls:
                    calls.append(name)

        previous = sys.getprofile()
        sys.setprofile(profile)
        try:
            return self.fn(*args, **kwargs)
        finally:
            sys.setprofile(previous)


__all__ = ["CallGuard", "LIBRARY_CALL_HINT", "library_call_message", "resolve"]
