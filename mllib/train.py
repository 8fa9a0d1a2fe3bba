"""Meta-training: the outer loop around :func:`mllib.algorithms.meta_step` (notebook 05, section 2).

One meta-step, in words::

    batch = train_tasks.sample(meta_batch)                    # [T, ways*shots, 1, 28, 28] + queries
    meta_step(model, meta_params, batch, cfg, optimizer)      # meta-gradient over the T tasks, Adam step

Around it, :func:`meta_train` adds what a real run needs: periodic validation on a fixed,
seeded set of validation tasks (the ``val`` part of the split), ``best.pt`` kept by
validation accuracy, ``checkpoint.pt`` every ``checkpoint_every`` steps and on Ctrl-C,
``metrics.jsonl`` written as it goes, exact resumption (``resume=True``), a time budget
(``max_seconds``: stop after the meta-step that uses it up, validate, save) for time-to-accuracy
runs, and a clear stop when the loss stops being finite.

Output folder ``out`` (the names are in :mod:`mllib.checkpoint`)::

    checkpoint.pt    latest state (resume from here)
    best.pt          meta-parameters with the best validation accuracy so far
    metrics.jsonl    one JSON line per meta-step: step, loss, accuracy, val_accuracy, seconds
    train.log        the log lines printed during training
"""
from __future__ import annotations

import json
import math
import signal
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

import mllib.data
from mllib.algorithms import (ALL_ALGORITHMS, BN_MODES, FORMS, INCONTEXT, MetaConfig, MetaGradientNotFinite,
                              check_bn, default_bn, init_meta_params, load_into_model, meta_step, resolve_form)
from mllib.arguments import check_choice, check_int
from mllib.checkpoint import BEST_NAME, CHECKPOINT_NAME, LOG_NAME, METRICS_NAME, load_checkpoint, save_checkpoint
from mllib.config import Profile, resolve_profile
from mllib.data.splits import SPLITS
from mllib.device import describe_device, resolve_device
from mllib.evaluate import Protocol, task_accuracies
from mllib.learners import build_learner
from mllib.progress import progress_bar, write
from mllib.tasks import OmniglotTasks, TaskBatch

SPLIT_CHOICES = tuple(s for s, parts in SPLITS.items() if "val" in parts)  # training validates on "val"
VAL_SEED = 2017  # the validation tasks are the same for every run (and every training seed)

# Config keys that may change between a run and its resumption (they do not change the result).
RESUME_FREE_KEYS = (
    "requested",
    "profile.name",
    "profile.meta_steps",
    "profile.checkpoint_every",
    "profile.test_tasks",
)


@dataclass
class TrainConfig:
    """Everything that defines an Omniglot meta-training run.

    ``profile`` names a :mod:`mllib.config` profile (``auto``, ``quick``, ``full``; ``None`` reads
    ``$MLLIB_PROFILE``); ``device`` is ``auto``/``cpu``/``cuda``/``mps`` (``None`` reads ``$MLLIB_DEVICE``);
    ``overrides`` replaces any of its fields (e.g. ``{"meta_lr": 1e-3, "filters": 8}``);
    ``bn`` ``None`` takes the algorithm's default (``mllib.algorithms.default_bn``: ``"support"``
    for ``incontext``, ``"batch"`` otherwise);
    ``steps`` overrides the number of meta-steps; ``query`` overrides the profile's query
    images per class in training tasks; ``max_seconds`` (optional) is a training-time budget:
    the run stops after the meta-step that reaches it (the clock is ``metrics.jsonl``'s
    ``seconds``: meta-steps plus validations, summed over resumptions), validating and saving
    there as at the last step. Notebook 05, section 2.

        >>> TrainConfig(algo="maml", ways=20, profile="quick").resolved_profile().inner_steps   # 20-way: 3
        3
    """

    algo: str = "maml"
    ways: int = 5
    shots: int = 1
    query: int | None = None
    profile: str | None = None
    overrides: dict = field(default_factory=dict)
    steps: int | None = None
    device: str | None = None
    seed: int = 0
    out: str = "runs/default"
    bn: str | None = None
    form: str = "auto"
    resume: bool = False
    split: str = "maml"
    depth: int = 4
    progress: bool = True
    max_seconds: float | None = None

    def __post_init__(self) -> None:
        if self.bn is None and self.algo in ALL_ALGORITHMS:
            self.bn = default_bn(self.algo)

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad field and its allowed values."""
        check_choice("algo", self.algo, ALL_ALGORITHMS)
        check_choice("bn", self.bn, BN_MODES)
        check_bn(self.algo, self.bn)
        check_choice("form", self.form, FORMS)
        check_choice("split", self.split, SPLIT_CHOICES)
        check_int("ways", self.ways, 2)
        check_int("shots", self.shots, 1)
        check_int("depth", self.depth, 1)
        if self.query is not None:
            check_int("query", self.query, 1)
        if self.steps is not None:
            check_int("steps", self.steps, 1)
        check_int("seed", self.seed, 0)
        if self.max_seconds is not None and not (
            isinstance(self.max_seconds, (int, float)) and not isinstance(self.max_seconds, bool)
            and math.isfinite(self.max_seconds) and self.max_seconds > 0
        ):
            raise ValueError(f"max_seconds must be a number of seconds > 0 (or None for no budget), "
                             f"got {self.max_seconds!r}")

    def resolved_profile(self) -> Profile:
        """The profile with ``overrides``, ``query`` and ``steps`` applied."""
        overrides = dict(self.overrides)
        if self.query is not None:
            overrides["query"] = self.query
        if self.steps is not None:
            overrides["meta_steps"] = self.steps
        profile = resolve_profile(self.profile, self.ways, **overrides)
        for name in ("meta_steps", "meta_batch", "query", "filters", "val_every", "val_tasks",
                     "test_query", "checkpoint_every"):
            check_int(name, getattr(profile, name), 1)
        check_int("inner_steps", profile.inner_steps, 0)
        check_int("inner_steps_test", profile.inner_steps_test, 0)
        if not profile.meta_lr > 0 or not profile.inner_lr > 0:
            raise ValueError(f"meta_lr and inner_lr must be > 0, got {profile.meta_lr} and {profile.inner_lr}")
        return profile

    def run_dict(self, profile: Profile | None = None) -> dict:
        """The full config as stored in checkpoints: identity fields, resolved profile, request."""
        profile = profile or self.resolved_profile()
        return {
            "task": "omniglot",
            "algo": self.algo,
            "ways": self.ways,
            "shots": self.shots,
            "bn": self.bn,
            "seed": self.seed,
            "split": self.split,
            "depth": self.depth,
            "profile": profile.to_dict(),
            "requested": asdict(self),
        }


@dataclass
class TrainResult:
    """What :func:`meta_train` hands back; ``meta_params`` are the final (last-step) ones, and
    ``model`` holds them too (``mllib.algorithms.load_into_model``: ``model(x)`` is the learned start).

    Notebook 05, section 2; :func:`meta_train` has an example."""

    model: torch.nn.Module
    meta_params: dict
    meta_config: MetaConfig
    config: dict
    step: int
    best_val_accuracy: float | None
    best_step: int | None
    seconds: float
    device: str
    form: str
    out: Path

    @property
    def checkpoint_path(self) -> Path:
        return self.out / CHECKPOINT_NAME

    @property
    def best_path(self) -> Path:
        return self.out / BEST_NAME

    @property
    def metrics_path(self) -> Path:
        return self.out / METRICS_NAME


class TrainingDiverged(RuntimeError):
    """The loss or a meta-gradient stopped being finite; ``step`` is the meta-step (1-based)."""

    def __init__(self, message: str, step: int):
        super().__init__(message)
        self.step = step


def meta_train(
    config: TrainConfig,
    *,
    data=None,
    train_tasks=None,
    grad_hook: Callable[[dict], dict] | None = None,
    callback: Callable[[int, dict], None] | None = None,
    rank: int = 0,
    world_size: int = 1,
    log: Callable[[str], None] | None = None,
) -> TrainResult:
    """Meta-train on Omniglot as ``config`` says; see the module docstring for the files written.

    * ``data``: an ``OmniglotData`` (default: ``mllib.data.load_omniglot()``, which reads ``$MLLIB_DATA``).
    * ``train_tasks``: any object with ``sample(n) -> TaskBatch``, ``state_dict()`` and
      ``load_state_dict()`` (default: ``OmniglotTasks(data, split, "train", ..., seed=config.seed)``).
    * ``grad_hook(grads) -> grads``: called on the meta-gradient dict before the optimiser step
      (for distributed training: all-reduce and average across ranks here).
    * ``rank``/``world_size``: every rank samples the same full meta-batch from the same seeded
      stream and keeps its ``batch.chunk(world_size)[rank]``; with equal chunks, averaging the
      ranks' gradients in ``grad_hook`` gives the single-process meta-gradient. Only rank 0
      writes files.
    * ``callback(step, record)``: called after every completed meta-step with its metrics
      record; raising ``KeyboardInterrupt`` there behaves like Ctrl-C (checkpoint, then re-raise).

    Raises :class:`TrainingDiverged` when the loss is not finite (nothing of that step is applied
    or saved) and re-raises ``KeyboardInterrupt`` after saving ``checkpoint.pt``. Notebook 05, section 2.

    Example: two meta-steps on blank 28x28 images that carry real character names (so the split
    manifests find them), with a tiny learner::

        >>> import tempfile
        >>> from mllib.data import OmniglotData
        >>> from mllib.data.synthetic import synthetic_characters
        >>> names = list(synthetic_characters(per_part=5))
        >>> images = torch.zeros(len(names), 20, 28, 28, dtype=torch.uint8)     # [characters, drawers, 28, 28]
        >>> data = OmniglotData(images, names, ["background"] * len(names))
        >>> with tempfile.TemporaryDirectory() as out:
        ...     config = TrainConfig(ways=3, profile="quick", steps=2, device="cpu", out=out, progress=False,
        ...                          overrides=dict(filters=4, meta_batch=2, val_tasks=2))
        ...     result = meta_train(config, data=data, log=lambda message: None)
        ...     sorted(path.name for path in result.out.iterdir())
        ['best.pt', 'checkpoint.pt', 'metrics.jsonl', 'train.log']
        >>> result.step, sorted(result.meta_params) == sorted(dict(result.model.named_parameters()))
        (2, True)
    """
    run = _start(config, data, train_tasks, rank, world_size, log)
    stop = _StopRequest()
    bar = progress_bar(total=run.profile.meta_steps, initial=run.step,
                       desc=f"{config.algo} {config.ways}w{config.shots}s", enabled=config.progress and run.is_main)
    consistent = True  # False while a meta-step is half done
    stop.install()
    try:
        while run.step < run.profile.meta_steps and not _budget_spent(config.max_seconds, run.elapsed):
            consistent = False
            record, out_of_time = _train_step(run, grad_hook, rank, world_size)
            consistent = True
            _report(run, bar, record)
            if callback is not None:
                callback(run.step, record)
            if stop.requested:
                raise KeyboardInterrupt
            if out_of_time:
                run.say(f"time budget of {config.max_seconds:g} s used up after step "
                        f"{run.step}/{run.profile.meta_steps}")
                break
    except KeyboardInterrupt:
        _save_on_interrupt(run, consistent)
        raise
    finally:
        stop.uninstall()
        bar.close()
    run.say(f"done: {run.step} steps in {run.elapsed:.0f} s; best val acc "
            f"{'-' if run.best_val is None else f'{run.best_val:.4f}'} at step {run.best_step}; wrote {run.out}")
    return run.result()


@dataclass
class _Run:
    """One meta-training run in progress: what :func:`meta_train`'s loop reads and updates."""

    config: TrainConfig
    profile: Profile
    run_dict: dict
    device: torch.device
    meta_cfg: MetaConfig
    model: torch.nn.Module
    meta_params: dict
    optimizer: torch.optim.Optimizer
    train_tasks: Any
    val_tasks: TaskBatch
    val_protocol: Protocol
    is_main: bool
    say: Callable[[str], None]
    step: int = 0
    best_val: float | None = None
    best_step: int | None = None
    elapsed: float = 0.0

    @property
    def out(self) -> Path:
        return Path(self.config.out)

    def save(self, name: str) -> None:
        """Write the run's state to ``out/name`` (rank 0 only)."""
        if self.is_main:
            save_checkpoint(
                self.out / name, meta_params=self.meta_params, optimizer_state=self.optimizer.state_dict(),
                config=self.run_dict, step=self.step, sampler_state=self.train_tasks.state_dict(),
                torch_rng=torch.get_rng_state(), best_val_accuracy=self.best_val, best_step=self.best_step,
                elapsed=self.elapsed,
            )

    def result(self) -> TrainResult:
        meta_params = {k: v.detach() for k, v in self.meta_params.items()}
        return TrainResult(
            model=load_into_model(self.model, meta_params), meta_params=meta_params, meta_config=self.meta_cfg,
            config=self.run_dict, step=self.step, best_val_accuracy=self.best_val, best_step=self.best_step,
            seconds=self.elapsed, device=str(self.device), form=self.meta_cfg.form, out=self.out,
        )


def _check_layout(config: TrainConfig, profile: Profile, rank: int, world_size: int) -> None:
    """The checks of a run's process layout that ``TrainConfig.validate`` cannot make alone."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in 0..{world_size - 1} (world_size={world_size}), got {rank}")
    if config.max_seconds is not None and world_size > 1:
        raise ValueError(
            "max_seconds works in one process only: each rank would read its own clock and stop at a "
            "different step; give a number of meta-steps (steps / --steps) for distributed runs"
        )
    if profile.meta_batch % world_size:
        raise ValueError(
            f"meta_batch={profile.meta_batch} must be divisible by world_size={world_size} "
            f"so that every rank gets the same number of tasks"
        )


def _start(config: TrainConfig, data, train_tasks, rank: int, world_size: int, log) -> _Run:
    """Check the config, build the learner, the optimiser and the task streams; resume if asked."""
    config.validate()
    profile = config.resolved_profile()
    _check_layout(config, profile, rank, world_size)
    device = resolve_device(config.device)
    meta_cfg = MetaConfig.from_profile(config.algo, profile, config.bn, resolve_form(config.form, device))
    is_main = rank == 0
    if is_main:
        Path(config.out).mkdir(parents=True, exist_ok=True)
    say = _Logger(Path(config.out) / LOG_NAME if is_main else None, log)
    data = mllib.data.load_omniglot() if data is None else data
    # Every random stream comes from config.seed: the initial weights (torch's global generator)
    # and the training tasks (the sampler's own generator). Validation tasks use VAL_SEED.
    torch.manual_seed(config.seed)
    model = build_learner(config.algo, config.ways, profile.filters, config.depth).to(device)
    meta_params = {k: v.detach().clone().to(device).requires_grad_(True)
                   for k, v in init_meta_params(model, meta_cfg).items()}
    if train_tasks is None:
        train_tasks = OmniglotTasks(data, split=config.split, part="train", ways=config.ways, shots=config.shots,
                                    query=profile.query, seed=config.seed, device=device)  # built on the device
    val_tasks = OmniglotTasks(data, split=config.split, part="val", ways=config.ways, shots=config.shots,
                              query=profile.test_query, seed=VAL_SEED).sample(profile.val_tasks)
    val_protocol = Protocol(meta_cfg, config.ways, config.shots, profile.test_query, profile.inner_steps_test,
                            config.split)
    run = _Run(config, profile, config.run_dict(profile), device, meta_cfg, model, meta_params,
               torch.optim.Adam(list(meta_params.values()), lr=profile.meta_lr), train_tasks, val_tasks,
               val_protocol, is_main, say)
    _resume_or_begin(run)
    say(_banner(run, rank, world_size))
    return run


def _resume_or_begin(run: _Run) -> None:
    """Restore the state of ``checkpoint.pt`` (``resume=True``), or begin a fresh ``metrics.jsonl``."""
    ckpt_path, metrics_path = run.out / CHECKPOINT_NAME, run.out / METRICS_NAME
    if run.config.resume and ckpt_path.is_file():
        state = load_checkpoint(ckpt_path, expected_config=run.run_dict, ignore=RESUME_FREE_KEYS)
        missing = set(run.meta_params) ^ set(state["meta_params"])
        if missing:
            raise ValueError(f"checkpoint {ckpt_path} has different parameter names: {sorted(missing)}")
        with torch.no_grad():
            for k, p in run.meta_params.items():
                p.copy_(state["meta_params"][k])
        run.optimizer.load_state_dict(state["optimizer"])
        run.train_tasks.load_state_dict(state["sampler"])
        torch.set_rng_state(state["torch_rng"])
        run.step, run.best_val, run.best_step = state["step"], state["best_val_accuracy"], state["best_step"]
        run.elapsed = state.get("elapsed", 0.0)
        if run.is_main:
            _truncate_metrics(metrics_path, run.step)
        run.say(f"resumed from {ckpt_path} at step {run.step}/{run.profile.meta_steps}")
        return
    if ckpt_path.is_file() and run.is_main:
        raise ValueError(
            f"{run.out} already holds a run ({ckpt_path}); pass resume=True (--resume) to continue it, "
            f"or choose another out folder"
        )
    if run.config.resume:
        run.say(f"no checkpoint in {run.out} yet: starting a fresh run")
    if run.is_main:
        metrics_path.write_text("")


def _banner(run: _Run, rank: int, world_size: int) -> str:
    config, profile = run.config, run.profile
    inner = ("no inner loop" if config.algo == INCONTEXT else
             f"inner {profile.inner_steps} x lr {profile.inner_lr} (test {profile.inner_steps_test})")
    return (
        f"{config.algo} {config.ways}-way {config.shots}-shot | device {describe_device(run.device)} | "
        f"form {run.meta_cfg.form}{' (auto)' if config.form == 'auto' else ''} | bn {config.bn} | "
        f"profile {profile.name}: {profile.meta_steps} steps, meta-batch {profile.meta_batch}, "
        f"query {profile.query}, filters {profile.filters}, {inner}, meta-lr {profile.meta_lr}, seed {config.seed}"
        + (f" | rank {rank}/{world_size}" if world_size > 1 else "")
    )


def _train_step(run: _Run, grad_hook, rank: int, world_size: int) -> tuple[dict, bool]:
    """One meta-step, then validation and checkpoints when due; ``(metrics record, out of time)``."""
    profile, t0 = run.profile, time.perf_counter()
    batch = run.train_tasks.sample(profile.meta_batch)
    if world_size > 1:
        batch = batch.chunk(world_size)[rank]
    try:
        _, stats = meta_step(run.model, run.meta_params, batch.to(run.device), run.meta_cfg, run.optimizer,
                             grad_hook, check_finite=True)
    except MetaGradientNotFinite as err:
        raise _diverged(run, str(err)) from None
    run.step += 1
    record = {"step": run.step, "loss": float(stats["loss"]), "accuracy": float(stats.get("accuracy", math.nan)),
              "val_accuracy": None}
    out_of_time = _budget_spent(run.config.max_seconds, run.elapsed + time.perf_counter() - t0)
    last = run.step == profile.meta_steps or out_of_time
    if run.step % profile.val_every == 0 or last:
        record["val_accuracy"] = _validate(run)
    run.elapsed += time.perf_counter() - t0
    record["seconds"] = round(run.elapsed, 3)
    if run.is_main:
        with open(run.out / METRICS_NAME, "a") as handle:
            handle.write(json.dumps(record) + "\n")
    if run.step % profile.checkpoint_every == 0 or last:
        run.save(CHECKPOINT_NAME)
    return record, out_of_time


def _validate(run: _Run) -> float:
    """Mean accuracy on the fixed validation tasks; ``best.pt`` is saved when it is the best so far."""
    val = float(task_accuracies(run.model, run.meta_params, run.val_protocol, run.val_tasks).mean())
    if run.best_val is None or val > run.best_val:
        run.best_val, run.best_step = val, run.step
        run.save(BEST_NAME)
    return val


def _diverged(run: _Run, what: str) -> TrainingDiverged:
    ckpt_path = run.out / CHECKPOINT_NAME
    kept = (f"the last good checkpoint is {ckpt_path} (step {_ckpt_step(ckpt_path)})"
            if ckpt_path.is_file() else "no checkpoint had been written yet")
    return TrainingDiverged(
        f"training stopped at step {run.step + 1}: {what}. Try a lower learning rate "
        f"(meta_lr={run.profile.meta_lr}, inner_lr={run.profile.inner_lr}; --meta-lr / --inner-lr); {kept}.",
        step=run.step + 1,
    )


def _report(run: _Run, bar, record: dict) -> None:
    """The progress bar and, after a validation, a log line."""
    best = "-" if run.best_val is None else f"{run.best_val:.3f}"
    bar.update(1)
    bar.set_postfix(loss=f"{record['loss']:.3f}", acc=f"{record['accuracy']:.3f}", val=best, refresh=False)
    if record["val_accuracy"] is not None:
        run.say(f"step {run.step}: loss {record['loss']:.4f}, train acc {record['accuracy']:.4f}, "
                f"val acc {record['val_accuracy']:.4f} (best {run.best_val:.4f} at step {run.best_step}), "
                f"{run.elapsed:.0f} s")


def _save_on_interrupt(run: _Run, consistent: bool) -> None:
    ckpt_path = run.out / CHECKPOINT_NAME
    if consistent:
        run.save(CHECKPOINT_NAME)
        run.say(f"interrupted after step {run.step}: saved {ckpt_path}; continue with resume=True (--resume)")
    else:
        run.say(f"aborted in the middle of step {run.step + 1}: kept the last checkpoint {ckpt_path} "
                f"(step {_ckpt_step(ckpt_path)}); continue with resume=True (--resume)")

def time_to_accuracy(records: list[dict], target: float) -> dict | None:
    """The first validation of ``records`` (from ``mllib.checkpoint.read_metrics``) at or above ``target``.

    The "time to accuracy" of the model cards (``mllib.publish``); notebook 05 plots the records.

    Returns ``{"step", "seconds", "val_accuracy"}`` of that validation, or ``None`` when no
    validation reached ``target`` (a fraction in (0, 1], e.g. ``0.9``).

        >>> records = [{"step": 100, "seconds": 20.0, "val_accuracy": 0.85},
        ...            {"step": 200, "seconds": 41.5, "val_accuracy": 0.92}]
        >>> time_to_accuracy(records, 0.9)
        {'step': 200, 'seconds': 41.5, 'val_accuracy': 0.92}
    """
    if not 0 < target <= 1:
        raise ValueError(f"target must be an accuracy in (0, 1], e.g. 0.9 for 90%, got {target!r}")
    for record in records:
        if record.get("val_accuracy") is not None and record["val_accuracy"] >= target:
            return {"step": record["step"], "seconds": record["seconds"], "val_accuracy": record["val_accuracy"]}
    return None


# --------------------------------------------------------------------------------------------
def _budget_spent(max_seconds: float | None, elapsed: float) -> bool:
    return max_seconds is not None and elapsed >= max_seconds


def _ckpt_step(path: Path) -> str:
    try:
        return str(load_checkpoint(path)["step"])
    except (OSError, ValueError):
        return "?"


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop records past ``step`` (steps done after the last checkpoint are redone on resume)."""
    if not path.is_file():
        return
    keep = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= step]
    path.write_text("".join(line + "\n" for line in keep))


class _Logger:
    """Print through tqdm (so the bar stays intact) and append to ``train.log``."""

    def __init__(self, path: Path | None, log: Callable[[str], None] | None):
        self.path, self.log = path, log

    def __call__(self, message: str) -> None:
        if self.log is not None:
            self.log(message)
        else:
            write(message)
        if self.path is not None:
            with open(self.path, "a") as handle:
                handle.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n")


class _StopRequest:
    """First Ctrl-C: finish the current meta-step, checkpoint, stop. Second Ctrl-C: stop at once."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def install(self) -> None:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)

    def uninstall(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        write("Ctrl-C: stopping after this meta-step and saving a checkpoint (Ctrl-C again to abort now)")
