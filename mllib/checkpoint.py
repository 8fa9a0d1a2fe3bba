"""Checkpoints: everything needed to resume a meta-training run exactly, in one file.

A checkpoint is a plain dict saved with ``torch.save``::

    {
        "format": "mllib-checkpoint", "format_version": 1,
        "meta_params": {name: Tensor},          # on the CPU
        "optimizer": optimizer.state_dict(),     # Adam moments and step counts
        "sampler": task_sampler.state_dict(),    # training task stream (generator state)
        "torch_rng": ByteTensor,                 # torch's global CPU generator
        "step": int,                             # completed meta-steps
        "best_val_accuracy": float | None, "best_step": int | None,
        "elapsed": float,                        # training seconds so far (all sessions)
        "config": dict,                          # the full TrainConfig plus the resolved profile
        "version": str, "git_commit": str | None,
    }

Files are written atomically (a temporary file in the same folder, then ``os.replace``;
``mllib.files.atomic_write``), so a crash or a Ctrl-C while saving never leaves a half-written
checkpoint behind. Meta-parameters that are not finite are never saved (``ValueError``), and
:func:`check_params_match` compares a checkpoint's parameters with a model's, names and shapes.

The checkpoints shipped with the package lie in :data:`SHIPPED_CHECKPOINTS`;
``find_checkpoint("maml_omniglot_5w1s")`` finds one by name from any working directory.

A run folder (``mllib.train.meta_train``'s ``out``) holds::

    checkpoint.pt    CHECKPOINT_NAME: latest state (resume from here)
    best.pt          BEST_NAME: meta-parameters with the best validation accuracy so far
    metrics.jsonl    METRICS_NAME: one JSON line per meta-step (``read_metrics``)
    train.log        LOG_NAME: the log lines printed during training
    run.lock         while a run is in progress: its PID (``mllib.run_lock``)
"""
from __future__ import annotations

import errno
import json
import os
import zipfile
from pathlib import Path
from typing import Any, Iterable, Mapping

import torch

import mllib
from mllib.files import atomic_write, naming
from mllib.provenance import git_commit  # noqa: F401  (re-exported: checkpoints record it)

FORMAT = "mllib-checkpoint"
FORMAT_VERSION = 1
REQUIRED_KEYS = ("meta_params", "optimizer", "step", "config", "version")

CHECKPOINT_NAME = "checkpoint.pt"
BEST_NAME = "best.pt"
METRICS_NAME = "metrics.jsonl"
LOG_NAME = "train.log"
SHIPPED_CHECKPOINTS = Path(__file__).resolve().parent / "checkpoints"  # pretrained, shipped in the package


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used: damaged, not ours, or trained with another config."""


def code_version() -> dict:
    """``{"version": mllib.__version__, "git_commit": ...}``, stored in every checkpoint."""
    return {"version": mllib.__version__, "git_commit": git_commit()}


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save(obj)`` to ``path`` through a temporary file and ``os.replace``."""
    with atomic_write(path) as handle:
        save_to(handle, obj, path)
    return Path(path)


def save_to(handle, obj: Any, path: str | os.PathLike) -> None:
    """``torch.save(obj, handle)``; a failed write (a full disk, ``ulimit -f``), which torch reports
    as a cryptic ``RuntimeError`` ("enforce fail at inline_container.cc ..."), becomes an ``OSError``
    naming ``path`` and the likely cause."""
    try:
        torch.save(obj, handle)
    except RuntimeError as err:
        if not any(mark in str(err) for mark in ("enforce fail", "inline_container", "write")):
            raise
        raise OSError(errno.EIO, f"the file could not be written ({_write_limit()}); nothing was replaced",
                      str(path)) from None


def _write_limit() -> str:
    """Why a write may have failed: this process's file-size limit when one is set, else a full disk."""
    try:
        import resource

        limit, infinite = resource.getrlimit(resource.RLIMIT_FSIZE)[0], resource.RLIM_INFINITY
    except (ImportError, OSError, ValueError):
        return "a full disk?"
    if limit != infinite and limit >= 0:
        return f"a file-size limit of {limit:,} bytes is set (`ulimit -f`): raise it, or write elsewhere"
    return "a full disk?"


def save_checkpoint(
    path: str | os.PathLike,
    *,
    meta_params: Mapping[str, torch.Tensor],
    optimizer_state: dict,
    config: dict,
    step: int,
    sampler_state: Any = None,
    torch_rng: torch.Tensor | None = None,
    best_val_accuracy: float | None = None,
    best_step: int | None = None,
    elapsed: float = 0.0,
    extra: dict | None = None,
) -> Path:
    """Write a checkpoint atomically; tensors are stored detached, on the CPU.

    Raises ``ValueError`` (writing nothing) when a meta-parameter is not finite: a NaN model is
    never saved, so ``best.pt`` and the last checkpoint of a run that diverged stay usable.
    """
    for name, value in meta_params.items():
        if not torch.isfinite(value.detach()).all():
            raise ValueError(f"meta-parameter {name} is not finite (NaN or inf): not saving {path}")
    state = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "meta_params": {k: v.detach().to("cpu", copy=True) for k, v in meta_params.items()},
        "optimizer": _to_cpu(optimizer_state),
        "sampler": _to_cpu(sampler_state),
        "torch_rng": torch.get_rng_state() if torch_rng is None else torch_rng,
        "step": int(step),
        "best_val_accuracy": None if best_val_accuracy is None else float(best_val_accuracy),
        "best_step": None if best_step is None else int(best_step),
        "elapsed": float(elapsed),
        "config": dict(config),
        **code_version(),
    }
    if extra:
        state["extra"] = extra
    return atomic_save(state, path)


def load_checkpoint(
    path: str | os.PathLike,
    expected_config: Mapping[str, Any] | None = None,
    ignore: Iterable[str] = (),
) -> dict:
    """Read a checkpoint (onto the CPU) and check it.

    Raises ``FileNotFoundError`` if ``path`` is missing and :class:`CheckpointError` if the
    file is damaged, is not an mllib checkpoint, or (with ``expected_config``) was trained
    with a config that differs in a key not listed in ``ignore``; the message names every
    differing key with both values.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError, KeyError, TypeError) as err:
        raise CheckpointError(
            f"checkpoint {path} is damaged or not a torch checkpoint ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else 'unreadable'}); delete it to start over "
            f"or point to another file"
        ) from err
    except Exception as err:  # pickle.UnpicklingError and friends
        raise CheckpointError(
            f"checkpoint {path} is damaged or not a torch checkpoint ({type(err).__name__}); "
            f"delete it to start over or point to another file"
        ) from err
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an mllib checkpoint (no '{FORMAT}' marker)")
    if state.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format version {state.get('format_version')!r}; "
            f"this mllib ({mllib.__version__}) reads version {FORMAT_VERSION}"
        )
    missing = [k for k in REQUIRED_KEYS if k not in state]
    if missing:
        raise CheckpointError(f"checkpoint {path} is damaged: missing {', '.join(missing)}")
    _check_config(state["config"], path)
    if expected_config is not None:
        diff = config_differences(state["config"], expected_config, ignore=ignore)
        if diff:
            raise CheckpointError(
                f"checkpoint {path} was trained with a different config: {'; '.join(diff)}. "
                f"Use another --out folder, or repeat the checkpoint's settings to resume it."
            )
    return state


REQUIRED_CONFIG_KEYS = ("algo", "ways", "shots", "profile")   # what evaluation and publishing read first


def _check_config(config: Any, path: Path) -> None:
    """``CheckpointError`` (one line) for a ``config`` without the keys every reader needs, as a
    hand-edited checkpoint may be (it ended in ``KeyError: 'profile'``)."""
    if not isinstance(config, Mapping):
        raise CheckpointError(f"checkpoint {path} is damaged: its config is a {type(config).__name__}, not a dict")
    missing = [k for k in REQUIRED_CONFIG_KEYS if k not in config]
    if not missing and not isinstance(config["profile"], Mapping):
        missing = ["profile (a dict)"]
    if missing:
        raise CheckpointError(f"checkpoint {path} is damaged: its config has no {', '.join(missing)} (was it "
                              f"edited by hand?); use the file the run wrote, or train again")


def config_differences(saved: Mapping[str, Any], wanted: Mapping[str, Any], ignore: Iterable[str] = ()) -> list[str]:
    """Human-readable differences ``"key: checkpoint=X, requested=Y"`` between two flat or nested dicts."""
    ignore = set(ignore)
    out: list[str] = []
    _diff(dict(saved), dict(wanted), "", ignore, out)
    return out


def read_metrics(path: str | os.PathLike) -> list[dict]:
    """The records of a ``metrics.jsonl`` file (a folder is read as ``folder/metrics.jsonl``).

    Each record: ``{"step", "loss", "accuracy", "val_accuracy" (None between validations), "seconds"}``.
    A torn last line (a write cut short by a kill: no newline at its end) is left out; any other
    line that is not JSON is a ``ValueError`` naming the file and the line.
    """
    path = Path(path)
    if path.is_dir():
        path = path / METRICS_NAME
    if not path.is_file():
        raise FileNotFoundError(f"no metrics file at {path} (meta_train writes it into its out folder)")
    with naming(path):
        text = path.read_text()
    lines = text.split("\n")  # the last item is "" after a complete line, else a torn line
    records = []
    for number, line in enumerate(lines[:-1], start=1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except ValueError as err:
                raise ValueError(f"{path}, line {number} is not a JSON record ({err}); fix or delete "
                                 f"that line") from None
    return records


def time_to_accuracy(records: list[dict], target: float) -> dict | None:
    """The first validation of ``records`` (from :func:`read_metrics`) at or above ``target``.

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


def find_checkpoint(source: str | os.PathLike) -> Path:
    """The checkpoint file ``source`` names: a path, or the name of a shipped checkpoint.

    ``"maml_omniglot_5w1s"`` (or ``"maml_omniglot_5w1s.pt"``) finds the file in
    :data:`SHIPPED_CHECKPOINTS` from any working directory, so a model card's ``eval_command``
    works from an installed package. Raises ``FileNotFoundError`` listing the shipped names.
    """
    path = Path(source)
    if path.is_file():
        return path
    shipped = SHIPPED_CHECKPOINTS / (path.name if path.suffix == ".pt" else f"{path.name}.pt")
    if path.name == str(source) and shipped.is_file():
        return shipped
    names = sorted(p.stem for p in SHIPPED_CHECKPOINTS.glob("*.pt"))
    raise FileNotFoundError(f"no checkpoint at {path} (shipped checkpoints: {', '.join(names) or 'none'})")


def shipped_name(path: str | os.PathLike) -> str | None:
    """The name ``find_checkpoint`` knows ``path`` by if it lies in :data:`SHIPPED_CHECKPOINTS`, else ``None``."""
    path = Path(path).resolve()
    return path.stem if path.parent == SHIPPED_CHECKPOINTS.resolve() and path.suffix == ".pt" else None


def check_params_match(found: Mapping[str, torch.Tensor], expected: Mapping[str, Any], source: str) -> None:
    """``CheckpointError`` unless ``found`` has exactly the names of ``expected``, each with its shape.

    ``expected``: the model's parameters (tensors or shapes); ``source`` names the checkpoint in
    the message, which lists what is missing, unexpected and misshapen.
    """
    problems = [f"missing {', '.join(sorted(set(expected) - set(found)))}"] if set(expected) - set(found) else []
    if set(found) - set(expected):
        problems.append(f"unexpected {', '.join(sorted(set(found) - set(expected)))}")
    for name in sorted(set(found) & set(expected)):
        want = list(getattr(expected[name], "shape", expected[name]))
        if list(found[name].shape) != want:
            problems.append(f"{name} has shape {list(found[name].shape)} in the checkpoint, {want} in the model")
    if problems:
        raise CheckpointError(f"checkpoint {source} does not match its model: {'; '.join(problems)}")


def check_finite_params(params: Mapping[str, torch.Tensor], source: str) -> None:
    """``CheckpointError`` naming the first parameter of ``params`` that holds a NaN or an infinity."""
    for name, value in params.items():
        if not torch.isfinite(value.detach()).all():
            raise CheckpointError(f"checkpoint {source}: parameter {name} is not finite (NaN or inf); it "
                                  f"cannot be evaluated (a run that diverged: use an earlier checkpoint)")


def _diff(a: dict, b: dict, prefix: str, ignore: set, out: list[str]) -> None:
    for key in sorted(set(a) | set(b)):
        name = f"{prefix}{key}"
        if key in ignore or name in ignore:
            continue
        va, vb = a.get(key, "<absent>"), b.get(key, "<absent>")
        if isinstance(va, dict) and isinstance(vb, dict):
            _diff(va, vb, f"{name}.", ignore, out)
        elif _normal(va) != _normal(vb):
            out.append(f"{name}: checkpoint={va!r}, requested={vb!r}")


def _normal(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_normal(v) for v in value]
    return value


def _to_cpu(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj
