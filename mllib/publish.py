"""Publish a finished training run as a pretrained checkpoint with its model card.

``python -m mllib publish runs/quick --name maml_omniglot_5w1s`` writes three files into
``--dest`` (default ``checkpoints/`` in the working directory; the package itself is never
written to unless it is a checkout and ``--dest mllib/checkpoints`` asks for it: that is where the
shipped checkpoints live, which notebook 05, ``mllib eval`` and the README results read)::

    NAME.pt          the run's best.pt without optimiser, sampler and RNG state (well under 1 MB)
    NAME.json        the model card: task, profile, machine, training time, test accuracy with its
                     95% CI and protocol, the command that trained it, code version
    NAME.train.log   the run's training log

The test accuracy on the card is measured here (``tasks`` fixed test tasks, >= 600 for the
published protocol), so a card never carries a number typed by hand: ``extra`` (``--set``) adds
fields but cannot set one that publish writes (:data:`CARD_FIELDS`). An existing ``NAME`` is
replaced only with ``overwrite`` (``--overwrite``); the three files are written all-or-nothing. Run it on the machine that
trained the run, or say which one did with ``card=``. The card's ``eval_command`` works from an
installed package: a shipped checkpoint is named (``--checkpoint maml_omniglot_5w1s``), any other
by its path. A run on partial data carries ``standard_protocol: false`` and a ``protocol_note``.
"""
from __future__ import annotations

import json
import os
import platform
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import torch

from mllib.checkpoint import (BEST_NAME, LOG_NAME, load_checkpoint, read_metrics, save_to, shipped_name,
                              time_to_accuracy)
from mllib.config import resolve_profile
from mllib.data.locate import repo_root
from mllib.evaluate import evaluate
from mllib.files import check_output_dir, naming, remove_orphaned_temp_files, temp_path

DEFAULT_DEST = "checkpoints"  # in the working directory
PACKAGE = Path(__file__).resolve().parent
# What a published checkpoint keeps of a training checkpoint (the rest only serves --resume).
KEPT_KEYS = ("format", "format_version", "meta_params", "step", "best_val_accuracy", "best_step", "elapsed",
             "config", "version", "git_commit")
ACCURACY_MARKS = (0.9, 0.95, 0.98)   # the card records when validation first reached each
# Every field publish writes (measured, read from the run, or from its own flags): `extra` cannot set them.
CARD_FIELDS = ("checkpoint", "algo", "ways", "shots", "query_train", "query_test", "profile", "card", "device",
               "train_seconds", "seconds_to_best", "meta_steps", "best_step", "best_val_accuracy",
               "val_time_to_accuracy", "accuracy", "ci95", "tasks", "split", "inner_steps_test", "inner_lr", "bn",
               "transductive", "filters", "meta_batch", "meta_lr", "meta_lr_schedule", "head_init", "code_version",
               "git_commit", "command", "eval_command", "eval_seconds", "standard_protocol", "notes",
               "protocol_note")
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,99}")   # the file stem: ASCII, at most 100 characters
CARD_TEXT_MAX = 200
_CARD_TEXT_BAD = re.compile(r"[|<>`\x00-\x1f\x7f-\x9f\u2028\u2029]")   # would break (or inject into) the Markdown results table


def slim_checkpoint(state: dict) -> dict:
    """The evaluation-only part of a training checkpoint (``optimizer`` left empty, no sampler)."""
    slim = {k: state[k] for k in KEPT_KEYS if k in state}
    slim["optimizer"] = {}
    return slim


def train_command(config: dict) -> str:
    """The ``python -m mllib train`` command line that a checkpoint's ``config`` was trained with."""
    requested, profile = config["requested"], config["profile"]
    # the profile as resolved (from $MLLIB_PROFILE or auto) when the run did not name one
    flags = {"algo": requested["algo"], "ways": requested["ways"], "shots": requested["shots"],
             "profile": requested.get("profile") or profile["name"]}
    flags.update({name: requested[name] for name in ("device", "query", "steps", "max_seconds")
                  if requested.get(name) is not None})
    flags.update(sorted(requested.get("overrides", {}).items()))
    flags.update({name: requested[name] for name, default in
                  (("bn", "batch"), ("form", "auto"), ("split", "maml"), ("seed", 0))
                  if requested.get(name, default) != default})
    flags["out"] = requested["out"]
    if requested.get("allow_partial_data"):
        flags["allow_partial_data"] = True
    return " ".join(["python -m mllib train"] + [f"--{k.replace('_', '-')}" + ("" if v is True else f" {_text(v)}")
                                                 for k, v in flags.items()])


def profile_label(config: dict) -> str:
    """The profile's name plus every field the run changed, e.g. ``quick (meta_batch=16, meta_steps=6000)``."""
    used = config["profile"]
    base = resolve_profile(used["name"], config["ways"]).to_dict()
    changed = [f"{k}={_text(used[k])}" for k in sorted(used) if k != "name" and used[k] != base.get(k)]
    return used["name"] + (f" ({', '.join(changed)})" if changed else "")


def _text(value) -> str:
    """A value as a command line or a label shows it (floats without trailing zeros: 60.0 -> 60)."""
    return f"{value:g}" if isinstance(value, float) else str(value)


def describe_machine(device: str | torch.device | None = None) -> str:
    """A short description of the card or CPU that ``device`` (default: the current default) runs on."""
    device = torch.device(device) if device is not None else None
    if device is not None and device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()}-core CPU ({model}), {torch.get_num_threads()} torch threads"


def publish(
    run: str | os.PathLike,
    name: str,
    *,
    dest: str | os.PathLike = DEFAULT_DEST,
    tasks: int = 600,
    device: str | None = "auto",
    data=None,
    card: str | None = None,
    notes: str = "",
    extra: dict | None = None,
    progress: bool = True,
    allow_partial_data: bool = False,
    overwrite: bool = False,
) -> dict:
    """Write ``dest/name.{pt,json,train.log}`` from the run folder ``run``; return the model card.

    ``run`` is a ``mllib train`` output folder (it needs ``best.pt`` and ``metrics.jsonl``);
    ``name`` a file stem of at most 100 ASCII letters, digits, ``_`` and ``-``; ``tasks`` >= 600 test
    tasks (the published protocol; fewer is refused); ``card`` describes the training machine in one
    line that fits a Markdown table cell (default: this machine, :func:`describe_machine`); ``extra``
    adds keys to the card, never one of :data:`CARD_FIELDS`; ``allow_partial_data`` as in
    :func:`mllib.evaluate.evaluate`; ``overwrite`` replaces an existing ``name`` in ``dest`` (else
    refused). All of that, and ``dest`` (refused inside an installed, not checked-out, mllib
    package), is checked before the evaluation. The three files are written all-or-nothing
    (:func:`write_published`).
    """
    run = Path(run)
    check_name(name)
    check_card_text(card)
    check_extra(extra or {})
    if not isinstance(tasks, int) or tasks < 600:
        raise ValueError(f"tasks must be an integer >= 600 (the published protocol), got {tasks!r}")
    best = run / BEST_NAME
    if not best.is_file():
        raise FileNotFoundError(f"no {BEST_NAME} in {run}: train there first (python -m mllib train --out {run})")
    state = load_checkpoint(best)
    records = read_metrics(run)
    config, profile = state["config"], state["config"]["profile"]
    dest = Path(dest)
    if PACKAGE in (dest.resolve(), *dest.resolve().parents) and repo_root() is None:
        raise ValueError(f"dest {dest} is inside the installed mllib package ({PACKAGE}); publish into a "
                         f"folder of your own (default: ./{DEFAULT_DEST})")
    check_output_dir(dest, "dest")
    remove_orphaned_temp_files(dest)
    replaced = check_replace(dest, name, overwrite)

    slim = slim_checkpoint(state)
    result = evaluate(slim, data=data, tasks=tasks, split="test", device=device, progress=progress,
                      allow_partial_data=allow_partial_data)
    weights = dest / f"{name}.pt"
    by_step = {r["step"]: r for r in records}
    marks = {f"{round(100 * m)}": _rounded(time_to_accuracy(records, m)) for m in ACCURACY_MARKS}
    model_card: dict[str, Any] = {
        "checkpoint": weights.name,
        "algo": config["algo"],
        "ways": config["ways"],
        "shots": config["shots"],
        "query_train": profile["query"],
        "query_test": result["query"],
        "profile": profile_label(config),
        "card": card or describe_machine(result["device"]),
        "device": result["device"],
        "train_seconds": round(records[-1]["seconds"], 1) if records else None,
        "seconds_to_best": round(by_step[state["best_step"]]["seconds"], 1) if state["best_step"] in by_step else None,
        "meta_steps": records[-1]["step"] if records else state["step"],
        "best_step": state["best_step"],
        "best_val_accuracy": _round(state["best_val_accuracy"], 4),
        "val_time_to_accuracy": {k: v for k, v in marks.items() if v is not None},
        "accuracy": round(result["accuracy"], 4),
        "ci95": round(result["ci95"], 4),
        "tasks": result["tasks"],
        "split": f"{result['split_name']} {result['split']}",
        "inner_steps_test": result["inner_steps"],
        "inner_lr": result["inner_lr"],
        "bn": result["bn"],
        "transductive": result["transductive"],
        "filters": profile["filters"],
        "meta_batch": profile["meta_batch"],
        "meta_lr": profile["meta_lr"],
        "meta_lr_schedule": profile.get("meta_lr_schedule", "constant"),
        "head_init": profile.get("head_init", "learned"),
        "code_version": state.get("version"),
        "git_commit": state.get("git_commit"),
        "command": train_command(config),
        "eval_command": f"python -m mllib eval --checkpoint {shipped_name(weights) or _shown(weights)} "
                        f"--tasks {tasks} --split test --json",
        "eval_seconds": round(result["seconds"], 1),
        "standard_protocol": result["standard_protocol"],
        "notes": notes,
    }
    if not result["standard_protocol"]:
        model_card["protocol_note"] = result["protocol_note"]
        model_card["eval_command"] += " --allow-partial-data"
    model_card.update(extra or {})
    if replaced:
        shipped = ", a checkpoint shipped with the package" if shipped_name(weights) else ""
        print(f"note: replacing {weights.with_suffix('')}.{{pt,json}} (--overwrite{shipped})", file=sys.stderr)
    write_published(dest, name, slim, model_card, run / LOG_NAME)
    return model_card


def check_name(name) -> None:
    """``ValueError`` unless ``name`` is 1-100 ASCII letters, digits, ``_`` and ``-`` (starting with a
    letter or digit): checked before the evaluation, not when the files are written."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        shown = name if not isinstance(name, str) or len(name) <= 40 else f"{name[:40]}... ({len(name)} characters)"
        raise ValueError(f"name must be a file stem of 1 to 100 ASCII letters, digits, '_' and '-' (starting with "
                         f"a letter or digit), got {shown!r}")


def check_card_text(card: str | None) -> None:
    """``ValueError`` for ``card`` text that the README results table cannot show as one cell:
    ``|``, ``<``, ``>``, backquotes, line breaks and other control characters, or over 200 characters."""
    if card is None:
        return
    if not card.strip() or len(card) > CARD_TEXT_MAX or _CARD_TEXT_BAD.search(card):
        raise ValueError(f"--card must be one line of 1 to {CARD_TEXT_MAX} characters without '|', '<', '>', "
                         f"backquotes or control characters (it becomes a cell of the results table), got {card!r}"
                         if len(card) <= 80 else
                         f"--card must be one line of 1 to {CARD_TEXT_MAX} characters without '|', '<', '>', "
                         f"backquotes or control characters (it becomes a cell of the results table); "
                         f"got {len(card)} characters")


def check_extra(extra: dict) -> None:
    """``ValueError`` when ``extra`` (``--set``) names a field that publish measures or records itself."""
    clash = sorted(set(extra) & set(CARD_FIELDS))
    if clash:
        raise ValueError(f"--set cannot set {', '.join(clash)}: publish measures or records "
                         f"{'it' if len(clash) == 1 else 'them'} itself (a card never carries a number typed by "
                         f"hand; --card and --notes set the free-text fields)")


def check_replace(dest: Path, name: str, overwrite: bool) -> list[Path]:
    """The files of ``dest/name`` that publishing would replace; ``ValueError`` when there are any and
    ``overwrite`` is false (checked before the evaluation)."""
    existing = [p for p in (dest / f"{name}.pt", dest / f"{name}.json") if p.exists()]
    if existing and not overwrite:
        shipped = " (a checkpoint shipped with the package)" if shipped_name(dest / f"{name}.pt") else ""
        raise ValueError(f"{existing[0]} exists{shipped}: choose another --name, or pass --overwrite to "
                         f"replace it")
    return existing


def write_published(dest: Path, name: str, slim: dict, model_card: dict, log: Path) -> None:
    """Write ``name.train.log``, ``name.pt`` and ``name.json`` into ``dest`` all-or-nothing: each goes to
    a temporary file first (fsynced), and only when all three are written are they renamed into
    place, the card last. A failed write (a full disk, a file-size limit) leaves the old files as
    they were and no temporary file behind."""
    targets = [(dest / f"{name}.train.log", "log"), (dest / f"{name}.pt", "weights"),
               (dest / f"{name}.json", "card")]
    if not log.is_file():
        targets = targets[1:]
    temps = {target: temp_path(target) for target, _ in targets}
    try:
        for target, kind in targets:
            with naming(target), open(temps[target], "wb") as handle:
                if kind == "log":
                    with open(log, "rb") as source:
                        shutil.copyfileobj(source, handle)
                elif kind == "weights":
                    save_to(handle, slim, target)
                else:
                    handle.write((json.dumps(model_card, indent=2) + "\n").encode())
                handle.flush()
                os.fsync(handle.fileno())
        for target, _ in targets:
            with naming(target):
                os.replace(temps[target], target)
    finally:
        for temp in temps.values():
            if temp.exists():
                temp.unlink()


def _round(value, digits: int):
    return None if value is None else round(value, digits)


def _rounded(mark: dict | None) -> dict | None:
    if mark is None:
        return None
    return {"step": mark["step"], "seconds": _round(mark["seconds"], 1), "val_accuracy": _round(mark["val_accuracy"], 4)}


def _shown(path: Path) -> str:
    """``path`` relative to the working directory when it lies below it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
