"""iMAML (隐式MAML): a proximal inner problem and its implicit meta-gradient (Rajeswaran et al. 2019).

Taught in notebook 04 (section "4b. Regularisation and implicit gradients"). The inner loop of MAML
is replaced by a *regularised* problem: from the start ``theta``, adapt to the support loss while a
proximal term (近端项) keeps the adapted parameters near the start,

    phi*(theta) = argmin_phi  L_support(phi) + (lam / 2) ||phi - theta||^2.

The proximal term is the learned bias written as a regulariser (正则化): ``theta`` is the prior mean
and ``lam`` its strength. At ``phi*`` the gradient of that objective is zero; the implicit function
theorem (隐函数定理) differentiates that equation instead of the steps that led to it:

    d phi* / d theta = (I + H / lam)^{-1},   H = Hessian of L_support at phi*,

so the meta-gradient of one task is ``g = (I + H / lam)^{-1} grad L_query(phi*)``: a linear system,
solved by conjugate gradient (共轭梯度) with Hessian-vector products, without any graph through
the inner steps. Its memory does not grow with the number of inner steps; MAML's does.

Everything works on parameter dicts ``{name: tensor}`` (any shapes; the form of ``mllib.inner``)
and a loss ``loss_fn(params, data) -> scalar`` (``mllib.algorithms.support_loss_fn(model)``), used
for the support data and the query data alike.

* ``proximal_loss``, ``proximal_adapt``: the inner problem and its solution by gradient steps
  (``mllib.inner.adapt`` with ``SGD(lr)`` on the regularised loss).
* ``hessian_vector_product``, ``conjugate_gradient``: ``v -> H v`` at one point, and CG on dicts.
* ``implicit_meta_gradient``: iMAML's meta-gradient of one task.
* ``unrolled_meta_gradient``: MAML's meta-gradient of the same objective, back-propagated through
  the ``steps`` proximal gradient steps (the graph of every step kept).
* ``peak_graph_bytes``: the most bytes the autograd graphs held for their backward passes at any
  moment of a computation (the memory of section 4b's figure).
"""
from __future__ import annotations

import weakref
from typing import Any, Callable, Mapping

import torch
from torch import Tensor

from mllib.arguments import check_int, check_positive
from mllib.inner import adapt
from mllib.models import Params
from mllib.update_rules import SGD

LossFn = Callable[[Params, Any], Tensor]


def proximal_loss(loss_fn: LossFn, anchor: Mapping[str, Tensor], lam: float) -> LossFn:
    """``loss(phi, data) = loss_fn(phi, data) + lam / 2 * sum_n ||phi[n] - anchor[n]||^2``.

    ``anchor``: the start ``theta`` (same keys and shapes as ``phi``); kept as given, so the
    regulariser stays differentiable in ``theta`` when ``theta`` requires grad.

        >>> anchor = {"w": torch.tensor([1.0, 2.0])}
        >>> proximal_loss(lambda p, d: p["w"].sum(), anchor, lam=2.0)({"w": torch.zeros(2)}, None)
        tensor(5.)
    """
    lam = check_positive("lam", lam)

    def loss(phi: Params, data) -> Tensor:
        distance = sum(((phi[n] - anchor[n]) ** 2).sum() for n in anchor)
        return loss_fn(phi, data) + 0.5 * lam * distance
    return loss


def proximal_adapt(theta: Mapping[str, Tensor], loss_fn: LossFn, support, lam: float, steps: int,
                   lr: float, differentiable: bool = False) -> Params:
    """``steps`` gradient steps of size ``lr`` from ``phi = theta`` on the proximal inner problem.

    Returns ``phi`` (same keys and shapes as ``theta``). ``differentiable=False`` (iMAML): no graph,
    the result is detached. ``differentiable=True`` (MAML on the same problem): every step's graph
    is kept, through the gradients and through the anchor ``theta``, for an outer backward pass.
    Gradient descent converges when ``lr < 2 / (lam + largest eigenvalue of H)``.
    """
    lam, lr = check_positive("lam", lam), check_positive("lr", lr)
    anchor = dict(theta) if differentiable else {n: t.detach() for n, t in theta.items()}
    return adapt(theta, proximal_loss(loss_fn, anchor, lam), support, steps, SGD(lr),
                 first_order=not differentiable, evaluation=not differentiable)


def hessian_vector_product(loss_fn: LossFn, params: Mapping[str, Tensor], data) -> Callable[[Params], Params]:
    """``v -> H v``, ``H`` the Hessian of ``loss_fn(params, data)`` at ``params`` (``v``: a dict like ``params``).

    The gradient is taken once with its graph; each product is one more backward pass through it
    (``torch.autograd.grad`` of ``grad . v``), so ``H`` is never formed. The graph is that of one
    gradient at one point, whatever path led to ``params``.

        >>> hvp = hessian_vector_product(lambda p, d: (p["w"] ** 3).sum(), {"w": torch.tensor([1.0, 2.0])}, None)
        >>> hvp({"w": torch.tensor([1.0, 1.0])})["w"]                  # H = diag(6 w)
        tensor([ 6., 12.])
    """
    point = {n: t.detach().requires_grad_() for n, t in params.items()}
    names = list(point)
    with torch.enable_grad():
        grads = torch.autograd.grad(loss_fn(point, data), [point[n] for n in names], create_graph=True)

    def product(vector: Mapping[str, Tensor]) -> Params:
        with torch.enable_grad():
            out = torch.autograd.grad(grads, [point[n] for n in names], [vector[n] for n in names],
                                      retain_graph=True, allow_unused=True)
        return {n: torch.zeros_like(point[n]) if o is None else o.detach() for n, o in zip(names, out)}
    return product


def _dot(a: Mapping[str, Tensor], b: Mapping[str, Tensor]) -> Tensor:
    return sum((a[n] * b[n]).sum() for n in a)


def conjugate_gradient(matvec: Callable[[Params], Params], rhs: Mapping[str, Tensor], steps: int,
                       tol: float = 1e-12) -> tuple[Params, list[float]]:
    """Solve ``A x = rhs`` for a symmetric positive definite ``A`` given as ``matvec(x) = A x``.

    ``rhs`` and ``x`` are dicts of tensors (any shapes). At most ``steps`` iterations, from ``x = 0``;
    stops when ``||rhs - A x|| <= tol * ||rhs||``. Returns ``(x, residuals)``, ``residuals[i]`` the
    relative residual ``||rhs - A x|| / ||rhs||`` after iteration ``i + 1``. In exact arithmetic CG
    is exact after as many iterations as ``A`` has distinct eigenvalues.

        >>> A = torch.tensor([[4.0, 1.0], [1.0, 3.0]], dtype=torch.float64)
        >>> x, _ = conjugate_gradient(lambda v: {"x": A @ v["x"]}, {"x": torch.tensor([1.0, 2.0]).double()}, 2)
        >>> x["x"]                                                    # A^{-1} [1, 2] = [1, 7] / 11
        tensor([0.0909, 0.6364], dtype=torch.float64)
    """
    check_int("cg_steps", steps, 1)
    x = {n: torch.zeros_like(t) for n, t in rhs.items()}
    r = {n: t.clone() for n, t in rhs.items()}
    p = {n: t.clone() for n, t in rhs.items()}
    rs, norm = _dot(r, r), _dot(rhs, rhs).sqrt()
    residuals = []
    for _ in range(steps):
        if rs.sqrt() <= tol * norm:
            break
        ap = matvec(p)
        curvature = _dot(p, ap)
        if curvature <= 0:
            raise ValueError(f"conjugate gradient met a direction of curvature {curvature.item():.3g} <= 0: "
                             f"the system is not positive definite (for iMAML: increase lam)")
        alpha = rs / curvature
        x = {n: x[n] + alpha * p[n] for n in x}
        r = {n: r[n] - alpha * ap[n] for n in r}
        rs_new = _dot(r, r)
        residuals.append((rs_new.sqrt() / norm).item())
        p = {n: r[n] + (rs_new / rs) * p[n] for n in p}
        rs = rs_new
    return x, residuals


def implicit_meta_gradient(loss_fn: LossFn, theta: Mapping[str, Tensor], support, query, lam: float,
                           steps: int, lr: float, cg_steps: int = 20) -> tuple[Params, dict]:
    """iMAML's meta-gradient of one task: ``(I + H / lam)^{-1} grad L_query(phi)`` by ``cg_steps`` of CG.

    ``phi = proximal_adapt(theta, ..., steps, lr)`` approximates ``phi*`` (no graph is kept);
    ``H`` is the Hessian of ``loss_fn(., support)`` at ``phi``; ``L_query = loss_fn(., query)``.
    Returns ``(grad, info)``: ``grad`` a dict like ``theta`` (detached); ``info`` holds ``adapted``
    (``phi``), ``query_loss`` (a float), ``residuals`` (CG's relative residuals, see
    ``conjugate_gradient``) and ``stationarity``, the norm of the inner objective's gradient at
    ``phi`` (zero at ``phi*``: check it; a step size too large can leave gradient descent cycling).
    Exact when ``phi = phi*`` and CG has converged: the gradient of ``L_query(phi*(theta))``
    (tested against finite differences).
    """
    lam = check_positive("lam", lam)
    check_int("cg_steps", cg_steps, 1)
    phi = proximal_adapt(theta, loss_fn, support, lam, steps, lr)
    point = {n: t.detach().requires_grad_() for n, t in phi.items()}
    anchor = {n: t.detach() for n, t in theta.items()}
    with torch.enable_grad():
        query_loss = loss_fn(point, query)
        query_grad = dict(zip(point, torch.autograd.grad(query_loss, list(point.values()))))
        inner = torch.autograd.grad(proximal_loss(loss_fn, anchor, lam)(point, support), list(point.values()))
    hvp = hessian_vector_product(loss_fn, phi, support)

    def matvec(v: Params) -> Params:              # (I + H / lam) v
        hv = hvp(v)
        return {n: v[n] + hv[n] / lam for n in v}
    grad, residuals = conjugate_gradient(matvec, query_grad, cg_steps)
    stationarity = torch.cat([g.reshape(-1) for g in inner]).norm().item()
    return grad, {"adapted": phi, "query_loss": query_loss.item(), "residuals": residuals,
                  "stationarity": stationarity}


def unrolled_meta_gradient(loss_fn: LossFn, theta: Mapping[str, Tensor], support, query, lam: float,
                           steps: int, lr: float) -> Params:
    """MAML's meta-gradient of the same objective: back-propagation through ``steps`` proximal steps.

    ``d loss_fn(phi_steps(theta), query) / d theta`` (a dict like ``theta``, detached), where
    ``phi_steps`` is ``proximal_adapt(..., differentiable=True)``: the graph of every inner step is
    kept until the outer backward pass. As ``steps`` grows (and gradient descent converges) it
    approaches ``implicit_meta_gradient``.
    """
    start = {n: t.detach().requires_grad_() for n, t in theta.items()}
    with torch.enable_grad():
        phi = proximal_adapt(start, loss_fn, support, lam, steps, lr, differentiable=True)
        grads = torch.autograd.grad(loss_fn(phi, query), list(start.values()))
    return dict(zip(start, grads))


class _Saved:
    """One tensor autograd saved for a backward pass (an object, so its release can be watched)."""

    def __init__(self, tensor: Tensor) -> None:
        self.tensor = tensor


def peak_graph_bytes(fn: Callable[..., Any], *args, **kwargs) -> tuple[Any, int]:
    """``(fn(*args, **kwargs), bytes)``: the most bytes that autograd graphs held at one moment during ``fn``.

    Counts the distinct storages of the tensors saved for backward passes
    (``torch.autograd.graph.saved_tensors_hooks``) while they are alive: a graph adds its tensors
    when it is built and frees them when a backward pass without ``retain_graph`` has used them or
    the graph is dropped. Tensors that no graph saved (the parameters themselves, results) are not
    counted. ``mllib.diagnostics.saved_tensor_bytes`` counts what is still held at the end instead.

        >>> w = torch.ones(1000, requires_grad=True)                 # 4,000 bytes
        >>> def two_graphs():                                         # the first is freed by its backward
        ...     torch.autograd.grad((w * w).sum(), w)
        ...     return torch.autograd.grad((w * w * w).sum(), w)
        >>> peak_graph_bytes(two_graphs)[1]                           # w and w * w, saved by the second
        8000
    """
    live: dict[tuple[int, int], int] = {}
    total, peak = [0], [0]

    def release(key: tuple[int, int]) -> None:
        live[key] -= 1
        if live[key] == 0:
            del live[key]
            total[0] -= key[1]

    def pack(tensor: Tensor) -> _Saved:
        storage = tensor.untyped_storage()
        key = (storage.data_ptr(), storage.nbytes())
        if key not in live:
            live[key] = 0
            total[0] += key[1]
            peak[0] = max(peak[0], total[0])
        live[key] += 1
        saved = _Saved(tensor)
        weakref.finalize(saved, release, key)
        return saved

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda saved: saved.tensor):
        result = fn(*args, **kwargs)
    return result, peak[0]
