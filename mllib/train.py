"""Meta-training: the outer loop around :func:`mllib.algorithms.meta_step` (notebook 05, section 2).

One meta-step, in words::

    batch = train_tasks.sample(meta_batch)                    # [T, ways*shots, 1, 28, 28] + queries
    meta_step(model, meta_params, batch, cfg, optimizer)      # meta-gradient over the T tasks, Adam step

Around it, :func:`meta_train` adds what a real run needs: periodic validation on a fixed,
seeded set of validation tasks (the ``val`` part of the split; the ``lake`` split has none, so
its validation characters are five background alphabets held out from training, see
:func:`mllib.data.splits.split_parts`), ``best.pt`` kept by validation accuracy, ``checkpoint.pt`` every
``checkpoint_every`` steps and on Ctrl-C or SIGTERM,
``metrics.jsonl`` written as it goes, exact resumption (``resume=True``), a time budget
(``max_seconds``: stop after the meta-step that uses it up, validate, save) for time-to-accuracy
runs, and a clear stop when the loss, a meta-gradient or a meta-parameter stops being finite
(nothing non-finite is ever saved).

The output folder is checked (created, written to) before any work, and locked for the whole run
(``mllib.run_lock``: a second run into it refuses, naming the PID that holds it); temporary files
left there by killed writes are removed. A copy of Omniglot that lacks characters of the split is
refused unless ``allow_partial_data`` (then the run is marked non-standard: ``protocol_note``).

Output folder ``out`` (the names are in :mod:`mllib.checkpoint`)::

    checkpoint.pt    latest state (resume from here)
    best.pt          meta-parameters with the best validation accuracy so far
    metrics.jsonl    one JSON line per meta-step: step, loss, accuracy, val_accuracy, seconds
    train.log        the log lines printed during training
    run.lock         while the run is in progress: its PID
"""
from __future__ import annotations

import json
import math
import os
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import torch

import mllib.data
from mllib.algorithms import (ALL_ALGORITHMS, INCONTEXT, META_GRADIENT_FORMS, MetaConfig, MetaGradientNotFinite,
                              check_algorithm_settings, default_bn, head_init_for, init_meta_params, meta_step,
                              resolve_form)
from mllib.arguments import check_choice, check_int, check_seed
from mllib.checkpoint import (BEST_NAME, CHECKPOINT_NAME, LOG_NAME, METRICS_NAME, check_params_match,
                              load_checkpoint, read_metrics, save_checkpoint)
from mllib.config import Profile, resolve_profile
from mllib.data.splits import SPLIT_CHOICES, SPLITS, check_split_complete, split_parts
from mllib.device import describe_device, resolve_device
from mllib.evaluate import EvalProtocol, task_accuracies
from mllib.files import append_text, atomic_write_text, check_output_dir, remove_orphaned_temp_files
from mllib.learners import build_learner
from mllib.models import load_into_model
from mllib.progress import progress_bar, write
from mllib.run_lock import RunLock
from mllib.schedules import meta_lr_at, set_meta_lr
from mllib.signals import StopRequest, signal_name
from mllib.tasks import OmniglotTasks, TaskBatch
from mllib.timing import budget_spent, check_max_seconds, now

VAL_SEED = 2017  # the validation tasks are the same for every run (and every training seed)

# Config keys that may change between a run and its resumption (they do not change the result).
RESUME_FREE_KEYS = (
    "requested",
    "profile.name",
    "profile.meta_steps",
    "profile.checkpoint_every",
    "profile.test_tasks",
    "protocol_note",
)


@dataclass
class TrainConfig:
    """Everything that defines an Omniglot meta-training run.

    ``profile`` names a :mod:`mllib.config` profile (``auto``, ``quick``, ``gpu``, ``laptop``, ``full``; ``None`` reads
    ``$MLLIB_PROFILE``); ``device`` is ``auto``/``cpu``/``cuda``/``mps`` (``None`` reads ``$MLLIB_DEVICE``);
    ``overrides`` replaces any of its fields (e.g. ``{"meta_lr": 1e-3, "filters": 8}``);
    ``bn`` ``None`` takes the algorithm's default (``mllib.algorithms.default_bn``: ``"support"``
    for ``incontext``, ``"batch"`` otherwise);
    ``steps`` overrides the number of meta-steps; ``query`` overrides the profile's query
    images per class in training tasks; ``max_seconds`` (optional) is a training-time budget:
    the run stops after the meta-step that reaches it (the clock is ``metrics.jsonl``'s
    ``seconds``: meta-steps plus validations, summed over resumptions), validating and saving
    there as at the last step. ``allow_partial_data``: train on a copy of Omniglot that lacks
    characters of the split (refused otherwise; ``$MLLIB_ALLOW_PARTIAL_DATA`` allows it too), with
    a warning and the run marked non-standard. Notebook 05, section 2.

        >>> TrainConfig(algo="maml", ways=20, profile="quick").resolved_profile().inner_lr   # 20-way: 1.6
        1.6
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
    allow_partial_data: bool = False

    def __post_init__(self) -> None:
        if self.bn is None and self.algo in ALL_ALGORITHMS:
            self.bn = default_bn(self.algo)

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad field and its allowed values."""
        if not isinstance(self.out, (str, os.PathLike)) or not str(self.out).strip():
            raise ValueError(f"out must be a folder path, got {self.out!r}")
        check_algorithm_settings(self.algo, self.bn)   # its head_init comes with the profile (resolved_profile)
        check_choice("form", self.form, META_GRADIENT_FORMS)
        check_choice("split", self.split, SPLIT_CHOICES)
        check_int("ways", self.ways, 2)
        check_int("shots", self.shots, 1)
        check_int("depth", self.depth, 1)
        if self.query is not None:
            check_int("query", self.query, 1)
        if self.steps is not None:
            check_int("steps", self.steps, 1)
        check_seed("seed", self.seed)
        check_max_seconds(self.max_seconds)

    def resolved_profile(self) -> Profile:
        """The profile with ``overrides``, ``query`` and ``steps`` applied.

        A profile's ``head_init="zero"`` applies to the algorithms with an inner loop on the head
        (``mllib.algorithms.ZERO_HEAD_ALGORITHMS``); the others get ``"learned"`` (asking for a zero
        head explicitly, in ``overrides``, is an error for them)."""
        overrides = dict(self.overrides)
        if self.query is not None:
            overrides["query"] = self.query
        if self.steps is not None:
            overrides["meta_steps"] = self.steps
        profile = resolve_profile(self.profile, self.ways, **overrides)
        if "head_init" in overrides:  # asked for by name: it must fit the algorithm
            check_algorithm_settings(self.algo, head_init=overrides["head_init"])
        head_init = head_init_for(self.algo, profile.head_init)  # the profile's zeroing trick is for those only
        if head_init != profile.head_init:
            profile = replace(profile, head_init=head_init)
        for name in ("meta_steps", "meta_batch", "query", "filters", "val_every", "val_tasks",
                     "test_query", "checkpoint_every"):
            check_int(name, getattr(profile, name), 1)
        check_int("inner_steps", profile.inner_steps, 0)
        check_int("inner_steps_test", profile.inner_steps_test, 0)
        _check_inner_steps_learn_something(self.algo, profile)
        return profile

    def run_dict(self, profile: Profile | None = None, protocol_note: str | None = None) -> dict:
        """The full config as stored in checkpoints: identity fields, resolved profile, request
        (and ``protocol_note`` when the data made the run non-standard)."""
        profile = profile or self.resolved_profile()
        return ({"protocol_note": protocol_note} if protocol_note else {}) | {
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
    ``model`` holds them too (``mllib.models.load_into_model``: ``model(x)`` is the learned start).

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


def _check_inner_steps_learn_something(algo: str, profile: Profile) -> None:
    """``ValueError`` for 0 inner steps where nothing would be learned: Reptile (its meta-gradient,
    the start minus the adapted weights, is exactly 0) and a zero head (it never leaves zero, so every
    prediction is chance; at test time too, ``inner_steps_test``)."""
    zero_head = profile.head_init == "zero"
    if profile.inner_steps == 0 and (algo == "reptile" or zero_head):
        why = ("Reptile moves the start towards the adapted weights, which 0 steps leave where they are"
               if algo == "reptile" else "the zero head (head_init='zero') is never adapted")
        raise ValueError(f"inner_steps=0 trains nothing for algo={algo}: {why}; use --inner-steps 1 or more")
    if profile.inner_steps_test == 0 and zero_head:
        raise ValueError(f"inner_steps_test=0 scores a zero head (head_init='zero') at chance: it is never "
                         f"adapted; use --inner-steps-test 1 or more")


class TrainingDiverged(RuntimeError):
    """The loss, a meta-gradient or a meta-parameter stopped being finite; ``step`` is the meta-step
    (1-based)."""

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

    Raises :class:`TrainingDiverged` when the loss, a meta-gradient or the updated meta-parameters
    are not finite (nothing of that step is saved), ``mllib.run_lock.RunLocked`` when another run
    uses ``out``, and, after saving ``checkpoint.pt``, ``KeyboardInterrupt`` on Ctrl-C
    (``mllib.signals.Interrupted`` with ``signum`` for Ctrl-C and SIGTERM). Notebook 05, section 2.

    Example: two meta-steps on blank 28x28 images that carry real character names (so the split
    manifests find them; a few per part, hence ``allow_partial_data``), with a tiny learner::

        >>> import tempfile
        >>> from mllib.data import OmniglotData
        >>> from mllib.data.synthetic import synthetic_characters
        >>> names = list(synthetic_characters(per_part=5))
        >>> images = torch.zeros(len(names), 20, 28, 28, dtype=torch.uint8)     # [characters, drawers, 28, 28]
        >>> data = OmniglotData(images, names, ["background"] * len(names))
        >>> with tempfile.TemporaryDirectory() as out:
        ...     config = TrainConfig(ways=3, profile="quick", steps=2, device="cpu", out=out, progress=False,
        ...                          overrides=dict(filters=4, meta_batch=2, val_tasks=2), allow_partial_data=True)
        ...     result = meta_train(config, data=data, log=lambda message: None)
        ...     sorted(path.name for path in result.out.iterdir())
        ['best.pt', 'checkpoint.pt', 'metrics.jsonl', 'train.log']
        >>> result.step, sorted(result.meta_params) == sorted(dict(result.model.named_parameters()))
        (2, True)
    """
    with ExitStack() as held:  # the run folder's lock, released however the run ends
        run = _start(config, data, train_tasks, rank, world_size, log, held)
        _loop(run, grad_hook, callback, rank, world_size)
        best = "-" if run.best_val is None else f"{run.best_val:.4f}"
        run.say(f"done: {run.step} steps in {run.elapsed:.0f} s; best val acc {best} at step {run.best_step}; "
                f"wrote {run.out}")
        return run.result()


def _loop(run: "_Run", grad_hook, callback, rank: int, world_size: int) -> None:
    """Meta-steps until the last one (or the time budget); Ctrl-C and SIGTERM save, then raise."""
    config = run.config
    stop = StopRequest(write)
    bar = progress_bar(total=run.profile.meta_steps, initial=run.step,
                       desc=f"{config.algo} {config.ways}w{config.shots}s", enabled=config.progress and run.is_main)
    consistent = True  # False while a meta-step is half done
    stop.install()
    try:
        while run.step < run.profile.meta_steps and not budget_spent(config.max_seconds, run.elapsed):
            consistent = False
            record, out_of_time = _train_step(run, grad_hook, rank, world_size)
            consistent = True
            _report(run, bar, record)
            if callback is not None:
                callback(run.step, record)
            if stop.requested:
                raise stop.interrupt()
            if out_of_time:
                run.say(f"time budget of {config.max_seconds:g} s used up after step "
                        f"{run.step}/{run.profile.meta_steps}")
                break
    except KeyboardInterrupt as err:
        _save_on_interrupt(run, consistent, err)
        raise
    finally:
        stop.uninstall()
        bar.close()


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
    val_protocol: EvalProtocol
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


def _start(config: TrainConfig, data, train_tasks, rank: int, world_size: int, log, held: ExitStack) -> _Run:
    """Check the config and the out folder (then hold its lock in ``held``), build the learner, the
    optimiser and the task streams; resume if asked."""
    config.validate()
    profile = config.resolved_profile()
    _check_layout(config, profile, rank, world_size)
    device = resolve_device(config.device)
    meta_cfg = MetaConfig.from_profile(config.algo, profile, config.bn, resolve_form(config.form, device))
    is_main = rank == 0
    if is_main:
        check_output_dir(config.out, "out")
        lock = held.enter_context(RunLock(config.out))
        remove_orphaned_temp_files(config.out)
    say = _Logger(Path(config.out) / LOG_NAME if is_main else None, log)
    if is_main and lock.taken_over is not None:
        say(f"took over the stale lock of process {lock.taken_over}, which is no longer running")
    data = mllib.data.load_omniglot() if data is None else data
    parts = ("train", "val") if "val" in SPLITS[config.split] else ("train",)  # lake validates on train alphabets
    note = check_split_complete(data.characters, config.split, parts, config.allow_partial_data or None)
    if note:
        say(f"WARNING: Omniglot is incomplete: this run is {note}")
    # Every random stream comes from config.seed: the initial weights (torch's global generator)
    # and the training tasks (the sampler's own generator). Validation tasks use VAL_SEED.
    torch.manual_seed(config.seed)
    model = build_learner(config.algo, config.ways, profile.filters, config.depth).to(device)
    meta_params = {k: v.detach().clone().to(device).requires_grad_(True)
                   for k, v in init_meta_params(model, meta_cfg).items()}
    parts = split_parts(config.split, data.characters)
    if train_tasks is None:
        train_tasks = OmniglotTasks(data, part="train", ways=config.ways, shots=config.shots, **parts["train"],
                                    query=profile.query, seed=config.seed, device=device)  # built on the device
    val_tasks = OmniglotTasks(data, part="val", ways=config.ways, shots=config.shots, **parts["val"],
                              query=profile.test_query, seed=VAL_SEED).sample(profile.val_tasks)
    val_protocol = EvalProtocol(meta_cfg, config.ways, config.shots, profile.test_query,
                                profile.inner_steps_test, config.split)
    run = _Run(config, profile, config.run_dict(profile, note), device, meta_cfg, model, meta_params,
               torch.optim.Adam(list(meta_params.values()), lr=profile.meta_lr), train_tasks, val_tasks,
               val_protocol, is_main, say)
    _resume_or_begin(run)
    say(_banner(run, rank, world_size))
    if profile.head_init != "learned" or profile.meta_lr_schedule != "constant":
        say(f"recipe: head_init {profile.head_init}"
            + (" (zeroing trick: the head starts every task at zero)" if profile.head_init == "zero" else "")
            + f", meta-lr {profile.meta_lr_schedule}"
            + (f" (annealed to 0 over {profile.meta_steps} steps)" if profile.meta_lr_schedule == "cosine" else ""))
    return run


def _resume_or_begin(run: _Run) -> None:
    """Restore the state of ``checkpoint.pt`` (``resume=True``), or begin a fresh ``metrics.jsonl``."""
    ckpt_path, metrics_path = run.out / CHECKPOINT_NAME, run.out / METRICS_NAME
    if run.config.resume and ckpt_path.is_file():
        state = load_checkpoint(ckpt_path, expected_config=run.run_dict, ignore=RESUME_FREE_KEYS)
        _check_schedule_horizon(state["config"], run.profile, ckpt_path)
        check_params_match(state["meta_params"], run.meta_params, str(ckpt_path))
        if state["config"].get("protocol_note") and not run.run_dict.get("protocol_note"):
            run.run_dict = {"protocol_note": state["config"]["protocol_note"], **run.run_dict}  # stays marked
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
        atomic_write_text(metrics_path, "")


def _check_schedule_horizon(saved: dict, profile: Profile, ckpt_path: Path) -> None:
    """A cosine-annealed run resumes only with its own number of meta-steps (the schedule's length)."""
    steps = saved.get("profile", {}).get("meta_steps")
    if profile.meta_lr_schedule == "cosine" and steps != profile.meta_steps:
        raise ValueError(
            f"{ckpt_path} was trained with a cosine meta-lr schedule over {steps} meta-steps; resume it with "
            f"the same number of steps (steps={steps}, --steps {steps}), not {profile.meta_steps}: the "
            f"learning rate of every step depends on it"
        )


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
    profile, t0 = run.profile, now()
    batch = run.train_tasks.sample(profile.meta_batch)
    set_meta_lr(run.optimizer, meta_lr_at(profile.meta_lr, run.step, profile.meta_steps, profile.meta_lr_schedule))
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
    out_of_time = budget_spent(run.config.max_seconds, run.elapsed + now() - t0)
    last = run.step == profile.meta_steps or out_of_time
    if run.step % profile.val_every == 0 or last:
        record["val_accuracy"] = _validate(run)
    run.elapsed += now() - t0
    record["seconds"] = round(run.elapsed, 3)
    if run.is_main:
        append_text(run.out / METRICS_NAME, json.dumps(record) + "\n")
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


def _save_on_interrupt(run: _Run, consistent: bool, err: KeyboardInterrupt) -> None:
    ckpt_path = run.out / CHECKPOINT_NAME
    how = "terminated (SIGTERM)" if signal_name(err) == "SIGTERM" else "interrupted"
    if consistent:
        run.save(CHECKPOINT_NAME)
        run.say(f"{how} after step {run.step}: saved {ckpt_path}; continue with resume=True (--resume)")
    else:
        run.say(f"{how} in the middle of step {run.step + 1}: kept the last checkpoint {ckpt_path} "
                f"(step {_ckpt_step(ckpt_path)}); continue with resume=True (--resume)")


def _ckpt_step(path: Path) -> str:
    try:
        return str(load_checkpoint(path)["step"])
    except (OSError, ValueError):
        return "?"


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop records past ``step`` (steps done after the last checkpoint are redone on resume) and a
    torn last line; the file is replaced atomically (a crash here leaves the old one)."""
    if not path.is_file():
        return
    keep = [record for record in read_metrics(path) if record["step"] <= step]
    atomic_write_text(path, "".join(json.dumps(record) + "\n" for record in keep))


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
            append_text(self.path, f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n")
