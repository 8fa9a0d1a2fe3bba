"""Which device mllib runs on: one toggle, ``MLLIB_DEVICE=auto|cpu|cuda|mps``.

``resolve_device()`` reads the argument first, then the environment variable, then
falls back to ``auto``. ``auto`` picks CUDA, then Apple's MPS, then the CPU. Asking
for a device that is not there is an error, never a silent fallback: a learner who
asked for a GPU must know when they did not get one.

CPU threads, set in one place: ``use_cpu_threads(device)`` (a notebook's first cell) and the
``cpu_threads(n)`` block (small tensor work, such as sinusoid networks and task sampling).
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator

import torch

DEVICE_ENV = "MLLIB_DEVICE"
THREADS_ENV = "MLLIB_THREADS"
DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """Return the ``torch.device`` to use.

    ``device`` overrides ``$MLLIB_DEVICE``; both accept ``auto``, ``cpu``, ``cuda``
    (or ``cuda:N`` for a GPU this machine has) and ``mps``; any other index is a ``ValueError``.
    """
    if isinstance(device, torch.device):
        requested = str(device)
    else:
        requested = (device or os.environ.get(DEVICE_ENV) or "auto").strip().lower()
    kind, _, index = requested.partition(":")
    if kind not in DEVICE_CHOICES or (index and (kind == "auto" or not index.isdigit())):
        raise ValueError(
            f"device={requested!r} is not one of {', '.join(DEVICE_CHOICES)} "
            f"(set it with the device argument or ${DEVICE_ENV})."
        )
    if index and kind in ("cpu", "mps") and int(index) != 0:
        raise ValueError(f"device={requested!r}: there is one {kind} device, {kind} (or {kind}:0)")
    if kind == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if kind == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            f"device={requested!r} was requested but CUDA is not available on this machine. "
            f"Use {DEVICE_ENV}=auto (picks the best device present) or {DEVICE_ENV}=cpu."
        )
    if kind == "cuda" and index and int(index) >= torch.cuda.device_count():
        raise ValueError(f"device={requested!r}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                         f"cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    if kind == "mps" and not _mps_available():
        raise RuntimeError(
            f"device={requested!r} was requested but Apple MPS is not available. "
            f"Use {DEVICE_ENV}=auto or {DEVICE_ENV}=cpu."
        )
    return torch.device(requested)


def describe_device(device: torch.device) -> str:
    """A one-line, human-readable description, e.g. ``cuda (NVIDIA H100)`` or ``cpu (2 threads)``."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        threads = torch.get_num_threads()
        return f"cpu ({threads} thread{'s' * (threads != 1)})"
    return device.type


def env_threads() -> int:
    """``$MLLIB_THREADS`` (default 1), an integer from 1 to ``max(64, 4 x CPU cores)``; else a
    ``ValueError`` naming the variable (empty, ``abc`` or ``10000`` included)."""
    from mllib.arguments import env_int

    return env_int(THREADS_ENV, 1, 1, max(64, 4 * (os.cpu_count() or 1)))


def use_cpu_threads(device: torch.device, threads: int | None = None) -> int:
    """On a CPU ``device``, use ``threads`` torch threads (default ``$MLLIB_THREADS``, else 1).

    The course's networks are small: splitting their operations over threads gains little and is
    much slower on a busy shared CPU. Other devices are left alone. Returns torch's thread count.
    """
    if device.type == "cpu":
        torch.set_num_threads(threads or env_threads())
    return torch.get_num_threads()


@contextmanager
def cpu_threads(threads: int | None) -> Iterator[None]:
    """Run a block with ``threads`` intra-op CPU threads, restored afterwards (``None``: unchanged).

    >>> with cpu_threads(1):
    ...     torch.get_num_threads()
    1
    """
    previous = torch.get_num_threads()
    change = threads is not None and threads != previous
    if change:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        if change:
            torch.set_num_threads(previous)
