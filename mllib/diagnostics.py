"""Looking inside a meta-gradient: finite differences, and the memory its autograd graph keeps.

* ``finite_differences``: central differences of a scalar function of a parameter dict; the
  check every gradient in the course is held against (notebook 04, section 2).
* ``saved_tensor_bytes``: run a computation and measure the tensors its autograd graph keeps for
  the backward pass (notebook 04, section 4: what MAML's second-order term costs in memory).
"""
from __future__ import annotations

import weakref
from typing import Any, Callable, Mapping

import torch
from torch import Tensor


def finite_differences(f: Callable[[dict[str, Tensor]], Any], params: Mapping[str, Tensor],
                       eps: float = 1e-6) -> dict[str, Tensor]:
    """The gradient of ``f(params)`` (a scalar) by central differences, one entry at a time.

    ``grads[name][j] = (f(params + eps e_j) - f(params - eps e_j)) / (2 eps)`` where ``e_j`` moves
    entry ``j`` of ``params[name]`` only. ``f`` gets detached copies; use float64 parameters, since
    in float32 the difference of two nearby losses loses most of its digits. Costs ``2 x numel`` calls.

        >>> x = {"x": torch.tensor([1.0, 2.0], dtype=torch.float64)}
        >>> finite_differences(lambda p: (p["x"] ** 2).sum(), x)["x"]      # 2 x
        tensor([2.0000, 4.0000], dtype=torch.float64)
    """
    point = {k: v.detach().clone() for k, v in params.items()}
    grads = {}
    for name, tensor in point.items():
        flat, grad = tensor.view(-1), torch.zeros(tensor.numel(), dtype=tensor.dtype)
        for j in range(tensor.numel()):
            original = flat[j].item()
            flat[j] = original + eps
            plus = float(f(point))
            flat[j] = original - eps
            minus = float(f(point))
            flat[j] = original
            grad[j] = (plus - minus) / (2 * eps)
        grads[name] = grad.view(tensor.shape).to(tensor.device)
    return grads


class _Saved:
    """What autograd stores for one saved tensor while we watch (so we can tell when it is freed)."""

    def __init__(self, tensor: Tensor) -> None:
        self.tensor = tensor


def saved_tensor_bytes(fn: Callable[..., Any], *args, **kwargs) -> tuple[Any, int]:
    """``(fn(*args, **kwargs), bytes)``: the bytes of the distinct tensors saved for backward that
    the autograd graphs built by ``fn`` still hold when it returns.

    Uses ``torch.autograd.graph.saved_tensors_hooks``: every tensor autograd saves during ``fn``
    passes through it. A graph already used and freed inside ``fn`` (an inner gradient taken
    without ``create_graph``) holds nothing any more and is not counted; tensors sharing one
    storage are counted once.

        >>> w = torch.ones(1000, requires_grad=True)           # 4,000 bytes
        >>> loss, kept = saved_tensor_bytes(lambda: (w * w).sum())
        >>> kept                                              # w is saved (once) to differentiate w * w
        4000
    """
    watched: list[weakref.ref] = []

    def pack(tensor: Tensor) -> _Saved:
        saved = _Saved(tensor)
        watched.append(weakref.ref(saved))
        return saved

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda saved: saved.tensor):
        result = fn(*args, **kwargs)
    storages = {}
    for ref in watched:
        saved = ref()
        if saved is not None:
            storage = saved.tensor.untyped_storage()
            storages[(storage.data_ptr(), storage.nbytes())] = storage.nbytes()
    return result, sum(storages.values())
