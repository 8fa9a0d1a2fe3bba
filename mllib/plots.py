"""Plots of meta-training, d2l-style: each function draws on the axes it is given and returns them.

* ``moving_average``: the one smoothing of the course (a trailing mean, as long as its input).
* ``plot_meta_training``: a smoothed training loss against the meta-step (notebooks 01, 04).
* ``plot_learning_curve``: loss and accuracy of an Omniglot run from its ``metrics.jsonl``, with
  the validation points (notebook 05, ``python -m mllib eval --plot``).
* ``save_learning_curve``: the same as a PNG file, with no pyplot state (scripts, the CLI).

Without ``ax``/``axes`` a new pyplot figure is made (it shows in a notebook).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from mllib.arguments import check_int
from mllib.checkpoint import read_metrics


def moving_average(values: Sequence[float] | torch.Tensor, window: int) -> list[float]:
    """Trailing mean: entry ``i`` is the mean of ``values[max(0, i - window + 1) : i + 1]``.

    The output has the length of ``values``; its first ``window - 1`` entries average fewer values.

        >>> moving_average([4.0, 2.0, 0.0, 2.0], window=2)
        [4.0, 3.0, 1.0, 1.0]
    """
    check_int("window", window, 1)
    x = torch.as_tensor(values, dtype=torch.float64).flatten()
    totals = torch.cat([torch.zeros(1, dtype=torch.float64), x.cumsum(0)])
    ends = torch.arange(1, x.numel() + 1)
    starts = (ends - window).clamp(min=0)
    return ((totals[ends] - totals[starts]) / (ends - starts)).tolist()


def _new_axes(ncols: int = 1, figsize: tuple[float, float] = (6, 3)):
    # pyplot only when no axes are given: it keeps global figure state (what shows in a notebook)
    import matplotlib.pyplot as plt
    return plt.subplots(1, ncols, figsize=figsize, layout="constrained")[1]


def plot_meta_training(losses: Sequence[float], ax: Axes | None = None, window: int = 50,
                       ylabel: str = "query loss after adaptation", log_y: bool = False) -> Axes:
    """The training loss of every meta-step (e.g. ``history["loss"]``), smoothed over ``window`` steps.

        >>> ax = plot_meta_training([3.0, 2.0, 1.0], ax=Figure().subplots(), window=2)
        >>> ax.get_lines()[0].get_ydata().tolist()
        [3.0, 2.5, 1.5]
    """
    ax = _new_axes() if ax is None else ax
    ax.plot(range(1, len(losses) + 1), moving_average(losses, window))
    ax.set_xlabel("meta-step")
    ax.set_ylabel(ylabel)
    ax.set_title(f"meta-training (moving average of {window})")
    if log_y:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    return ax


def plot_learning_curve(metrics, axes: Sequence[Axes] | None = None, window: int = 25,
                        chance: float | None = None) -> tuple[Axes, Axes]:
    """Training loss and accuracy (smoothed over ``window`` steps) and validation accuracy of a run.

    ``metrics``: the records of ``mllib.checkpoint.read_metrics`` or a ``metrics.jsonl`` path or
    run folder. ``axes``: two axes (loss, accuracy). ``chance``: a dotted line at that accuracy.

        >>> records = [{"step": 1, "loss": 1.6, "accuracy": 0.2, "val_accuracy": None},
        ...            {"step": 2, "loss": 1.2, "accuracy": 0.6, "val_accuracy": 0.5}]
        >>> loss_ax, acc_ax = plot_learning_curve(records, axes=Figure().subplots(1, 2), window=1)
        >>> acc_ax.get_lines()[1].get_ydata().tolist()       # the validation points
        [0.5]
    """
    records = metrics if isinstance(metrics, list) else read_metrics(metrics)
    if not records:
        raise ValueError("metrics has no records: nothing to plot")
    loss_ax, acc_ax = _new_axes(2, (10, 4)) if axes is None else axes
    steps = [r["step"] for r in records]
    loss_ax.plot(steps, moving_average([r["loss"] for r in records], window), color="tab:red")
    loss_ax.set_ylabel("query loss (training tasks)")
    acc_ax.plot(steps, moving_average([r["accuracy"] for r in records], window), color="tab:blue",
                label="training tasks (adapted)")
    val = [(r["step"], r["val_accuracy"]) for r in records if r.get("val_accuracy") is not None]
    if val:
        acc_ax.plot(*zip(*val), "o-", color="tab:green", label="validation")
    if chance is not None:
        acc_ax.axhline(chance, color="0.5", ls=":", label="chance")
    acc_ax.set_ylabel("query accuracy")
    # accuracies stay <= 1: the legend goes in a band above 1, where it can cover no point
    acc_ax.set_ylim(0, 1.32)
    acc_ax.set_yticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    acc_ax.legend(loc="upper left", ncol=2, fontsize=9)  # fits the axes' width
    for ax in (loss_ax, acc_ax):
        ax.set_xlabel("meta-step")
        ax.grid(alpha=0.3)
    return loss_ax, acc_ax


def save_learning_curve(metrics, path: str | os.PathLike, title: str | None = None, window: int = 25) -> Path:
    """Write :func:`plot_learning_curve` of ``metrics`` as a PNG at ``path`` (folders are made)."""
    fig = Figure(figsize=(10, 4))  # no pyplot: no global state, works headless
    plot_learning_curve(metrics, fig.subplots(1, 2), window)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path
