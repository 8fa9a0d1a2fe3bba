"""Data-parallel meta-training on several processes: ``torchrun`` + ``torch.distributed``.

``python -m mllib train ...`` runs unchanged under ``torchrun --nproc_per_node=N`` (one node) or
with torchrun's rendezvous settings (several nodes): :func:`train` sees the environment torchrun
sets (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``) and then

1. picks the backend: NCCL when the run's device is CUDA (rank ``r`` uses GPU ``LOCAL_RANK``), gloo
   on the CPU; the process group gets a timeout (``$MLLIB_DIST_TIMEOUT`` seconds, default 600) so
   that a rank that dies or hangs makes the others fail with a clear message instead of waiting
   forever;
2. splits each meta-batch of ``T`` tasks across the ``W`` ranks: every rank draws the same global
   batch from the same seeded task stream and keeps its chunk ``batch.chunk(W)[rank]`` of ``T / W``
   tasks (this is what :func:`mllib.train.meta_train` does with ``rank``/``world_size``);
3. averages the meta-gradients across ranks with one explicit ``all_reduce`` on a flat buffer
   holding the whole gradient dict (``grad_hook`` of ``meta_train``). Each rank's gradient is the
   mean over its ``T / W`` tasks, so the average of the ``W`` ranks is the mean over all ``T``
   tasks: the same meta-gradient as one process with the whole batch (tested to float precision);
4. lets only rank 0 write checkpoints, ``metrics.jsonl``, ``train.log`` and the progress bar. On
   ``--resume`` every rank loads the same ``checkpoint.pt`` (so ``--out`` must be visible to all
   ranks: a shared file system across nodes). At the end the ranks check that their parameters are
   still identical.

Why an explicit all-reduce and not ``DistributedDataParallel``: DDP averages gradients in hooks on
``nn.Module`` parameters that fire during ``loss.backward()``. Our meta-gradient is computed
functionally — ``torch.autograd.grad`` / ``torch.func`` on a dict of meta-parameters, through
``functional_call`` and an inner loop of adapted copies — so those hooks never fire and DDP would
silently train each rank on its own tasks. One all-reduce of the gradient dict is all we need.

Ctrl-C: torchrun forwards SIGINT to every rank. The first SIGINT on any rank is voted on with the
next gradient all-reduce, so all ranks stop after the same meta-step and rank 0 saves a consistent
checkpoint (``--resume`` continues from it). A second Ctrl-C stops at once.

Fault injection (for tests): ``MLLIB_DIST_FAULT=kill:R:S`` makes rank ``R`` kill itself (SIGKILL)
after meta-step ``S``; ``hang:R:S`` makes it stop answering (sleep) after step ``S``.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Mapping

import torch
import torch.distributed as dist
from torch import Tensor

import mllib.data
from mllib.device import resolve_device
from mllib.train import meta_train

TIMEOUT_ENV = "MLLIB_DIST_TIMEOUT"
FAULT_ENV = "MLLIB_DIST_FAULT"
DEFAULT_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class DistEnv:
    """Where this process sits in the job, as torchrun describes it."""

    rank: int        # 0..world_size-1 over all nodes
    world_size: int  # number of processes over all nodes
    local_rank: int  # 0..nproc_per_node-1 on this node (picks the GPU)

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def detect(environ: Mapping[str, str] | None = None) -> DistEnv | None:
    """The torchrun environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``), or ``None`` outside it.

    Raises ``ValueError`` naming the variable when one is set but missing, not an integer or
    out of range.
    """
    env = os.environ if environ is None else environ
    if "WORLD_SIZE" not in env and "RANK" not in env:
        return None
    values = {}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        raw = env.get(name)
        if raw is None:
            if name == "LOCAL_RANK":
                continue
            raise ValueError(f"{name} is not set, but {'WORLD_SIZE' if name == 'RANK' else 'RANK'} is: launch "
                             f"with torchrun (it sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT)")
        try:
            values[name] = int(raw)
        except ValueError:
            raise ValueError(f"{name} must be an integer, got {raw!r}") from None
    world, rank = values["WORLD_SIZE"], values["RANK"]
    local = values.get("LOCAL_RANK", rank)
    if world < 1:
        raise ValueError(f"WORLD_SIZE must be an integer >= 1, got {world}")
    if not 0 <= rank < world:
        raise ValueError(f"RANK must be in 0..{world - 1} (WORLD_SIZE={world}), got {rank}")
    if local < 0:
        raise ValueError(f"LOCAL_RANK must be an integer >= 0, got {local}")
    return DistEnv(rank=rank, world_size=world, local_rank=local)


def backend_for(device: torch.device | str) -> str:
    """``"nccl"`` for CUDA devices, ``"gloo"`` otherwise (CPU)."""
    return "nccl" if torch.device(device).type == "cuda" else "gloo"


def timeout_seconds(environ: Mapping[str, str] | None = None) -> float:
    """Collective timeout from ``$MLLIB_DIST_TIMEOUT`` (seconds, > 0; default 600)."""
    env = os.environ if environ is None else environ
    raw = env.get(TIMEOUT_ENV)
    if raw is None or raw == "":
        return DEFAULT_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not value > 0:
        raise ValueError(f"{TIMEOUT_ENV} must be a number of seconds > 0, got {raw!r}")
    return value


def flatten(tensors: Mapping[str, Tensor], extra: int = 0) -> Tensor:
    """One float buffer ``[sum of numels + extra]`` holding every tensor of the dict, in order.

    The ``extra`` trailing slots are zeros (room for a few control values in the same message).
    """
    parts = [t.detach().reshape(-1) for t in tensors.values()]
    ref = parts[0] if parts else torch.zeros(0)
    if extra:
        parts.append(torch.zeros(extra, dtype=ref.dtype, device=ref.device))
    return torch.cat(parts)


def unflatten(flat: Tensor, like: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Inverse of :func:`flatten`: tensors shaped (and typed) like ``like``; extra slots ignored."""
    out, at = {}, 0
    for name, ref in like.items():
        n = ref.numel()
        out[name] = flat[at : at + n].view(ref.shape).to(ref.dtype)
        at += n
    return out


def average(tensors: Mapping[str, Tensor], world_size: int, group=None) -> dict[str, Tensor]:
    """The mean over ranks of each tensor of the dict (every rank gets the same result).

    One ``all_reduce`` (sum) of a flat buffer, divided by ``world_size``.
    """
    flat = flatten(tensors)
    dist.all_reduce(flat, op=dist.ReduceOp.SUM, group=group)
    flat /= world_size
    return unflatten(flat, tensors)


class _Coordinator:
    """``grad_hook`` and ``callback`` for :func:`mllib.train.meta_train` on one rank.

    The gradient all-reduce carries one extra slot: 1 where a rank saw Ctrl-C. After it, every
    rank knows whether any rank wants to stop, and the callback stops them all after that step.
    """

    def __init__(self, env: DistEnv, timeout: float, fault: str | None = None):
        self.env, self.timeout = env, timeout
        self.last_step: int | None = None
        self.local_stop = False
        self.agreed_stop = False
        self._previous_handler = None
        self._installed = False
        self.fault = _parse_fault(fault)

    # --- hooks given to meta_train
    def grad_hook(self, grads: dict[str, Tensor]) -> dict[str, Tensor]:
        if not self._installed:
            self._install()
        flat = flatten(grads, extra=1)
        flat[-1] = 1.0 if self.local_stop else 0.0
        where = (f"meta-step {self.last_step + 1}" if self.last_step is not None
                 else "the first meta-step of this run")
        try:
            dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        except Exception as err:  # gloo/NCCL raise RuntimeError subclasses (DistBackendError, ...)
            raise RuntimeError(
                f"rank {self.env.rank}/{self.env.world_size}: averaging the meta-gradients of {where} failed: "
                f"another rank stopped or did not answer within {self.timeout:g} s ({TIMEOUT_ENV}). "
                f"Look for the first failing rank in torchrun's report; resume with --resume "
                f"from the last checkpoint. [{type(err).__name__}: {_first_line(err)}]"
            ) from err
        self.agreed_stop = bool(flat[-1].item() > 0)
        flat /= self.env.world_size
        return unflatten(flat, grads)

    def callback(self, step: int, record: dict) -> None:
        self.last_step = step
        if self.fault is not None:
            kind, rank, at = self.fault
            if rank == self.env.rank and step == at:
                if kind == "kill":
                    sys.stderr.write(f"{FAULT_ENV}: rank {rank} kills itself after step {step}\n")
                    sys.stderr.flush()
                    os.kill(os.getpid(), signal.SIGKILL)
                sys.stderr.write(f"{FAULT_ENV}: rank {rank} stops answering after step {step}\n")
                sys.stderr.flush()
                while True:
                    time.sleep(3600)
        if self.agreed_stop:
            raise KeyboardInterrupt  # meta_train saves checkpoint.pt (rank 0), then re-raises

    # --- Ctrl-C voted across ranks
    def _install(self) -> None:
        """Replace meta_train's SIGINT handler (installed by then) with the voting one."""
        self._installed = True
        if threading.current_thread() is threading.main_thread():
            self._previous_handler = signal.signal(signal.SIGINT, self._on_sigint)

    def _on_sigint(self, signum, frame) -> None:
        if self.local_stop:
            raise KeyboardInterrupt
        self.local_stop = True
        if self.env.is_main:
            sys.stderr.write("Ctrl-C: all ranks stop after the next meta-step and rank 0 saves a checkpoint "
                             "(Ctrl-C again to abort now)\n")

    def uninstall(self) -> None:
        # meta_train restores its own previous handler on exit; only undo ours if it is still there
        if self._previous_handler is not None and signal.getsignal(signal.SIGINT) == self._on_sigint:
            signal.signal(signal.SIGINT, self._previous_handler)
        self._previous_handler = None


def _parse_fault(spec: str | None):
    if not spec:
        return None
    parts = spec.split(":")
    try:
        kind, rank, step = parts[0], int(parts[1]), int(parts[2])
        if kind not in ("kill", "hang") or len(parts) != 3:
            raise ValueError
    except (ValueError, IndexError):
        raise ValueError(f"{FAULT_ENV} must look like kill:RANK:STEP or hang:RANK:STEP, got {spec!r}") from None
    return kind, rank, step


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0][:300] if text else ""


def _quiet(message: str) -> None:
    """The log of ranks other than 0: nothing (rank 0 prints and writes train.log)."""


def check_in_sync(params: Mapping[str, Tensor], env: DistEnv) -> float:
    """Largest absolute difference between this rank's parameters and rank 0's (raises if any).

    All ranks apply the same averaged gradient to the same starting point, so the parameters
    must be bitwise identical; a difference means the ranks resumed from different checkpoints
    or ran different code.
    """
    flat = flatten(params)
    ref = flat.clone()
    dist.broadcast(ref, src=0)
    diff = float((flat - ref).abs().max()) if flat.numel() else 0.0
    if diff != 0.0:
        raise RuntimeError(
            f"rank {env.rank}: parameters differ from rank 0's by up to {diff:.3g} after training; the ranks "
            f"did not run the same meta-steps (different checkpoints on resume? different code versions?)"
        )
    return diff


def train(config, *, data=None, environ: Mapping[str, str] | None = None, log=None):
    """Run :func:`mllib.train.meta_train` on one rank of a torchrun job, or alone outside torchrun.

    ``log``: where rank 0 (or the single process) writes its progress lines (default: print).

    Returns the ``TrainResult`` on rank 0 (and in a single process), ``None`` on the other ranks.
    Raises ``RuntimeError`` with a clear message when another rank dies or stops answering.
    """
    env = detect(environ)
    if env is None:
        return meta_train(config, data=data, log=log)
    environ = os.environ if environ is None else environ
    timeout = timeout_seconds(environ)
    fault = environ.get(FAULT_ENV)
    device = resolve_device(config.device)
    if device.type == "cuda":
        if env.local_rank >= torch.cuda.device_count():
            raise ValueError(
                f"LOCAL_RANK={env.local_rank} but this node has {torch.cuda.device_count()} GPU(s): "
                f"use --nproc_per_node <= the number of GPUs"
            )
        device = torch.device("cuda", env.local_rank)
        torch.cuda.set_device(device)
        config = replace(config, device=str(device))
    backend = backend_for(device)
    dist.init_process_group(
        backend, timeout=timedelta(seconds=timeout), device_id=device if device.type == "cuda" else None
    )
    coordinator = _Coordinator(env, timeout, fault)
    try:
        if data is None:
            data = _load_data_rank0_first(env)
        result = meta_train(
            config, data=data, grad_hook=coordinator.grad_hook, callback=coordinator.callback,
            rank=env.rank, world_size=env.world_size, log=(log if env.is_main else _quiet),
        )
        check_in_sync(result.meta_params, env)
        # Leave together: a rank that tears down its connections while another is still finishing
        # the last collective once made that rank abort at exit (SIGABRT in gloo, seen in CI).
        dist.barrier()
    finally:
        coordinator.uninstall()
        dist.destroy_process_group()
    return result if env.is_main else None


def _load_data_rank0_first(env: DistEnv):
    """Rank 0 loads (and builds the cache if needed) first; the others then read the cache."""
    data = mllib.data.load_omniglot() if env.is_main else None
    dist.barrier()
    return data if env.is_main else mllib.data.load_omniglot()
