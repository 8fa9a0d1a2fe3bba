"""The two learners of the course, used through ``torch.func.functional_call``.

* ``SineMLP``: 1 -> 40 -> 40 -> 1 with ReLU (the MAML paper's sinusoid regressor).
* ``ConvLearner``: ``depth`` blocks of [3x3 conv (padding 1), batch norm, ReLU, 2x2 max-pool],
  then a linear head to ``ways`` logits (the MAML paper's Omniglot learner for ``filters=64, depth=4``).

Parameters live in plain dicts (``params_of(model)``), so an adapted learner is just another dict:
``functional_call(model, adapted, (x,))``. Every parameter of the head has a name starting
with ``"head."`` (``head_names``); everything else is the body.

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
Outside vmap (the loop form), ``batch`` mode calls the native kernel, which is exact there and faster.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _under_vmap() -> bool:
    """True inside ``torch.func.vmap`` (any level), where the native batch norm's 2nd derivative is off."""
    try:
        from torch._C._functorch import TransformType
        from torch._functorch.pyfunctorch import retrieve_all_functorch_interpreters
        return any(i.key() == TransformType.Vmap for i in retrieve_all_functorch_interpreters())
    except Exception:  # private API moved: assume vmap, i.e. always use the exact elementary version
        return True


class BatchNorm(nn.Module):
    """Per-channel normalisation with the statistics of (the first ``stats_rows`` rows of) ``x``.

    Learnable ``weight`` and ``bias`` ``[C]``; no running statistics; biased variance.
    """

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor, stats_rows: int | None = None) -> Tensor:
        """``x [N, C, H, W]`` -> ``[N, C, H, W]``, statistics from ``x[:stats_rows]`` (all rows if None)."""
        if stats_rows is None and not _under_vmap():
            # Outside vmap the fused native kernel computes the same function with exact first and
            # second derivatives (float64: 1e-14 from the elementary version) and makes a second-order
            # MAML meta-step about 25% faster on a CPU (mllib.bench). Under vmap it is not exact.
            return F.batch_norm(x, None, None, self.weight, self.bias, True, 0.0, self.eps)
        ref = x if stats_rows is None else x[:stats_rows]
        # mean over (H, W) then over N: the same numbers as one mean over (N, H, W), and
        # about 30% faster on a CPU than torch.var_mean's strided reduction (forward + both backwards).
        mean = ref.mean((2, 3), keepdim=True).mean(0, keepdim=True)                    # [1, C, 1, 1]
        var = (ref - mean).square().mean((2, 3), keepdim=True).mean(0, keepdim=True)   # biased variance
        return (x - mean) * (self.weight[:, None, None] * torch.rsqrt(var + self.eps)) + self.bias[:, None, None]


class ConvBlock(nn.Module):
    """3x3 conv (padding 1, no bias: batch norm's shift replaces it), batch norm, ReLU, 2x2 max-pool.

    Computed as conv, batch norm, max-pool, ReLU (identical results, less work).
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.norm = BatchNorm(out_channels)
        nn.init.xavier_uniform_(self.conv.weight)

    def forward(self, x: Tensor, stats_rows: int | None = None) -> Tensor:
        """``[N, C_in, H, W]`` -> ``[N, C_out, H // 2, W // 2]``."""
        weight = self.conv.weight
        if x.device.type == "cpu" and not _under_vmap():
            # channels-last weights make oneDNN keep activations channels-last (no layout reorders)
            weight = weight.contiguous(memory_format=torch.channels_last)
        x = self.norm(F.conv2d(x, weight, padding=1), stats_rows)
        # max-pool, then ReLU: the same function and gradients as ReLU then max-pool (ReLU is monotone,
        # so it commutes with max), with the ReLU on a 4x smaller tensor. Together with channels-last
        # this makes the CPU meta-step ~15% faster (mllib.bench).
        return torch.relu(F.max_pool2d(x, 2))


def _check_int(name: str, value: int, low: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")


class ConvLearner(nn.Module):
    """The conv learner: ``depth`` x [conv 3x3, batch norm, ReLU, max-pool 2x2], then a linear head.

    Input ``x [N, in_channels, image_size, image_size]`` (Omniglot: ``[N, 1, 28, 28]``), output
    logits ``[N, ways]``. With the defaults the embedding has ``filters`` features (28 -> 14 -> 7 -> 3 -> 1).
    """

    def __init__(self, ways: int, in_channels: int = 1, filters: int = 64, depth: int = 4,
                 image_size: int = 28) -> None:
        super().__init__()
        for name, value, low in (("ways", ways, 1), ("in_channels", in_channels, 1),
                                 ("filters", filters, 1), ("depth", depth, 1), ("image_size", image_size, 1)):
            _check_int(name, value, low)
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
    """1 -> 40 -> 40 -> 1 with ReLU: ``x [N, 1]`` -> ``y [N, 1]``."""

    def __init__(self, hidden: int = 40) -> None:
        super().__init__()
        _check_int("hidden", hidden, 1)
        self.body = nn.Sequential(nn.Linear(1, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.head = nn.Linear(hidden, 1)
        self.feature_dim = hidden

    def features(self, x: Tensor, stats_rows: int | None = None) -> Tensor:
        """Hidden features ``[N, hidden]`` (``stats_rows`` is accepted and ignored: no batch norm)."""
        return self.body(x)

    def forward(self, x: Tensor, stats_rows: int | None = None) -> Tensor:
        """Predictions ``[N, 1]`` (``stats_rows`` is accepted and ignored: no batch norm)."""
        return self.head(self.body(x))


def params_of(model: nn.Module) -> dict[str, Tensor]:
    """A copy of the model's parameters as a flat dict of detached leaf tensors requiring grad."""
    return {name: p.detach().clone().requires_grad_(True) for name, p in model.named_parameters()}


def head_names(model: nn.Module) -> list[str]:
    """Names of the head's parameters (those starting with ``"head."``); the rest is the body."""
    names = [name for name, _ in model.named_parameters() if name.startswith("head.")]
    if not names:
        raise ValueError(f"model {type(model).__name__} has no parameters named 'head.*'; "
                         "ANIL needs a submodule called 'head'")
    return names
