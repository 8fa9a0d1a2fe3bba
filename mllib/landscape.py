"""The MAML picture in two dimensions: a sinusoid family whose every task's loss can be drawn (notebook 04).

The model has exactly the two parameters of the task family, ``params = (amplitude, phase)``::

    f(x; params) = params[0] * sin(x - params[1])

so task ``y = A sin(x - phi)`` (``mllib.tasks.SinusoidTasks``) has its optimum at ``(A, phi)`` and its
loss is a surface over the plane that can be drawn as contours. In that plane:

* the **joint-training start** minimises the average loss over tasks; the mean task is
  ``E[A sin(x - phi)] = (2 E[A] / pi) sin(x - pi / 2)``, so it converges to about ``(1.62, pi / 2)``;
* the **MAML start** minimises the average query loss *after one SGD step* of size ``inner_lr`` on
  each task's support set: where it sits depends on ``inner_lr``.

Functions (``params`` is a tensor ``[2]``; a task's ``x, y`` are ``[K]`` or ``[K, 1]``):

* ``wave(params, x)``, ``task_loss(params, x, y)``: the model and a task's mean squared error;
* ``adapt_step(params, x, y, inner_lr)``: one SGD step on a task's support set (``torch.func.grad``);
* ``loss_surface(amplitudes, phases, x, y)``: the loss on a grid, ``[len(phases), len(amplitudes)]``;
* ``post_step_losses(params, batch, inner_lr)``: each task's query loss after one step, ``[T]``;
* ``train_start(kind, ...)``: Adam on the start, ``"joint"`` or ``"maml"``; returns the start and
  its trajectory ``[steps + 1, 2]``. A few hundred steps take about a second on a CPU.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.func import grad, vmap

from mllib.arguments import check_choice, check_int, check_positive
from mllib.tasks import SinusoidTasks
from mllib.tasks.batch import TaskBatch

KINDS = ("joint", "maml")
JOINT_OPTIMUM = (2 * (0.1 + 5) / 2 / math.pi, math.pi / 2)   # (2 E[A] / pi, pi / 2) for A ~ U[0.1, 5]


def _flat(t: Tensor) -> Tensor:
    return t.reshape(t.shape[0], -1)[:, 0] if t.dim() == 2 else t


def wave(params: Tensor, x: Tensor) -> Tensor:
    """``params[0] * sin(x - params[1])`` for ``x`` of any shape."""
    return params[0] * torch.sin(x - params[1])


def task_loss(params: Tensor, x: Tensor, y: Tensor) -> Tensor:
    """A task's mean squared error (scalar); ``x, y [K]`` or ``[K, 1]``."""
    return ((wave(params, _flat(x)) - _flat(y)) ** 2).mean()


def adapt_step(params: Tensor, x: Tensor, y: Tensor, inner_lr: float) -> Tensor:
    """One SGD step of size ``inner_lr`` on the task ``(x, y)``: ``params - inner_lr * grad``, ``[2]``."""
    return params - inner_lr * grad(task_loss)(params, x, y)


def loss_surface(amplitudes: Tensor, phases: Tensor, x: Tensor, y: Tensor) -> Tensor:
    """``task_loss`` at every grid point: ``[len(phases), len(amplitudes)]`` (rows: phase)."""
    grid = torch.stack(torch.meshgrid(amplitudes, phases, indexing="xy"), -1)       # [P, A, 2]
    return vmap(vmap(task_loss, (0, None, None)), (0, None, None))(grid, x, y)


def _task_tensors(batch: TaskBatch) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    return tuple(t.reshape(t.shape[0], -1) for t in (batch.support_x, batch.support_y, batch.query_x,
                                                     batch.query_y))


def post_step_losses(params: Tensor, batch: TaskBatch, inner_lr: float) -> Tensor:
    """Query loss of every task of ``batch`` after one SGD step on its support set, ``[T]``.

    ``inner_lr=0`` gives the query losses of ``params`` itself (no adaptation).
    """
    sx, sy, qx, qy = _task_tensors(batch)

    def one(x, y, x_query, y_query):
        return task_loss(adapt_step(params, x, y, inner_lr), x_query, y_query)

    return vmap(one)(sx, sy, qx, qy)


def train_start(kind: str = "maml", inner_lr: float = 0.1, steps: int = 600, meta_batch: int = 25,
                shots: int = 10, lr: float = 0.02, init: tuple[float, float] = (0.5, 2.5),
                seed: int = 0) -> tuple[Tensor, Tensor]:
    """Train the start with Adam on ``steps`` meta-batches of ``meta_batch`` tasks.

    The rate falls linearly from ``lr`` to ``lr / 20``, so the end point is the optimum rather than a
    noisy step around it (with a constant rate, the last start wobbles by about 0.1 around it).

    ``kind="maml"``: minimise the query loss after one SGD step of size ``inner_lr`` on the support
    set (the exact, second-order meta-gradient: two parameters make it cheap). ``kind="joint"``:
    minimise the loss on the support and query points of all tasks together, ignoring ``inner_lr``.
    Tasks come from ``SinusoidTasks(shots, shots, seed)``, so both kinds see the same tasks.
    Returns ``(start [2], trajectory [steps + 1, 2])`` (the trajectory begins at ``init``).
    """
    check_choice("kind", kind, KINDS)
    for name, value in (("steps", steps), ("meta_batch", meta_batch), ("shots", shots)):
        check_int(name, value, 1)
    for name, value in (("inner_lr", inner_lr), ("lr", lr)):
        check_positive(name, value)
    params = torch.tensor(init, dtype=torch.float32, requires_grad=True)
    optimizer = torch.optim.Adam([params], lr=lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 - 0.95 * step / steps)
    tasks = SinusoidTasks(shots=shots, query=shots, seed=seed)
    trajectory = [params.detach().clone()]
    for _ in range(steps):
        batch = tasks.sample(meta_batch)
        if kind == "maml":
            loss = post_step_losses(params, batch, inner_lr).mean()
        else:
            sx, sy, qx, qy = _task_tensors(batch)
            loss = task_loss(params, torch.cat([sx, qx], 1).reshape(-1), torch.cat([sy, qy], 1).reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        trajectory.append(params.detach().clone())
    return params.detach().clone(), torch.stack(trajectory)
