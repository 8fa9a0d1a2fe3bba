"""A black-box (in-context) meta-learner: the learning algorithm is one forward pass.

MAML learns a start and keeps gradient descent as the learning algorithm; a learned optimizer
learns the update rule. A black-box meta-learner (Santoro et al. 2016; Mishra et al. 2018; Garg et
al. 2022 for regression) learns the whole algorithm: a network *reads* the support set, as a set
of (input, label) pairs, together with a query input and outputs the query's prediction. There is
no gradient step at test time; everything a task teaches is carried by activations.

``InContextLearner`` is a small set-style transformer:

1. every input goes through an ``encoder`` (for Omniglot the 4 conv blocks of the course's learner;
   for sinusoids a small MLP): ``e(x) [N, feature_dim]``;
2. tokens: support ``s_j = W_x e(x_j) + W_y y_j`` (``y_j`` one-hot for classification, the value
   for regression); query ``q_i = W_x e(x_i) + u`` with a learned "label unknown" vector ``u``;
3. ``depth`` pre-norm transformer blocks. In each, every token (support and query) attends to the
   *support* tokens only (``attend``: ``softmax(Q K^T / sqrt(d)) V``, multi-head), then an MLP.
   There is no positional encoding, so the output does not depend on the order of the support set
   (tested), and queries never see each other, so each query's prediction is independent of the
   others;
4. a readout of each query token. Regression: a linear layer gives the predicted value.
   Classification (``readout="attention"``, the default): one more attention of the query over the
   support tokens whose values are the support labels (one-hot), so the predicted probability of
   class ``c`` is the attention mass the query puts on the support examples labelled ``c``:
   ``p(c | query) = sum_j softmax_j(q k_j^T / sqrt(d)) [y_j = c]``, ``logits = log(p + 1e-6)``.
   This is the "match and copy the label" mechanism (an induction head) that trained transformers
   are found to learn; building it in as the readout makes the model train in minutes on a CPU
   instead of sitting at chance for a long plateau. Labels still enter only as inputs (with the
   support labels shuffled a trained model falls to chance: tested), and nothing is adapted by
   gradient at test time.
   ``readout="linear"`` (``ways`` logits from a linear layer) is the fully black-box variant.

The conv encoder is the course learner's four conv blocks with batch norm in ``support`` mode
(``mllib.models``): each task is normalised with the statistics of its support images only, so a
query never influences another prediction (nothing transductive). It is written for ``T`` tasks at
once (``SupportConvBlock``): all the images of a meta-batch go through each convolution in one call.

API (shapes for one task; ``T`` tasks in the batched forms):

* ``model(support_x [S, ...], support_y [S] | [S, 1], query_x [Q, ...]) -> [Q, out]``;
* ``model(support_x [T, S, ...], support_y [T, S(, 1)], query_x [T, Q, ...], tasks=True) -> [T, Q, out]``,
  the same computation for ``T`` tasks at once (one encoder call, batched attention);
* ``predict_tasks(model, support_x [T, S, ...], support_y, query_x [T, Q, ...]) -> [T, Q, out]``;
* ``task_loss_fn(model) -> fn(params, support_x, support_y, query_x, query_y) -> (loss, metric)``,
  through ``torch.func.functional_call`` as the MAML family of ``mllib.algorithms`` (cross-entropy
  and accuracy for long labels, MSE twice for float labels);
* ``train_incontext(model, tasks, steps, ...)``: plain Adam on the mean task loss;
* ``evaluate_incontext(model, batch) -> [T]`` per-task accuracy or MSE, no graph.

Factories: ``sine_incontext()`` (regression) and ``omniglot_incontext(ways)`` (classification).

The course's trainer meta-trains the Omniglot learner like the MAML family
(``python -m mllib train --algo incontext``; ``mllib.algorithms`` computes its query loss as
``model(support_x, support_y, query_x)``, ``mllib.learners`` builds it) and ``python -m mllib eval``
scores it with the same 600-task protocol; ``train_incontext`` is the plain loop of notebook 07's
sinusoid section.
"""
from __future__ import annotations

import math
import random
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, vmap

from mllib.algorithms import loss_and_metric
from mllib.arguments import check_choice, check_int, check_positive
from mllib.fast_ops import under_vmap
from mllib.models import Params
from mllib.tasks.batch import TaskBatch
from mllib.timing import check_max_seconds
from mllib.training_loop import TrainingLoop


# ----------------------------------------------------------------------------- attention

def attend(query: Tensor, keys: Tensor, values: Tensor) -> Tensor:
    """Scaled dot-product attention of queries over a set: ``softmax(q k^T / sqrt(d)) v``.

    ``query [..., Q, d]``, ``keys [..., S, d]``, ``values [..., S, d_v]`` -> ``[..., Q, d_v]``.
    Row ``i`` of the result is a weighted mean of the ``values`` rows, with weights (summing to 1 over
    the ``S`` set elements) growing with the dot product of query ``i`` and each key. The result
    does not depend on the order of the set's rows.
    """
    if query.shape[-1] != keys.shape[-1] or keys.shape[-2] != values.shape[-2]:
        raise ValueError(f"query [..., Q, d], keys [..., S, d] and values [..., S, d_v] do not match: "
                         f"{tuple(query.shape)}, {tuple(keys.shape)}, {tuple(values.shape)}")
    weights = torch.softmax(query @ keys.transpose(-1, -2) / math.sqrt(query.shape[-1]), dim=-1)
    return weights @ values


class SupportAttention(nn.Module):
    """Multi-head attention of all tokens ``[..., N, d]`` over the first ``S`` (support) tokens."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim={dim} must be divisible by heads={heads}")
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, tokens: Tensor, support: int) -> Tensor:
        *lead, n, d = tokens.shape
        h = self.heads
        q = self.q(tokens).view(*lead, n, h, d // h).transpose(-2, -3)                    # [..., h, N, d/h]
        kv = self.kv(tokens[..., :support, :]).view(*lead, support, 2, h, d // h)
        k, v = kv.select(-3, 0).transpose(-2, -3), kv.select(-3, 1).transpose(-2, -3)    # [..., h, S, d/h]
        return self.out(attend(q, k, v).transpose(-2, -3).reshape(*lead, n, d))


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm(x))`` over the support, then ``x + mlp(norm(x))``.

    The last layer of both branches starts at zero, so a new block is the identity and a new model
    starts as its readout over the embeddings; measured on Omniglot 5-way 1-shot, this made the
    two-block model learn as fast in its first 150 steps as a model without blocks (74% against 50%
    validation accuracy at step 150 with random-initialised branches).
    """

    def __init__(self, dim: int, heads: int, mlp_ratio: int = 2) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = SupportAttention(dim, heads)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Linear(mlp_ratio * dim, dim))
        for layer in (self.attn.out, self.mlp[-1]):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, tokens: Tensor, support: int) -> Tensor:
        tokens = tokens + self.attn(self.norm1(tokens), support)
        return tokens + self.mlp(self.norm2(tokens))


class LabelAttention(nn.Module):
    """The classification readout: log of the attention mass each query puts on each class.

    ``query [..., Q, d]``, ``support [..., S, d]`` (tokens after the blocks), ``labels [..., S, ways]``
    one-hot -> logits ``[..., Q, ways]`` ``= log(attend(W_q query, W_k support, labels) + 1e-6)``.
    The softmax of these logits is (up to the 1e-6) the attention mass itself.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.q, self.k = nn.Linear(dim, dim), nn.Linear(dim, dim)

    def forward(self, query: Tensor, support: Tensor, labels: Tensor) -> Tensor:
        return torch.log(attend(self.q(query), self.k(support), labels) + 1e-6)


# ----------------------------------------------------------------------------- encoders

class MLPEncoder(nn.Module):
    """``x [..., in_dim]`` -> ``[..., hidden]``: two linear layers with ReLU (for sinusoid inputs); each
    example on its own (``support`` is accepted and ignored)."""

    def __init__(self, in_dim: int = 1, hidden: int = 64) -> None:
        super().__init__()
        check_int("in_dim", in_dim, 1)
        check_int("hidden", hidden, 1)
        self.feature_dim = hidden
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())

    def forward(self, x: Tensor, support: int | None = None) -> Tensor:
        return self.net(x)


class SupportBatchNorm(nn.Module):
    """Batch norm per task with the statistics of its support images only (``mllib.models``' ``support``
    mode, for many tasks at once): ``x [T, N, C, H, W]``, the first ``support`` rows of each task
    give the per-channel mean and (biased) variance; learnable ``weight`` and ``bias`` ``[C]``."""

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor, support: int) -> Tensor:
        ref = x[:, :support]
        mean = ref.mean((3, 4), keepdim=True).mean(1, keepdim=True)                        # [T, 1, C, 1, 1]
        var = (ref - mean).square().mean((3, 4), keepdim=True).mean(1, keepdim=True)
        return (x - mean) * (self.weight[:, None, None] * torch.rsqrt(var + self.eps)) + self.bias[:, None, None]


class SupportConvBlock(nn.Module):
    """The course learner's conv block (``mllib.models.ConvBlock``) for ``T`` tasks at once: conv 3x3
    (padding 1, no bias), batch norm with each task's support statistics, max-pool 2x2, ReLU."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.norm = SupportBatchNorm(out_channels)
        nn.init.xavier_uniform_(self.conv.weight)

    def forward(self, x: Tensor, support: int) -> Tensor:
        """``[T, N, C_in, H, W]`` -> ``[T, N, C_out, H // 2, W // 2]``."""
        t, n = x.shape[:2]
        y = self.conv(x.flatten(0, 1))
        y = self.norm(y.view(t, n, *y.shape[1:]), support)
        return torch.relu(F.max_pool2d(y.flatten(0, 1), 2)).view(t, n, y.shape[2], y.shape[3] // 2, y.shape[4] // 2)


class ConvEncoder(nn.Module):
    """``depth`` conv blocks (``SupportConvBlock``), flattened: ``x [T, N, 1, 28, 28]`` ->
    ``[T, N, filters]`` for the default 4 blocks (28 -> 14 -> 7 -> 3 -> 1). Batch norm uses the
    statistics of the first ``support`` images of each task: a query never changes another's embedding."""

    def __init__(self, in_channels: int = 1, filters: int = 64, depth: int = 4, image_size: int = 28) -> None:
        super().__init__()
        for name, value in (("in_channels", in_channels), ("filters", filters), ("depth", depth)):
            check_int(name, value, 1)
        side = image_size
        for _ in range(depth):
            side //= 2
        if side < 1:
            raise ValueError(f"depth={depth} halves image_size={image_size} to nothing")
        self.feature_dim = filters * side * side
        self.blocks = nn.ModuleList([SupportConvBlock(in_channels if i == 0 else filters, filters)
                                     for i in range(depth)])

    def forward(self, x: Tensor, support: int) -> Tensor:
        for block in self.blocks:
            x = block(x, support)
        return x.flatten(2)


# ----------------------------------------------------------------------------- the learner

class InContextLearner(nn.Module):
    """A set transformer that predicts query labels from (input, label) support pairs in one pass.

    * ``encoder``: a module ``(x [T, N, ...], support) -> [T, N, encoder.feature_dim]`` where the
      first ``support`` of the ``N`` examples of each task are its support set; a query's embedding
      must not depend on the other queries, nor on the order of the support set.
    * ``ways``: the number of classes (labels are long, ``0..ways-1``), or ``None`` for regression
      (labels are float ``[S, 1]``, one output per query).
    * ``dim``, ``depth``, ``heads``: token width, number of blocks, attention heads.
    * ``readout``: ``"attention"`` (classification only; the default there) or ``"linear"`` (the
      default for regression); see the module docstring.
    """

    READOUTS = ("attention", "linear")
    reads_support_set = True  # mllib.algorithms: forward(support_x, support_y, query_x), no inner loop

    def __init__(self, encoder: nn.Module, ways: int | None = None, dim: int = 64, depth: int = 2,
                 heads: int = 4, mlp_ratio: int = 2, readout: str | None = None) -> None:
        super().__init__()
        if ways is not None:
            check_int("ways", ways, 2)
        readout = readout or ("attention" if ways is not None else "linear")
        if readout not in self.READOUTS or (readout == "attention" and ways is None):
            raise ValueError(f"readout must be 'linear' (regression) or 'attention'/'linear' (classification), "
                             f"got {readout!r} with ways={ways!r}")
        for name, value in (("dim", dim), ("depth", depth), ("heads", heads), ("mlp_ratio", mlp_ratio)):
            check_int(name, value, 1)
        feature_dim = getattr(encoder, "feature_dim", None)
        if not isinstance(feature_dim, int):
            raise ValueError("encoder must have an integer attribute feature_dim (its output width)")
        self.ways = ways
        self.encoder = encoder
        self.embed_x = nn.Linear(feature_dim, dim)
        self.embed_y = nn.Linear(ways if ways is not None else 1, dim)
        self.unknown = nn.Parameter(torch.zeros(dim))
        self.blocks = nn.ModuleList([Block(dim, heads, mlp_ratio) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.readout_kind = readout
        if readout == "attention":
            self.readout = LabelAttention(dim)
        else:
            self.readout = nn.Linear(dim, ways if ways is not None else 1)

    @property
    def classification(self) -> bool:
        return self.ways is not None

    def label_vectors(self, support_y: Tensor) -> Tensor:
        """``[..., S, ways]`` one-hot rows (classification) or ``[..., S, 1]`` values (regression)."""
        if self.classification:
            return (support_y[..., None] == torch.arange(self.ways, device=support_y.device)).to(self.unknown.dtype)
        return support_y.to(self.unknown.dtype)

    def check_inputs(self, support_x: Tensor, support_y: Tensor, query_x: Tensor) -> None:
        """``ValueError`` naming the argument for inconsistent shapes or labels (one task)."""
        if support_x.dim() < 2 or query_x.dim() != support_x.dim() or query_x.shape[1:] != support_x.shape[1:]:
            raise ValueError(f"support_x [S, ...] and query_x [Q, ...] must have the same example shape, got "
                             f"{tuple(support_x.shape)} and {tuple(query_x.shape)}")
        if support_x.shape[0] < 1 or query_x.shape[0] < 1:
            raise ValueError("support_x and query_x need at least one example each")
        if self.classification:
            if support_y.shape != support_x.shape[:1] or torch.is_floating_point(support_y):
                raise ValueError(f"support_y must be integer class labels [S={support_x.shape[0]}] for a "
                                 f"{self.ways}-way classifier, got {support_y.dtype} {tuple(support_y.shape)}")
            if not under_vmap() and (int(support_y.min()) < 0 or int(support_y.max()) >= self.ways):
                raise ValueError(f"support_y labels must be in 0..{self.ways - 1}, got "
                                 f"{int(support_y.min())}..{int(support_y.max())}")
        elif support_y.shape != (support_x.shape[0], 1) or not torch.is_floating_point(support_y):
            raise ValueError(f"support_y must be float values [S={support_x.shape[0]}, 1] for regression, "
                             f"got {support_y.dtype} {tuple(support_y.shape)}")

    def forward(self, support_x: Tensor, support_y: Tensor, query_x: Tensor, tasks: bool = False) -> Tensor:
        """Query outputs ``[Q, ways]`` (logits) or ``[Q, 1]`` (regression) for one task.

        With ``tasks=True`` every argument has a leading task dimension ``T`` and the result is
        ``[T, Q, out]`` (the same numbers as one call per task).
        """
        if tasks:
            _check_batch(self, support_x, support_y, query_x)
        else:
            self.check_inputs(support_x, support_y, query_x)
            support_x, support_y, query_x = support_x[None], support_y[None], query_x[None]
        t, s, q = support_x.shape[0], support_x.shape[1], query_x.shape[1]
        features = self.encoder(torch.cat([support_x, query_x], 1), s)                    # [T, S + Q, F]
        labels = torch.cat([self.embed_y(self.label_vectors(support_y)), self.unknown.expand(t, q, -1)], 1)
        tokens = self.embed_x(features) + labels                                          # [T, S + Q, dim]
        for block in self.blocks:
            tokens = block(tokens, s)
        tokens = self.norm(tokens)
        if self.readout_kind == "attention":
            out = self.readout(tokens[:, s:], tokens[:, :s], self.label_vectors(support_y))   # [T, Q, ways]
        else:
            out = self.readout(tokens[:, s:])                                                # [T, Q, out]
        return out if tasks else out[0]


def sine_incontext(dim: int = 64, depth: int = 2, heads: int = 4, hidden: int = 64) -> InContextLearner:
    """An in-context regressor for 1-D inputs (sinusoid tasks): MLP encoder, float labels ``[S, 1]``."""
    return InContextLearner(MLPEncoder(1, hidden), ways=None, dim=dim, depth=depth, heads=heads)


def omniglot_incontext(ways: int = 5, filters: int = 64, dim: int = 64, depth: int = 2, heads: int = 4,
                       readout: str = "attention", conv_depth: int = 4) -> InContextLearner:
    """An in-context ``ways``-way classifier of ``[N, 1, 28, 28]`` images: ``conv_depth`` conv blocks of
    ``filters`` channels, then ``depth`` transformer blocks of width ``dim`` with ``heads`` heads."""
    return InContextLearner(ConvEncoder(1, filters, conv_depth), ways=ways, dim=dim, depth=depth, heads=heads,
                            readout=readout)


# ----------------------------------------------------------------------------- functional API

def _params(model: nn.Module, params: Mapping[str, Tensor] | None) -> Params:
    return dict(model.named_parameters()) if params is None else dict(params)


def task_loss_fn(model: InContextLearner):
    """``fn(params, support_x, support_y, query_x, query_y) -> (loss, metric)`` for one task.

    ``params``: a dict of the model's parameters (``functional_call``); long labels give
    ``(cross-entropy, accuracy)``, float labels ``(MSE, MSE)``, as ``mllib.algorithms.loss_and_metric``.
    Works inside ``torch.func.vmap`` over tasks.
    """
    def fn(params: Mapping[str, Tensor], support_x: Tensor, support_y: Tensor, query_x: Tensor,
           query_y: Tensor) -> tuple[Tensor, Tensor]:
        outputs = functional_call(model, dict(params), (support_x, support_y, query_x))
        return loss_and_metric(outputs, query_y)
    return fn


def _check_batch(model: InContextLearner, support_x: Tensor, support_y: Tensor, query_x: Tensor) -> None:
    if support_x.dim() < 3 or support_y.shape[:1] != support_x.shape[:1] or query_x.shape[:1] != support_x.shape[:1]:
        raise ValueError(f"support_x [T, S, ...], support_y [T, S(, 1)] and query_x [T, Q, ...] need the same "
                         f"number of tasks T; got {tuple(support_x.shape)}, {tuple(support_y.shape)}, "
                         f"{tuple(query_x.shape)}")
    model.check_inputs(support_x[0], support_y[0], query_x[0])
    if model.classification and not under_vmap() and (
            int(support_y.min()) < 0 or int(support_y.max()) >= model.ways):
        raise ValueError(f"support_y labels must be in 0..{model.ways - 1}, got "
                         f"{int(support_y.min())}..{int(support_y.max())}")


def predict_tasks(model: InContextLearner, support_x: Tensor, support_y: Tensor, query_x: Tensor,
                  params: Mapping[str, Tensor] | None = None) -> Tensor:
    """Outputs ``[T, Q, out]`` for ``T`` tasks (``support_x [T, S, ...]``) with parameters ``params``
    (default: the model's own), in one batched forward pass."""
    return functional_call(model, _params(model, params), (support_x, support_y, query_x), {"tasks": True})


BATCH_LOSS_FORMS = ("batched", "vmap", "loop")  # how batch_loss goes over the tasks


def batch_loss(model: InContextLearner, batch: TaskBatch, params: Mapping[str, Tensor] | None = None,
               form: str = "batched") -> tuple[Tensor, Tensor]:
    """``(mean loss, per-task metric [T])`` of a ``TaskBatch``; the same numbers in every ``form``:

    ``"batched"`` (one forward pass for all tasks, fastest), ``"vmap"`` (``torch.func.vmap`` of
    ``task_loss_fn``) or ``"loop"`` (``task_loss_fn`` task by task).
    """
    check_choice("form", form, BATCH_LOSS_FORMS)
    _check_batch(model, batch.support_x, batch.support_y, batch.query_x)
    p, fn = _params(model, params), task_loss_fn(model)
    tasks = (batch.support_x, batch.support_y, batch.query_x, batch.query_y)
    if form == "batched":
        out = predict_tasks(model, batch.support_x, batch.support_y, batch.query_x, p)       # [T, Q, out]
        if model.classification:
            losses = F.cross_entropy(out.flatten(0, 1), batch.query_y.flatten(), reduction="none")
            losses = losses.view(batch.query_y.shape).mean(1)
            metrics = (out.argmax(-1) == batch.query_y).to(out.dtype).mean(1)
        else:
            losses = metrics = (out - batch.query_y).square().flatten(1).mean(1)
    elif form == "vmap":
        losses, metrics = vmap(fn, in_dims=(None, 0, 0, 0, 0))(p, *tasks)
    else:
        outs = [fn(p, *(t[i] for t in tasks)) for i in range(batch.num_tasks)]
        losses, metrics = torch.stack([o[0] for o in outs]), torch.stack([o[1] for o in outs])
    return losses.mean(), metrics


def evaluate_incontext(model: InContextLearner, batch: TaskBatch, params: Mapping[str, Tensor] | None = None,
                       chunk: int = 16) -> Tensor:
    """Per-task query accuracy (classification) or MSE (regression), ``[T]``; one forward pass, no graph."""
    check_int("chunk", chunk, 1)
    p = {k: v.detach() for k, v in _params(model, params).items()}
    with torch.no_grad():
        return torch.cat([batch_loss(model, batch[i:i + chunk], p)[1] for i in range(0, batch.num_tasks, chunk)])


def train_incontext(
    model: InContextLearner,
    tasks,
    steps: int,
    meta_batch: int = 16,
    lr: float = 1e-3,
    support_sizes: Sequence[int] | None = None,
    form: str = "batched",
    seed: int = 0,
    clip: float | None = 1.0,
    max_seconds: float | None = None,
    optimizer_state: dict | None = None,
    progress: bool = True,
) -> dict[str, list]:
    """Train ``model`` in place with Adam (rate ``lr``) on the mean task loss; returns the history.

    ``tasks``: any sampler with ``sample(n) -> TaskBatch`` (``SinusoidTasks``, ``OmniglotTasks``).
    Each of the ``steps`` steps samples ``meta_batch`` tasks, optionally keeps only the first ``k``
    support points with ``k`` drawn from ``support_sizes`` (seeded by ``seed``: the model then works
    for every support size in that list), and takes one Adam step; gradients are clipped to total
    norm ``clip`` (``None``: no clipping). ``max_seconds``: stop after the step that uses up this
    much wall time (``history["stopped"]`` tells). ``optimizer_state``: an Adam ``state_dict`` to continue
    from (a previous call's ``history["optimizer_state"]``). ``history`` (``mllib.training_loop``):
    ``{"step", "loss", "metric"}`` per step, ``"seconds"`` (training time), ``"optimizer_state"`` and
    ``"interrupted"`` (Ctrl-C stops after the current step, keeping what was learned).
    """
    check_int("steps", steps, 0)
    check_int("meta_batch", meta_batch, 1)
    check_max_seconds(max_seconds)
    check_positive("lr", lr)
    if support_sizes is not None and (not support_sizes or any(
            not isinstance(k, int) or isinstance(k, bool) or k < 1 for k in support_sizes)):
        raise ValueError(f"support_sizes must be None or a non-empty list of integers >= 1, got {support_sizes!r}")
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=lr)
    if optimizer_state is not None:
        optimizer.load_state_dict(optimizer_state)
    rng = random.Random(seed)
    model.train()
    with TrainingLoop(steps, "train in-context", progress=progress, max_seconds=max_seconds,
                      keys=("loss", "metric"), stop_after=True) as loop:
        for _ in loop:
            batch = tasks.sample(meta_batch)
            if support_sizes is not None:
                k = rng.choice(list(support_sizes))
                if k > batch.support_x.shape[1]:
                    raise ValueError(f"support size {k} exceeds the {batch.support_x.shape[1]} support points "
                                     "the sampler gives")
                batch = TaskBatch(batch.support_x[:, :k], batch.support_y[:, :k], batch.query_x, batch.query_y)
            loss, metrics = batch_loss(model, batch, form=form)
            optimizer.zero_grad()
            loss.backward()
            if clip is not None:
                torch.nn.utils.clip_grad_norm_(params, clip)
            optimizer.step()
            loop.log(loss=float(loss.detach()), metric=float(metrics.detach().mean()))
    return {**loop.history, "optimizer_state": optimizer.state_dict()}


__all__ = ["attend", "SupportAttention", "Block", "LabelAttention", "MLPEncoder", "ConvEncoder", "InContextLearner", "sine_incontext",
           "omniglot_incontext", "task_loss_fn", "predict_tasks", "batch_loss", "evaluate_incontext",
           "train_incontext"]
