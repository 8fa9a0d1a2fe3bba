"""How much adaptation changes a network's representation: linear CKA, layer by layer (notebook 06).

Raghu et al. (2020, "Rapid learning or feature reuse?") compared the features of a MAML-trained
network before and after its inner loop with CCA and CKA. Linear CKA (Kornblith et al. 2019) is

    CKA(A, B) = ||Bc^T Ac||_F^2 / (||Ac^T Ac||_F ||Bc^T Bc||_F),

with ``Ac``, ``Bc`` the column-centred feature matrices of the same N inputs. It is 1 for
representations equal up to rotation and isotropic scaling, and it does not reward two feature
sets for merely being non-negative (the centring removes the shared mean that inflates the cosine
similarity of ReLU features).
"""
from __future__ import annotations

from typing import Mapping

import torch
from torch import Tensor, nn
from torch.func import functional_call


def linear_cka(a: Tensor, b: Tensor) -> float:
    """Linear CKA of two representations of the same N inputs: ``a [N, D1]``, ``b [N, D2]`` -> a float in [0, 1].

        >>> x = torch.randn(50, 8, generator=torch.Generator().manual_seed(0))
        >>> round(linear_cka(x, 3 * x + 1), 6)
        1.0
    """
    if a.dim() != 2 or b.dim() != 2 or a.shape[0] != b.shape[0]:
        raise ValueError(f"linear_cka needs two [N, D] matrices with the same N, got {tuple(a.shape)} "
                         f"and {tuple(b.shape)}")
    if a.shape[0] < 2:
        raise ValueError("linear_cka needs at least 2 inputs (rows)")
    a, b = a.double(), b.double()
    a, b = a - a.mean(0), b - b.mean(0)
    gram_a, gram_b = a @ a.T, b @ b.T   # [N, N]: ||B^T A||_F^2 = <A A^T, B B^T>, cheap when D >> N
    cross = (gram_a * gram_b).sum()
    norm = torch.linalg.matrix_norm(gram_a) * torch.linalg.matrix_norm(gram_b)
    if norm == 0:
        raise ValueError("linear_cka is undefined for a constant representation (all rows equal)")
    return float(cross / norm)


def block_outputs(model: nn.Module, params: Mapping[str, Tensor], x: Tensor) -> list[Tensor]:
    """The output of each block of a ``ConvLearner`` (batch-norm mode ``batch``), flattened: ``[N, D_i]`` each.

    ``params`` are the model's parameters by name (``"blocks.0.conv.weight"``, ...), e.g. adapted ones.
    """
    outputs = []
    for i, block in enumerate(model.blocks):
        prefix = f"blocks.{i}."
        x = functional_call(block, {k[len(prefix):]: v for k, v in params.items() if k.startswith(prefix)},
                            (x,))
        outputs.append(x.flatten(1))
    return outputs


def adaptation_cka(model: nn.Module, before: Mapping[str, Tensor], after: Mapping[str, Tensor],
                   x: Tensor) -> list[float]:
    """Per block, the linear CKA of the block's outputs on ``x [N, ...]`` before and after adaptation."""
    with torch.no_grad():
        return [linear_cka(a, b) for a, b in zip(block_outputs(model, before, x), block_outputs(model, after, x))]
