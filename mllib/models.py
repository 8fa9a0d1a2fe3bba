"""The two learners of the course, used through ``torch.func.functional_call`` (notebooks 03, 05).

* ``SineMLP``: 1 -> 40 -> 40 -> 1 with ReLU (the MAML paper's sinusoid regressor).
* ``ConvLearner``: ``depth`` blocks of [3x3 conv (padding 1), batch norm, ReLU, 2x2 max-pool],
  then a linear head to ``ways`` logits (the MAML paper's Omniglot learner for ``filters=64, depth=4``).

Parameters live in plain dicts (``params_of(model)``), so an adapted learner is just another dict:
``call_model(model, adapted, x)`` (``functional_call`` underneath). Every parameter of the head has
a name starting with ``"head."`` (``head_names``); everything else is the body.

Batch norm: an explicit choice, never hidden state
-------------------------------------------------
``BatchNorm`` normalises with statistics of the current forward pass only; there are no
running statistics, so nothing is shared between tasks. Two modes are built on it:

* ``batch`` (transductive): each forward pass is normalised with its own statistics, so the
  query set is normalised with query statistics. This is what the MAML paper's Omniglot
  numbers use; one query's prediction depends on the other query images.
* ``support``: forward ``cat([support_x, query_x])`` with ``stats_rows=len(support_x)``; every row
  is normalised with statistics of the support rows only, so a query prediction never depends on
  the other queries (no leakage between test examples).

It is written with elementary operations (means, ``square`` and ``torch.rsqrt``) on purpose:
``torch.func.vmap`` over the native ``F.batch_norm`` gives second-order meta-gradients that are
off by about 1% (measured on torch 2.14), while this version matches finite differences.

Speed: the layers below read as the textbook block; ``mllib.fast_ops`` computes three of its
steps faster with exactly the same numbers (and says why each is exact).
"""
from __future__ import annotations

from typing import Mapping

import torch
from torch import Tensor, nn
from torch.func import functional_call

from mllib import fast_ops
from mllib.arguments import check_int

#: Parameters (or gradients, or per-parameter rates) by name, as :func:`params_of` returns them.
Params = dict[str, Tensor]


class BatchNorm(nn.Module):
    """Per-channel normalisation with the statistics of (the first ``stats_rows`` rows of) ``x``.

    Learnable ``weight`` and ``bias`` ``[C]``; no running statistics; biased variance
    (notebook 05, section 5).

        >>> x = torch.randn(8, 3, 4, 4) * 5 + 2
        >>> y = BatchNorm(3)(x).detach()          # weight 1, bias 0: mean 0 and variance 1 per channel
        >>> round(float(y.mean()), 4) == 0.0, round(float(y.var(unbiased=False)), 2)
        (True, 1.0)
    """

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor, stats_rows: int | None = None) -> Tensor:
        """``x [N, C, H, W]`` -> ``[N, C, H, W]``, statistics from ``x[:stats_rows]`` (all rows if None)."""
        if stats_rows is None and not fast_ops.under_vmap():  # the same function, one fused kernel
            return fast_ops.native_batch_norm(x, self.weight, self.bias, self.eps)
        ref = x if stats_rows is None else x[:stats_rows]
        # mean over (H, W) then over N: the same numbers as one mean over (N, H, W), and
        # about 30% faster on a CPU than torch.var_mean's strided reduction (forward + both backwards).
        mean = ref.mean((2, 3), keepdim=True).mean(0, keepdim=True)                    # [1, C, 1, 1]
        var = (ref - mean).square().mean((2, 3), keepdim=True).mean(0, keepdim=True)   # biased variance
        return (x - mean) * (self.weight[:, None, None] * torch.rsqrt(var + self.eps)) + self.bias[:, None, None]


class ConvBlock(nn.Module):
    """3x3 conv (padding 1, no bias: batch norm's shift replaces it), batch norm, ReLU, 2x2 max-pool.

    One block of ``ConvLearner`` (notebook 05, section 1).

        >>> ConvBlock(1, 8)(torch.rand(2, 1, 28, 28)).shape
        torch.Size([2, 8, 14, 14])
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.norm = BatchNorm(out_channels)
        nn.init.xavier_uniform_(self.conv.weight)

    def forward(self, x: Tensor, stats_rows: int | None = None) -> Tensor:
        """``[N, C_in, H, W]`` -> ``[N, C_out, H // 2, W // 2]``."""
        x = fast_ops.conv3x3(x, self.conv.weight)        # F.conv2d(x, weight, padding=1)
        x = self.norm(x, stats_rows)
        return fast_ops.relu_max_pool(x)                 # F.max_pool2d(torch.relu(x), 2)


class ConvLearner(nn.Module):
    """The conv learner: ``depth`` x [conv 3x3, batch norm, ReLU, max-pool 2x2], then a linear head.

    Input ``x [N, in_channels, image_size, image_size]`` (Omniglot: ``[N, 1, 28, 28]``), output
    logits ``[N, ways]``. With the defaults the embedding has ``filters`` features (28 -> 14 -> 7 -> 3 -> 1).
    Taught in notebook 05, section 1 (the learner and the data).

        >>> ConvLearner(ways=5, filters=8)(torch.zeros(3, 1, 28, 28)).shape
        torch.Size([3, 5])
    """

    def __init__(self, ways: int, in_channels: int = 1, filters: int = 64, depth: int = 4,
                 image_size: int = 28) -> None:
        super().__init__()
        for name, value in (("ways", ways), ("in_channels", in_channels), ("filters", filters),
                            ("depth", depth), ("image_size", image_size)):
            check_int(name, value, 1)
        side = image_size
        for _ in range(depth):
            side //= 2
        if side < 1:
            raise ValueError(f"depth={depth} halves image_size={image_size} to nothing; "
                             f"depth must be in 1..{image_size.bit_length() - 1} for this image size")
        self.ways = ways
        self.feature_dim = filters * side * side
        self.blocks = nn.ModuleList(
            [ConvBlock(in_channels if i == 0 else filters, filters) for i in range(depth)])
        self.head = nn.Linear(self.feature_dim, ways)
        nn.init.xavier_uniform_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def features(self, x: Tensor, stats_rows: int | None = None) -> Tensor:
        """Embeddings ``[N, feature_dim]`` of ``x [N, C, H, W]`` (batch norm as in ``forward``)."""
        for block in self.blocks:
            x = block(x, stats_rows)
        return x.flatten(1)

    def forward(self, x: Tensor, stats_rows: int | None = None) -> Tensor:
        """Logits ``[N, ways]`` of ``x [N, C, H, W]``.

        ``stats_rows=None``: batch norm with statistics of all N rows (``batch`` mode).
        ``stats_rows=n``: every row normalised with statistics of the first n rows (``support`` mode).
        """
        return self.head(self.features(x, stats_rows))


class SineMLP(nn.Module):
    """1 -> 40 -> 40 -> 1 with ReLU: ``x [N, 1]`` -> ``y [N, 1]`` (notebook 03, section 1).

        >>> SineMLP()(torch.zeros(10, 1)).shape
        torch.Size([10, 1])
    """

    def __init__(self, hidden: int = 40) -> None:
        super().__init__()
        check_int("hidden", hidden, 1)
        self.body = nn.Sequential(nn.Linear(1, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.head = nn.Linear(hidden, 1)
        self.feature_dim = hidden

    def features(self, x: Tensor, stats_rows: int | None = None) -> Tensor:
        """Hidden features ``[N, hidden]`` (``stats_rows`` is accepted and ignored: no batch norm)."""
        return self.body(x)

    def forward(self, x: Tensor, stats_rows: int | None = None) -> Tensor:
        """Predictions ``[N, 1]`` (``stats_rows`` is accepted and ignored: no batch norm)."""
        return self.head(self.body(x))


def build_conv_learner(ways: int, filters: int, depth: int = 4) -> ConvLearner:
    """The conv learner for ``[N, 1, 28, 28]`` Omniglot images, as meta-training builds it (notebook 05).

        >>> build_conv_learner(ways=5, filters=32).feature_dim
        32
    """
    return ConvLearner(ways, in_channels=1, filters=filters, depth=depth)


def params_of(model: nn.Module) -> Params:
    """A copy of the model's parameters as a flat dict of detached leaf tensors requiring grad.

    Notebook 03, section 1 (parameters as a dict).

        >>> {name: tuple(p.shape) for name, p in params_of(SineMLP(hidden=8)).items()}["head.weight"]
        (1, 8)
    """
    return {name: p.detach().clone().requires_grad_(True) for name, p in model.named_parameters()}


def load_into_model(model: nn.Module, params: Mapping[str, Tensor]) -> nn.Module:
    """Copy ``params[name]`` into every parameter ``name`` of ``model``: the inverse of ``params_of``.

    Keys that are not the model's parameters (Meta-SGD's ``"lr.<name>"`` rates) stay out. The one
    rule for trained weights: ``mllib.train.meta_train`` and
    ``mllib.sine_experiments.meta_train_sinusoid`` both hand back their model holding the
    final meta-parameters, so ``model(x)`` is the meta-learned start. Returns ``model``.
    Notebooks 01 (section 6) and 05 (section 2) use models trained this way.

        >>> model = SineMLP()
        >>> zero = {name: torch.zeros_like(p) for name, p in model.named_parameters()}
        >>> load_into_model(model, zero)(torch.ones(1, 1))
        tensor([[0.]], grad_fn=<AddmmBackward0>)
    """
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(params[name])
    return model


def head_names(model: nn.Module) -> list[str]:
    """Names of the head's parameters (those starting with ``"head."``); the rest is the body.

    ANIL adapts only these (notebook 06, section 2).

        >>> head_names(SineMLP())
        ['head.weight', 'head.bias']
    """
    names = [name for name, _ in model.named_parameters() if name.startswith("head.")]
    if not names:
        raise ValueError(f"model {type(model).__name__} has no parameters named 'head.*'; "
                         "ANIL needs a submodule called 'head'")
    return names


class _Features(nn.Module):
    """A view of ``model`` whose forward is ``model.features`` (parameter names prefixed ``"model."``)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor, **kwargs) -> Tensor:
        return self.model.features(x, **kwargs)


def call_model(model: nn.Module, params: Mapping[str, Tensor], x: Tensor, stats_rows: int | None = None,
               features: bool = False) -> Tensor:
    """``model(x)`` computed with ``params`` (or ``model.features(x)`` if ``features``).

    ``x [N, ...]`` -> ``[N, out]``. ``stats_rows`` is passed to the model only when given (models
    without batch norm ignore it). Notebook 03, section 1.

        >>> model = SineMLP()
        >>> zero = {name: torch.zeros_like(p) for name, p in params_of(model).items()}
        >>> call_model(model, zero, torch.ones(2, 1))
        tensor([[0.],
                [0.]])
    """
    kwargs = {} if stats_rows is None else {"stats_rows": stats_rows}
    if features:
        return functional_call(_Features(model), {"model." + k: v for k, v in params.items()}, (x,), kwargs)
    return functional_call(model, dict(params), (x,), kwargs)
