"""MAML for policies: the inner policy-gradient step, the meta-gradient, training and evaluation.

Inner loop (内循环): for task ``i`` sample ``episodes`` episodes ``tau_i`` with the meta-learned
policy ``theta`` and take one policy-gradient step on them,
``theta'_i = theta - alpha grad L_i(theta; tau_i)`` (``mllib.rl.losses.reinforce_loss`` with a
leave-one-out baseline), using ``mllib.inner.adapt``. Outer loop (外循环): sample fresh episodes
``tau'_i`` with every ``theta'_i`` and climb the gradient of their expected return. The objective
is ``F(theta) = mean_i E_{tau_i ~ pi_theta} E_{tau'_i ~ pi_theta'_i}[R(tau'_i)]``.

Outer-gradient estimators (``estimator``), all returned as the gradient of a surrogate loss:

* ``"second_order"`` (unbiased for ``grad F``): two parts. (1) Through the inner step:
  ``(d theta'_i / d theta)^T grad J_i(theta'_i)``, differentiating the inner gradient with the
  episodes ``tau_i`` held fixed (second derivatives of ``reinforce_loss``). (2) Through the
  sampling of ``tau_i``: the score ``sum grad log pi_theta(tau_i)`` times the post-update return,
  with the mean post-update return of the *other* tasks as a baseline. Part (2) is what DiCE's
  "magic box" on the pre-update log-likelihoods gives (Foerster et al. 2018). Putting a magic box
  inside the inner loss as well would count this dependence twice.
* ``"no_sampling_term"``: part (1) only; biased (the term left out is the one E-MAML and ProMP
  pointed out), lower variance.
* ``"first_order"``: only ``grad J_i`` at ``theta'_i`` (REINFORCE on the post-update episodes),
  treating the inner step as a constant shift (first-order MAML); biased, lowest variance and cost.

The outer optimiser is Adam (the MAML paper used TRPO). ``meta_train`` and ``pretrain_joint``
(the non-meta baseline: one policy trained on all goals at once) are interruptible and resumable.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import torch
from torch import Tensor, nn
from torch.func import vmap

from mllib.arguments import check_positive
from mllib.timing import check_max_seconds
from mllib.training_loop import TrainingLoop
from mllib.inner import adapt
from mllib.models import Params

from .env import PointNavigation
from .losses import policy_loss_fn
from .policy import log_probs
from .rollout import Episodes, rollout

ESTIMATORS = ("second_order", "no_sampling_term", "first_order")


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return value


def _non_negative_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    return value


def _check_estimator(estimator: str) -> None:
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {', '.join(ESTIMATORS)}; got {estimator!r}")


# ----------------------------------------------------------------------------- inner loop
def adapt_policies(policy: nn.Module, params: Mapping[str, Tensor], episodes: Episodes, lr: float,
                   steps: int = 1, first_order: bool = False, evaluation: bool = False,
                   per_task: bool = False) -> Params:
    """One adapted policy per task: ``steps`` policy-gradient steps on that task's ``episodes``.

    ``episodes``: ``[tasks, episodes, horizon, ...]``. Returns a dict of ``[tasks, ...]`` tensors.
    ``params``: one policy for all tasks, or (``per_task=True``) one per task ``[tasks, ...]``.
    ``first_order`` and ``evaluation`` as in ``mllib.inner.adapt`` (the graph through the inner
    gradient is kept unless one of them is set).
    """
    check_positive("lr", lr)
    loss_fn = policy_loss_fn(policy)

    def one_task(p: Params, ep: Episodes) -> Params:
        return adapt(p, loss_fn, ep, steps, lr, first_order=first_order, evaluation=evaluation)

    return vmap(one_task, in_dims=(0 if per_task else None, 0))(dict(params), episodes)


# ----------------------------------------------------------------------------- outer loop
def sample_meta_batch(policy: nn.Module, params: Mapping[str, Tensor], env: PointNavigation, goals: Tensor,
                      episodes: int, lr: float, generator: torch.Generator | None = None) -> tuple[Episodes, Episodes]:
    """``(pre, post)``: episodes of ``params`` on every goal, and of the policy adapted on them."""
    pre = rollout(policy, params, env, goals, episodes, generator)
    adapted = adapt_policies(policy, params, pre, lr, evaluation=True)
    return pre, rollout(policy, adapted, env, goals, episodes, generator, per_task=True)


def meta_surrogate(policy: nn.Module, params: Mapping[str, Tensor], pre: Episodes, post: Episodes, lr: float,
                   estimator: str = "first_order") -> Tensor:
    """A scalar whose gradient with respect to ``params`` is the meta-gradient estimate (to descend).

    ``pre``, ``post``: from ``sample_meta_batch`` with the same ``params`` and ``lr``. Only its
    gradient means something (see the module docstring for the estimators), not its value.
    """
    _check_estimator(estimator)
    adapted = adapt_policies(policy, params, pre, lr, first_order=estimator == "first_order")
    loss = policy_loss_fn(policy, per_task=True)(adapted, post)
    if estimator == "second_order":
        # the score of the pre-update episodes (value 0: log pi_theta - log pi at sampling time) ...
        score = (log_probs(policy, params, pre.observations, pre.actions) - pre.log_probs).sum((1, 2))  # [tasks]
        post_return = post.returns().mean(1)                                                            # [tasks]
        tasks = post_return.shape[0]
        baseline = (post_return.sum() - post_return) / (tasks - 1) if tasks > 1 else torch.zeros_like(post_return)
        # ... times the advantage of the task's post-update return (a constant)
        loss = loss - (score * (post_return - baseline).detach()).mean()
    return loss


def meta_gradient(policy: nn.Module, params: Mapping[str, Tensor], env: PointNavigation, goals: Tensor,
                  episodes: int, lr: float, estimator: str = "first_order",
                  generator: torch.Generator | None = None) -> tuple[Params, dict]:
    """Meta-gradient estimate (of the loss, minus the return) for the tasks ``goals [tasks, 2]``.

    Returns ``(grads, stats)``: ``grads`` has the keys of ``params``; ``stats`` the mean return
    before (``"return_before"``) and after (``"return_after"``) the inner step.
    """
    _check_estimator(estimator)
    _positive_int("episodes", episodes)
    params = {k: v.detach().requires_grad_(True) for k, v in params.items()}
    pre, post = sample_meta_batch(policy, params, env, goals, episodes, lr, generator)
    loss = meta_surrogate(policy, params, pre, post, lr, estimator)
    grads = dict(zip(params, torch.autograd.grad(loss, list(params.values()))))
    return grads, {"return_before": float(pre.returns().mean()), "return_after": float(post.returns().mean())}


def joint_gradient(policy: nn.Module, params: Mapping[str, Tensor], env: PointNavigation, goals: Tensor,
                   episodes: int, generator: torch.Generator | None = None) -> tuple[Params, dict]:
    """Policy gradient of the mean return over all ``goals`` (the pre-training baseline), no adaptation."""
    _positive_int("episodes", episodes)
    params = {k: v.detach().requires_grad_(True) for k, v in params.items()}
    batch = rollout(policy, params, env, goals, episodes, generator)
    loss = policy_loss_fn(policy)(params, batch)
    grads = dict(zip(params, torch.autograd.grad(loss, list(params.values()))))
    return grads, {"return": float(batch.returns().mean())}


# ----------------------------------------------------------------------------- training
@dataclass
class TrainRun:
    """The state of a (meta-)training run; pass it back as ``resume=`` to continue it.

    ``params``: detached parameters; ``history``: lists per iteration (``"iteration"`` and the
    returns); ``iterations_done``; ``interrupted``: Ctrl-C stopped it early; ``stopped``: its
    time budget (``max_seconds``) stopped it early.
    """

    params: Params
    history: dict[str, list]
    optimizer_state: dict
    generator_state: Tensor
    iterations_done: int = 0
    interrupted: bool = False
    settings: dict = field(default_factory=dict)
    stopped: bool = False


def _train(gradient: Callable[[Params, Tensor, torch.Generator], tuple[Params, dict]], policy: nn.Module,
           env: PointNavigation, iterations: int, meta_batch: int, lr: float, seed: int,
           resume: TrainRun | None, progress: bool, settings: dict, desc: str,
           max_seconds: float | None = None) -> TrainRun:
    _non_negative_int("iterations", iterations)
    check_max_seconds(max_seconds)
    _positive_int("meta_batch", meta_batch)
    check_positive("meta_lr", lr)
    if resume is not None and resume.settings != settings:
        raise ValueError(f"resume comes from a run with other settings: {resume.settings} != {settings}")
    dtype = next(policy.parameters()).dtype
    if resume is None:
        params = {k: v.detach().clone() for k, v in policy.named_parameters()}
        generator = torch.Generator().manual_seed(seed)
        run = TrainRun(params, {"iteration": []}, {}, generator.get_state(), settings=settings)
    else:
        run = copy.deepcopy(resume)
        run.interrupted = run.stopped = False
        generator = torch.Generator()
        generator.set_state(run.generator_state)
    params = {k: v.clone().requires_grad_(True) for k, v in run.params.items()}
    optimizer = torch.optim.Adam(params.values(), lr=lr)
    if run.optimizer_state:
        optimizer.load_state_dict(run.optimizer_state)
    with TrainingLoop(iterations, desc, progress=progress, max_seconds=max_seconds, what="iterations", keys=(),
                      done=run.iterations_done) as loop:
        for iteration in loop:
            goals = env.sample_goals(meta_batch, generator, dtype)
            grads, stats = gradient(params, goals, generator)
            _check_finite(grads, stats, desc, iteration, settings)
            for name, p in params.items():
                p.grad = grads[name]
            optimizer.step()
            _check_finite(params, {}, desc, iteration, settings, what="parameter")
            run.iterations_done = iteration
            run.history["iteration"].append(iteration)
            for key, value in stats.items():
                run.history.setdefault(key, []).append(value)
    run.interrupted, run.stopped = loop.interrupted, loop.stopped
    run.params = {k: v.detach().clone() for k, v in params.items()}
    run.optimizer_state = copy.deepcopy(optimizer.state_dict())
    run.generator_state = generator.get_state()
    return run


def _check_finite(tensors: Mapping[str, Tensor], stats: Mapping[str, float], desc: str, iteration: int,
                  settings: dict, what: str = "gradient") -> None:
    """``TrainingDiverged`` (one line: what is not finite, at which iteration, which rates to lower)
    when a return in ``stats`` or an entry of ``tensors`` (gradients, or the updated parameters) holds
    a NaN or an infinity, as the Omniglot trainer stops."""
    bad = [f"the mean {k.replace('_', ' ')} is {v}" for k, v in stats.items() if not math.isfinite(v)]
    bad += [f"the {what} of {k} is not finite" for k, v in tensors.items() if not torch.isfinite(v.detach()).all()]
    if bad:
        from mllib.train import TrainingDiverged

        rates = ", ".join(f"{k}={settings[k]}" for k in ("meta_lr", "inner_lr", "lr") if k in settings)
        raise TrainingDiverged(f"{desc} diverged at iteration {iteration}: {'; '.join(bad[:3])} (NaN or inf). "
                               f"Try a lower learning rate ({rates})", step=iteration)


def meta_train(policy: nn.Module, env: PointNavigation, iterations: int, meta_batch: int = 20, episodes: int = 20,
               inner_lr: float = 0.1, meta_lr: float = 1e-3, estimator: str = "first_order", seed: int = 0,
               resume: TrainRun | None = None, progress: bool = True,
               max_seconds: float | None = None) -> TrainRun:
    """MAML on ``env``'s goals: ``iterations`` Adam steps on the meta-gradient (from ``policy``'s parameters).

    Each iteration draws ``meta_batch`` goals and ``episodes`` episodes before and after the inner
    step for each (all from one generator seeded with ``seed``). History: ``"return_before"``,
    ``"return_after"`` (mean returns of the batch). ``resume``: a run to continue up to
    ``iterations`` in total (same settings). A tqdm bar shows progress unless ``$CI`` is set.
    ``max_seconds``: a wall-clock budget (``mllib.training_loop``: stops before an iteration
    would overrun it, after at least one; ``run.stopped`` tells; resume continues). A return, a
    meta-gradient or a parameter that is not finite stops it with ``mllib.train.TrainingDiverged``.
    """
    _check_estimator(estimator)
    _positive_int("episodes", episodes)
    check_positive("inner_lr", inner_lr)

    def gradient(params: Params, goals: Tensor, generator: torch.Generator):
        return meta_gradient(policy, params, env, goals, episodes, inner_lr, estimator, generator)

    settings = {"method": "maml", "env": repr(env), "meta_batch": meta_batch, "episodes": episodes,
                "inner_lr": inner_lr, "meta_lr": meta_lr, "estimator": estimator, "seed": seed}
    return _train(gradient, policy, env, iterations, meta_batch, meta_lr, seed, resume, progress, settings,
                  f"MAML ({estimator})", max_seconds)


def pretrain_joint(policy: nn.Module, env: PointNavigation, iterations: int, meta_batch: int = 20,
                   episodes: int = 20, lr: float = 1e-3, seed: int = 0, resume: TrainRun | None = None,
                   progress: bool = True, max_seconds: float | None = None) -> TrainRun:
    """The baseline: one policy trained by REINFORCE (Adam) on all goals jointly, no inner loop.

    Each iteration draws ``meta_batch`` goals with ``episodes`` episodes each. History: ``"return"``.
    ``max_seconds``: a wall-clock budget, as in :func:`meta_train`.
    """
    _positive_int("episodes", episodes)

    def gradient(params: Params, goals: Tensor, generator: torch.Generator):
        return joint_gradient(policy, params, env, goals, episodes, generator)

    settings = {"method": "joint", "env": repr(env), "meta_batch": meta_batch, "episodes": episodes, "lr": lr,
                "seed": seed}
    return _train(gradient, policy, env, iterations, meta_batch, lr, seed, resume, progress, settings,
                  "joint pre-training", max_seconds)


# ----------------------------------------------------------------------------- evaluation
def adaptation_returns(policy: nn.Module, params: Mapping[str, Tensor], env: PointNavigation, goals: Tensor,
                       episodes: int = 20, steps: int = 3, lr: float = 0.1,
                       generator: torch.Generator | None = None) -> tuple[Tensor, list[Episodes]]:
    """Fine-tune ``params`` on each goal with ``steps`` policy-gradient steps, fresh episodes each step.

    Returns ``(returns, stages)``: ``returns [tasks, steps + 1]`` is the mean return of the
    ``episodes`` episodes sampled after 0, 1, ..., ``steps`` steps (the data of the next step), and
    ``stages`` those episodes (``steps + 1`` ``Episodes``), for plotting trajectories.
    """
    _positive_int("episodes", episodes)
    _non_negative_int("steps", steps)
    tasks = goals.shape[0]
    current = {k: v.detach().unsqueeze(0).expand(tasks, *v.shape) for k, v in params.items()}
    returns, stages = [], []
    for k in range(steps + 1):
        batch = rollout(policy, current, env, goals, episodes, generator, per_task=True)
        stages.append(batch)
        returns.append(batch.returns().mean(1))
        if k < steps:
            current = adapt_policies(policy, current, batch, lr, evaluation=True, per_task=True)
    return torch.stack(returns, 1), stages



def tuned_adaptation_returns(policy: nn.Module, params: Mapping[str, Tensor], env: PointNavigation,
                             validation_goals: Tensor, test_goals: Tensor, lrs: Sequence[float],
                             episodes: int = 20, steps: int = 3, seed: int = 0) -> tuple[Tensor, list]:
    """``adaptation_returns`` on ``test_goals`` where every budget of ``k`` steps has its own step size.

    For ``k = 1..steps``, the step size is the one of ``lrs`` with the best mean return after ``k``
    steps on ``validation_goals`` (a fair tuning budget for a fine-tuning baseline). All step sizes
    see the same episode noise (validation: ``seed``; test: ``seed + 1``), so the runs differ only
    by the step size. Returns ``(returns [tasks, steps + 1], chosen)`` with ``chosen[k]`` the step
    size of column ``k`` (``chosen[0] = None``: no step).
    """
    if len(lrs) == 0:
        raise ValueError("lrs must hold at least one learning rate")
    _positive_int("steps", steps)
    lrs = [check_positive("lrs", lr) for lr in lrs]
    validation = {lr: adaptation_returns(policy, params, env, validation_goals, episodes, steps, lr,
                                         torch.Generator().manual_seed(seed))[0].mean(0) for lr in lrs}
    chosen = [None] + [max(lrs, key=lambda lr: float(validation[lr][k])) for k in range(1, steps + 1)]
    test = {lr: adaptation_returns(policy, params, env, test_goals, episodes, steps, lr,
                                   torch.Generator().manual_seed(seed + 1))[0] for lr in set(chosen[1:])}
    columns = [test[chosen[1]][:, 0]] + [test[chosen[k]][:, k] for k in range(1, steps + 1)]
    return torch.stack(columns, 1), chosen
