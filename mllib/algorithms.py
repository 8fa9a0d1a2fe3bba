"""The outer loop: meta-gradients of the MAML family and of prototypical networks.

One task's story, the same for every algorithm (``task_outcome``):

1. adapt the meta-parameters on the support set (``mllib.inner.adapt``);
2. predict the query set with the adapted parameters (``predict``, batch norm per ``cfg.bn``);
3. score the prediction: cross-entropy and accuracy (long labels) or mean squared error (float labels).

``meta_gradient`` averages the gradient of step 3 with respect to the meta-parameters over the
tasks of a ``TaskBatch``, in one of two forms that agree (tested):

* ``loop``: a Python loop over tasks, one backward pass per task (fastest on a CPU, least memory);
* ``vmap``: ``torch.func.vmap`` over the task dimension, one backward pass (fastest on a GPU).

Algorithms (``ALGORITHMS``):

* ``maml``: second-order MAML; the outer gradient flows through the inner gradient steps.
* ``fomaml``: first-order MAML; the inner gradients are treated as constants.
* ``reptile``: SGD on the task's data (``cfg.reptile_data``), then "gradient" = params - mean(adapted).
* ``metasgd``: MAML with learnable per-parameter inner rates ``"lr.<name>"`` (same shapes as the params).
* ``anil``: MAML with the inner loop on the head only; the body is learned by the outer loop alone.
* ``protonet``: no inner loop; prototypes = mean support embedding per class,
  logits = minus squared Euclidean distance to each prototype. Its head is unused (zero gradients).

Batch norm (``cfg.bn``) is the same for all conv algorithms: in ``batch`` mode the support and the
query sets are forwarded separately, each normalised with its own statistics; in ``support`` mode
the query rows are normalised with support statistics (see ``predict``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, vmap

from mllib.inner import adapt
from mllib.models import head_names, params_of
from mllib.tasks.batch import TaskBatch

ALGORITHMS = ("maml", "fomaml", "reptile", "metasgd", "anil", "protonet")
BN_MODES = ("batch", "support")
FORMS = ("auto", "loop", "vmap")
REPTILE_DATA = ("support+query", "support")
LR_PREFIX = "lr."

Params = dict[str, Tensor]


@dataclass(frozen=True)
class MetaConfig:
    """What the outer loop optimises and how.

    * ``algo``: one of ``ALGORITHMS``.
    * ``inner_steps``, ``inner_lr``: the inner loop in meta-training (Meta-SGD: the rates' initial value).
    * ``bn``: ``"batch"`` (query normalised with query statistics; transductive, as in the MAML paper)
      or ``"support"`` (query normalised with support statistics). See ``mllib.models``.
    * ``form``: ``"loop"``, ``"vmap"`` or ``"auto"`` (``pick_form`` of the data's device).
    * ``reptile_data``: the data Reptile's inner SGD trains on in meta-training.
    """

    algo: str = "maml"
    inner_steps: int = 1
    inner_lr: float = 0.4
    bn: str = "batch"
    form: str = "auto"
    reptile_data: str = "support+query"

    def __post_init__(self) -> None:
        for name, allowed in (("algo", ALGORITHMS), ("bn", BN_MODES), ("form", FORMS),
                              ("reptile_data", REPTILE_DATA)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {getattr(self, name)!r}")
        if not isinstance(self.inner_steps, int) or isinstance(self.inner_steps, bool) or self.inner_steps < 0:
            raise ValueError(f"inner_steps must be an integer >= 0, got {self.inner_steps!r}")
        if not (isinstance(self.inner_lr, (int, float)) and self.inner_lr > 0):
            raise ValueError(f"inner_lr must be a number > 0, got {self.inner_lr!r}")

    @property
    def first_order(self) -> bool:
        return self.algo == "fomaml"


def pick_form(device: torch.device | str) -> str:
    """``"vmap"`` on CUDA (one big batched kernel per op), ``"loop"`` elsewhere (measured faster on CPU)."""
    return "vmap" if torch.device(device).type == "cuda" else "loop"


def init_meta_params(model: nn.Module, cfg: MetaConfig) -> Params:
    """The meta-parameters: the model's parameters, plus ``"lr.<name>"`` rates for Meta-SGD.

    Meta-SGD's rates have the shape of their parameter and start at ``cfg.inner_lr``.
    """
    params = params_of(model)
    if cfg.algo == "metasgd":
        params.update({LR_PREFIX + n: torch.full_like(p, cfg.inner_lr).requires_grad_(True)
                       for n, p in list(params.items())})
    return params


def split_meta_params(meta_params: Mapping[str, Tensor]) -> tuple[Params, Params | None]:
    """``(model params, Meta-SGD rates keyed by param name or None)``."""
    params = {k: v for k, v in meta_params.items() if not k.startswith(LR_PREFIX)}
    rates = {k[len(LR_PREFIX):]: v for k, v in meta_params.items() if k.startswith(LR_PREFIX)}
    return params, (rates or None)


# ---------------------------------------------------------------------------- one task

class _Features(nn.Module):
    """A view of ``model`` whose forward is ``model.features`` (parameter names prefixed ``"model."``)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor, **kwargs) -> Tensor:
        return self.model.features(x, **kwargs)


def forward(model: nn.Module, params: Mapping[str, Tensor], x: Tensor, stats_rows: int | None = None,
            features: bool = False) -> Tensor:
    """``model(x)`` with ``params`` (or ``model.features(x)`` if ``features``); ``[N, ...]`` -> ``[N, out]``.

    ``stats_rows`` is passed to the model only when given (models without batch norm ignore it).
    """
    kwargs = {} if stats_rows is None else {"stats_rows": stats_rows}
    if features:
        return functional_call(_Features(model), {"model." + k: v for k, v in params.items()}, (x,), kwargs)
    return functional_call(model, dict(params), (x,), kwargs)


def predict(model: nn.Module, params: Mapping[str, Tensor], support_x: Tensor, query_x: Tensor,
            bn: str = "batch", features: bool = False) -> Tensor:
    """Query outputs ``[Q, out]`` (or embeddings) for ``query_x [Q, ...]``, with ``support_x [S, ...]``.

    ``bn="batch"``: the query is forwarded alone (normalised with its own statistics).
    ``bn="support"``: ``cat([support_x, query_x])`` is forwarded with ``stats_rows=S`` and the
    query rows are returned, so each query row is normalised with support statistics only.
    """
    if bn == "support":
        n = support_x.shape[0]
        return forward(model, params, torch.cat([support_x, query_x]), stats_rows=n, features=features)[n:]
    return forward(model, params, query_x, features=features)


def proto_logits(model: nn.Module, params: Mapping[str, Tensor], support_x: Tensor, support_y: Tensor,
                 query_x: Tensor, ways: int, bn: str = "batch") -> Tensor:
    """Prototypical-network logits ``[Q, ways]``: minus squared distances to class-mean embeddings.

    ``support_x [S, ...]``, ``support_y [S]`` (long, ``0..ways-1``), ``query_x [Q, ...]``.
    """
    support = forward(model, params, support_x, features=True)
    query = predict(model, params, support_x, query_x, bn, features=True)            # [Q, D]
    one_hot = (support_y[:, None] == torch.arange(ways, device=support_y.device)).to(support.dtype)
    prototypes = one_hot.T @ support / one_hot.sum(0)[:, None]                          # [ways, D]
    return -((query[:, None, :] - prototypes[None]) ** 2).sum(-1)


def is_classification(labels: Tensor) -> bool:
    """Long labels: classification (cross-entropy, accuracy); float labels: regression (MSE)."""
    return not torch.is_floating_point(labels)


def loss_and_metric(outputs: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """``(cross-entropy, accuracy)`` for long labels ``[N]``, ``(MSE, MSE)`` for float labels ``[N, 1]``."""
    if is_classification(labels):
        return F.cross_entropy(outputs, labels), (outputs.argmax(-1) == labels).to(outputs.dtype).mean()
    mse = F.mse_loss(outputs, labels)
    return mse, mse


def support_loss_fn(model: nn.Module):
    """``loss(params, (x, y))`` on one task's adaptation data, as ``adapt`` expects."""
    def loss(params: Params, data: tuple[Tensor, Tensor]) -> Tensor:
        x, y = data
        return loss_and_metric(forward(model, params, x), y)[0]
    return loss


def task_outcome(model: nn.Module, meta_params: Mapping[str, Tensor], support_x: Tensor, support_y: Tensor,
                 query_x: Tensor, query_y: Tensor, cfg: MetaConfig, steps: int | None = None,
                 evaluation: bool = False) -> tuple[Tensor, Tensor]:
    """One task: adapt on the support set, then ``(query loss, query metric)`` (scalars).

    Shapes are one task's: ``support_x [S, 1, 28, 28]``, ``support_y [S]``, ``query_x [Q, ...]``,
    ``query_y [Q]`` (or ``[K, 1]`` float tensors for sinusoids). Works inside ``vmap``.
    """
    params, rates = split_meta_params(meta_params)
    steps = cfg.inner_steps if steps is None else steps
    if cfg.algo == "protonet":
        outputs = proto_logits(model, params, support_x, support_y, query_x, _ways(model, params), cfg.bn)
    else:
        adapted = adapt(params, support_loss_fn(model), (support_x, support_y), steps,
                        rates if rates is not None else cfg.inner_lr, first_order=cfg.first_order,
                        names=head_names(model) if cfg.algo == "anil" else None, evaluation=evaluation)
        outputs = predict(model, adapted, support_x, query_x, cfg.bn)
    return loss_and_metric(outputs, query_y)


def reptile_outcome(model: nn.Module, meta_params: Mapping[str, Tensor], support_x: Tensor, support_y: Tensor,
                    query_x: Tensor, query_y: Tensor, cfg: MetaConfig) -> tuple[Params, Tensor, Tensor]:
    """One Reptile task: ``(adapted params, query loss, query metric)``, no graph kept.

    The inner SGD trains on ``cfg.reptile_data``; with ``"support+query"`` the query scores are
    training scores (optimistic), reported only to follow progress.
    """
    data = (support_x, support_y)
    if cfg.reptile_data == "support+query":
        data = (torch.cat([support_x, query_x]), torch.cat([support_y, query_y]))
    adapted = adapt(meta_params, support_loss_fn(model), data, cfg.inner_steps, cfg.inner_lr, evaluation=True)
    with torch.no_grad():
        loss, metric = loss_and_metric(predict(model, adapted, support_x, query_x, cfg.bn), query_y)
    return adapted, loss, metric


def _ways(model: nn.Module, params: Mapping[str, Tensor]) -> int:
    ways = getattr(model, "ways", None)
    if ways is None:
        raise ValueError(f"protonet needs a classifier with a 'ways' attribute; {type(model).__name__} has none")
    return ways


# ---------------------------------------------------------------------------- task batches

def resolve_form(cfg: MetaConfig, device: torch.device | str) -> str:
    """``cfg.form``, with ``"auto"`` replaced by ``pick_form(device)``."""
    return pick_form(device) if cfg.form == "auto" else cfg.form


def _check(model: nn.Module, meta_params: Mapping[str, Tensor], batch: TaskBatch, cfg: MetaConfig) -> bool:
    classification = is_classification(batch.query_y)
    if cfg.algo == "protonet" and not classification:
        raise ValueError("algo='protonet' needs classification tasks (long labels); got float labels")
    if (cfg.algo == "metasgd") != any(k.startswith(LR_PREFIX) for k in meta_params):
        raise ValueError(f"meta_params do not match algo={cfg.algo!r}: Meta-SGD needs 'lr.*' rates and only "
                         "Meta-SGD has them; build them with init_meta_params(model, cfg)")
    return classification


def _stats(losses: Tensor, metrics: Tensor, classification: bool) -> dict[str, float]:
    return {"loss": float(losses.mean()), "accuracy": float(metrics.mean()) if classification else float("nan")}


def meta_gradient(model: nn.Module, meta_params: Mapping[str, Tensor], batch: TaskBatch,
                  cfg: MetaConfig) -> tuple[Params, dict[str, float]]:
    """The meta-gradient averaged over the ``T`` tasks of ``batch``, and ``{"loss", "accuracy"}``.

    ``grads`` has the keys of ``meta_params``; apply it with
    ``for k, p in meta_params.items(): p.grad = grads[k]`` then ``optimizer.step()``.
    Reptile's "gradient" is ``meta_params - mean(adapted)`` (plain SGD with rate 1 = Reptile's step).
    ``loss``/``accuracy``: mean query scores after adaptation (``accuracy`` is NaN for regression).
    """
    classification = _check(model, meta_params, batch, cfg)
    form = resolve_form(cfg, batch.support_x.device)
    tasks = (batch.support_x, batch.support_y, batch.query_x, batch.query_y)
    T = batch.num_tasks
    if cfg.algo == "reptile":
        if form == "loop":
            outcomes = [reptile_outcome(model, meta_params, *(x[t] for x in tasks), cfg) for t in range(T)]
            mean_adapted = {k: sum(o[0][k] for o in outcomes) / T for k in meta_params}
            losses, metrics = (torch.stack([o[i] for o in outcomes]) for i in (1, 2))
        else:
            adapted, losses, metrics = vmap(lambda p, *task: reptile_outcome(model, p, *task, cfg),
                                            in_dims=(None, 0, 0, 0, 0))(meta_params, *tasks)
            mean_adapted = {k: v.mean(0) for k, v in adapted.items()}
        grads = {k: meta_params[k].detach() - mean_adapted[k] for k in meta_params}
        return grads, _stats(losses, metrics, classification)

    keys = list(meta_params)
    inputs = [meta_params[k] for k in keys]
    if form == "loop":
        sums = [torch.zeros_like(p) for p in inputs]
        losses, metrics = [], []
        for t in range(T):
            loss, metric = task_outcome(model, meta_params, *(x[t] for x in tasks), cfg)
            for total, g in zip(sums, torch.autograd.grad(loss, inputs, allow_unused=True)):
                if g is not None:
                    total += g
            losses.append(loss.detach())
            metrics.append(metric.detach())
        grads = {k: total / T for k, total in zip(keys, sums)}
        losses, metrics = torch.stack(losses), torch.stack(metrics)
    else:
        losses, metrics = vmap(lambda p, *task: task_outcome(model, p, *task, cfg),
                               in_dims=(None, 0, 0, 0, 0))(meta_params, *tasks)
        raw = torch.autograd.grad(losses.mean(), inputs, allow_unused=True)
        grads = {k: torch.zeros_like(p) if g is None else g for k, p, g in zip(keys, inputs, raw)}
    return grads, _stats(losses.detach(), metrics.detach(), classification)


def evaluate_tasks(model: nn.Module, meta_params: Mapping[str, Tensor], batch: TaskBatch, cfg: MetaConfig,
                   inner_steps: int | None = None, chunk: int = 32) -> Tensor:
    """Per-task query accuracy (classification) or MSE (regression), ``[T]``, building no graph.

    Every algorithm adapts on the support set only (Reptile included), ``inner_steps``
    (default ``cfg.inner_steps``) steps at ``cfg.inner_lr`` (Meta-SGD: its learned rates).
    The vmap form handles ``chunk`` tasks at a time to bound memory.
    """
    _check(model, meta_params, batch, cfg)
    if inner_steps is not None and (not isinstance(inner_steps, int) or inner_steps < 0):
        raise ValueError(f"inner_steps must be an integer >= 0 or None, got {inner_steps!r}")
    if not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"chunk must be an integer >= 1, got {chunk!r}")
    form = resolve_form(cfg, batch.support_x.device)
    tasks = (batch.support_x, batch.support_y, batch.query_x, batch.query_y)
    detached = {k: v.detach() for k, v in meta_params.items()}

    def one(p, *task):
        return task_outcome(model, p, *task, cfg, steps=inner_steps, evaluation=True)[1]

    with torch.no_grad():
        if form == "loop":
            return torch.stack([one(detached, *(x[t] for x in tasks)) for t in range(batch.num_tasks)])
        batched = vmap(one, in_dims=(None, 0, 0, 0, 0))
        return torch.cat([batched(detached, *(x[i:i + chunk] for x in tasks))
                          for i in range(0, batch.num_tasks, chunk)])
