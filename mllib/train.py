"""Meta-training: the outer loop around :func:`mllib.algorithms.meta_gradient`.

One meta-step, in words::

    batch  = train_tasks.sample(meta_batch)                  # [T, ways*shots, 1, 28, 28] + queries
    grads, stats = meta_gradient(model, meta_params, batch, cfg)   # averaged over the T tasks
    grads  = grad_hook(grads)                                # e.g. an all-reduce across ranks
    for k, p in meta_params.items(): p.grad = grads[k]
    optimizer.step()                                         # Adam on the meta-parameters

Around it, :func:`meta_train` adds what a real run needs: periodic validation on a fixed,
seeded set of validation tasks (the ``val`` part of the split; the ``lake`` split has none, so
its validation characters are five background alphabets held out from training, see
:func:`split_parts`), ``best.pt`` kept by
validation accuracy, ``checkpoint.pt`` every ``checkpoint_every`` steps and on Ctrl-C,
``metrics.jsonl`` written as it goes, exact resumption (``resume=True``), a time budget
(``max_seconds``: stop after the meta-step that uses it up, validate, save) for time-to-accuracy
runs, and a clear stop when the loss stops being finite.

Output folder ``out``::

    checkpoint.pt    latest state (resume from here)
    best.pt          meta-parameters with the best validation accuracy so far
    metrics.jsonl    one JSON line per meta-step: step, loss, accuracy, val_accuracy, seconds
    train.log        the log lines printed during training
"""
from __future__ import annotations

import json
import math
import os
import signal
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from tqdm.auto import tqdm

from mllib.checkpoint import load_checkpoint, save_checkpoint
from mllib.config import Profile, resolve_profile
from mllib.device import describe_device, resolve_device
from mllib.evaluate import task_accuracies

ALGO_CHOICES = ("maml", "fomaml", "reptile", "metasgd", "anil", "protonet")
BN_CHOICES = ("batch", "support")
FORM_CHOICES = ("auto", "loop", "vmap")
SPLIT_CHOICES = ("maml", "vinyals", "lake")
# The lake split (background / evaluation alphabets) has no validation part: its runs validate on
# these five background alphabets (the vinyals split's validation alphabets) and train on the
# other 25, so training, validation and test alphabets are pairwise disjoint.
LAKE_VAL_ALPHABETS = ("Armenian", "Bengali", "Early_Aramaic", "Hebrew", "Mkhedruli_(Georgian)")
VAL_SEED = 2017  # the validation tasks are the same for every run (and every training seed)

CHECKPOINT_NAME = "checkpoint.pt"
BEST_NAME = "best.pt"
METRICS_NAME = "metrics.jsonl"
LOG_NAME = "train.log"

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
    ``steps`` overrides the number of meta-steps; ``query`` overrides the profile's query
    images per class in training tasks; ``max_seconds`` (optional) is a training-time budget:
    the run stops after the meta-step that reaches it (the clock is ``metrics.jsonl``'s
    ``seconds``: meta-steps plus validations, summed over resumptions), validating and saving
    there as at the last step.
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
    bn: str = "batch"
    form: str = "auto"
    resume: bool = False
    split: str = "maml"
    depth: int = 4
    progress: bool = True
    max_seconds: float | None = None

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad field and its allowed values."""
        _choice("algo", self.algo, ALGO_CHOICES)
        _choice("bn", self.bn, BN_CHOICES)
        _choice("form", self.form, FORM_CHOICES)
        _choice("split", self.split, SPLIT_CHOICES)
        _at_least("ways", self.ways, 2)
        _at_least("shots", self.shots, 1)
        _at_least("depth", self.depth, 1)
        if self.query is not None:
            _at_least("query", self.query, 1)
        if self.steps is not None:
            _at_least("steps", self.steps, 1)
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {self.seed!r}")
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
            _at_least(name, getattr(profile, name), 1)
        _at_least("inner_steps", profile.inner_steps, 0)
        _at_least("inner_steps_test", profile.inner_steps_test, 0)
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
    """What :func:`meta_train` hands back; ``meta_params`` are the final (last-step) ones."""

    model: torch.nn.Module
    meta_params: dict
    meta_config: Any
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


def build_model(ways: int, filters: int, depth: int = 4) -> torch.nn.Module:
    """The conv learner for 1x28x28 Omniglot images."""
    from mllib.models import ConvLearner

    return ConvLearner(ways, in_channels=1, filters=filters, depth=depth)


def meta_config_for(algo: str, profile: Profile, bn: str, form: str):
    """The :class:`mllib.algorithms.MetaConfig` used in meta-training."""
    from mllib.algorithms import MetaConfig

    return MetaConfig(algo=algo, inner_steps=profile.inner_steps, inner_lr=profile.inner_lr, bn=bn, form=form)


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
    or saved) and re-raises ``KeyboardInterrupt`` after saving ``checkpoint.pt``.
    """
    from mllib.algorithms import init_meta_params, meta_gradient, pick_form
    from mllib.tasks import OmniglotTasks

    config.validate()
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in 0..{world_size - 1} (world_size={world_size}), got {rank}")
    profile = config.resolved_profile()
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
    device = resolve_device(config.device)
    form = pick_form(device) if config.form == "auto" else config.form
    meta_cfg = meta_config_for(config.algo, profile, config.bn, form)
    run_dict = config.run_dict(profile)
    is_main = rank == 0
    out = Path(config.out)
    ckpt_path, best_path, metrics_path = out / CHECKPOINT_NAME, out / BEST_NAME, out / METRICS_NAME
    if is_main:
        out.mkdir(parents=True, exist_ok=True)
    say = _Logger(out / LOG_NAME if is_main else None, log)

    if data is None:
        from mllib.data import load_omniglot

        data = load_omniglot()

    # Every random stream comes from config.seed: the initial weights (torch's global generator)
    # and the training tasks (the sampler's own generator). Validation tasks use VAL_SEED.
    torch.manual_seed(config.seed)
    model = build_model(config.ways, profile.filters, config.depth).to(device)
    meta_params = {
        k: v.detach().clone().to(device).requires_grad_(True) for k, v in init_meta_params(model, meta_cfg).items()
    }
    optimizer = torch.optim.Adam(list(meta_params.values()), lr=profile.meta_lr)
    parts = split_parts(config.split, data.characters)
    if train_tasks is None:
        train_tasks = OmniglotTasks(
            data, part="train", ways=config.ways, shots=config.shots, **parts["train"],
            query=profile.query, seed=config.seed, device=device,  # batches built on the device
        )
    val_batch = OmniglotTasks(
        data, part="val", ways=config.ways, shots=config.shots, **parts["val"],
        query=profile.test_query, seed=VAL_SEED,
    ).sample(profile.val_tasks)

    step, best_val, best_step, elapsed = 0, None, None, 0.0
    if config.resume and ckpt_path.is_file():
        state = load_checkpoint(ckpt_path, expected_config=run_dict, ignore=RESUME_FREE_KEYS)
        missing = set(meta_params) ^ set(state["meta_params"])
        if missing:
            raise ValueError(f"checkpoint {ckpt_path} has different parameter names: {sorted(missing)}")
        with torch.no_grad():
            for k, p in meta_params.items():
                p.copy_(state["meta_params"][k])
        optimizer.load_state_dict(state["optimizer"])
        train_tasks.load_state_dict(state["sampler"])
        torch.set_rng_state(state["torch_rng"])
        step, best_val, best_step = state["step"], state["best_val_accuracy"], state["best_step"]
        elapsed = state.get("elapsed", 0.0)
        if is_main:
            _truncate_metrics(metrics_path, step)
        say(f"resumed from {ckpt_path} at step {step}/{profile.meta_steps}")
    else:
        if ckpt_path.is_file() and is_main:
            raise ValueError(
                f"{out} already holds a run ({ckpt_path}); pass resume=True (--resume) to continue it, "
                f"or choose another out folder"
            )
        if config.resume:
            say(f"no checkpoint in {out} yet: starting a fresh run")
        if is_main:
            metrics_path.write_text("")

    say(
        f"{config.algo} {config.ways}-way {config.shots}-shot | device {describe_device(device)} | "
        f"form {form}{' (auto)' if config.form == 'auto' else ''} | bn {config.bn} | profile {profile.name}: "
        f"{profile.meta_steps} steps, meta-batch {profile.meta_batch}, query {profile.query}, "
        f"filters {profile.filters}, inner {profile.inner_steps} x lr {profile.inner_lr} "
        f"(test {profile.inner_steps_test}), meta-lr {profile.meta_lr}, seed {config.seed}"
        + (f" | rank {rank}/{world_size}" if world_size > 1 else "")
    )

    def save(path: Path) -> None:
        if is_main:
            save_checkpoint(
                path, meta_params=meta_params, optimizer_state=optimizer.state_dict(), config=run_dict,
                step=step, sampler_state=train_tasks.state_dict(), torch_rng=torch.get_rng_state(),
                best_val_accuracy=best_val, best_step=best_step, elapsed=elapsed,
            )

    stop = _StopRequest()
    bar = tqdm(
        total=profile.meta_steps, initial=step, desc=f"{config.algo} {config.ways}w{config.shots}s",
        disable=bool(os.environ.get("CI")) or not config.progress or not is_main, dynamic_ncols=True,
    )
    consistent = True  # False while a meta-step is half done
    stop.install()
    try:
        while step < profile.meta_steps and not _budget_spent(config.max_seconds, elapsed):
            consistent = False
            t0 = time.perf_counter()
            batch = train_tasks.sample(profile.meta_batch)
            if world_size > 1:
                batch = batch.chunk(world_size)[rank]
            batch = batch.to(device)
            grads, stats = meta_gradient(model, meta_params, batch, meta_cfg)
            loss, acc = float(stats["loss"]), float(stats.get("accuracy", float("nan")))
            bad = [k for k, g in grads.items() if not torch.isfinite(g).all()]
            if not math.isfinite(loss) or bad:
                what = f"loss is {loss}" if not math.isfinite(loss) else f"meta-gradient of {bad[0]} is not finite"
                kept = (
                    f"the last good checkpoint is {ckpt_path} (step {_ckpt_step(ckpt_path)})"
                    if ckpt_path.is_file() else "no checkpoint had been written yet"
                )
                consistent = True  # nothing of this step was applied
                raise TrainingDiverged(
                    f"training stopped at step {step + 1}: {what}. Try a lower learning rate "
                    f"(meta_lr={profile.meta_lr}, inner_lr={profile.inner_lr}; --meta-lr / --inner-lr); {kept}.",
                    step=step + 1,
                )
            if grad_hook is not None:
                grads = grad_hook(grads)
            for k, p in meta_params.items():
                p.grad = grads[k].detach()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            record = {"step": step, "loss": loss, "accuracy": acc, "val_accuracy": None}
            out_of_time = _budget_spent(config.max_seconds, elapsed + time.perf_counter() - t0)
            last = step == profile.meta_steps or out_of_time
            if step % profile.val_every == 0 or last:
                val = float(task_accuracies(model, meta_params, val_batch, meta_cfg,
                                            profile.inner_steps_test, device=device).mean())
                record["val_accuracy"] = val
                if best_val is None or val > best_val:
                    best_val, best_step = val, step
                    save(best_path)
            elapsed += time.perf_counter() - t0
            record["seconds"] = round(elapsed, 3)
            if is_main:
                with open(metrics_path, "a") as handle:
                    handle.write(json.dumps(record) + "\n")
            if step % profile.checkpoint_every == 0 or last:
                save(ckpt_path)
            consistent = True
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}", acc=f"{acc:.3f}",
                            val="-" if best_val is None else f"{best_val:.3f}", refresh=False)
            if record["val_accuracy"] is not None:
                say(f"step {step}: loss {loss:.4f}, train acc {acc:.4f}, val acc {record['val_accuracy']:.4f} "
                    f"(best {best_val:.4f} at step {best_step}), {elapsed:.0f} s")
            if callback is not None:
                callback(step, record)
            if stop.requested:
                raise KeyboardInterrupt
            if out_of_time:
                say(f"time budget of {config.max_seconds:g} s used up after step {step}/{profile.meta_steps}")
                break
    except KeyboardInterrupt:
        if consistent:
            save(ckpt_path)
            say(f"interrupted after step {step}: saved {ckpt_path}; continue with resume=True (--resume)")
        else:
            say(f"aborted in the middle of step {step + 1}: kept the last checkpoint {ckpt_path} "
                f"(step {_ckpt_step(ckpt_path)}); continue with resume=True (--resume)")
        raise
    finally:
        stop.uninstall()
        bar.close()

    say(f"done: {step} steps in {elapsed:.0f} s; best val acc "
        f"{'-' if best_val is None else f'{best_val:.4f}'} at step {best_step}; wrote {out}")
    return TrainResult(
        model=model, meta_params={k: v.detach() for k, v in meta_params.items()}, meta_config=meta_cfg,
        config=run_dict, step=step, best_val_accuracy=best_val, best_step=best_step, seconds=elapsed,
        device=str(device), form=form, out=out,
    )


def read_metrics(path: str | os.PathLike) -> list[dict]:
    """The records of a ``metrics.jsonl`` file (a folder is read as ``folder/metrics.jsonl``)."""
    path = Path(path)
    if path.is_dir():
        path = path / METRICS_NAME
    if not path.is_file():
        raise FileNotFoundError(f"no metrics file at {path} (meta_train writes it into its out folder)")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def time_to_accuracy(records: list[dict], target: float) -> dict | None:
    """The first validation of ``records`` (from :func:`read_metrics`) at or above ``target``.

    Returns ``{"step", "seconds", "val_accuracy"}`` of that validation, or ``None`` when no
    validation reached ``target`` (a fraction in (0, 1], e.g. ``0.9``).
    """
    if not 0 < target <= 1:
        raise ValueError(f"target must be an accuracy in (0, 1], e.g. 0.9 for 90%, got {target!r}")
    for record in records:
        if record.get("val_accuracy") is not None and record["val_accuracy"] >= target:
            return {"step": record["step"], "seconds": record["seconds"], "val_accuracy": record["val_accuracy"]}
    return None


# --------------------------------------------------------------------------------------------
def split_parts(split: str, characters: list[str]) -> dict[str, dict]:
    """How training and validation tasks are drawn for ``split``: ``OmniglotTasks`` keyword
    arguments per part (``{"train": {...}, "val": {...}}``).

    ``maml`` and ``vinyals`` use their own ``train`` and ``val`` parts. ``lake`` has no ``val`` part:
    its ``train`` characters (the 30 background alphabets) are split by alphabet, the five
    ``LAKE_VAL_ALPHABETS`` validate and the other 25 train (its ``test`` part, the 20 evaluation
    alphabets, is untouched). ``characters``: the names of ``data.images``' rows.
    """
    _choice("split", split, SPLIT_CHOICES)
    if split != "lake":
        return {"train": {"split": split}, "val": {"split": split}}
    from mllib.data import split_characters

    background = split_characters("lake", "train", characters)
    held_out = [i for i in background if characters[i].split("/")[0] in LAKE_VAL_ALPHABETS]
    kept = [i for i in background if characters[i].split("/")[0] not in LAKE_VAL_ALPHABETS]
    return {"train": {"characters": kept, "rotations": True}, "val": {"characters": held_out}}


def _choice(name: str, value: Any, choices: tuple) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, got {value!r}")


def _at_least(name: str, value: Any, low: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")


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
            tqdm.write(message)
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
        tqdm.write("Ctrl-C: stopping after this meta-step and saving a checkpoint (Ctrl-C again to abort now)")
