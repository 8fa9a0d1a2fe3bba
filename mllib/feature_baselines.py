"""Few-shot classifiers on a frozen, pre-trained embedding: nearest centroid and a linear probe.

The "pre-train, then classify on the features" baseline of Chen et al. (2019, *A Closer Look at
Few-shot Classification*) and Tian et al. (2020, *Rethinking Few-Shot Image Classification: a Good
Embedding Is All You Need?*), taught in notebook 09, section 4. Nothing is adapted but a tiny
classifier on ``D``-dimensional features; the network (a :class:`~mllib.models.ConvLearner` trained
on all training classes by :func:`mllib.baselines.pretrain`) is frozen.

* :func:`task_features`: the embeddings of one task's support and query images, batch norm as the
  meta-learners use it (``bn="batch"``: each set with its own statistics, transductive;
  ``"support"``: the query normalised with the support set's statistics), exactly as
  :func:`mllib.algorithms.proto_logits` embeds them.
* :func:`nearest_centroid_logits`: one centroid per class (the mean support feature);
  ``metric="euclidean"``: minus squared distances (ProtoNet's rule on the same features);
  ``"cosine"``: cosine similarity to the centroid of the L2-normalised support features.
* :func:`linear_probe_logits`: multinomial logistic regression on the L2-normalised support
  features, from zero weights, ``steps`` full-batch gradient steps with an L2 penalty
  (deterministic: no random start, no minibatches).
* :func:`feature_accuracies`: per-task query accuracies ``[T]`` of either, ready for
  :func:`mllib.evaluate.mean_ci95` and :func:`mllib.compare.paired_verdict`.
* :func:`load_pretrained`: the shipped pre-trained network (``mllib/checkpoints/pretrained_omniglot_5w1s.pt``,
  written by ``benchmarks/make_pretrained_omniglot.py``) as ``(model, params)``.

Shapes: ``support_f [S, D]``, ``support_y [S]`` (long, ``0..ways-1``), ``query_f [Q, D]``; logits
``[Q, ways]``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mllib.algorithms import BN_MODES, predict
from mllib.arguments import check_choice, check_int, check_positive
from mllib.models import ConvLearner, call_model
from mllib.progress import progress_bar
from mllib.tasks.batch import TaskBatch

METRICS = ("euclidean", "cosine")
PRETRAINED = Path(__file__).resolve().parent / "checkpoints" / "pretrained_omniglot_5w1s.pt"
PRETRAINED_FORMAT = "mllib-pretrained-classifier"
CLASSIFIERS = ("centroid", "probe")


def _check_task(support_f: Tensor, support_y: Tensor, query_f: Tensor, ways: int) -> None:
    check_int("ways", ways, 2)
    if support_f.dim() != 2 or query_f.dim() != 2 or support_f.shape[1] != query_f.shape[1]:
        raise ValueError(f"support_f and query_f must be [S, D] and [Q, D] with the same D; got "
                         f"{tuple(support_f.shape)} and {tuple(query_f.shape)}")
    if support_y.shape != support_f.shape[:1] or torch.is_floating_point(support_y):
        raise ValueError(f"support_y must be long labels [S] = [{support_f.shape[0]}]; got "
                         f"{support_y.dtype} {tuple(support_y.shape)}")
    if support_y.numel() and (int(support_y.min()) < 0 or int(support_y.max()) >= ways):
        raise ValueError(f"support_y must lie in 0..{ways - 1} (ways={ways}); got labels "
                         f"{int(support_y.min())}..{int(support_y.max())}")
    missing = set(range(ways)) - set(support_y.tolist())
    if missing:
        raise ValueError(f"every class needs at least one support example; classes {sorted(missing)} have none")


def task_features(model: nn.Module, params: Mapping[str, Tensor], support_x: Tensor, query_x: Tensor,
                  bn: str = "batch") -> tuple[Tensor, Tensor]:
    """``(support_f [S, D], query_f [Q, D])``: embeddings of one task, no graph.

    ``support_x [S, 1, 28, 28]``, ``query_x [Q, 1, 28, 28]``; batch norm as in
    :func:`mllib.algorithms.proto_logits` (``bn`` in ``"batch"``, ``"support"``).
    """
    check_choice("bn", bn, BN_MODES)
    with torch.no_grad():
        support = call_model(model, params, support_x, features=True)
        query = predict(model, params, support_x, query_x, bn, features=True)
    return support, query


def centroids(support_f: Tensor, support_y: Tensor, ways: int) -> Tensor:
    """Class means ``[ways, D]`` of the support features ``[S, D]``."""
    one_hot = F.one_hot(support_y, ways).to(support_f.dtype)                   # [S, ways]
    return one_hot.T @ support_f / one_hot.sum(0)[:, None]


def nearest_centroid_logits(support_f: Tensor, support_y: Tensor, query_f: Tensor, ways: int,
                            metric: str = "cosine") -> Tensor:
    """Scores ``[Q, ways]`` of each query against each class centroid (argmax: the nearest).

    ``"euclidean"``: ``-||q - c_k||^2`` with the raw features' means (ProtoNet's rule);
    ``"cosine"``: ``cos(q, c_k)`` with ``c_k`` the mean of the unit-length support features.

        >>> f = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
        >>> nearest_centroid_logits(f, torch.tensor([0, 1]), torch.tensor([[2.0, 0.1]]), 2).argmax(-1)
        tensor([0])
    """
    _check_task(support_f, support_y, query_f, ways)
    check_choice("metric", metric, METRICS)
    if metric == "euclidean":
        return -((query_f[:, None, :] - centroids(support_f, support_y, ways)[None]) ** 2).sum(-1)
    c = centroids(F.normalize(support_f, dim=-1), support_y, ways)
    return F.normalize(query_f, dim=-1) @ F.normalize(c, dim=-1).T


def linear_probe_logits(support_f: Tensor, support_y: Tensor, query_f: Tensor, ways: int, *, steps: int = 100,
                        lr: float = 1.0, l2: float = 1e-2, scale: float = 1.0) -> Tensor:
    """Logits ``[Q, ways]`` of a logistic regression fitted to the support features.

    Features are L2-normalised and multiplied by ``scale`` (so the step size means the same for
    any embedding); weights ``W [ways, D]`` and bias ``b [ways]`` start at zero and take ``steps``
    full-batch gradient steps of ``lr`` on ``mean cross-entropy + l2/2 * ||W||^2``. The gradient is
    written out (``X^T (softmax - onehot) / S``), so it runs without autograd.

        >>> f = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
        >>> linear_probe_logits(f, torch.tensor([0, 1]), f, 2).argmax(-1)
        tensor([0, 1])
    """
    _check_task(support_f, support_y, query_f, ways)
    check_int("steps", steps, 1)
    check_positive("lr", lr)
    if not l2 >= 0:
        raise ValueError(f"l2 must be >= 0 (the weight penalty), got {l2!r}")
    check_positive("scale", scale)
    x = scale * F.normalize(support_f.detach(), dim=-1)                           # [S, D]
    target = F.one_hot(support_y, ways).to(x.dtype)                             # [S, ways]
    w = x.new_zeros(ways, x.shape[1])
    b = x.new_zeros(ways)
    for _ in range(steps):
        residual = (torch.softmax(x @ w.T + b, -1) - target) / x.shape[0]     # [S, ways]
        w = w - lr * (residual.T @ x + l2 * w)
        b = b - lr * residual.sum(0)
    return scale * F.normalize(query_f.detach(), dim=-1) @ w.T + b


def feature_accuracies(model: nn.Module, params: Mapping[str, Tensor], batch: TaskBatch, *,
                       classifier: str = "centroid", metric: str = "cosine", bn: str = "batch",
                       probe_steps: int = 100, probe_lr: float = 1.0, probe_l2: float = 1e-2,
                       progress: bool = False) -> Tensor:
    """Per-task query accuracies ``[T]`` (float, CPU) of a classifier on ``model``'s frozen features.

    ``model``, ``params``: any learner with ``features`` (e.g. ``Pretrained.model``,
    ``Pretrained.params``; the head is not used). ``classifier``: ``"centroid"``
    (:func:`nearest_centroid_logits` with ``metric``) or ``"probe"`` (:func:`linear_probe_logits`).
    """
    check_choice("classifier", classifier, CLASSIFIERS)
    ways = int(batch.support_y.max()) + 1
    accs = []
    for t in progress_bar(range(batch.num_tasks), desc=f"features ({classifier})", enabled=progress):
        s, q = task_features(model, params, batch.support_x[t], batch.query_x[t], bn)
        if classifier == "centroid":
            logits = nearest_centroid_logits(s, batch.support_y[t], q, ways, metric)
        else:
            logits = linear_probe_logits(s, batch.support_y[t], q, ways, steps=probe_steps, lr=probe_lr,
                                         l2=probe_l2)
        accs.append((logits.argmax(-1) == batch.query_y[t]).float().mean())
    return torch.stack(accs).cpu()


def load_pretrained(path: str | Path = PRETRAINED) -> tuple[ConvLearner, dict[str, Tensor]]:
    """``(model, params)`` of a pre-trained classifier file (``{"format", "config", "state_dict"}``).

    Loaded with ``weights_only=True`` on the CPU; the model has the file's ``num_classes`` outputs
    (its head is not needed for :func:`feature_accuracies`).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no pre-trained network at {path}; train one with "
                                f"python benchmarks/make_pretrained_omniglot.py --out {path}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("format") != PRETRAINED_FORMAT:
        raise ValueError(f"{path} is not a pre-trained classifier file (format {PRETRAINED_FORMAT!r}); "
                         "write one with benchmarks/make_pretrained_omniglot.py")
    c = state["config"]
    model = ConvLearner(c["num_classes"], in_channels=c["in_channels"], filters=c["filters"], depth=c["depth"],
                        image_size=c["image_size"])
    params = dict(state["state_dict"])
    expected = {k: tuple(v.shape) for k, v in model.named_parameters()}
    found = {k: tuple(v.shape) for k, v in params.items()}
    if found != expected:
        raise ValueError(f"{path}: its tensors {sorted(set(found) ^ set(expected)) or 'differ in shape'} do not "
                         "match the ConvLearner its config describes")
    return model, params


__all__ = ["METRICS", "PRETRAINED", "load_pretrained", "CLASSIFIERS", "task_features", "centroids", "nearest_centroid_logits",
           "linear_probe_logits", "feature_accuracies"]
