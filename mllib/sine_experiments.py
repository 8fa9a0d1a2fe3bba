"""Sinusoid regression experiments: fixed biases versus a learned start (notebooks 01, 03, 04, 06).

Every task is ``y = A sin(x - phase)`` (``mllib.tasks.SinusoidTasks``); the learner is
``mllib.models.SineMLP`` used through parameter dicts. This module holds the small pieces the
notebooks share, built on the tested algorithms (it does not re-implement them):

* ``meta_train_sinusoid``: meta-train a start with ``mllib.algorithms.meta_step``
  (MAML, FOMAML, Reptile, Meta-SGD, ANIL) and Adam. Returns ``(model, meta_params, history)``.
* ``pretrain_sinusoid``: the non-meta baseline of the MAML paper: one network regressed on
  points of all tasks jointly. It learns the mean task, ``E[A sin(x - phase)] = -(2 E[A] / pi) cos x``
  (about ``-1.62 cos x`` for ``A ~ U[0.1, 5]``, ``phase ~ U[0, pi]``: half a period of phases does not
  cancel), a compromise that fits no task and fine-tunes slowly from few shots.
* ``adapt_sine_learner``: a few SGD steps on one task's support set from a start (no graph).
* ``adaptation_curve``: query MSE after 0, 1, ..., ``steps`` SGD steps ``[steps + 1]``;
  ``support_query_curves``: the support and the query MSE of every task along those steps.
* ``fit_polynomial`` / ``polyval`` / ``polynomial_mse``: least-squares polynomials, a hand-designed
  fixed bias, and their per-task query MSE.

Defaults come from the profile (``mllib.config``): ``sine_meta_steps``, ``sine_meta_batch``,
``sine_shots``, ``sine_inner_lr``. Everything is seeded: a call with the same arguments gives
the same numbers on the same device.

Example (a few seconds on a laptop CPU)::

    model, start, history = meta_train_sinusoid("maml", steps=300, seed=0)
    batch = SinusoidTasks(shots=10, query=100, seed=1).sample(50)
    adaptation_curve(model, start, batch, steps=10, lr=0.01)     # tensor [11], decreasing
"""
from __future__ import annotations

from typing import Mapping

import torch
from torch import Tensor, nn
from torch.func import vmap

from mllib.algorithms import (ALGORITHMS, MetaConfig, init_meta_params, meta_step,
                              split_meta_params, support_loss_fn)
from mllib.arguments import check_choice, check_int, check_positive
from mllib.config import resolve_profile
from mllib.device import cpu_threads
from mllib.inner import adapt
from mllib.models import Params, SineMLP, call_model, load_into_model, params_of
from mllib.tasks import SinusoidTasks
from mllib.tasks.batch import TaskBatch
from mllib.timing import check_max_seconds
from mllib.training_loop import TrainingLoop

SINE_ALGORITHMS = tuple(a for a in ALGORITHMS if a != "protonet")


def _seeded_model(seed: int) -> SineMLP:
    """A fresh ``SineMLP`` initialised from ``seed`` without touching the global random state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return SineMLP()


def _sine_threads(device: torch.device) -> int | None:
    """One intra-op CPU thread for the sinusoid network (``None``, torch's setting, elsewhere).

    Its 40-unit layers are tiny: splitting their matrix products over threads only adds
    synchronisation. Measured on a busy 2-core CPU: 6-10x faster with one thread than with two.
    """
    return 1 if device.type == "cpu" else None


def _sine_defaults(steps: int | None, batch: int | None, shots: int | None,
                   batch_name: str = "meta_batch") -> tuple[int, int, int]:
    """``steps``, ``batch``, ``shots`` checked; each ``None`` takes the profile's ``sine_meta_steps``,
    ``sine_meta_batch``, ``sine_shots`` (``resolve_profile()``, i.e. ``$MLLIB_PROFILE``)."""
    profile = resolve_profile() if None in (steps, batch, shots) else None
    return (check_int("steps", profile.sine_meta_steps if steps is None else steps, 0),
            check_int(batch_name, profile.sine_meta_batch if batch is None else batch, 1),
            check_int("shots", profile.sine_shots if shots is None else shots, 1))


# ----------------------------------------------------------------------------- training

def meta_train_sinusoid(
    algo: str = "maml",
    steps: int | None = None,
    meta_batch: int | None = None,
    shots: int | None = None,
    inner_lr: float | None = None,
    meta_lr: float = 1e-3,
    inner_steps: int = 1,
    seed: int = 0,
    model: nn.Module | None = None,
    query: int | None = None,
    device: torch.device | str = "cpu",
    form: str = "vmap",
    progress: bool = True,
    max_seconds: float | None = None,
) -> tuple[nn.Module, Params, dict[str, list]]:
    """Meta-train a sinusoid regressor's start; returns ``(model, meta_params, history)``.

    Each of the ``steps`` outer updates samples ``meta_batch`` tasks (``shots`` support and ``query`` query
    points each, ``x, y [meta_batch, shots, 1]``), takes ``mllib.algorithms.meta_step``: the meta-gradient
    (``inner_steps`` SGD steps at ``inner_lr`` inside) and one Adam step at ``meta_lr`` on the meta-parameters.

    * ``algo``: ``maml``, ``fomaml``, ``reptile``, ``metasgd`` or ``anil``.
    * ``steps``, ``meta_batch``, ``shots``, ``inner_lr``: ``None`` takes the profile's
      ``sine_meta_steps``, ``sine_meta_batch``, ``sine_shots``, ``sine_inner_lr``
      (``resolve_profile()``, i.e. ``$MLLIB_PROFILE``). ``query`` defaults to ``shots``.
    * ``model``: a ``SineMLP`` (or any 1 -> 1 regressor) to start from; default a fresh ``SineMLP``
      initialised from ``seed``. The returned model is the same object holding the meta-learned parameters
      (``mllib.models.load_into_model``, the rule ``meta_train`` follows too), so passing it back
      continues training (Adam's state starts afresh; tasks are drawn from ``seed`` again).
    * ``seed``: seeds the model's initialisation (when ``model`` is None) and the tasks.
    * ``form``: ``meta_gradient``'s form. ``"vmap"`` by default, even on a CPU: for this tiny
      MLP one batched pass is 4-10x faster than a loop over tasks (measured on a 2-core CPU).

    ``meta_params``: detached tensors (Meta-SGD adds ``"lr.<name>"`` rates). ``history``: ``"loss"``, the
    mean query MSE after adaptation of every meta-batch, per ``"step"`` (``mllib.training_loop``): Ctrl-C
    stops after the current step (``"interrupted"``) and ``max_seconds``, a wall-clock budget, before a
    step would overrun it (``"stopped"``); either way it returns what was learned so far.
    """
    check_choice("algo", algo, SINE_ALGORITHMS)
    check_max_seconds(max_seconds)
    steps, meta_batch, shots = _sine_defaults(steps, meta_batch, shots)
    query = check_int("query", shots if query is None else query, 1)
    inner_lr = check_positive("inner_lr", resolve_profile().sine_inner_lr if inner_lr is None else inner_lr)
    meta_lr = check_positive("meta_lr", meta_lr)
    inner_steps = check_int("inner_steps", inner_steps, 0)
    device = torch.device(device)
    model = (_seeded_model(seed) if model is None else model).to(device)
    cfg = MetaConfig(algo=algo, inner_steps=inner_steps, inner_lr=inner_lr, form=form)
    meta_params = init_meta_params(model, cfg)
    optimizer = torch.optim.Adam(meta_params.values(), lr=meta_lr)
    tasks = SinusoidTasks(shots=shots, query=query, seed=seed)
    loop = TrainingLoop(steps, f"meta-train {algo}", progress=progress, max_seconds=max_seconds,
                        what="meta-steps", show_every=50)
    with cpu_threads(_sine_threads(device)), loop:
        for _ in loop:
            _, stats = meta_step(model, meta_params, tasks.sample(meta_batch).to(device), cfg, optimizer)
            loop.log(loss=stats["loss"])
    result = {k: v.detach() for k, v in meta_params.items()}
    return load_into_model(model, result), result, loop.history


def pretrain_sinusoid(
    steps: int | None = None,
    batch: int | None = None,
    seed: int = 0,
    lr: float = 1e-3,
    shots: int | None = None,
    model: nn.Module | None = None,
    device: torch.device | str = "cpu",
    progress: bool = True,
    max_seconds: float | None = None,
) -> tuple[nn.Module, Params]:
    """The non-meta baseline: one regressor trained on all tasks jointly; ``(model, params)``.

    Every one of the ``steps`` Adam steps (rate ``lr``) samples ``batch`` tasks and minimises
    the MSE on all their points at once (``shots`` support + ``shots`` query points per task,
    ``x, y [batch * 2 * shots, 1]``), ignoring which task a point came from. This is
    "pre-training on all tasks" in the MAML paper. The squared error is smallest at the mean
    target, so it learns the mean task ``E[A] * E[sin(x - phase)] = -(2 E[A] / pi) cos x`` (phases
    uniform on ``[0, pi]``, half a period, do not cancel: about ``-1.62 cos x`` for ``A ~ U[0.1, 5]``),
    which fits no single task and fine-tunes slowly from few shots.

    ``steps``, ``batch``, ``shots`` default to the profile's ``sine_meta_steps``,
    ``sine_meta_batch`` and ``sine_shots`` (the same task budget as ``meta_train_sinusoid``).
    ``model`` defaults to a ``SineMLP`` initialised from ``seed``. Returns the model (with the
    trained parameters) and ``params_of(model)`` (a dict of leaf tensors). ``max_seconds``: a
    wall-clock budget, as in :func:`meta_train_sinusoid`.
    """
    check_max_seconds(max_seconds)
    steps, batch, shots = _sine_defaults(steps, batch, shots, batch_name="batch")
    lr = check_positive("lr", lr)
    device = torch.device(device)
    model = (_seeded_model(seed) if model is None else model).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    tasks = SinusoidTasks(shots=shots, query=shots, seed=seed)
    loop = TrainingLoop(steps, "pre-train", progress=progress, max_seconds=max_seconds, what="pre-training steps")
    with cpu_threads(_sine_threads(device)), loop:
        for _ in loop:
            b = tasks.sample(batch).to(device)
            x = torch.cat([b.support_x, b.query_x], 1).reshape(-1, 1)
            y = torch.cat([b.support_y, b.query_y], 1).reshape(-1, 1)
            loss = torch.nn.functional.mse_loss(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model, params_of(model)


# ----------------------------------------------------------------------------- adaptation

def adapt_sine_learner(model: nn.Module, params: Mapping[str, Tensor], support_x: Tensor, support_y: Tensor,
                       steps: int, lr: float) -> Params:
    """``steps`` SGD steps at ``lr`` on one task's support MSE (``support_x, support_y [K, 1]``).

    No autograd graph is built; returns detached adapted parameters (same keys as ``params``;
    Meta-SGD rates ``"lr.*"`` in ``params`` are used as the step sizes instead of ``lr``).
    """
    check_int("steps", steps, 0)
    lr = check_positive("lr", lr)
    weights, rates = split_meta_params(params)
    return adapt(weights, support_loss_fn(model), (support_x, support_y), steps,
                 rates if rates is not None else lr, evaluation=True)


def support_query_curves(model: nn.Module, params: Mapping[str, Tensor], task_batch: TaskBatch, steps: int,
                         lr: float) -> tuple[Tensor, Tensor]:
    """Support and query MSE of every task after 0, 1, ..., ``steps`` SGD steps on its support set.

    ``task_batch``: sinusoid tasks (``support_x [T, K, 1]``, ``query_x [T, Q, 1]``, float ``y``).
    Each task starts from ``params`` and takes plain SGD steps at ``lr`` on its support MSE
    (Meta-SGD rates ``"lr.*"`` in ``params`` replace ``lr``). Builds no graph; the tasks
    are processed together with ``torch.func.vmap``.
    Returns ``(support, query)``, each ``[T, steps + 1]`` (entry ``[t, k]``: task ``t`` after ``k`` steps).
    """
    check_int("steps", steps, 0)
    lr = check_positive("lr", lr)
    if not torch.is_floating_point(task_batch.query_y):
        raise ValueError("task_batch must hold regression tasks (float labels), got integer labels")
    weights, rates = split_meta_params(params)
    weights = {k: v.detach() for k, v in weights.items()}
    rates = lr if rates is None else {k: v.detach() for k, v in rates.items()}
    loss_fn = support_loss_fn(model)

    def one_task(support_x: Tensor, support_y: Tensor, query_x: Tensor, query_y: Tensor) -> tuple[Tensor, Tensor]:
        current, support, query = weights, [], []
        for k in range(steps + 1):
            if k > 0:
                current = adapt(current, loss_fn, (support_x, support_y), 1, rates, evaluation=True)
            support.append(loss_fn(current, (support_x, support_y)))
            query.append(torch.nn.functional.mse_loss(call_model(model, current, query_x), query_y))
        return torch.stack(support), torch.stack(query)

    with torch.no_grad(), cpu_threads(_sine_threads(task_batch.query_x.device)):
        return vmap(one_task)(*task_batch.tensors())


def adaptation_curve(model: nn.Module, params: Mapping[str, Tensor], task_batch: TaskBatch, steps: int,
                     lr: float, per_task: bool = False) -> Tensor:
    """Query MSE after 0, 1, ..., ``steps`` SGD steps on the support set, averaged over tasks.

    The query half of :func:`support_query_curves` (same arguments, same adaptation).
    Returns ``[steps + 1]`` (entry ``k`` = mean query MSE after ``k`` steps), or ``[T, steps + 1]``
    with ``per_task=True``.
    """
    _, curves = support_query_curves(model, params, task_batch, steps, lr)         # [T, steps + 1]
    return curves if per_task else curves.mean(0)


# ----------------------------------------------------------------------------- fixed biases

def fit_polynomial(x: Tensor, y: Tensor, degree: int) -> Tensor:
    """Least-squares polynomial coefficients ``[degree + 1]`` (constant term first), float64.

    ``x, y``: ``[K]`` or ``[K, 1]``. Minimises ``sum_i (sum_d c_d x_i^d - y_i)^2``; with fewer
    points than coefficients it returns the minimum-norm solution (``torch.linalg.lstsq``, gelsd).
    """
    check_int("degree", degree, 0)
    x, y = x.detach().reshape(-1).double().cpu(), y.detach().reshape(-1).double().cpu()
    if x.numel() != y.numel() or x.numel() == 0:
        raise ValueError(f"x and y must hold the same number (>= 1) of points, got {x.numel()} and {y.numel()}")
    design = x[:, None] ** torch.arange(degree + 1, dtype=torch.float64)          # [K, degree + 1]
    return torch.linalg.lstsq(design, y[:, None], driver="gelsd").solution[:, 0]


def polyval(coefficients: Tensor, x: Tensor) -> Tensor:
    """``sum_d coefficients[d] * x ** d`` with ``x`` of any shape (float64 result, shape of ``x``)."""
    powers = torch.arange(coefficients.numel(), dtype=torch.float64)
    return (x.double()[..., None] ** powers * coefficients.double()).sum(-1)


def polynomial_mse(task_batch: TaskBatch, degree: int) -> Tensor:
    """Per-task query MSE ``[T]`` (float64) of the least-squares polynomial of ``degree`` fitted to
    each task's support set (``fit_polynomial``): the fixed bias "a polynomial of degree d"."""
    check_int("degree", degree, 0)
    errors = []
    for support_x, support_y, query_x, query_y in task_batch:
        prediction = polyval(fit_polynomial(support_x, support_y, degree), query_x.detach().cpu().reshape(-1))
        errors.append((prediction - query_y.detach().cpu().reshape(-1).double()).square().mean())
    return torch.stack(errors)


__all__ = ["meta_train_sinusoid", "pretrain_sinusoid", "adapt_sine_learner", "adaptation_curve",
           "support_query_curves", "fit_polynomial", "polyval", "polynomial_mse", "SINE_ALGORITHMS"]
