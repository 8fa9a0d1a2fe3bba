"""The outer loop (外循环): meta-gradients of the MAML family and of prototypical networks.

Taught in notebook 04 (MAML, FOMAML, Reptile), 05 (MAML and prototypical networks on Omniglot)
and 06 (Meta-SGD, ANIL). This file reads in that order: plain MAML first, its variants after.

Plain MAML, one task (``query_loss_and_metric``):

1. adapt the meta-parameters on the support set (``adapt_task``: ``mllib.inner.adapt`` on the
   support loss, ``support_loss_fn``);
2. predict the query set with the adapted parameters (``predict``, batch norm per ``cfg.bn``);
3. score the prediction (``loss_and_metric``): cross-entropy and accuracy (long labels) or mean
   squared error (float labels).

Plain MAML, a batch of tasks: ``meta_gradient`` averages the gradient of step 3 with respect to
the meta-parameters over the tasks of a ``TaskBatch``, ``meta_step`` applies it with an optimiser,
and ``evaluate_tasks`` scores adapted tasks without a graph. Two forms agree (tested):

* ``loop``: a Python loop over tasks, one backward pass per task (fastest on a CPU, least memory);
* ``vmap``: ``torch.func.vmap`` over the task dimension, one backward pass (fastest on a GPU).

Algorithms (``ALGORITHMS``); every one but ``maml`` is a variant, written after plain MAML:

* ``maml``: second-order MAML; the outer gradient flows through the inner gradient steps.
* ``fomaml``: first-order MAML; the inner gradients are treated as constants.
* ``reptile``: SGD on the task's data (``cfg.reptile_data``), then "gradient" = params - mean(adapted).
* ``metasgd``: MAML with learnable per-parameter inner rates ``"lr.<name>"`` (same shapes as the params).
* ``anil``: MAML with the inner loop on the head only; the body is learned by the outer loop alone.
* ``protonet``: no inner loop; prototypes = mean support embedding per class,
  logits = minus squared Euclidean distance to each prototype. Its head is unused (zero gradients).
* ``incontext`` (``ALL_ALGORITHMS`` only; notebook 07): no inner loop; the model itself reads the
  support set, ``outputs = model(support_x, support_y, query_x)`` (an ``mllib.incontext``
  learner, which says so with ``reads_support_set = True``). Its batch norm always uses support
  statistics, so it takes ``bn="support"`` only; ``inner_steps`` and ``inner_lr`` are unused.

The zeroing trick (``cfg.head_init="zero"``; Kao et al. 2022, "MAML is a noisy contrastive
learner"): the head starts every task at zero instead of at a meta-learned value (maml, fomaml,
metasgd, anil). The head is then not a meta-parameter: it stays zero in ``meta_params`` and its
meta-gradient is zero. From a zero head the first inner step changes the head only (the body's
inner gradient is ``W^T``-weighted, i.e. exactly zero), so that step differentiates the head alone
and skips the body's backward pass (``adapt_from_zero_head``); with one inner step the adapted
classifier is ``logits_c(x) = (lr / N) (sum of support features of class c - mean support feature) . f(x)``
for N support images, a prototype classifier whose features are meta-learned end to end. The
second-order meta-gradient still reaches the body, through the support features inside the
adapted head and through the query features ``f(x)``.

MAML++'s tricks (Antoniou et al. 2019, "How to train your MAML"; ``cfg.multi_step_loss``,
``cfg.per_step_lr``, ``cfg.per_step_bn``; maml and fomaml, each switchable alone): the training loss
is the mean of the query losses after every inner step; every parameter tensor gets a learned inner
rate per step (``"lslr.<step>.<name>"``); every inner step and the query forward after it get their
own learned batch-norm weights and biases (``"bnstep.<step>.<name>"``; the library's batch norm keeps
no running statistics). See ``maml_plus_plus_trajectory``; notebook 06, section 2b, measures each.

Batch norm (``cfg.bn``) is the same for all conv algorithms: in ``batch`` mode the support and the
query sets are forwarded separately, each normalised with its own statistics; in ``support`` mode
the query rows are normalised with support statistics (see ``predict``).

Which settings fit which algorithm is checked in one place, ``check_algorithm_settings`` (the
batch-norm mode, the zero head), for ``MetaConfig`` and ``mllib.train.TrainConfig`` alike.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, vmap

from mllib.arguments import check_choice, check_int, check_positive
from mllib.config import HEAD_INITS
from mllib.inner import adapt
from mllib.models import Params, call_model, head_names, params_of
from mllib.tasks.batch import TaskBatch
from mllib.update_rules import SGD, MetaSGD, UpdateRule

ALGORITHMS = ("maml", "fomaml", "reptile", "metasgd", "anil", "protonet")  # any learner of mllib.models
INCONTEXT = "incontext"  # a learner whose forward pass reads the support set (mllib.incontext)
ALL_ALGORITHMS = ALGORITHMS + (INCONTEXT,)
BN_MODES = ("batch", "support")
META_GRADIENT_FORMS = ("auto", "loop", "vmap")  # how meta_gradient goes over the tasks
REPTILE_DATA = ("support+query", "support")
ZERO_HEAD_ALGORITHMS = ("maml", "fomaml", "metasgd", "anil")  # those with an inner loop on the head
LR_PREFIX = "lr."
TRICKS = ("multi_step_loss", "per_step_lr", "per_step_bn")  # MAML++ (Antoniou et al. 2019), MetaConfig flags
TRICK_ALGORITHMS = ("maml", "fomaml")
LSLR_PREFIX = "lslr."        # "lslr.<step>.<name>": per-step inner rate of one parameter tensor (a scalar)
BN_STEP_PREFIX = "bnstep."   # "bnstep.<step>.<name>": batch-norm weight or bias of inner step >= 1


@dataclass(frozen=True)
class MetaConfig:
    """What the outer loop optimises and how.

    * ``algo``: one of ``ALL_ALGORITHMS``.
    * ``inner_steps``, ``inner_lr``: the inner loop in meta-training (Meta-SGD: the rates' initial value).
    * ``bn``: ``"batch"`` (query normalised with query statistics; transductive, as in the MAML paper)
      or ``"support"`` (query normalised with support statistics). See ``mllib.models``.
    * ``form``: ``"loop"``, ``"vmap"`` or ``"auto"`` (``pick_form`` of the data's device).
    * ``reptile_data``: the data Reptile's inner SGD trains on in meta-training.
    * ``head_init``: ``"learned"`` (the head's start is meta-learned, as in the MAML paper) or
      ``"zero"`` (the zeroing trick: the head starts every task at zero; ``ZERO_HEAD_ALGORITHMS``
      only; see the module docstring).
    * ``multi_step_loss``, ``per_step_lr``, ``per_step_bn``: MAML++'s tricks (``TRICK_ALGORITHMS``
      only; see "MAML++'s tricks" below).

    Notebook 04, section 2 (one config per algorithm), notebooks 05 and 06.

        >>> MetaConfig(algo="fomaml", inner_lr=0.01).first_order
        True
    """

    algo: str = "maml"
    inner_steps: int = 1
    inner_lr: float = 0.4
    bn: str = "batch"
    form: str = "auto"
    reptile_data: str = "support+query"
    head_init: str = "learned"
    multi_step_loss: bool = False
    per_step_lr: bool = False
    per_step_bn: bool = False

    def __post_init__(self) -> None:
        check_algorithm_settings(self.algo, self.bn, self.head_init)
        if self.maml_plus_plus and self.algo not in TRICK_ALGORITHMS:
            raise ValueError(f"MAML++'s tricks (multi_step_loss, per_step_lr, per_step_bn) need "
                             f"algo in {', '.join(TRICK_ALGORITHMS)}; got algo={self.algo!r}")
        check_choice("form", self.form, META_GRADIENT_FORMS)
        check_choice("reptile_data", self.reptile_data, REPTILE_DATA)
        check_int("inner_steps", self.inner_steps, 0)
        check_positive("inner_lr", self.inner_lr)

    @classmethod
    def from_profile(cls, algo: str, profile, bn: str = "batch", form: str = "auto") -> "MetaConfig":
        """The config of meta-training with a ``mllib.config.Profile`` (or its dict): its inner loop
        and its head (``head_init``; ``"learned"`` where the profile has none, as in checkpoints
        written before the field existed, and for algorithms outside ``ZERO_HEAD_ALGORITHMS``:
        a profile's zeroing trick applies to the algorithms that adapt the head).

            >>> MetaConfig.from_profile("maml", {"inner_steps": 1, "inner_lr": 0.4}, bn="support").bn
            'support'
            >>> MetaConfig.from_profile("maml", {"inner_steps": 1, "inner_lr": 0.4, "head_init": "zero"}).head_init
            'zero'
        """
        get = profile.get if isinstance(profile, Mapping) else lambda name: getattr(profile, name, None)
        tricks = {name: bool(get(name)) for name in TRICKS}  # absent (older checkpoints): off
        return cls(algo=algo, inner_steps=get("inner_steps"), inner_lr=get("inner_lr"), bn=bn, form=form,
                   head_init=head_init_for(algo, get("head_init")), **tricks)

    @property
    def first_order(self) -> bool:
        return self.algo == "fomaml"

    @property
    def maml_plus_plus(self) -> bool:
        """Whether any of MAML++'s tricks is on."""
        return self.multi_step_loss or self.per_step_lr or self.per_step_bn


# ============================================================================ plain MAML: one task

def support_loss_fn(model: nn.Module) -> Callable[[Params, tuple[Tensor, Tensor]], Tensor]:
    """``loss(params, (x, y))`` on one task's adaptation data, as ``adapt`` expects (notebook 03, section 1).

        >>> from mllib.models import SineMLP, params_of
        >>> model = SineMLP()
        >>> support_loss_fn(model)(params_of(model), (torch.zeros(10, 1), torch.zeros(10, 1))).shape
        torch.Size([])
    """
    def loss(params: Params, data: tuple[Tensor, Tensor]) -> Tensor:
        x, y = data
        return loss_and_metric(call_model(model, params, x), y)[0]
    return loss


def adapt_task(model: nn.Module, params: Mapping[str, Tensor], rates: Mapping[str, Tensor] | None,
               support_x: Tensor, support_y: Tensor, cfg: MetaConfig, steps: int | None = None,
               evaluation: bool = False) -> Params:
    """One task's inner loop as ``cfg`` says: ``mllib.inner.adapt`` on ``(support_x [S, ...], support_y [S])``.

    Plain MAML: ``steps`` (default ``cfg.inner_steps``) steps of the rule ``SGD(cfg.inner_lr)`` on
    the support loss, every parameter adapted (FOMAML: the inner gradients are constants). The
    variants choose another rule or other parameters: Meta-SGD steps with ``MetaSGD(rates)``, its
    learned rates (``None`` for the others), ANIL adapts the head only, and with ``cfg.head_init="zero"`` the head starts at zero (``adapt_from_zero_head``).
    ``evaluation``: build no graph (test time). Notebooks 03 to 06.

        >>> from mllib.models import SineMLP
        >>> model = SineMLP()
        >>> start = params_of(model)
        >>> adapted = adapt_task(model, start, None, torch.zeros(5, 1), torch.ones(5, 1), MetaConfig(inner_lr=0.01))
        >>> adapted.keys() == start.keys(), bool((adapted["head.bias"] != start["head.bias"]).all())
        (True, True)
    """
    steps = cfg.inner_steps if steps is None else steps
    rule = MetaSGD(rates) if rates is not None else SGD(cfg.inner_lr)   # which update rule
    if cfg.head_init == "zero":
        return adapt_from_zero_head(model, params, rule, support_x, support_y, cfg, steps, evaluation)
    names = head_names(model) if cfg.algo == "anil" else None               # which parameters adapt
    return adapt(params, support_loss_fn(model), (support_x, support_y), steps, rule, first_order=cfg.first_order,
                 names=names, evaluation=evaluation)


def predict(model: nn.Module, params: Mapping[str, Tensor], support_x: Tensor, query_x: Tensor,
            bn: str = "batch", features: bool = False) -> Tensor:
    """Query outputs ``[Q, out]`` (or embeddings) for ``query_x [Q, ...]``, with ``support_x [S, ...]``.

    ``bn="batch"``: the query is forwarded alone (normalised with its own statistics).
    ``bn="support"``: ``cat([support_x, query_x])`` is forwarded with ``stats_rows=S`` and the
    query rows are returned, so each query row is normalised with support statistics only
    (notebook 05, section 5).

        >>> from mllib.models import ConvLearner, params_of
        >>> model = ConvLearner(ways=5, filters=4)
        >>> predict(model, params_of(model), torch.rand(5, 1, 28, 28), torch.rand(10, 1, 28, 28), "support").shape
        torch.Size([10, 5])
    """
    if bn == "support":
        n = support_x.shape[0]
        return call_model(model, params, torch.cat([support_x, query_x]), stats_rows=n, features=features)[n:]
    return call_model(model, params, query_x, features=features)


def is_classification(labels: Tensor) -> bool:
    """Long labels: classification (cross-entropy, accuracy); float labels: regression (MSE).

    The same algorithms serve sinusoids (notebooks 01-04) and Omniglot (notebook 05).

        >>> is_classification(torch.tensor([0, 2])), is_classification(torch.zeros(2, 1))
        (True, False)
    """
    return not torch.is_floating_point(labels)


def loss_and_metric(outputs: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """``(cross-entropy, accuracy)`` for long labels ``[N]``, ``(MSE, MSE)`` for float labels ``[N, 1]``.

    ``outputs``: logits ``[N, ways]`` or predictions ``[N, 1]``. Notebook 04, section 1 (the query loss).

        >>> loss_and_metric(torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 0]))[1]
        tensor(0.5000)
    """
    if is_classification(labels):
        return F.cross_entropy(outputs, labels), (outputs.argmax(-1) == labels).to(outputs.dtype).mean()
    mse = F.mse_loss(outputs, labels)
    return mse, mse


def query_loss_and_metric(model: nn.Module, meta_params: Mapping[str, Tensor], support_x: Tensor,
                          support_y: Tensor, query_x: Tensor, query_y: Tensor, cfg: MetaConfig,
                          steps: int | None = None, evaluation: bool = False) -> tuple[Tensor, Tensor]:
    """One task: adapt on the support set, then ``(query loss, query metric)`` (scalars).

    Shapes are one task's: ``support_x [S, 1, 28, 28]``, ``support_y [S]``, ``query_x [Q, ...]``,
    ``query_y [Q]`` (or ``[K, 1]`` float tensors for sinusoids). ``steps`` defaults to
    ``cfg.inner_steps``. Works inside ``vmap``. Notebook 04, section 2.

        >>> from mllib.models import SineMLP
        >>> from mllib.tasks import SinusoidTasks
        >>> model, cfg = SineMLP(), MetaConfig(algo="maml", inner_lr=0.01)
        >>> (task,) = SinusoidTasks(seed=0).sample(1)      # one task: support_x, support_y, query_x, query_y
        >>> loss, mse = query_loss_and_metric(model, params_of(model), *task, cfg)
        >>> bool(loss == mse), loss.requires_grad       # regression: the metric is the loss
        (True, True)
    """
    params, rates = split_meta_params(meta_params)
    if cfg.maml_plus_plus:
        return _maml_plus_plus_loss(model, params, support_x, support_y, query_x, query_y, cfg, steps, evaluation)
    if cfg.algo == INCONTEXT:  # the forward pass is the learning algorithm: no inner loop
        outputs = functional_call(model, params, (support_x, support_y, query_x))
    elif cfg.algo == "protonet":
        outputs = proto_logits(model, params, support_x, support_y, query_x, _ways(model), cfg.bn)
    else:
        adapted = adapt_task(model, params, rates, support_x, support_y, cfg, steps, evaluation)
        outputs = predict(model, adapted, support_x, query_x, cfg.bn)
    return loss_and_metric(outputs, query_y)


# ============================================================================ plain MAML: a batch of tasks

def init_meta_params(model: nn.Module, cfg: MetaConfig) -> Params:
    """The meta-parameters: the model's parameters, plus ``"lr.<name>"`` rates for Meta-SGD.

    Meta-SGD's rates have the shape of their parameter and start at ``cfg.inner_lr`` (notebook 06).
    With ``cfg.head_init="zero"`` the head's entries are zero (and stay zero: their meta-gradient is zero).

        >>> from mllib.models import SineMLP
        >>> sorted(init_meta_params(SineMLP(), MetaConfig(algo="metasgd")))[:2]
        ['body.0.bias', 'body.0.weight']
        >>> init_meta_params(SineMLP(), MetaConfig(head_init="zero"))["head.weight"].abs().sum().item()
        0.0
    """
    params = params_of(model)
    if cfg.head_init == "zero":
        params.update({n: torch.zeros_like(params[n]).requires_grad_(True) for n in head_names(model)})
    if cfg.algo == "metasgd":
        params.update({LR_PREFIX + n: torch.full_like(p, cfg.inner_lr).requires_grad_(True)
                       for n, p in list(params.items())})
    if cfg.maml_plus_plus:
        params.update(init_trick_params(model, cfg, params))
    return params


def split_meta_params(meta_params: Mapping[str, Tensor]) -> tuple[Params, Params | None]:
    """``(model params, Meta-SGD rates keyed by param name or None)`` (notebook 06, section 1).

        >>> split_meta_params({"w": torch.ones(2), "lr.w": torch.full((2,), 0.1)})[1]
        {'w': tensor([0.1000, 0.1000])}
    """
    params = {k: v for k, v in meta_params.items() if not k.startswith(LR_PREFIX)}
    rates = {k[len(LR_PREFIX):]: v for k, v in meta_params.items() if k.startswith(LR_PREFIX)}
    return params, (rates or None)


def meta_gradient(model: nn.Module, meta_params: Mapping[str, Tensor], batch: TaskBatch,
                  cfg: MetaConfig) -> tuple[Params, dict[str, float]]:
    """The meta-gradient averaged over the ``T`` tasks of ``batch``, and ``{"loss", "accuracy"}``.

    ``grads`` has the keys of ``meta_params``; ``meta_step`` applies it with an optimiser.
    Reptile's "gradient" is ``meta_params - mean(adapted)`` (plain SGD with rate 1 = Reptile's step).
    ``loss``/``accuracy``: mean query scores after adaptation (``accuracy`` is NaN for regression).
    Notebook 04, sections 1-3.

        >>> from mllib.models import SineMLP
        >>> from mllib.tasks import SinusoidTasks
        >>> model, cfg = SineMLP(), MetaConfig(algo="maml", inner_lr=0.01)
        >>> params = init_meta_params(model, cfg)
        >>> grads, stats = meta_gradient(model, params, SinusoidTasks(seed=0).sample(4), cfg)
        >>> grads.keys() == params.keys(), sorted(stats)
        (True, ['accuracy', 'loss'])
    """
    classification = _check(model, meta_params, batch, cfg)
    form = resolve_form(cfg.form, batch.support_x.device)
    gradient = _reptile_gradient if cfg.algo == "reptile" else _query_loss_gradient
    grads, losses, metrics = gradient(model, meta_params, batch, cfg, form)
    return grads, _stats(losses.detach(), metrics.detach(), classification)


def _query_loss_gradient(model, meta_params, batch: TaskBatch, cfg: MetaConfig, form: str):
    """The mean over tasks of d(query loss)/d(meta_params), per-task losses and metrics ``[T]``."""
    keys = list(meta_params)
    inputs = [meta_params[k] for k in keys]
    if form == "loop":  # one backward pass per task: the graph of only one task is alive at a time
        sums = [torch.zeros_like(p) for p in inputs]
        losses, metrics = [], []
        for task in batch:
            loss, metric = query_loss_and_metric(model, meta_params, *task, cfg)
            for total, g in zip(sums, torch.autograd.grad(loss, inputs, allow_unused=True)):
                if g is not None:
                    total += g
            losses.append(loss.detach())
            metrics.append(metric.detach())
        return {k: total / len(batch) for k, total in zip(keys, sums)}, torch.stack(losses), torch.stack(metrics)
    losses, metrics = vmap(lambda p, *task: query_loss_and_metric(model, p, *task, cfg),
                           in_dims=(None, 0, 0, 0, 0))(meta_params, *batch.tensors())
    raw = torch.autograd.grad(losses.mean(), inputs, allow_unused=True)
    return {k: torch.zeros_like(p) if g is None else g for k, p, g in zip(keys, inputs, raw)}, losses, metrics


class MetaGradientNotFinite(FloatingPointError):
    """``meta_step`` met a loss, meta-gradient or updated meta-parameter that is not finite."""


def meta_step(model: nn.Module, meta_params: Mapping[str, Tensor], batch: TaskBatch, cfg: MetaConfig,
              optimizer: torch.optim.Optimizer, grad_hook: Callable[[Params], Params] | None = None,
              check_finite: bool = False) -> tuple[Params, dict[str, float]]:
    """One outer-loop update: ``meta_gradient``, then ``p.grad = g`` and ``optimizer.step()``.

    ``optimizer`` optimises ``meta_params.values()`` (Adam in the course). ``grad_hook(grads)``
    may replace the gradients before they are applied (distributed training averages them
    across processes there). ``check_finite``: raise ``MetaGradientNotFinite`` when the loss or a
    gradient is not finite (before the hook, applying nothing), or when a meta-parameter is not
    finite after the optimiser step (a learning rate too large for float32: the parameters are put
    back as they were; the optimiser's moments keep the step). Returns ``meta_gradient``'s
    ``(grads, stats)``. Notebook 01, section 8, and notebook 04, section 1.

        >>> from mllib.models import SineMLP
        >>> from mllib.tasks import SinusoidTasks
        >>> model, cfg = SineMLP(), MetaConfig(algo="maml", inner_lr=0.01)
        >>> params = init_meta_params(model, cfg)
        >>> before = params["head.bias"].detach().clone()
        >>> optimizer = torch.optim.Adam(params.values(), lr=1e-3)
        >>> grads, stats = meta_step(model, params, SinusoidTasks(seed=0).sample(4), cfg, optimizer)
        >>> bool(params["head.bias"] != before)      # the start moved
        True
    """
    grads, stats = meta_gradient(model, meta_params, batch, cfg)
    if check_finite:
        bad = [k for k, g in grads.items() if not torch.isfinite(g).all()]
        if not math.isfinite(stats["loss"]) or bad:
            raise MetaGradientNotFinite(f"loss is {stats['loss']}" if not math.isfinite(stats["loss"])
                                        else f"meta-gradient of {bad[0]} is not finite")
    if grad_hook is not None:
        grads = grad_hook(grads)
    before = {k: p.detach().clone() for k, p in meta_params.items()} if check_finite else None
    for k, p in meta_params.items():
        p.grad = grads[k].detach()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    if before is not None:
        bad = [k for k, p in meta_params.items() if not torch.isfinite(p.detach()).all()]
        if bad:
            with torch.no_grad():
                for k, p in meta_params.items():
                    p.copy_(before[k])
            raise MetaGradientNotFinite(f"meta-parameter {bad[0]} is not finite after the optimiser step")
    return grads, stats


def evaluate_tasks(model: nn.Module, meta_params: Mapping[str, Tensor], batch: TaskBatch, cfg: MetaConfig,
                   inner_steps: int | None = None) -> Tensor:
    """Per-task query accuracy (classification) or MSE (regression), ``[T]``, building no graph.

    Every algorithm adapts on the support set only (Reptile included), ``inner_steps``
    (default ``cfg.inner_steps``) steps at ``cfg.inner_lr`` (Meta-SGD: its learned rates).
    The vmap form adapts all ``T`` tasks at once (``mllib.evaluate.task_accuracies`` feeds it
    chunks of tasks). Notebook 05, section 3.

        >>> from mllib.models import SineMLP
        >>> from mllib.tasks import SinusoidTasks
        >>> model, cfg = SineMLP(), MetaConfig(inner_lr=0.01, form="loop")
        >>> evaluate_tasks(model, init_meta_params(model, cfg), SinusoidTasks(seed=0).sample(3), cfg).shape
        torch.Size([3])
    """
    _check(model, meta_params, batch, cfg)
    if inner_steps is not None:
        check_int("inner_steps", inner_steps, 0)
    params = {k: v.detach() for k, v in meta_params.items()}

    def one(p, *task):
        return query_loss_and_metric(model, p, *task, cfg, steps=inner_steps, evaluation=True)[1]

    with torch.no_grad():
        if resolve_form(cfg.form, batch.support_x.device) == "loop":
            return torch.stack([one(params, *task) for task in batch])
        return vmap(one, in_dims=(None, 0, 0, 0, 0))(params, *batch.tensors())


# ============================================================================ the variants

# ---------------------------------------------------------------------------- the zeroing trick (head_init='zero')

def zero_head(model: nn.Module, params: Mapping[str, Tensor]) -> Params:
    """``params`` with every head entry (``mllib.models.head_names``) replaced by zeros of its shape.

    The zeros are constants (no graph to the entries they replace); the other entries are kept as they are.

        >>> from mllib.models import SineMLP, params_of
        >>> zeroed = zero_head(SineMLP(), params_of(SineMLP()))
        >>> float(zeroed["head.bias"]), zeroed["head.bias"].requires_grad, bool(zeroed["body.0.weight"].abs().sum() > 0)
        (0.0, False, True)
    """
    head = set(head_names(model))
    return {k: torch.zeros_like(v) if k in head else v for k, v in params.items()}


def adapt_from_zero_head(model: nn.Module, params: Mapping[str, Tensor], rule: UpdateRule | float,
                         support_x: Tensor, support_y: Tensor, cfg: MetaConfig, steps: int,
                         evaluation: bool = False) -> Params:
    """The zeroing trick's inner loop (``cfg.head_init="zero"``): ``adapt_task`` from a zero head.

    The head starts at zero (its meta-parameter value is ignored, so its meta-gradient is zero)
    and the first step differentiates the head alone: at a zero head the body's inner gradient is
    exactly zero, and so is its derivative with respect to everything but the head, which is a
    constant here. The result equals adapting every parameter from the zeroed head (tested in
    float64, values and meta-gradients), without the body's backward pass in that step.
    ``rule``: the update rule, ``SGD(cfg.inner_lr)`` or Meta-SGD's ``MetaSGD(rates)`` (a number is SGD). Notebook 05.

        >>> from mllib.models import ConvLearner
        >>> model, cfg = ConvLearner(ways=2, filters=4), MetaConfig(head_init="zero")
        >>> x, y = torch.rand(2, 1, 28, 28), torch.tensor([0, 1])
        >>> adapted = adapt_from_zero_head(model, params_of(model), cfg.inner_lr, x, y, cfg, steps=1)
        >>> adapted["head.bias"].abs().sum().item(), adapted["head.weight"].abs().sum().item() > 0
        (0.0, True)
    """
    loss_fn, support = support_loss_fn(model), (support_x, support_y)
    head = head_names(model)
    params = zero_head(model, params)
    if steps == 0 or cfg.algo == "anil":  # ANIL adapts the head alone anyway
        return adapt(params, loss_fn, support, steps, rule, first_order=cfg.first_order,
                     names=head if cfg.algo == "anil" else None, evaluation=evaluation)
    params = adapt(params, loss_fn, support, 1, rule, first_order=cfg.first_order, names=head, evaluation=evaluation)
    if steps == 1:
        return params
    # The body must enter the next steps as new graph nodes (as it would after "body - lr * 0"):
    # the adapted head depends on the body, so a gradient with respect to the body tensor itself
    # would add the path through the head (the total derivative instead of the partial one).
    params = {k: v if k in head else v.view_as(v) for k, v in params.items()}
    return adapt(params, loss_fn, support, steps - 1, rule, first_order=cfg.first_order, evaluation=evaluation)


# ---------------------------------------------------------------------------- prototypical networks

def proto_logits(model: nn.Module, params: Mapping[str, Tensor], support_x: Tensor, support_y: Tensor,
                 query_x: Tensor, ways: int, bn: str = "batch") -> Tensor:
    """Prototypical-network logits ``[Q, ways]``: minus squared distances to class-mean embeddings.

    ``support_x [S, ...]``, ``support_y [S]`` (long, ``0..ways-1``), ``query_x [Q, ...]`` (notebook 05,
    section 4).

        >>> from mllib.models import ConvLearner, params_of
        >>> model = ConvLearner(ways=2, filters=4)
        >>> support_x = torch.rand(4, 1, 28, 28)
        >>> logits = proto_logits(model, params_of(model), support_x, torch.tensor([0, 0, 1, 1]), support_x, ways=2)
        >>> logits.shape, bool((logits <= 0).all())                 # minus squared distances
        (torch.Size([4, 2]), True)
    """
    support = call_model(model, params, support_x, features=True)
    query = predict(model, params, support_x, query_x, bn, features=True)            # [Q, D]
    one_hot = (support_y[:, None] == torch.arange(ways, device=support_y.device)).to(support.dtype)
    prototypes = one_hot.T @ support / one_hot.sum(0)[:, None]                          # [ways, D]
    return -((query[:, None, :] - prototypes[None]) ** 2).sum(-1)


def _ways(model: nn.Module) -> int:
    ways = getattr(model, "ways", None)
    if ways is None:
        raise ValueError(f"protonet needs a classifier with a 'ways' attribute; {type(model).__name__} has none")
    return ways


# ---------------------------------------------------------------------------- Reptile

def reptile_adapt_and_score(model: nn.Module, meta_params: Mapping[str, Tensor], support_x: Tensor,
                            support_y: Tensor, query_x: Tensor, query_y: Tensor,
                            cfg: MetaConfig) -> tuple[Params, Tensor, Tensor]:
    """One Reptile task: ``(adapted params, query loss, query metric)``, no graph kept.

    The inner SGD trains on ``cfg.reptile_data``; with ``"support+query"`` the query scores are
    training scores (optimistic), reported only to follow progress. Notebook 04, section 3.

        >>> from mllib.models import SineMLP, params_of
        >>> from mllib.tasks import SinusoidTasks
        >>> model, (task,) = SineMLP(), SinusoidTasks(seed=0).sample(1)
        >>> adapted, loss, mse = reptile_adapt_and_score(model, params_of(model), *task, MetaConfig(inner_lr=0.01))
        >>> sorted(adapted) == sorted(params_of(model)), loss.requires_grad
        (True, False)
    """
    data = (support_x, support_y)
    if cfg.reptile_data == "support+query":
        data = (torch.cat([support_x, query_x]), torch.cat([support_y, query_y]))
    adapted = adapt(meta_params, support_loss_fn(model), data, cfg.inner_steps, cfg.inner_lr, evaluation=True)
    with torch.no_grad():
        loss, metric = loss_and_metric(predict(model, adapted, support_x, query_x, cfg.bn), query_y)
    return adapted, loss, metric


def _reptile_gradient(model, meta_params, batch: TaskBatch, cfg: MetaConfig, form: str):
    """Reptile's direction ``meta_params - mean(adapted)``, per-task losses and metrics ``[T]``."""
    if form == "loop":
        outcomes = [reptile_adapt_and_score(model, meta_params, *task, cfg) for task in batch]
        mean_adapted = {k: sum(o[0][k] for o in outcomes) / len(batch) for k in meta_params}
        losses, metrics = (torch.stack([o[i] for o in outcomes]) for i in (1, 2))
    else:
        adapted, losses, metrics = vmap(lambda p, *task: reptile_adapt_and_score(model, p, *task, cfg),
                                        in_dims=(None, 0, 0, 0, 0))(meta_params, *batch.tensors())
        mean_adapted = {k: v.mean(0) for k, v in adapted.items()}
    return {k: meta_params[k].detach() - mean_adapted[k] for k in meta_params}, losses, metrics


# ---------------------------------------------------------------------------- MAML++'s tricks

def norm_names(model: nn.Module) -> list[str]:
    """Names of the batch-norm weights and biases of ``model`` (its ``mllib.models.BatchNorm`` layers).

        >>> from mllib.models import ConvLearner
        >>> norm_names(ConvLearner(ways=2, filters=4, depth=1))
        ['blocks.0.norm.weight', 'blocks.0.norm.bias']
    """
    from mllib.models import BatchNorm

    return [f"{module_name}.{name}" for module_name, module in model.named_modules()
            if isinstance(module, BatchNorm) for name, _ in module.named_parameters(recurse=False)]


def init_trick_params(model: nn.Module, cfg: MetaConfig, params: Mapping[str, Tensor]) -> Params:
    """The extra meta-parameters of MAML++'s tricks that ``cfg`` switches on (Antoniou et al. 2019).

    * ``per_step_lr`` (LSLR): ``"lslr.<s>.<name>"``, a scalar rate ``[]`` per parameter tensor and
      inner step ``s`` in ``0..inner_steps-1``, starting at ``cfg.inner_lr``;
    * ``per_step_bn`` (BNWB): ``"bnstep.<s>.<name>"``, a copy of every batch-norm weight and bias
      (``norm_names``) for ``s`` in ``1..inner_steps``; step 0 uses the model's own entries, the query
      forward after ``s`` steps uses set ``s``. No running statistics exist (``mllib.models.BatchNorm``
      always normalises with the batch's), so MAML++'s per-step running statistics have no counterpart.

        >>> from mllib.models import ConvLearner, params_of
        >>> model = ConvLearner(ways=2, filters=4, depth=1)
        >>> cfg = MetaConfig(inner_steps=2, per_step_lr=True, per_step_bn=True)
        >>> extra = init_trick_params(model, cfg, params_of(model))
        >>> extra["lslr.1.head.weight"].shape, sorted(k for k in extra if k.startswith("bnstep.2"))
        (torch.Size([]), ['bnstep.2.blocks.0.norm.bias', 'bnstep.2.blocks.0.norm.weight'])
    """
    extra = {}
    if cfg.per_step_lr:
        extra.update({f"{LSLR_PREFIX}{s}.{n}": torch.tensor(float(cfg.inner_lr), dtype=p.dtype, device=p.device)
                      for s in range(cfg.inner_steps) for n, p in params.items()})
    if cfg.per_step_bn:
        extra.update({f"{BN_STEP_PREFIX}{s}.{n}": params[n].detach().clone()
                      for s in range(1, cfg.inner_steps + 1) for n in norm_names(model)})
    return {k: v.requires_grad_(True) for k, v in extra.items()}


def split_trick_params(params: Mapping[str, Tensor]) -> tuple[Params, dict[int, Params], dict[int, Params]]:
    """``(model params, {step: LSLR rates}, {step: batch-norm set})`` of ``init_trick_params``'s keys.

        >>> split_trick_params({"w": torch.ones(2), "lslr.0.w": torch.tensor(0.1)})[1]
        {0: {'w': tensor(0.1000)}}
    """
    plain, rates, norms = {}, {}, {}
    for key, value in params.items():
        for prefix, store in ((LSLR_PREFIX, rates), (BN_STEP_PREFIX, norms)):
            if key.startswith(prefix):
                step, name = key[len(prefix):].split(".", 1)
                store.setdefault(int(step), {})[name] = value
                break
        else:
            plain[key] = value
    return plain, rates, norms


def _with_norms(params: Mapping[str, Tensor], base: Mapping[str, Tensor], norms: dict[int, Params], step: int) -> Params:
    """``params`` with the batch-norm set of ``step`` (step 0, or no sets: the meta-parameters' own)."""
    if not norms:
        return dict(params)
    chosen = norms[min(step, max(norms))] if step > 0 else {n: base[n] for n in norms[min(norms)]}
    return {**params, **chosen}


def maml_plus_plus_trajectory(model: nn.Module, meta_params: Mapping[str, Tensor], support_x: Tensor,
                              support_y: Tensor, cfg: MetaConfig, steps: int | None = None,
                              evaluation: bool = False) -> list[Params]:
    """The inner loop with MAML++'s per-step rates and batch norm: the parameters after each step.

    ``meta_params``: model entries plus ``init_trick_params``'s. Step ``s`` (0-based) forwards the
    support set ``[S, ...]`` with batch-norm set ``s`` and updates by SGD at ``cfg.inner_lr`` or, with
    ``per_step_lr``, at the rates ``lslr.<s>.*``; with ``per_step_bn`` the batch-norm entries are not
    adapted (they are per-step meta-parameters instead). Entry ``s`` of the list (``steps`` entries,
    default ``cfg.inner_steps``) holds the parameters after ``s + 1`` steps with the batch-norm set
    their query forward uses. Steps beyond the trained number reuse the last rates and set.
    With ``cfg.head_init="zero"`` the head starts at zero and the first step adapts it alone (as
    ``adapt_from_zero_head``).
    """
    base, rates, norms = split_trick_params(meta_params)
    frozen = set(norm_names(model)) if cfg.per_step_bn else set()
    head = head_names(model)
    current = zero_head(model, base) if cfg.head_init == "zero" else dict(base)
    loss_fn, trajectory = support_loss_fn(model), []
    for s in range(cfg.inner_steps if steps is None else steps):
        rule = MetaSGD(rates[min(s, max(rates))]) if rates else SGD(cfg.inner_lr)
        names = head if cfg.head_init == "zero" and s == 0 else [n for n in current if n not in frozen]
        current = adapt(_with_norms(current, base, norms, s), loss_fn, (support_x, support_y), 1, rule,
                        first_order=cfg.first_order, names=names, evaluation=evaluation)
        if cfg.head_init == "zero" and s == 0:  # new graph nodes for the body, as in adapt_from_zero_head
            current = {k: v if k in head else v.view_as(v) for k, v in current.items()}
        trajectory.append(_with_norms(current, base, norms, s + 1))
    return trajectory


def _maml_plus_plus_loss(model, params, support_x, support_y, query_x, query_y, cfg: MetaConfig,
                         steps: int | None, evaluation: bool) -> tuple[Tensor, Tensor]:
    """``query_loss_and_metric`` with MAML++'s tricks: with ``multi_step_loss`` (in training) the loss
    is the mean of the query losses after every inner step (MAML++ anneals these weights towards the
    last step; here they stay uniform), the metric is the last step's."""
    trajectory = maml_plus_plus_trajectory(model, params, support_x, support_y, cfg, steps, evaluation)
    if not trajectory:  # 0 inner steps: the start itself
        base = split_trick_params(params)[0]
        trajectory = [zero_head(model, base) if cfg.head_init == "zero" else base]
    scored = trajectory if cfg.multi_step_loss and not evaluation else trajectory[-1:]
    results = [loss_and_metric(predict(model, p, support_x, query_x, cfg.bn), query_y) for p in scored]
    return torch.stack([r[0] for r in results]).mean(), results[-1][1]


# ============================================================================ settings and checks

def check_algorithm_settings(algo: str, bn: str | None = None, head_init: str | None = None) -> str:
    """``algo``, once its settings are checked; else a ``ValueError`` naming the first that does not fit.

    The one check of which settings fit which algorithm (``MetaConfig`` and
    ``mllib.train.TrainConfig`` both call it):

    * ``algo``: one of ``ALL_ALGORITHMS``;
    * ``bn``: one of ``BN_MODES``; ``incontext`` takes ``"support"`` only (its batch norm uses the
      support images' statistics);
    * ``head_init``: one of ``mllib.config.HEAD_INITS``; ``"zero"`` needs an inner loop that adapts
      the head (``ZERO_HEAD_ALGORITHMS``).

    ``None`` leaves a setting unchecked (a training run knows its head only from its profile).

        >>> check_algorithm_settings("maml", "batch", "zero")
        'maml'
        >>> check_algorithm_settings("protonet", head_init="zero")
        Traceback (most recent call last):
        ValueError: head_init='zero' needs an inner loop that adapts the head (algo in maml, fomaml, metasgd, anil); got algo='protonet'
    """
    check_choice("algo", algo, ALL_ALGORITHMS)
    if bn is not None:
        check_choice("bn", bn, BN_MODES)
        if algo == INCONTEXT and bn != "support":
            raise ValueError(f"bn must be 'support' for algo='incontext' (its batch norm uses the support "
                             f"images' statistics only), got {bn!r}")
    if head_init is not None:
        check_choice("head_init", head_init, HEAD_INITS)
        if head_init == "zero" and algo not in ZERO_HEAD_ALGORITHMS:
            raise ValueError(f"head_init='zero' needs an inner loop that adapts the head "
                             f"(algo in {', '.join(ZERO_HEAD_ALGORITHMS)}); got algo={algo!r}")
    return algo


def head_init_for(algo: str, head_init: str | None) -> str:
    """The head start ``algo`` trains with when a profile asks for ``head_init``.

    A profile's zeroing trick applies to the algorithms that adapt the head
    (``ZERO_HEAD_ALGORITHMS``); the others, and a profile with no ``head_init`` (checkpoints
    written before the field existed), get ``"learned"``.

        >>> head_init_for("maml", "zero"), head_init_for("protonet", "zero"), head_init_for("maml", None)
        ('zero', 'learned', 'learned')
    """
    return (head_init or "learned") if algo in ZERO_HEAD_ALGORITHMS else "learned"


def default_bn(algo: str) -> str:
    """The batch-norm mode ``algo`` trains with by default: ``"support"`` for ``incontext`` (its only
    mode), ``"batch"`` (the MAML paper's) for the others.

        >>> default_bn("maml"), default_bn("incontext")
        ('batch', 'support')
    """
    return "support" if check_algorithm_settings(algo) == INCONTEXT else "batch"


def pick_form(device: torch.device | str) -> str:
    """``"vmap"`` on CUDA (one big batched kernel per op), ``"loop"`` elsewhere (measured faster on CPU).

    The two forms compute the same meta-gradient (notebook 04, section 4: what each costs).

        >>> pick_form("cpu"), pick_form("cuda")
        ('loop', 'vmap')
    """
    return "vmap" if torch.device(device).type == "cuda" else "loop"


def resolve_form(form: str, device: torch.device | str) -> str:
    """``form``, with ``"auto"`` replaced by ``pick_form(device)`` (notebook 04, section 4).

        >>> resolve_form("auto", "cpu"), resolve_form("vmap", "cpu")
        ('loop', 'vmap')
    """
    return pick_form(device) if check_choice("form", form, META_GRADIENT_FORMS) == "auto" else form


def _check(model: nn.Module, meta_params: Mapping[str, Tensor], batch: TaskBatch, cfg: MetaConfig) -> bool:
    classification = is_classification(batch.query_y)
    if (cfg.algo == INCONTEXT) != bool(getattr(model, "reads_support_set", False)):
        raise ValueError(f"algo={cfg.algo!r} does not fit {type(model).__name__}: algo='incontext' needs a "
                         "model that reads the support set (mllib.incontext), the other algorithms a learner "
                         "of mllib.models")
    if cfg.algo == "protonet" and not classification:
        raise ValueError("algo='protonet' needs classification tasks (long labels); got float labels")
    if (cfg.algo == "metasgd") != any(k.startswith(LR_PREFIX) for k in meta_params):
        raise ValueError(f"meta_params do not match algo={cfg.algo!r}: Meta-SGD needs 'lr.*' rates and only "
                         "Meta-SGD has them; build them with init_meta_params(model, cfg)")
    return classification


def _stats(losses: Tensor, metrics: Tensor, classification: bool) -> dict[str, float]:
    return {"loss": float(losses.mean()), "accuracy": float(metrics.mean()) if classification else float("nan")}
