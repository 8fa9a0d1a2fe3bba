"""A learned update rule: a small network, shared by every coordinate, that maps gradients to steps.

Andrychowicz et al. (2016) replaced the hand-designed update of gradient descent by a network
``m_phi`` and trained ``phi`` by gradient descent on the losses along the optimisation trajectory.
This module is that idea at the size of the course's sinusoid learner (``mllib.models.SineMLP``):

* **Coordinate-wise.** Every parameter coordinate ``i`` of the learner is updated from features of
  its own gradient history only, with the same small network for all coordinates:
  ``theta_i <- theta_i + u_i`` with ``u_i = -exp(log_lr) * g_i + output_scale * mlp(f_i)``. Permuting
  the coordinates permutes the updates (tested). ``f_i`` (``FEATURES``) are the gradient and its
  moving averages at three time scales (momentum), each divided by the root of a moving average of
  ``g_i ** 2`` (as Adam does), so the features do not depend on the scale of the loss.
* **Zero-initialised output layer.** The MLP's last layer starts at zero, so an untrained
  ``LearnedOptimizer(lr=a)`` is *exactly* plain SGD with rate ``a`` (tested); meta-training then
  learns what to add to SGD, and the learnable ``log_lr`` what rate to keep.
* **Meta-training by truncated unrolls** (``meta_train_optimizer``): sample tasks, start each
  learner (from a fresh random initialisation or from a given start such as MAML's), apply the
  rule ``horizon`` times on the support set, and after every ``truncation`` steps back-propagate the
  summed query losses of those steps into ``phi`` (Adam), then detach the learner's state and go on.
  With ``truncation == horizon`` (the default) the whole trajectory is differentiated.
  ``first_order=True`` drops the second derivatives through the learner's gradients, as the paper did.

``LearnedRule`` is an update rule like the hand-designed ones of ``mllib.update_rules`` (``SGD``,
``MetaSGD`` for Meta-SGD's learned rates, ``Adam``): ``init(params) -> state`` and
``step(params, grads, state) -> (params, state)``, so ``mllib.inner.adapt`` runs it on a parameter
dict exactly as it runs SGD. Here every rule runs on a flat parameter vector per task,
``theta [T, P]`` (``FlatParams`` converts to and from the model's parameter dict). ``optimize``
runs any rule on a ``TaskBatch`` of sinusoid tasks and returns the query-MSE curves ``[T, steps + 1]``.

Example (a few seconds on a laptop CPU)::

    model, opt = SineMLP(), LearnedOptimizer()
    phi, history = meta_train_optimizer(opt, model, steps=100, horizon=10)
    batch = SinusoidTasks(shots=10, query=100, seed=1).sample(100)
    start = random_starts(model, batch.num_tasks, seed=1)            # [100, 1761]
    curves = optimize(model, LearnedRule(opt, phi), start, batch, steps=10)   # [100, 11]
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

from mllib.arguments import check_decay, check_int, check_positive
from mllib.models import Params
from mllib.tasks import SinusoidTasks
from mllib.tasks.batch import TaskBatch
from mllib.timing import check_max_seconds
from mllib.training_loop import TrainingLoop
from mllib.update_rules import SGD, Adam, MetaSGD, UpdateRule

State = dict[str, Tensor]
FEATURES = ("gradient", "momentum 0.5", "momentum 0.9", "momentum 0.99")


# ----------------------------------------------------------------------------- flat parameters

class FlatParams:
    """The parameters of ``model`` as one flat vector ``[P]`` (names and shapes in model order).

    ``flatten(params_dict) -> [..., P]`` and ``unflatten(flat [P]) -> dict`` (views, differentiable).
    """

    def __init__(self, model: nn.Module) -> None:
        self.names = [n for n, _ in model.named_parameters()]
        self.shapes = [tuple(p.shape) for _, p in model.named_parameters()]
        self.sizes = [math.prod(s) for s in self.shapes]
        self.numel = sum(self.sizes)

    def flatten(self, params: Mapping[str, Tensor]) -> Tensor:
        """A dict of the model's parameters (each optionally with leading dims ``[T]``) -> ``[..., P]``."""
        missing = set(self.names) - set(params)
        if missing:
            raise ValueError(f"params lacks the model's parameters {sorted(missing)}")
        lead = params[self.names[0]].shape[:-len(self.shapes[0])] if self.shapes[0] else ()
        return torch.cat([params[n].reshape(*lead, -1) for n in self.names], -1)

    def unflatten(self, flat: Tensor) -> Params:
        """``[P]`` -> dict name -> tensor of the parameter's shape."""
        if flat.shape[-1] != self.numel:
            raise ValueError(f"flat must have {self.numel} entries in its last dim, got {tuple(flat.shape)}")
        return {n: chunk.reshape(s) for n, s, chunk in zip(self.names, self.shapes, flat.split(self.sizes, -1))}


def random_starts(model: nn.Module, num_tasks: int, seed: int = 0) -> Tensor:
    """``[num_tasks, P]``: one fresh initialisation per task, drawn like ``nn.Linear``'s default.

    Every weight ``[out, in]`` and its bias are uniform in ``+-1/sqrt(in)`` (PyTorch's default for
    linear layers). Only models made of linear layers (``SineMLP``) are supported.
    """
    check_int("num_tasks", num_tasks, 1)
    gen = torch.Generator().manual_seed(int(seed))
    fan_in = {}
    for name, p in model.named_parameters():
        if name.endswith(".weight"):
            if p.dim() != 2:
                raise ValueError(f"random_starts supports linear layers only; {name} has shape {tuple(p.shape)}")
            fan_in[name[: -len("weight")]] = p.shape[1]
    parts = []
    for name, p in model.named_parameters():
        bound = 1 / math.sqrt(fan_in[name.rsplit(".", 1)[0] + "."])
        u = torch.rand(num_tasks, p.numel(), generator=gen, dtype=p.dtype)
        parts.append((2 * u - 1) * bound)
    return torch.cat(parts, 1)


# ----------------------------------------------------------------------------- update rules

# The hand-designed rules (SGD, MetaSGD, Adam) live in mllib.update_rules; every rule takes a
# parameter dict (mllib.inner.adapt) or a flat [T, P] tensor (unroll below) alike.


class LearnedOptimizer(nn.Module):
    """The coordinate-wise update network ``m_phi``: features ``[..., F]`` and gradient -> update ``[...]``.

    ``update = -exp(log_lr) * grad + output_scale * mlp(features)[..., 0]``, with
    ``mlp = Linear(F, hidden), ReLU, Linear(hidden, hidden), ReLU, Linear(hidden, 1)`` and
    ``F = len(FEATURES) = 4``. The last linear layer is initialised to zero (weights and bias), so
    before meta-training the rule is plain SGD at ``lr``.

    Its state per coordinate: moving averages ``m_b`` of the gradient for ``b`` in ``momenta`` and
    ``v`` of the squared gradient (rate ``beta2``, bias-corrected); the features are
    ``[g, m_0.5, m_0.9, m_0.99] / sqrt(v_hat + eps)`` (``features``).
    """

    def __init__(self, hidden: int = 20, lr: float = 0.01, output_scale: float = 0.1,
                 momenta: Sequence[float] = (0.5, 0.9, 0.99), beta2: float = 0.99, eps: float = 1e-8) -> None:
        super().__init__()
        check_int("hidden", hidden, 1)
        lr = check_positive("lr", lr)
        self.output_scale = check_positive("output_scale", output_scale)
        self.momenta = tuple(check_decay(f"momenta[{i}]", b) for i, b in enumerate(momenta))
        if len(self.momenta) != len(FEATURES) - 1:
            raise ValueError(f"momenta must hold {len(FEATURES) - 1} rates (one per momentum feature), "
                             f"got {len(self.momenta)}")
        self.beta2 = check_decay("beta2", beta2)
        self.eps = check_positive("eps", eps)
        self.log_lr = nn.Parameter(torch.tensor(math.log(lr)))
        self.mlp = nn.Sequential(nn.Linear(len(FEATURES), hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, 1))
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    # state and features -------------------------------------------------------------------
    def init_state(self, theta: Tensor) -> State:
        """Zero moving averages for ``theta [..., P]``: ``m [..., P, 3]``, ``v [..., P]``, step ``t``."""
        return {"m": theta.new_zeros(*theta.shape, len(self.momenta)), "v": torch.zeros_like(theta),
                "t": theta.new_zeros(())}

    def advance(self, grad: Tensor, state: State) -> State:
        """The state after seeing ``grad`` (moving averages updated, ``t`` + 1)."""
        betas = grad.new_tensor(self.momenta)
        return {"m": betas * state["m"] + (1 - betas) * grad[..., None],
                "v": self.beta2 * state["v"] + (1 - self.beta2) * grad.square(),
                "t": state["t"] + 1}

    def features(self, grad: Tensor, state: State) -> Tensor:
        """``[..., P, 4]``: gradient and momenta divided by ``sqrt(v_hat + eps)``; ``state`` already advanced."""
        v_hat = state["v"] / (1 - self.beta2 ** state["t"])
        scale = torch.rsqrt(v_hat + self.eps)[..., None]
        return torch.cat([grad[..., None], state["m"]], -1) * scale

    def forward(self, features: Tensor, grad: Tensor) -> Tensor:
        """The update ``[...]`` of every coordinate from its ``features [..., F]`` and ``grad [...]``."""
        if features.shape[-1] != len(FEATURES) or features.shape[:-1] != grad.shape:
            raise ValueError(f"features must be [..., {len(FEATURES)}] matching grad [...]; got "
                             f"{tuple(features.shape)} and {tuple(grad.shape)}")
        return -self.log_lr.exp() * grad + self.output_scale * self.mlp(features)[..., 0]


def _check_phi(phi: Mapping[str, Tensor], optimizer: LearnedOptimizer) -> None:
    """``ValueError`` unless ``phi`` holds exactly ``optimizer``'s parameters, each with its shape (a
    missing entry would silently fall back to the untrained optimizer's weights)."""
    expected = {k: list(v.shape) for k, v in optimizer.named_parameters()}
    problems = [f"missing {', '.join(sorted(set(expected) - set(phi)))}"] if set(expected) - set(phi) else []
    if set(phi) - set(expected):
        problems.append(f"unexpected {', '.join(sorted(set(phi) - set(expected)))}")
    problems += [f"{k} has shape {list(getattr(phi[k], 'shape', []))}, the optimizer's is {expected[k]}"
                 for k in sorted(set(phi) & set(expected)) if list(getattr(phi[k], "shape", [None])) != expected[k]]
    if problems:
        raise ValueError(f"phi does not match the LearnedOptimizer: {'; '.join(problems)} (pass the dict that "
                         f"meta_train_optimizer returned for an optimizer built with the same settings)")


class LearnedRule(UpdateRule):
    """``LearnedOptimizer`` as an update rule, with parameters ``phi`` (a dict; differentiable).

    Like every rule of ``mllib.update_rules`` it takes a parameter dict (``mllib.inner.adapt``) or a
    flat tensor ``[T, P]`` (``unroll``); being coordinate-wise, both give the same numbers.
    """

    def __init__(self, optimizer: LearnedOptimizer, phi: Mapping[str, Tensor] | None = None) -> None:
        self.optimizer = optimizer
        self.phi = dict(optimizer.named_parameters()) if phi is None else dict(phi)
        if phi is not None:
            _check_phi(self.phi, optimizer)

    def init_tensor(self, theta: Tensor) -> State:
        return self.optimizer.init_state(theta)

    def step_tensor(self, theta: Tensor, grad: Tensor, state: State, name: str | None) -> tuple[Tensor, State]:
        state = self.optimizer.advance(grad, state)
        feats = self.optimizer.features(grad, state)
        return theta + functional_call(self.optimizer, self.phi, (feats, grad)), state

    def detach(self) -> "LearnedRule":
        return LearnedRule(self.optimizer, {k: v.detach() for k, v in self.phi.items()})


# ----------------------------------------------------------------------------- running a rule

def _task_losses(model: nn.Module, flat: FlatParams):
    """``(support_grad, query_mse)``, both vmapped over tasks: ``theta [T, P]``, ``x, y [T, K, 1]``."""
    def mse(theta: Tensor, x: Tensor, y: Tensor) -> Tensor:
        return F.mse_loss(functional_call(model, flat.unflatten(theta), (x,)), y)
    return vmap(grad(mse)), vmap(mse)


def unroll(model: nn.Module, rule: UpdateRule, start: Tensor, batch: TaskBatch, steps: int,
           state: State | None = None, first_order: bool = False) -> tuple[Tensor, State, Tensor]:
    """Apply ``rule`` ``steps`` times on each task's support MSE, from ``start [T, P]``.

    Returns ``(theta [T, P], state, query_losses [steps, T])``: the learner after the steps, the
    rule's state (pass it back to continue a truncated unroll) and the query MSE after each step.
    The graph through the steps is kept (differentiable in ``start`` and in the rule's tensors);
    ``first_order=True`` treats the learner's gradients as constants (no second derivatives).
    """
    check_int("steps", steps, 0)
    flat = FlatParams(model)
    if start.dim() != 2 or start.shape != (batch.num_tasks, flat.numel):
        raise ValueError(f"start must be [tasks={batch.num_tasks}, P={flat.numel}], got {tuple(start.shape)}")
    support_grad, query_mse = _task_losses(model, flat)
    theta, state = start, (rule.init(start) if state is None else state)
    losses = []
    for _ in range(steps):
        g = support_grad(theta.detach() if first_order else theta, batch.support_x, batch.support_y)
        theta, state = rule.step(theta, g.detach() if first_order else g, state)
        losses.append(query_mse(theta, batch.query_x, batch.query_y))
    return theta, state, (torch.stack(losses) if losses else start.new_zeros(0, batch.num_tasks))


def optimize(model: nn.Module, rule: UpdateRule, start: Tensor, batch: TaskBatch, steps: int) -> Tensor:
    """Query MSE per task after 0, 1, ..., ``steps`` updates, ``[T, steps + 1]``; builds no graph.

    ``start [T, P]`` (e.g. ``random_starts`` or a meta-learned start expanded with ``expand_start``).
    A diverging run gives ``inf`` or ``nan`` entries (nothing is clipped).
    """
    flat = FlatParams(model)
    with torch.no_grad():
        rule = rule.detach()  # a learned rule evaluates with detached parameters
        _, query_mse = _task_losses(model, flat)
        first = query_mse(start, batch.query_x, batch.query_y)[None]
        _, _, losses = unroll(model, rule, start, batch, steps)
    return torch.cat([first, losses]).T.contiguous()


def expand_start(model: nn.Module, params: Mapping[str, Tensor], num_tasks: int) -> Tensor:
    """A meta-learned start (a parameter dict, e.g. MAML's) as ``[num_tasks, P]`` (detached)."""
    check_int("num_tasks", num_tasks, 1)
    vector = FlatParams(model).flatten({k: v.detach() for k, v in params.items()})
    return vector.expand(num_tasks, -1).clone()


def meta_sgd_rule(model: nn.Module, meta_params: Mapping[str, Tensor]) -> MetaSGD:
    """Meta-SGD's learned rates ``"lr.<name>"`` of ``meta_params`` as a flat ``MetaSGD`` rule (rates ``[P]``)."""
    rates = {k[3:]: v.detach() for k, v in meta_params.items() if k.startswith("lr.")}
    if not rates:
        raise ValueError("meta_params has no Meta-SGD rates 'lr.<name>' (train it with algo='metasgd')")
    return MetaSGD(FlatParams(model).flatten(rates))


def final_mse(curves: Tensor) -> Tensor:
    """The last column of ``optimize``'s curves ``[T, steps + 1]`` -> ``[T]``."""
    return curves[:, -1]


def tune_rate(model: nn.Module, make_rule, rates: Sequence[float], start: Tensor, batch: TaskBatch,
              steps: int) -> tuple[float, dict[float, float]]:
    """The rate of ``rates`` whose rule ``make_rule(rate)`` gives the lowest mean query MSE after ``steps``.

    Use validation tasks (not the test tasks) for ``batch``. Returns ``(best_rate, {rate: mean MSE})``;
    a diverging rate scores ``inf``.
    """
    if not rates:
        raise ValueError("rates must hold at least one learning rate")
    scores = {}
    for rate in rates:
        final = final_mse(optimize(model, make_rule(rate), start, batch, steps))
        mean = float(final.mean())
        scores[float(rate)] = mean if math.isfinite(mean) else math.inf
    return min(scores, key=scores.get), scores


# ----------------------------------------------------------------------------- meta-training

def meta_loss(model: nn.Module, optimizer: LearnedOptimizer, phi: Mapping[str, Tensor], start: Tensor,
              batch: TaskBatch, steps: int, first_order: bool = False) -> Tensor:
    """The meta-objective of one unroll: the query MSE after each of ``steps`` updates, averaged
    over steps and tasks (a scalar, differentiable in ``phi``)."""
    _, _, losses = unroll(model, LearnedRule(optimizer, phi), start, batch, steps, first_order=first_order)
    return losses.mean()


def _check_meta_step(loss: Tensor, phi: Mapping[str, Tensor], step: int, meta_lr: float) -> None:
    """``TrainingDiverged`` when the meta-loss, a gradient of ``phi`` or ``phi`` itself is not finite
    (checked before Adam's step, so ``phi`` keeps its last finite values), as the Omniglot trainer stops."""
    bad = [] if torch.isfinite(loss.detach()) else [f"the meta-loss is {float(loss.detach())}"]
    bad += [f"the gradient of {k} is not finite" for k, v in phi.items()
            if v.grad is not None and not torch.isfinite(v.grad).all()]
    bad += [f"{k} is not finite" for k, v in phi.items() if not torch.isfinite(v.detach()).all()]
    if bad:
        from mllib.train import TrainingDiverged

        raise TrainingDiverged(f"meta-training the optimizer diverged at meta-step {step}: {'; '.join(bad[:3])} "
                               f"(NaN or inf). Try a lower meta_lr (now {meta_lr:g}) or a shorter horizon", step=step)


def _checked_settings(steps: int, meta_batch: int, horizon: int, truncation: int | None, meta_lr: float,
                      max_seconds: float | None) -> tuple[int, float]:
    """``meta_train_optimizer``'s numbers checked (``ValueError`` naming the bad one); returns
    ``(truncation, meta_lr)``, ``truncation`` None becoming ``horizon``."""
    check_int("steps", steps, 0)
    check_max_seconds(max_seconds)
    check_int("meta_batch", meta_batch, 1)
    check_int("horizon", horizon, 1)
    truncation = horizon if truncation is None else check_int("truncation", truncation, 1)
    if truncation > horizon:
        raise ValueError(f"truncation must be in 1..horizon={horizon}, got {truncation}")
    return truncation, check_positive("meta_lr", meta_lr)


def _task_starts(model: nn.Module, start: Mapping[str, Tensor] | None, meta_batch: int, seed: int,
                 step: int) -> Tensor:
    """Every task's flat start ``[meta_batch, P]``: ``start`` repeated, or when it is None fresh random
    initialisations drawn from ``seed`` and the meta-step ``step``."""
    if start is None:
        return random_starts(model, meta_batch, seed=seed * 1_000_003 + step)
    return expand_start(model, start, meta_batch)


def meta_train_optimizer(
    optimizer: LearnedOptimizer,
    model: nn.Module,
    start: Mapping[str, Tensor] | None = None,
    steps: int = 500,
    meta_batch: int = 16,
    horizon: int = 10,
    truncation: int | None = None,
    meta_lr: float = 3e-3,
    shots: int = 10,
    query: int = 10,
    tasks: SinusoidTasks | None = None,
    first_order: bool = False,
    seed: int = 0,
    progress: bool = True,
    max_seconds: float | None = None,
) -> tuple[Params, dict[str, list]]:
    """Meta-train the update rule ``optimizer`` on sinusoid tasks; returns ``(phi, history)``.

    Each of the ``steps`` meta-steps samples ``meta_batch`` tasks (``shots`` support, ``query`` query
    points; or from ``tasks``, any sampler with ``sample(n) -> TaskBatch``), starts every task's
    learner ``model`` from ``start`` (a parameter dict, e.g. MAML's meta-learned start) or, when
    ``start`` is None, from a fresh random initialisation per task (``random_starts``), and runs the
    rule for ``horizon`` steps. Every ``truncation`` steps (default: ``horizon``, i.e. no
    truncation) the mean query MSE of those steps is back-propagated into ``phi`` and Adam
    (``meta_lr``) takes a step; the learner and the rule's state are then detached and continue.

    ``phi`` is a dict of detached tensors (the optimizer module's parameters are updated in place too).
    ``history``: ``"loss"``, the mean query MSE over the unroll, per ``"step"`` (``mllib.training_loop``):
    Ctrl-C stops after the current meta-step (``"interrupted"``) and ``max_seconds``, a wall-clock budget,
    before a meta-step would overrun it (``"stopped"``). A meta-loss or a gradient that is not finite
    stops it with ``mllib.train.TrainingDiverged`` (before the step that would spoil ``phi``).
    """
    truncation, meta_lr = _checked_settings(steps, meta_batch, horizon, truncation, meta_lr, max_seconds)
    tasks = SinusoidTasks(shots=shots, query=query, seed=seed) if tasks is None else tasks
    phi = dict(optimizer.named_parameters())
    adam = torch.optim.Adam(phi.values(), lr=meta_lr)
    rule = LearnedRule(optimizer, phi)
    with TrainingLoop(steps, "meta-train optimizer", progress=progress, max_seconds=max_seconds,
                      what="meta-steps") as loop:
        for step in loop:
            batch = tasks.sample(meta_batch)
            theta = _task_starts(model, start, meta_batch, seed, step)
            state, done, total = rule.init(theta), 0, 0.0
            while done < horizon:   # an Adam step on phi every `truncation` steps of the learner
                k = min(truncation, horizon - done)
                theta, state, losses = unroll(model, rule, theta, batch, k, state=state, first_order=first_order)
                loss = losses.mean()
                adam.zero_grad()
                loss.backward()
                _check_meta_step(loss, phi, step, meta_lr)
                adam.step()
                theta, state = theta.detach(), {n: v.detach() for n, v in state.items()}
                total += float(loss.detach()) * k
                done += k
            loop.log(loss=total / horizon)
    return {k: v.detach().clone() for k, v in phi.items()}, loop.history


__all__ = ["FEATURES", "FlatParams", "random_starts", "UpdateRule", "SGD", "Adam", "MetaSGD",
           "LearnedOptimizer", "LearnedRule", "unroll", "optimize", "expand_start", "meta_sgd_rule",
           "final_mse", "tune_rate", "meta_loss", "meta_train_optimizer"]
