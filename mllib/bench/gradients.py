"""Gradient agreement: every implementation's meta-gradient against ``mllib-loop`` in float64."""
from __future__ import annotations

from dataclasses import replace

import torch
from torch import Tensor

from .spec import BenchSpec, make_step

GRAD_TOLERANCE = 1e-8  # relative error allowed between implementations in float64


def rel_error(a: dict[str, Tensor], b: dict[str, Tensor]) -> float:
    """``||a - b|| / ||b||`` over all entries of the dicts (keys of ``b``)."""
    num = sum(float(((a[k].double() - b[k].double()) ** 2).sum()) for k in b) ** 0.5
    den = sum(float((b[k].double() ** 2).sum()) for k in b) ** 0.5
    return num / max(den, 1e-300)


def check_gradients(spec: BenchSpec, impls, tasks: int = 4, dtype: torch.dtype = torch.float64) -> list[dict]:
    """Meta-gradients of ``impls`` on the same weights and tasks (``tasks`` of them, ``dtype``).

    Returns ``[{"algo", "impl", "against", "rel_err", "ok", "dtype", "tasks"}]`` against ``mllib-loop``.
    float64 because float32 conv nets with ReLU and max-pool have inputs at kinks that different
    summation orders resolve differently (see FIELD_NOTES).
    """
    base = replace(spec, meta_batch=min(tasks, spec.meta_batch), impl="mllib-loop")
    reference = make_step(base, dtype)[0]()
    rows = []
    for impl in impls:
        if impl == "mllib-loop":
            continue
        grads = make_step(replace(base, impl=impl), dtype)[0]()
        err = rel_error({k: grads[k] for k in reference}, reference)
        rows.append({"algo": spec.algo, "impl": impl, "against": "mllib-loop", "rel_err": err,
                     "ok": bool(err < GRAD_TOLERANCE), "dtype": str(dtype).replace("torch.", ""),
                     "tasks": base.meta_batch})
    return rows


