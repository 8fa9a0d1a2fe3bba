"""The two non-meta baselines every meta-learner should be compared against.

1. **Training from scratch on the support set** (:func:`scratch_accuracies`): for every test task,
   a freshly initialised learner is trained for ``steps`` steps on the task's ``ways*shots``
   support images only, then scored on its query set. This is what "no learned bias at all"
   achieves with the same architecture.
2. **Pre-training plus fine-tuning** (:func:`pretrain`, then :func:`finetune_accuracies`): one
   ordinary supervised classifier is trained on *all* training classes at once (the ``train`` part
   of the split; with rotations 1,100 characters x 4 = 4,400 classes for the ``maml`` split), a
   minibatch of labelled images at a time (:class:`ClassBatches`). For each test task its
   4,400-way head is replaced by a new ``ways``-way head, and either the head only
   (``mode="head"``) or every parameter (``mode="all"``) is fine-tuned for ``steps`` SGD steps on
   the support set. This is "a learned bias, but not learned *for fast adaptation*".

Both reuse the meta-learners' pieces: the conv learner and its parameter dicts
(:mod:`mllib.models`), plain SGD from :func:`mllib.inner.adapt` (``evaluation=True``: no graph),
and :func:`mllib.algorithms.predict` / :func:`~mllib.algorithms.loss_and_metric` for scoring, with
the same batch-norm modes (``"batch"``: the query set is normalised with its own statistics,
transductive; ``"support"``: with the support set's statistics).

Shapes: a :class:`~mllib.tasks.TaskBatch` with ``support_x [T, ways*shots, 1, 28, 28]``,
``support_y [T, ways*shots]``, ``query_x [T, ways*query, 1, 28, 28]``, ``query_y [T, ways*query]``;
the ``*_accuracies`` functions return per-task query accuracies ``[T]`` (float, CPU), ready for
:func:`mllib.evaluate.mean_ci95`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping

import torch
from torch import Tensor, nn

from mllib.algorithms import BN_MODES, loss_and_metric, predict, support_loss_fn
from mllib.arguments import check_choice, check_int, check_positive
from mllib.inner import adapt
from mllib.models import ConvLearner, Params, head_names, params_of
from mllib.progress import progress_bar
from mllib.tasks.batch import TaskBatch
from mllib.tasks.omniglot import OmniglotTasks, stream_seed
from mllib.timing import check_max_seconds
from mllib.training_loop import TrainingLoop

OPTIMIZERS = ("sgd", "adam")
FINETUNE_MODES = ("head", "all")
FINETUNE_HEAD_INITS = ("zeros", "random")



def _ways_of(batch: TaskBatch) -> int:
    return int(batch.support_y.max()) + 1


def _score(model: nn.Module, params: Mapping[str, Tensor], support_x: Tensor, query_x: Tensor,
           query_y: Tensor, bn: str) -> Tensor:
    """Query accuracy (a scalar) of ``params`` on one task, no graph."""
    with torch.no_grad():
        return loss_and_metric(predict(model, params, support_x, query_x, bn), query_y)[1]


# ------------------------------------------------------------------------- 1. from scratch

def train_on_support(model: nn.Module, params: Mapping[str, Tensor], support_x: Tensor, support_y: Tensor,
                     steps: int, lr: float, optimizer: str = "adam",
                     names: list[str] | None = None) -> Params:
    """``steps`` optimiser steps on one task's support loss; returns the trained dict (detached).

    ``support_x [S, 1, 28, 28]``, ``support_y [S]``. ``optimizer="sgd"`` is exactly
    ``mllib.inner.adapt(..., evaluation=True)``; ``"adam"`` runs ``torch.optim.Adam`` on a copy.
    ``names``: train only these parameters (the others are returned unchanged).
    """
    check_int("steps", steps, 0)
    check_positive("lr", lr)
    check_choice("optimizer", optimizer, OPTIMIZERS)
    loss_fn = support_loss_fn(model)
    if optimizer == "sgd":
        return adapt(params, loss_fn, (support_x, support_y), steps, lr, names=names, evaluation=True)
    params = {k: v.detach().clone() for k, v in params.items()}
    trained = list(params) if names is None else list(names)
    for k in trained:
        params[k].requires_grad_(True)
    opt = torch.optim.Adam([params[k] for k in trained], lr=lr)
    with torch.enable_grad():
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            loss_fn(params, (support_x, support_y)).backward()
            opt.step()
    return {k: v.detach() for k, v in params.items()}


def scratch_accuracies(batch: TaskBatch, *, steps: int = 50, lr: float = 1e-2, optimizer: str = "adam",
                       filters: int = 32, depth: int = 4, bn: str = "batch", seed: int = 0,
                       progress: bool = True) -> Tensor:
    """Per-task query accuracy ``[T]`` of a fresh ``ConvLearner`` trained on each support set alone.

    Task ``t`` gets its own initial weights, drawn with ``torch.manual_seed(seed + t)`` inside a
    forked RNG (the caller's random state is untouched; the result does not depend on which
    other tasks are in ``batch``).
    """
    check_choice("bn", bn, BN_MODES)
    check_int("seed", seed, 0)
    ways = _ways_of(batch)
    accs = []
    for t in progress_bar(range(batch.num_tasks), desc="scratch", enabled=progress):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + t)
            model = ConvLearner(ways, in_channels=batch.support_x.shape[2], filters=filters, depth=depth,
                                image_size=batch.support_x.shape[-1]).to(batch.support_x.device)
        trained = train_on_support(model, params_of(model), batch.support_x[t], batch.support_y[t],
                                   steps, lr, optimizer)
        accs.append(_score(model, trained, batch.support_x[t], batch.query_x[t], batch.query_y[t], bn))
    return torch.stack(accs).float().cpu()


# ------------------------------------------------------------------------- 2. pre-training

class ClassBatches:
    """Minibatches of labelled images from every class of a split part (for plain supervised training).

    A class is what :class:`~mllib.tasks.OmniglotTasks` calls one (a character, or with rotations a
    character turned by k * 90 degrees), numbered ``0..num_classes-1`` the same way; the images are
    built by its ``batch_from_indices``, so the rotation code is shared. Seeded from
    ``(seed, "pretrain:<part>")``: a stream separate from the task samplers'.
    """

    def __init__(self, data, split: str | None = "maml", part: str = "train", rotations: bool | None = None,
                 seed: int = 0, device: torch.device | str | None = None) -> None:
        self.tasks = OmniglotTasks(data, split=split, part=part, ways=2, shots=1, query=1,
                                   rotations=rotations, seed=seed, device=device)
        self.num_classes = self.tasks.num_classes
        self.drawers = data.images.shape[1]
        self.generator = torch.Generator().manual_seed(stream_seed(seed, f"pretrain:{part}"))

    def sample(self, batch_size: int) -> tuple[Tensor, Tensor]:
        """``(x [B, 1, 28, 28] float in [0, 1], y [B] long class ids)``; classes and drawers uniform."""
        check_int("batch_size", batch_size, 1)
        g, rpc = self.generator, self.tasks.rotations_per_class
        classes = torch.randint(self.num_classes, (batch_size,), generator=g)
        drawer = torch.randint(self.drawers, (batch_size,), generator=g)
        idx = {  # one "task" per image, one class per task; its label is the class id
            "characters": self.tasks.characters[classes // rpc][:, None],
            "rotation": (classes % rpc)[:, None],
            "labels": classes[:, None],
            "drawers": torch.stack([drawer, (drawer + 1) % self.drawers], -1)[:, None, :],
        }
        b = self.tasks.batch_from_indices(idx)
        return b.support_x.reshape(batch_size, *b.support_x.shape[2:]), b.support_y.reshape(batch_size)

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])


@dataclass
class Pretrained:
    """A classifier pre-trained on all training classes: ``model`` has ``num_classes`` outputs.

    ``losses`` / ``accuracies``: the training minibatches' scores, one per step.
    """

    model: ConvLearner
    params: Params
    num_classes: int
    filters: int
    depth: int
    in_channels: int = 1
    image_size: int = 28
    losses: list[float] = field(default_factory=list)
    accuracies: list[float] = field(default_factory=list)


def pretrain(data_or_batches, *, steps: int = 500, batch_size: int = 64, lr: float = 1e-3, filters: int = 32,
             depth: int = 4, split: str | None = "maml", part: str = "train", rotations: bool | None = None,
             seed: int = 0, device: torch.device | str | None = None, progress: bool = True,
             callback: Callable[[int, float, float], None] | None = None,
             max_seconds: float | None = None) -> Pretrained:
    """Ordinary supervised training (Adam, cross-entropy) of a ``num_classes``-way ``ConvLearner``.

    ``data_or_batches``: an ``OmniglotData`` (a :class:`ClassBatches` is built from ``split``,
    ``part``, ``rotations``, ``seed``) or any object with ``num_classes`` and
    ``sample(batch_size) -> (x [B, 1, H, W], y [B])``. Batch norm uses each minibatch's statistics.
    The initial weights come from ``torch.manual_seed(seed)`` in a forked RNG.
    ``callback(step, loss, accuracy)`` is called after every step. ``max_seconds``: a wall-clock
    budget (``mllib.timing.TimeBudget``: stops before a step would overrun it, after at least one;
    ``len(result.losses)`` tells how many ran).
    """
    check_max_seconds(max_seconds)
    for name, value, low in (("steps", steps, 1), ("batch_size", batch_size, 2), ("filters", filters, 1),
                             ("depth", depth, 1), ("seed", seed, 0)):
        check_int(name, value, low)
    check_positive("lr", lr)
    batches = data_or_batches
    if not hasattr(batches, "sample") or not hasattr(batches, "num_classes"):
        batches = ClassBatches(data_or_batches, split=split, part=part, rotations=rotations, seed=seed,
                               device=device)
    x0, _ = batches.sample(2)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ConvLearner(batches.num_classes, in_channels=x0.shape[1], filters=filters, depth=depth,
                            image_size=x0.shape[-1]).to(x0.device)
    params = params_of(model)
    opt = torch.optim.Adam(params.values(), lr=lr)
    result = Pretrained(model, params, batches.num_classes, filters, depth, x0.shape[1], x0.shape[-1])
    with TrainingLoop(steps, "pretrain", progress=progress, max_seconds=max_seconds, what="minibatches",
                      keys=("loss", "acc"), show_every=20, interruptible=False) as loop:
        for step in loop:
            x, y = batches.sample(batch_size)
            opt.zero_grad(set_to_none=True)
            with torch.enable_grad():
                loss, acc = loss_and_metric(torch.func.functional_call(model, params, (x,)), y)
                loss.backward()
            opt.step()
            loop.log(loss=float(loss.detach()), acc=float(acc))
            if callback is not None:
                callback(step, loop.history["loss"][-1], loop.history["acc"][-1])
    result.losses, result.accuracies = loop.history["loss"], loop.history["acc"]
    result.params = {k: v.detach() for k, v in params.items()}
    return result


def new_head(pretrained: Pretrained, ways: int, init: str = "zeros", seed: int = 0) -> tuple[ConvLearner, Params]:
    """A ``ways``-way learner with the pre-trained body and a new head; ``(model, params)``.

    ``init="zeros"``: a zero head (every class starts equally likely; deterministic);
    ``"random"``: the model's default head initialisation, seeded with ``seed``.
    """
    check_int("ways", ways, 2)
    check_choice("init", init, FINETUNE_HEAD_INITS)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ConvLearner(ways, in_channels=pretrained.in_channels, filters=pretrained.filters,
                            depth=pretrained.depth, image_size=pretrained.image_size)
    device = next(iter(pretrained.params.values())).device
    model = model.to(device)
    heads = set(head_names(model))
    params = {k: v.detach().clone() for k, v in pretrained.params.items() if k not in heads}
    for k, v in params_of(model).items():
        if k in heads:
            params[k] = torch.zeros_like(v) if init == "zeros" else v.detach()
    return model, {k: params[k] for k, _ in model.named_parameters()}


def finetune(model: ConvLearner, params: Mapping[str, Tensor], support_x: Tensor, support_y: Tensor,
             steps: int, lr: float, mode: str = "head", optimizer: str = "sgd") -> Params:
    """Fine-tune one task: the head only (``mode="head"``) or every parameter (``"all"``).

    ``support_x [S, 1, 28, 28]``, ``support_y [S]``; returns the fine-tuned dict (detached);
    with ``mode="head"`` every body tensor is returned unchanged.
    """
    check_choice("mode", mode, FINETUNE_MODES)
    names = head_names(model) if mode == "head" else None
    return train_on_support(model, params, support_x, support_y, steps, lr, optimizer, names=names)


def finetune_accuracies(pretrained: Pretrained, batch: TaskBatch, *, steps: int = 50, lr: float = 0.1,
                        mode: str = "head", optimizer: str = "sgd", bn: str = "batch",
                        head_init: str = "zeros", seed: int = 0, progress: bool = True) -> Tensor:
    """Per-task query accuracy ``[T]`` after a new head and :func:`finetune` on each support set."""
    check_choice("bn", bn, BN_MODES)
    model, start = new_head(pretrained, _ways_of(batch), head_init, seed)
    accs = []
    for t in progress_bar(range(batch.num_tasks), desc=f"fine-tune ({mode})", enabled=progress):
        tuned = finetune(model, start, batch.support_x[t], batch.support_y[t], steps, lr, mode, optimizer)
        accs.append(_score(model, tuned, batch.support_x[t], batch.query_x[t], batch.query_y[t], bn))
    return torch.stack(accs).float().cpu()


__all__ = [
    "train_on_support", "scratch_accuracies", "ClassBatches", "Pretrained", "pretrain", "new_head",
    "finetune", "finetune_accuracies", "OPTIMIZERS", "FINETUNE_MODES", "FINETUNE_HEAD_INITS",
]
