"""Matching networks (匹配网络; Vinyals et al. 2016): classify a query by attention over the support set.

Taught in notebook 07 (sections 3 and 4), beside prototypical networks (``mllib.algorithms.proto_logits``,
notebook 05) and the in-context learner (``mllib.incontext``), whose classification read-out is this
attention.

The classifier. An embedding network ``f`` (here the course's conv learner, ``ConvLearner.features``,
32 filters in the quick profile) maps the support images ``x_i`` (labels ``y_i``, one-hot) and a query
``x`` to vectors; the query attends to the support examples with

    a(x, x_i) = exp(s cos(f(x), f(x_i))) / sum_j exp(s cos(f(x), f(x_j)))     (softmax over the support)

and the predicted distribution over the classes is the attention mass on each class,
``p(c | x) = sum_i a(x, x_i) [y_i = c]``; the training loss is ``-log p(y | x)`` on the query set.
``s`` is a learned scale (cosines lie in ``[-1, 1]``: without it the softmax could not become sharp).
This is Vinyals et al.'s model *without full-context embeddings* (FCE): their ``g`` (a bidirectional LSTM
over the support embeddings) and ``f`` (an attention LSTM of the query over the support) are replaced by
one shared embedding of each image on its own, as in most later re-implementations.

The same read-out in the in-context learner. ``mllib.incontext.LabelAttention`` computes

    logits_c = log( sum_j softmax_j(q' k'_j / sqrt(d)) [y_j = c] + 1e-6 ),   q' = W_q t_q,  k'_j = W_k t_j,

from the query token ``t_q`` and the support tokens ``t_j`` after the transformer blocks: the same
"attention mass per class" as above (:func:`label_log_probs` computes both from their scores,
:func:`incontext_readout_scores` gives the in-context scores; tested equal). Where it differs:

* the score is a learned bilinear form of the tokens, ``t_q W_q^T W_k t_j / sqrt(d)``, instead of a scaled
  cosine of the embeddings (not normalised, not symmetric);
* the support tokens carry their own labels (``W_y y_j`` added before the blocks), so a key may depend on
  the label, and the tokens have passed through blocks in which every token attends to the support set:
  support and query embeddings *in the context of the whole support set*, which is what Vinyals et al.'s
  full-context embeddings do with LSTMs;
* a floor of ``1e-6`` inside the log (the matching read-out here is exact: a log-sum-exp).

For 1-shot tasks every class has one support example, so ``argmax_c p(c | x)`` is the class of the
support image with the highest cosine: the prediction does not depend on ``s`` and is the cosine
nearest neighbour, while a prototypical network predicts the Euclidean nearest one (its prototypes are
the support embeddings themselves). The two differ only in the metric and in what training did to
the embedding; scoring each trained embedding with both read-outs (:func:`readout_accuracies`) tells
the two apart.

Functions (shapes; ``...`` is any leading task dimensions, ``T`` tasks in the batched forms):

* :func:`cosine_scores` ``(query_f [..., Q, D], support_f [..., S, D], scale) -> [..., Q, S]``;
* :func:`matching_attention` -> the weights ``a [..., Q, S]`` (rows sum to 1);
* :func:`label_log_probs` ``(scores [..., Q, S], support_y [..., S], ways) -> [..., Q, ways]``;
* :func:`matching_log_probs`, :func:`prototype_log_probs`: the two read-outs on embeddings;
* :func:`embed_tasks` ``(model, params, support_x [T, S, 1, 28, 28], query_x [T, Q, ...], bn)``;
* :func:`task_log_probs`, :func:`batch_loss`, :func:`readout_accuracies`: ``T`` tasks at once;
* :func:`save_matching`, :func:`load_matching`: the shipped checkpoint
  (``mllib/checkpoints/matching_omniglot_5w1s_quick.pt``, written by ``benchmarks/make_matching_omniglot.py``).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import vmap

from mllib.algorithms import BN_MODES, predict, resolve_form
from mllib.arguments import check_choice, check_int
from mllib.fast_ops import under_vmap
from mllib.models import ConvLearner, call_model
from mllib.tasks.batch import TaskBatch

READOUTS = ("matching", "prototype")
FORMAT = "mllib-matching-network"
SHIPPED = Path(__file__).resolve().parent / "checkpoints" / "matching_omniglot_5w1s_quick.pt"
INITIAL_SCALE = 10.0  # the cosine scale s at the start of training (learned from there)


# ----------------------------------------------------------------------------- checks

def _check_scale(scale) -> None:
    value = float(scale.detach()) if isinstance(scale, Tensor) else scale
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"scale must be a positive finite number (the cosine's inverse temperature), got {scale!r}")


def _check_embeddings(query_f: Tensor, support_f: Tensor) -> None:
    if query_f.dim() < 2 or support_f.dim() != query_f.dim() or query_f.shape[:-2] != support_f.shape[:-2] \
            or query_f.shape[-1] != support_f.shape[-1]:
        raise ValueError(f"query_f [..., Q, D] and support_f [..., S, D] must share the leading dimensions and D, "
                         f"got {tuple(query_f.shape)} and {tuple(support_f.shape)}")


def _check_labels(expected: torch.Size, support_y: Tensor, ways: int) -> None:
    """``support_y`` must be long ``expected`` (``[..., S]``), in ``0..ways-1``, every class present."""
    check_int("ways", ways, 2)
    if support_y.shape != expected or torch.is_floating_point(support_y):
        raise ValueError(f"support_y must be integer labels of shape {tuple(expected)} ([..., S], one per support "
                         f"example); got {support_y.dtype} {tuple(support_y.shape)}")
    if under_vmap():
        return
    if int(support_y.min()) < 0 or int(support_y.max()) >= ways:
        raise ValueError(f"support_y labels must be in 0..{ways - 1}, got "
                         f"{int(support_y.min())}..{int(support_y.max())}")
    counts = F.one_hot(support_y, ways).sum(-2)                                     # [..., ways]
    if bool((counts == 0).any()):
        missing = int((counts == 0).nonzero()[0, -1])
        raise ValueError(f"every one of the {ways} classes needs a support example in every task; "
                         f"class {missing} has none")


# ----------------------------------------------------------------------------- the read-outs

def cosine_scores(query_f: Tensor, support_f: Tensor, scale: float | Tensor) -> Tensor:
    """``s cos(f(x), f(x_i))``: ``query_f [..., Q, D]``, ``support_f [..., S, D]`` -> ``[..., Q, S]``."""
    _check_embeddings(query_f, support_f)
    _check_scale(scale)
    return scale * F.normalize(query_f, dim=-1) @ F.normalize(support_f, dim=-1).transpose(-1, -2)


def matching_attention(query_f: Tensor, support_f: Tensor, scale: float | Tensor) -> Tensor:
    """The attention ``a(x, x_i) [..., Q, S]``: softmax over the support of :func:`cosine_scores`."""
    return torch.softmax(cosine_scores(query_f, support_f, scale), dim=-1)


def label_log_probs(scores: Tensor, support_y: Tensor, ways: int) -> Tensor:
    """``log sum_i softmax_i(scores)[y_i = c]`` ``[..., Q, ways]``: the log attention mass on each class.

    ``scores [..., Q, S]`` (any attention scores: :func:`cosine_scores`, or the in-context read-out's
    :func:`incontext_readout_scores`), ``support_y [..., S]`` long in ``0..ways-1``, every class present.
    Computed exactly as ``logsumexp`` over the class's support scores minus ``logsumexp`` over all.

        >>> label_log_probs(torch.tensor([[0.0, 0.0, 0.0]]), torch.tensor([0, 0, 1]), 2).exp()
        tensor([[0.6667, 0.3333]])
    """
    _check_labels(scores.shape[:-2] + scores.shape[-1:], support_y, ways)
    mask = F.one_hot(support_y, ways).to(scores.dtype).unsqueeze(-3)               # [..., 1, S, ways]
    masked = scores.unsqueeze(-1) + torch.log(mask)                                # -inf off the class
    return torch.logsumexp(masked, dim=-2) - torch.logsumexp(scores, dim=-1, keepdim=True)


def matching_log_probs(query_f: Tensor, support_f: Tensor, support_y: Tensor, ways: int,
                       scale: float | Tensor) -> Tensor:
    """The matching network's ``log p(c | x)`` ``[..., Q, ways]`` from embeddings (see the module docstring)."""
    return label_log_probs(cosine_scores(query_f, support_f, scale), support_y, ways)


def prototype_log_probs(query_f: Tensor, support_f: Tensor, support_y: Tensor, ways: int) -> Tensor:
    """A prototypical network's ``log_softmax_c(-||f(x) - c_c||^2)`` ``[..., Q, ways]``, ``c_c`` the class means
    of ``support_f [..., S, D]`` (the rule of ``mllib.algorithms.proto_logits``, on given embeddings)."""
    _check_embeddings(query_f, support_f)
    _check_labels(support_f.shape[:-1], support_y, ways)
    one_hot = F.one_hot(support_y, ways).to(support_f.dtype)                        # [..., S, ways]
    prototypes = one_hot.transpose(-1, -2) @ support_f / one_hot.sum(-2)[..., None]  # [..., ways, D]
    return torch.log_softmax(-((query_f.unsqueeze(-2) - prototypes.unsqueeze(-3)) ** 2).sum(-1), dim=-1)


def incontext_readout_scores(readout: nn.Module, query_tokens: Tensor, support_tokens: Tensor) -> Tensor:
    """The in-context learner's read-out scores ``q' k'^T / sqrt(d)`` ``[..., Q, S]``.

    ``readout``: an ``mllib.incontext.LabelAttention`` (its ``q`` and ``k`` layers); ``query_tokens [..., Q, d]``,
    ``support_tokens [..., S, d]`` (the tokens after the blocks and the final norm). Its logits are
    ``log(exp(label_log_probs(these scores, support_y, ways)) + 1e-6)`` (tested).
    """
    _check_embeddings(query_tokens, support_tokens)
    q, k = readout.q(query_tokens), readout.k(support_tokens)
    return q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])


# ----------------------------------------------------------------------------- on the conv learner

def embed_tasks(model: nn.Module, params: Mapping[str, Tensor], support_x: Tensor, query_x: Tensor,
                bn: str = "batch", form: str = "auto") -> tuple[Tensor, Tensor]:
    """``(support_f [T, S, D], query_f [T, Q, D])`` of ``T`` tasks (``support_x [T, S, 1, 28, 28]``,
    ``query_x [T, Q, 1, 28, 28]``), with the graph; batch norm per task as ``proto_logits`` embeds:
    ``"batch"`` (support and query each with their own statistics) or ``"support"``. ``form``: ``"vmap"``
    over tasks, a ``"loop"`` (3 to 5 times faster on a CPU, measured), or ``"auto"`` (by the device)."""
    check_choice("bn", bn, BN_MODES)
    form = resolve_form(form, support_x.device)
    if support_x.dim() != 5 or query_x.dim() != 5 or support_x.shape[0] != query_x.shape[0]:
        raise ValueError(f"support_x [T, S, C, H, W] and query_x [T, Q, C, H, W] must be image batches of the same "
                         f"T tasks, got {tuple(support_x.shape)} and {tuple(query_x.shape)}")

    def one(s, q):
        return call_model(model, params, s, features=True), predict(model, params, s, q, bn, features=True)
    if form == "vmap":
        return vmap(one)(support_x, query_x)
    pairs = [one(s, q) for s, q in zip(support_x, query_x)]
    return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])


def task_log_probs(model: nn.Module, params: Mapping[str, Tensor], support_x: Tensor, support_y: Tensor,
                   query_x: Tensor, ways: int, readout: str = "matching", scale: float | Tensor = INITIAL_SCALE,
                   bn: str = "batch") -> Tensor:
    """``log p(c | x)`` ``[T, Q, ways]`` of ``T`` tasks with ``readout`` ``"matching"`` (at ``scale``) or
    ``"prototype"`` on ``model``'s embedding (``params``), all tasks at once."""
    check_choice("readout", readout, READOUTS)
    support_f, query_f = embed_tasks(model, params, support_x, query_x, bn)
    if readout == "matching":
        return matching_log_probs(query_f, support_f, support_y, ways, scale)
    return prototype_log_probs(query_f, support_f, support_y, ways)


def batch_loss(model: nn.Module, params: Mapping[str, Tensor], scale: Tensor, batch: TaskBatch, ways: int,
               bn: str = "batch") -> tuple[Tensor, Tensor]:
    """``(mean query loss -log p(y | x), per-task accuracy [T])`` of the matching network on ``batch``."""
    log_p = task_log_probs(model, params, batch.support_x, batch.support_y, batch.query_x, ways, "matching",
                           scale, bn)                                                  # [T, Q, ways]
    loss = F.nll_loss(log_p.flatten(0, 1), batch.query_y.flatten())
    return loss, (log_p.argmax(-1) == batch.query_y).to(log_p.dtype).mean(-1)


def readout_accuracies(model: nn.Module, params: Mapping[str, Tensor], batch: TaskBatch, ways: int,
                       readout: str = "matching", scale: float | Tensor = INITIAL_SCALE, bn: str = "batch",
                       chunk: int = 50) -> Tensor:
    """Per-task query accuracy ``[T]`` (float, CPU) of ``readout`` on ``model``'s embedding, no graph,
    ``chunk`` tasks at a time. Any conv learner: a matching network's or a ProtoNet's parameters."""
    check_int("chunk", chunk, 1)
    params = {k: v.detach() for k, v in params.items()}
    scores = []
    with torch.no_grad():
        for i in range(0, batch.num_tasks, chunk):
            part = batch[i:i + chunk]
            log_p = task_log_probs(model, params, part.support_x, part.support_y, part.query_x, ways, readout,
                                   scale, bn)
            scores.append((log_p.argmax(-1) == part.query_y).float().mean(-1).cpu())
    return torch.cat(scores)


# ----------------------------------------------------------------------------- the checkpoint

def save_matching(path: str | Path, model: ConvLearner, params: Mapping[str, Tensor], scale: Tensor,
                  config: Mapping) -> None:
    """Write ``{"format", "config", "state_dict", "scale"}`` (float32, loads with ``weights_only``);
    ``config`` names at least ``filters`` (the head of ``model`` is saved but unused by the read-out)."""
    if "filters" not in config:
        raise ValueError("config must name the embedding's 'filters' (load_matching rebuilds the network from it)")
    from mllib.checkpoint import atomic_save
    state = {k: v.detach().float().cpu().clone() for k, v in params.items()}
    atomic_save({"format": FORMAT, "config": dict(config, ways=model.ways),
                 "state_dict": state, "scale": scale.detach().float().cpu().clone()}, Path(path))


def load_matching(path: str | Path = SHIPPED) -> tuple[ConvLearner, dict[str, Tensor], Tensor, dict]:
    """``(model, params, scale, config)`` of a matching-network file (default: the shipped quick one)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; benchmarks/make_matching_omniglot.py writes it")
    saved = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(saved, dict) or saved.get("format") != FORMAT:
        raise ValueError(f"{path} is not a matching-network file (format {FORMAT!r})")
    config = saved["config"]
    model = ConvLearner(config["ways"], filters=config["filters"])
    model.load_state_dict(saved["state_dict"])
    return model, dict(model.named_parameters()), saved["scale"], config


__all__ = ["cosine_scores", "matching_attention", "label_log_probs", "matching_log_probs", "prototype_log_probs",
           "incontext_readout_scores", "embed_tasks", "task_log_probs", "batch_loss", "readout_accuracies",
           "save_matching", "load_matching"]
