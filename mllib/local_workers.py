"""Meta-training on this machine's cores: several single-thread processes, one meta-batch.

A meta-batch is an average over tasks, so it splits: with ``W`` workers each process adapts to
``T / W`` of the ``T`` tasks, and one all-reduce averages the ``W`` meta-gradients into the
meta-gradient of the whole batch (:mod:`mllib.distributed`, tested there against one process to
float precision). On a small CPU this is faster than one process using every core: the course's
convolutions are too small to split well across threads, but whole tasks split perfectly. On an
idle 2-core CPU, notebook 05's live run (1,800 meta-steps, ``benchmarks/live_workers.py``) took
123 s of training in one process with 2 threads and 74 s in 2 single-thread processes, with the same test
accuracy (a tie).

:func:`train_on_cores` does what ``torchrun --standalone --nproc_per_node=W -m mllib train`` does,
from Python (a notebook): it starts ``W`` processes (``spawn``: a fresh interpreter each, so it
works in Jupyter and Colab), connects them over loopback with gloo, streams rank 0's log lines back
to the caller, and returns rank 0's :class:`mllib.train.TrainResult`. ``workers=1`` is plain
:func:`mllib.train.meta_train` in this process.

    >>> result = train_on_cores(TrainConfig(algo="maml", ways=5, shots=1, steps=1800), workers=2)  # doctest: +SKIP
"""
from __future__ import annotations

import io
import os
import queue as queue_module
import socket

import torch
import torch.multiprocessing as mp

from mllib.device import resolve_device
from mllib.train import TrainConfig, TrainResult, meta_train

POLL_S = 0.2   # how often the caller prints what the workers said


def free_port() -> int:
    """A TCP port on loopback that no one listens on now (for the workers' rendezvous)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:   # macOS, Windows
        return os.cpu_count() or 1


def auto_workers(config: TrainConfig, cores: int | None = None) -> int:
    """How many workers ``--workers auto`` starts: one per usable core, at most as many as split the
    meta-batch evenly (the largest divisor of it), and 1 on a GPU (one process drives the card).

        >>> auto_workers(TrainConfig(profile="quick", device="cpu"), cores=2)   # meta-batch 8
        2
        >>> auto_workers(TrainConfig(profile="quick", device="cpu"), cores=3), auto_workers(
        ...     TrainConfig(profile="quick", device="cpu"), cores=1)
        (2, 1)
    """
    if resolve_device(config.device).type != "cpu":
        return 1
    cores = usable_cores() if cores is None else cores
    meta_batch = config.resolved_profile().meta_batch
    return max(count for count in range(1, max(1, min(cores, meta_batch)) + 1) if meta_batch % count == 0)


def _worker(rank: int, config: TrainConfig, workers: int, port: int, messages) -> None:
    """One process of the job: rank ``rank`` of ``workers``, one torch thread."""
    from mllib import distributed

    torch.set_num_threads(1)
    environ = {"RANK": str(rank), "WORLD_SIZE": str(workers), "LOCAL_RANK": str(rank),
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    os.environ.update(environ)
    result = distributed.train(config, environ=environ, log=lambda line: messages.put(("log", line)))
    if result is not None:   # rank 0: hand the result back whole (tensors saved, not shared)
        buffer = io.BytesIO()
        torch.save(result, buffer)
        messages.put(("result", buffer.getvalue()))


def _drain(messages, log, found: list) -> None:
    while True:
        try:
            kind, value = messages.get_nowait()
        except queue_module.Empty:
            return
        if kind == "log":
            log(value)
        else:
            found.append(torch.load(io.BytesIO(value), weights_only=False))


def train_on_cores(config: TrainConfig, workers: int, *, data=None, log=print) -> TrainResult:
    """Meta-train ``config`` with ``workers`` single-thread processes splitting each meta-batch.

    ``workers=1``: :func:`mllib.train.meta_train` here, on ``data`` if given (the workers load
    Omniglot themselves). The meta-batch must split evenly (``meta_batch % workers == 0``).
    Ctrl-C stops the workers, which save ``checkpoint.pt`` first (resume with ``resume=True``)."""
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a whole number >= 1, not {workers!r}")
    if workers == 1:
        return meta_train(config, data=data, log=log)
    meta_batch = config.resolved_profile().meta_batch
    if meta_batch % workers:
        raise ValueError(f"the meta-batch of {meta_batch} tasks does not split into {workers} workers: "
                         f"choose workers dividing {meta_batch}")
    context = mp.get_context("spawn")
    messages = context.Queue()
    job = mp.start_processes(_worker, args=(config, workers, free_port(), messages), nprocs=workers,
                             join=False, start_method="spawn")
    found: list = []
    try:
        while not job.join(timeout=POLL_S):
            _drain(messages, log, found)
    except KeyboardInterrupt:
        for process in job.processes:   # SIGTERM: each saves a checkpoint, then exits
            process.terminate()
        for process in job.processes:
            process.join()
        raise
    _drain(messages, log, found)
    if not found:
        raise RuntimeError("the workers finished without a result from rank 0")
    return found[0]


__all__ = ["train_on_cores", "auto_workers", "usable_cores", "free_port"]
