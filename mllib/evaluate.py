"""Evaluation: mean accuracy with a 95% confidence interval over fixed, seeded test tasks.

The protocol of the MAML paper: adapt to each of (at least) 600 unseen test tasks from its support
set, score the query set, report the mean and ``1.96 * sd / sqrt(n)``. The test tasks are drawn
from a generator seeded with ``seed`` (default :data:`TEST_SEED`), in fixed chunks of
:data:`SAMPLE_CHUNK` tasks, so every model is scored on exactly the same tasks whatever its
``batch_size``. The result dict carries the protocol with the number: split, ways, shots,
query, inner steps and learning rate at test, batch-norm mode, transductive or not.
"""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from tqdm.auto import tqdm

TEST_SEED = 600  # the seed of the test tasks: the same tasks for every model
SAMPLE_CHUNK = 100  # test tasks are sampled this many at a time (part of the protocol)
PART_CHOICES = ("train", "val", "test")


def mean_ci95(values: Sequence[float] | torch.Tensor) -> tuple[float, float]:
    """``(mean, 1.96 * sd / sqrt(n))`` with the sample standard deviation (``n - 1`` denominator).

    ``values``: per-task accuracies (or any scores), at least two of them.
    """
    x = torch.as_tensor(values, dtype=torch.float64).flatten()
    if x.numel() < 2:
        raise ValueError(f"values must hold at least 2 numbers for a confidence interval, got {x.numel()}")
    if not torch.isfinite(x).all():
        raise ValueError("values must all be finite")
    return float(x.mean()), float(1.96 * x.std(unbiased=True) / math.sqrt(x.numel()))


def task_accuracies(model, meta_params: Mapping[str, torch.Tensor], batch, cfg, inner_steps: int,
                    device: torch.device | str | None = None, batch_size: int = 50) -> torch.Tensor:
    """Per-task query accuracy ``[T]`` (CPU, float) of ``batch`` after ``inner_steps`` of adaptation.

    Runs ``mllib.algorithms.evaluate_tasks`` on groups of ``batch_size`` tasks moved to ``device``.
    """
    from mllib.algorithms import evaluate_tasks

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device = torch.device(device) if device is not None else next(iter(meta_params.values())).device
    params = {k: v.detach() for k, v in meta_params.items()}
    out = []
    for start in range(0, batch.num_tasks, batch_size):
        part = batch[start : start + batch_size].to(device)
        out.append(evaluate_tasks(model, params, part, cfg, inner_steps).detach().float().cpu())
    return torch.cat(out)


def evaluate(
    source,
    *,
    data=None,
    tasks: int = 600,
    split: str = "test",
    inner_steps: int | None = None,
    query: int | None = None,
    bn: str | None = None,
    device: str | torch.device | None = "auto",
    form: str = "auto",
    seed: int = TEST_SEED,
    batch_size: int = 50,
    progress: bool = True,
    meta_config=None,
    ways: int | None = None,
    shots: int | None = None,
    split_name: str = "maml",
) -> dict:
    """Accuracy and 95% CI of a meta-learner on ``tasks`` fixed test tasks.

    ``source`` is a checkpoint path, a loaded checkpoint dict, a ``TrainResult`` (its final
    meta-parameters) or ``(model, meta_params)``;
    for the last, give ``meta_config`` (an ``mllib.algorithms.MetaConfig``), ``ways``, ``shots``,
    and ``inner_steps``. ``split`` is the part of the split manifest (``"test"``, ``"val"``,
    ``"train"``). Defaults come from the checkpoint's config: query = ``test_query``,
    inner steps = ``inner_steps_test``, batch norm = the training mode.

    Returns ``{"accuracy", "ci95", "algo", "ways", "shots", "query", "tasks", "inner_steps",
    "inner_lr", "inner_lr_learned", "bn", "transductive", "split", "split_name", "seed", "seconds",
    "device", "form", "step", "checkpoint"}`` (accuracy and ci95 as fractions in 0..1).
    """
    from mllib.algorithms import MetaConfig, pick_form
    from mllib.checkpoint import load_checkpoint
    from mllib.device import resolve_device
    from mllib.tasks import OmniglotTasks

    if split not in PART_CHOICES:
        raise ValueError(f"split must be one of {', '.join(PART_CHOICES)}, got {split!r}")
    if not isinstance(tasks, int) or tasks < 2:
        raise ValueError(f"tasks must be an integer >= 2 (the protocol uses >= 600), got {tasks!r}")
    dev = resolve_device(device)
    checkpoint_path, step = None, None
    if isinstance(source, (str, os.PathLike)):
        checkpoint_path = str(source)
        source = load_checkpoint(source)
    if hasattr(source, "meta_params") and hasattr(source, "config"):  # a TrainResult
        source = {"config": source.config, "meta_params": source.meta_params, "step": source.step}
    if isinstance(source, dict):
        from mllib.train import build_model

        config, profile = source["config"], source["config"]["profile"]
        algo, ways, shots, step = config["algo"], config["ways"], config["shots"], source["step"]
        split_name = config.get("split", split_name)
        query = profile["test_query"] if query is None else query
        inner_steps = profile["inner_steps_test"] if inner_steps is None else inner_steps
        bn = bn or config["bn"]
        model = build_model(ways, profile["filters"], config.get("depth", 4)).to(dev)
        meta_params = {k: v.to(dev) for k, v in source["meta_params"].items()}
        cfg_form = pick_form(dev) if form == "auto" else form
        cfg = MetaConfig(algo=algo, inner_steps=profile["inner_steps"], inner_lr=profile["inner_lr"],
                         bn=bn, form=cfg_form)
    else:
        try:
            model, meta_params = source
        except (TypeError, ValueError):
            raise ValueError("source must be a checkpoint path, a checkpoint dict or (model, meta_params)") from None
        if meta_config is None or ways is None or shots is None:
            raise ValueError("with (model, meta_params), give meta_config, ways and shots")
        model = model.to(dev)
        meta_params = {k: v.detach().to(dev) for k, v in meta_params.items()}
        cfg_form = pick_form(dev) if form == "auto" else form
        bn = bn or meta_config.bn
        cfg = MetaConfig(algo=meta_config.algo, inner_steps=meta_config.inner_steps,
                         inner_lr=meta_config.inner_lr, bn=bn, form=cfg_form,
                         reptile_data=getattr(meta_config, "reptile_data", "support+query"))
        algo = cfg.algo
        query = 15 if query is None else query
        inner_steps = cfg.inner_steps if inner_steps is None else inner_steps

    sampler = OmniglotTasks(data if data is not None else _load_data(), split=split_name, part=split,
                            ways=ways, shots=shots, query=query, seed=seed)
    t0 = time.perf_counter()
    accs = []
    with tqdm(total=tasks, desc=f"eval {split}", disable=bool(os.environ.get("CI")) or not progress,
              dynamic_ncols=True) as bar:
        for start in range(0, tasks, SAMPLE_CHUNK):
            batch = sampler.sample(min(SAMPLE_CHUNK, tasks - start))
            accs.append(task_accuracies(model, meta_params, batch, cfg, inner_steps, dev, batch_size))
            bar.update(batch.num_tasks)
    acc = torch.cat(accs)
    mean, ci = mean_ci95(acc)
    return {
        "accuracy": mean,
        "ci95": ci,
        "algo": algo,
        "ways": ways,
        "shots": shots,
        "query": query,
        "tasks": tasks,
        "inner_steps": inner_steps,
        "inner_lr": float(cfg.inner_lr),
        "inner_lr_learned": algo == "metasgd",
        "bn": bn,
        "transductive": bn == "batch",
        "split": split,
        "split_name": split_name,
        "seed": seed,
        "seconds": round(time.perf_counter() - t0, 3),
        "device": str(dev),
        "form": cfg_form,
        "step": step,
        "checkpoint": checkpoint_path,
    }


def format_result(result: Mapping[str, Any]) -> str:
    """One line, e.g. ``maml 5-way 1-shot: 97.10% +- 0.52% (95% CI, 600 test tasks, ...)``."""
    return (
        f"{result['algo']} {result['ways']}-way {result['shots']}-shot: "
        f"{100 * result['accuracy']:.2f}% +- {100 * result['ci95']:.2f}% "
        f"(95% CI, {result['tasks']} {result['split']} tasks, {result['query']} queries per class, "
        f"{result['inner_steps']} inner steps at lr {result['inner_lr']:g}"
        f"{' (learned)' if result.get('inner_lr_learned') else ''}, "
        f"bn={result['bn']} ({'transductive' if result['transductive'] else 'not transductive'}), "
        f"{result['device']}, {result['seconds']:.0f} s)"
    )


def plot_learning_curve(metrics, path: str | os.PathLike, title: str | None = None, smooth: int = 25) -> Path:
    """Write a PNG learning curve: training loss and accuracy (smoothed over ``smooth`` steps) and
    validation accuracy against the meta-step. ``metrics``: records or a ``metrics.jsonl`` path/folder."""
    from matplotlib.figure import Figure  # no pyplot: no global state, works headless and in notebooks

    from mllib.train import read_metrics

    records = metrics if isinstance(metrics, list) else read_metrics(metrics)
    if not records:
        raise ValueError("metrics has no records: nothing to plot")
    steps = [r["step"] for r in records]

    def smoothed(key):
        vals = [r[key] for r in records]
        out, total = [], 0.0
        for i, v in enumerate(vals):
            total += v
            if i >= smooth:
                total -= vals[i - smooth]
            out.append(total / min(i + 1, smooth))
        return out

    fig = Figure(figsize=(10, 4))
    ax_loss, ax_acc = fig.subplots(1, 2)
    ax_loss.plot(steps, smoothed("loss"), color="tab:red")
    ax_loss.set_xlabel("meta-step")
    ax_loss.set_ylabel("query loss (training tasks)")
    ax_acc.plot(steps, smoothed("accuracy"), label="training tasks (after adaptation)", color="tab:blue")
    val = [(r["step"], r["val_accuracy"]) for r in records if r.get("val_accuracy") is not None]
    if val:
        ax_acc.plot(*zip(*val), "o-", label="validation tasks", color="tab:green")
    ax_acc.set_xlabel("meta-step")
    ax_acc.set_ylabel("query accuracy")
    ax_acc.set_ylim(0, 1)
    ax_acc.legend(loc="lower right")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path


def _load_data():
    from mllib.data import load_omniglot

    return load_omniglot()


def dumps(result: Mapping[str, Any]) -> str:
    """The result as indented JSON."""
    return json.dumps(dict(result), indent=2)
