"""Checks of notebook 08, meta-reinforcement learning: ``check_reinforce_loss``, ``check_adapted_policy``."""
from __future__ import annotations

import copy
from typing import Any, Callable

import torch

from .core import Case, CheckResult, compare_values, make_cases, random_tensor, run_check


def _reward_to_go(rewards: torch.Tensor) -> torch.Tensor:
    return rewards.flip(-1).cumsum(-1).flip(-1)


def _reinforce_loss_reference(log_probs, rewards, baseline):
    from mllib.rl.losses import reinforce_loss
    return reinforce_loss(log_probs, rewards, baseline)


def check_reinforce_loss(fn: Callable) -> CheckResult:
    """Check ``fn(log_probs, rewards, baseline) -> scalar``: the REINFORCE loss with a baseline.

    All three inputs are ``[episodes, horizon]``. The loss is minus the mean over episodes of
    ``sum_t log_probs[e, t] * (G[e, t] - baseline[e, t])``, with the reward-to-go
    ``G[e, t] = rewards[e, t] + rewards[e, t+1] + ... + rewards[e, -1]``.
    """
    shapes = [(4, 5), (6, 3), (3, 1), (2, 7)]

    def case(gen: torch.Generator, i: int) -> Case:
        e, h = shapes[i]
        log_probs, rewards = random_tensor(gen, e, h), -random_tensor(gen, e, h).abs()
        return Case((log_probs, rewards, -h * random_tensor(gen, e, h).abs() / 2))

    def diagnose(case: Case, got: Any, want: Any) -> str | None:
        lp, r, b = case.args
        g = _reward_to_go(r)
        wrong = {
            "the loss is *minus* the surrogate (minimising it must climb the return): put a minus sign in front":
                (lp * (g - b)).sum(-1).mean(),
            "subtract the baseline from the reward-to-go: G_t - b_t": -(lp * g).sum(-1).mean(),
            "weight log pi(a_t) by the reward-to-go G_t (the rewards from step t on), not by r_t alone":
                -(lp * (r - b)).sum(-1).mean(),
            "weight log pi(a_t) by the reward-to-go G_t from step t on, not by the whole episode's return":
                -(lp * (r.sum(-1, keepdim=True) - b)).sum(-1).mean(),
            "sum over the time steps of an episode, then average over the episodes (not a sum over episodes)":
                -(lp * (g - b)).sum(),
            "sum over the time steps of an episode (a mean over steps shrinks the gradient by the horizon)":
                -(lp * (g - b)).mean(),
        }
        for hint, value in wrong.items():
            if compare_values(got, value, 1e-6, 1e-9) is None:
                return hint
        return None

    return run_check("reinforce_loss", fn, _reinforce_loss_reference, make_cases(80, len(shapes), case),
                     diagnose=diagnose,
                     hint="G = rewards.flip(-1).cumsum(-1).flip(-1); "
                          "loss = -(log_probs * (G - baseline)).sum(-1).mean()")


def _outer_weights(params: dict) -> dict:
    """Fixed weights of a linear outer objective ``sum_k (w_k * adapted_k).sum()``."""
    return {k: torch.cos(torch.arange(v.numel(), dtype=v.dtype) + i).reshape(v.shape)
            for i, (k, v) in enumerate(params.items())}


class _WithMetaGradient:
    """Calls ``fn(params, loss_fn, episodes, lr)`` and adds the gradient of a fixed outer objective of
    its result with respect to ``params``: the part of MAML that needs the step to stay differentiable.

    ``__code__`` is the learner's, so an error is reported at the learner's own line.
    """

    def __init__(self, fn: Callable) -> None:
        self.fn = fn
        self.__code__ = getattr(fn, "__code__", None)

    def __call__(self, params: dict, loss_fn: Callable, episodes, lr: float) -> Any:
        leaves = dict(params)
        adapted = self.fn(params, loss_fn, episodes, lr)
        if not isinstance(adapted, dict) or set(adapted) != set(leaves):
            return adapted
        weights = _outer_weights(leaves)
        outer = sum((torch.as_tensor(adapted[k]) * weights[k]).sum() for k in leaves)
        if isinstance(outer, torch.Tensor) and outer.requires_grad:
            grads = torch.autograd.grad(outer, list(leaves.values()), allow_unused=True)
            grads = [torch.zeros_like(p) if g is None else g for g, p in zip(grads, leaves.values())]
        else:
            grads = [torch.zeros_like(p) for p in leaves.values()]
        return {"adapted": {k: torch.as_tensor(v).detach() for k, v in adapted.items()},
                "meta_gradient": dict(zip(leaves, grads))}


def _adapted_policy_reference(params, loss_fn, episodes, lr):
    from mllib.inner import adapt
    return adapt(params, loss_fn, episodes, 1, lr)


def _policy_case(gen: torch.Generator, lr: float) -> Case:
    from mllib.rl import PointNavigation, policy_loss_fn, rollout, seeded_policy
    env = PointNavigation(horizon=4)
    policy = seeded_policy(int(torch.randint(0, 10_000, (1,), generator=gen)), dtype=torch.float64, hidden=(6,),
                           init_std=0.2)
    params = {k: v.detach().clone().requires_grad_(True) for k, v in policy.named_parameters()}
    goals = env.sample_goals(1, gen, torch.float64)
    batch = rollout(policy, params, env, goals, 3, gen)
    episodes = type(batch)(*(x[0] for x in batch))             # one task: [episodes, horizon, ...]
    return Case((params, policy_loss_fn(policy), episodes, lr),
                label=f"GaussianMLPPolicy(hidden=(6,)) params, its REINFORCE loss_fn, 3 episodes of 4 steps, lr={lr}")


def check_adapted_policy(fn: Callable) -> CheckResult:
    """Check ``fn(params, loss_fn, episodes, lr) -> dict``: one differentiable policy-gradient step.

    ``params``: dict of leaf tensors requiring grad; ``loss_fn(params, episodes)`` the REINFORCE
    loss (minus the return's surrogate). The result is ``{k: params[k] - lr * grad_k}`` with the
    gradient of ``loss_fn`` at ``params``, and it must stay differentiable with respect to
    ``params`` through the gradient itself (second order): the check also compares the gradient
    of a fixed function of the result with respect to ``params``.
    """
    rates = [0.05, 0.1, 0.02]

    def case(gen: torch.Generator, i: int) -> Case:
        return _policy_case(gen, rates[i])

    def diagnose(case: Case, got: Any, want: Any) -> str | None:
        if not isinstance(got, dict) or set(got) != {"adapted", "meta_gradient"}:
            return "return a dict with every key of params: {k: params[k] - lr * grads[k] for k in params}"
        params, loss_fn, episodes, lr = copy.deepcopy(case.args)
        grads = torch.func.grad(loss_fn)({k: v.detach() for k, v in params.items()}, episodes)
        uphill = {k: params[k].detach() + lr * grads[k] for k in params}
        if compare_values(got["adapted"], uphill, 1e-6, 1e-9) is None:
            return ("step *down* the loss: params - lr * grad (the loss is minus the return, so this climbs "
                    "the return)")
        if compare_values(got["adapted"], want["adapted"], 1e-6, 1e-9) is None:
            first_order = _outer_weights(params)
            if compare_values(got["meta_gradient"], first_order, 1e-6, 1e-9) is None:
                return ("the step is right but its gradient is a constant: keep the graph through it, with "
                        "torch.func.grad(loss_fn)(params, episodes) or torch.autograd.grad(..., create_graph=True)")
            return ("the values are right but the result is cut off from params (no autograd graph): "
                    "do not detach, and do not work under torch.no_grad()")
        return None

    return run_check("adapted_policy", _WithMetaGradient(fn) if callable(fn) else fn,
                     _WithMetaGradient(_adapted_policy_reference), make_cases(81, len(rates), case),
                     rtol=1e-6, atol=1e-9, diagnose=diagnose,
                     hint="grads = torch.func.grad(loss_fn)(params, episodes); "
                          "return {k: params[k] - lr * grads[k] for k in params}")


__all__ = ["check_reinforce_loss", "check_adapted_policy"]
