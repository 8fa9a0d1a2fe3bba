"""Speed tricks of the conv learner, kept in one place. Each computes exactly the same function.

``mllib.models`` reads as the textbook block "conv 3x3, batch norm, ReLU, 2x2 max-pool"; these
helpers compute those steps faster, and each says why the result is unchanged (values and first
and second derivatives; ``tests/test_models.py`` and ``tests/test_gradients.py`` check them):

* ``conv3x3``: channels-last weights on a CPU, so oneDNN keeps activations channels-last
  (no layout reorders between layers). A 1-channel input (Omniglot's ``[N, 1, 28, 28]``) is
  also given a channels-last *view* (``channels_last_view``: no copy), else oneDNN runs the whole
  first block NCHW; the first block alone then costs about a third as much (its NCHW max-pool was
  the slowest op of the step). Only the memory layout changes: the same function (float64
  meta-gradients agree to ~1e-15, the rounding order of the convolution being the only difference).
* ``native_batch_norm``: the fused ``F.batch_norm`` kernel for batch statistics. Outside
  ``torch.func.vmap`` its first and second derivatives equal the elementary version's
  (float64: 1e-14 apart) and a second-order MAML meta-step is ~25% faster on a CPU. Under vmap
  its second derivative is off by ~1% (torch 2.14), so ``mllib.models.BatchNorm`` uses it only
  where ``under_vmap()`` is false.
* ``relu_max_pool``: max-pool first, then ReLU, on a 4x smaller tensor. ReLU is monotone, so
  it commutes with max: the same values, and the gradient reaches the same (first) maximum.

Together with channels-last this makes the CPU meta-step ~15% faster (``python -m mllib bench``);
the channels-last input view takes off about another 10% (``benchmarks/recipes/FINDINGS.md``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def under_vmap() -> bool:
    """True inside ``torch.func.vmap`` (any level).

    Reads torch's private functorch interpreter stack; if that API moves, it answers True,
    which only selects the elementary (always exact) batch norm.
    """
    try:
        from torch._C._functorch import TransformType
        from torch._functorch.pyfunctorch import retrieve_all_functorch_interpreters
        return any(i.key() == TransformType.Vmap for i in retrieve_all_functorch_interpreters())
    except Exception:  # private API moved: assume vmap, i.e. always use the exact elementary version
        return True


def channels_last_view(x: Tensor) -> Tensor:
    """The same ``[N, 1, H, W]`` tensor seen channels-last (strides ``(H*W, 1, W, 1)``), no copy.

    With one channel the NCHW and NHWC memory orders are the same bytes; only the stride of the
    channel dimension tells oneDNN which layout to pick. Other tensors are returned unchanged.

        >>> x = torch.zeros(2, 1, 3, 4)
        >>> y = channels_last_view(x)
        >>> y.shape, y.stride(), y.data_ptr() == x.data_ptr(), y.is_contiguous(memory_format=torch.channels_last)
        (torch.Size([2, 1, 3, 4]), (12, 1, 4, 1), True, True)
    """
    if x.dim() != 4 or x.shape[1] != 1 or not x.is_contiguous():
        return x
    n, _, h, w = x.shape
    return x.reshape(n, h, w, 1).permute(0, 3, 1, 2)


def conv3x3(x: Tensor, weight: Tensor) -> Tensor:
    """``F.conv2d(x, weight, padding=1)``: ``[N, C_in, H, W]`` -> ``[N, C_out, H, W]``."""
    if x.device.type == "cpu" and not under_vmap():
        weight = weight.contiguous(memory_format=torch.channels_last)
        x = channels_last_view(x)
    return F.conv2d(x, weight, padding=1)


def native_batch_norm(x: Tensor, weight: Tensor, bias: Tensor, eps: float) -> Tensor:
    """Batch norm of ``x [N, C, H, W]`` with its own statistics, fused kernel (not under vmap)."""
    return F.batch_norm(x, None, None, weight, bias, True, 0.0, eps)


def relu_max_pool(x: Tensor) -> Tensor:
    """``F.max_pool2d(torch.relu(x), 2)``, computed as ReLU of the max-pool (same numbers)."""
    return torch.relu(F.max_pool2d(x, 2))
