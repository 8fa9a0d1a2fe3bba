"""Ctrl-C (SIGINT) and SIGTERM (SLURM, ``docker stop``, a kernel restart) stop work the same way.

* ``StopRequest``: inside a loop that can stop cleanly (meta-training), the first signal only sets
  ``requested``; the loop finishes its step, saves, and raises :class:`Interrupted`. A second
  signal raises at once.
* ``terminate_as_interrupt()``: around a whole command, SIGTERM raises :class:`Interrupted` as
  Ctrl-C raises ``KeyboardInterrupt``, so ``finally`` blocks run (lock files go, temporary files
  are removed) instead of the process dying on the spot.

The command line exits with the conventional code ``128 + signum``: 130 for Ctrl-C, 143 for SIGTERM.
"""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Callable, Iterator

HANDLED = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """Work stopped by a signal; ``signum`` is ``signal.SIGINT`` or ``signal.SIGTERM``."""

    def __init__(self, signum: int = signal.SIGINT):
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def exit_code(err: KeyboardInterrupt) -> int:
    """``128 + signum`` of an :class:`Interrupted`; 130 for a plain ``KeyboardInterrupt``."""
    return err.exit_code if isinstance(err, Interrupted) else 128 + signal.SIGINT


def signal_name(err: KeyboardInterrupt) -> str:
    """``"SIGTERM"`` or ``"Ctrl-C"``."""
    return "SIGTERM" if getattr(err, "signum", None) == signal.SIGTERM else "Ctrl-C"


class StopRequest:
    """First SIGINT or SIGTERM: ``requested`` (and ``signum``) set, ``announce`` told. Second: stop at once."""

    def __init__(self, announce: Callable[[str], None]) -> None:
        self.requested = False
        self.signum = int(signal.SIGINT)
        self._announce = announce
        self._previous: dict = {}

    def install(self) -> None:
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in HANDLED}

    def uninstall(self) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, signal.SIG_DFL if handler is None else handler)
        self._previous = {}

    def interrupt(self) -> Interrupted:
        return Interrupted(self.signum)

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise Interrupted(signum)
        self.requested, self.signum = True, int(signum)
        name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        self._announce(f"{name}: stopping after this meta-step and saving a checkpoint "
                       f"(send it again to abort now)")


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Interrupted` (signum 15); the old handler is restored."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum, frame):
        raise Interrupted(signum)

    previous = signal.signal(signal.SIGTERM, handle)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
