"""Checks of notebook 08, meta-reinforcement learning: ``check_reinforce_loss``, ``check_adapted_policy``."""
from __future__ import annotations

from typing import Any, Callable

import torch

from .core import Case, CheckResult, make_cases, random_tensor
from .exercise import VISIBLE, ExerciseSpec, register, visible_check
from .hints import Hints
from .i18n import message
from .properties import Properties, declare

# what this module's checks say (English; other languages: mllib/checks/i18n/, MLLIB_LANG)
SAY = {key: message(f"nb08.{key}", english) for key, english in {
    "policy_dict": "return a dict with every key of params, each holding its adapted tensor",
    "policy_case": "GaussianMLPPolicy(hidden=(6,)) params, its REINFORCE loss_fn, 3 episodes of 4 steps, lr={lr}",
}.items()}


def _loss_cases(kind: str) -> list[Case]:
    shapes = [(4, 5), (6, 3), (3, 1)] if kind == VISIBLE else [(2, 7), (5, 4), (1, 6), (8, 2)]

    def case(gen: torch.Generator, i: int) -> Case:
        e, h = shapes[i]
        log_probs, rewards = random_tensor(gen, e, h), -random_tensor(gen, e, h).abs()
        return Case((log_probs, rewards, -h * random_tensor(gen, e, h).abs() / 2))

    return make_cases(80 if kind == VISIBLE else 180, len(shapes), case)


REINFORCE_LOSS = register(ExerciseSpec(
    name="reinforce_loss",
    cases=_loss_cases,
    hints=Hints(
        concept="the REINFORCE loss is a surrogate whose gradient is minus the policy-gradient estimate: each "
                "action's log-probability is weighted by how much better than the baseline the rewards *after* it "
                "were; revisit notebook 08, section 2",
        reasoning="for each action, ask which rewards it could have influenced (an action cannot change what "
                  "came before it) and what the baseline is compared with; then ask how the steps of one episode "
                  "and the episodes of the batch combine so that the estimate does not grow with the number of "
                  "episodes, and which sign makes minimising the loss climb the return. Write the estimator for "
                  "one episode on paper first"),
    mistakes={
        "no_minus": "the loss is *minus* the surrogate: minimising it must climb the return",
        "no_baseline": "subtract the baseline from the reward-to-go",
        "reward_not_to_go": "weight each log-probability by the reward-to-go from its step on, not by that "
                            "step's reward alone",
        "whole_return": "weight each log-probability by the rewards from its step on, not by the whole "
                        "episode's return",
        "sum_over_episodes": "sum over the time steps of an episode, then *average* over the episodes",
        "mean_over_steps": "sum over the time steps of an episode (a mean over steps shrinks the gradient by "
                           "the horizon)",
    },
    forbidden=("mllib.rl.losses.reinforce_loss", "mllib.rl.losses.reward_to_go"),
))
declare(REINFORCE_LOSS.name, Properties(typed=True, loss_of=0))


def check_reinforce_loss(fn: Callable) -> CheckResult:
    """Check ``fn(log_probs, rewards, baseline) -> scalar``: the REINFORCE loss with a baseline.

    All three inputs are ``[episodes, horizon]``. The loss is minus the mean over episodes of
    ``sum_t log_probs[e, t] * (G[e, t] - baseline[e, t])``, with the reward-to-go
    ``G[e, t] = rewards[e, t] + rewards[e, t+1] + ... + rewards[e, -1]``.
    """
    return visible_check(REINFORCE_LOSS, fn)


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
                label=SAY["policy_case"](lr=lr))


def _policy_cases(kind: str) -> list[Case]:
    rates = [0.05, 0.1, 0.02] if kind == VISIBLE else [0.01, 0.2, 0.07]
    return make_cases(81 if kind == VISIBLE else 181, len(rates), lambda gen, i: _policy_case(gen, rates[i]))


def _policy_structure(case: Case, got: Any, want: Any) -> str | None:
    if not isinstance(got, dict) or set(got) != {"adapted", "meta_gradient"}:
        return SAY["policy_dict"]()
    return None


ADAPTED_POLICY = register(ExerciseSpec(
    name="adapted_policy",
    cases=_policy_cases,
    hints=Hints(
        concept="the inner loop of MAML for RL is one gradient step on the REINFORCE loss, and the outer loop "
                "must differentiate through it, gradient included; revisit notebook 08, section 3",
        reasoning="differentiate loss_fn with respect to the parameter dict in a way that keeps the gradient "
                  "itself differentiable, then build a new dict in which every parameter moves against its "
                  "gradient by the rate lr"),
    mistakes={
        "step_up": "step *down* the loss (the loss is minus the return, so this climbs the return)",
        "first_order": "the step is right but its gradient counts as a constant: keep the graph through it "
                       "(second order)",
        "detached": "the values are right but the result is cut off from params: no detaching and no "
                    "no-grad block",
    },
    forbidden=("mllib.inner.adapt", "mllib.inner.inner_gradients", "mllib.rl.maml.adapt_policies"),
    wrap=_WithMetaGradient, diagnose=_policy_structure, rtol=1e-6, atol=1e-9,
))
declare(ADAPTED_POLICY.name, Properties(typed=True))


def check_adapted_policy(fn: Callable) -> CheckResult:
    """Check ``fn(params, loss_fn, episodes, lr) -> dict``: one differentiable policy-gradient step.

    ``params``: dict of leaf tensors requiring grad; ``loss_fn(params, episodes)`` the REINFORCE
    loss (minus the return's surrogate). The result is ``{k: params[k] - lr * grad_k}`` with the
    gradient of ``loss_fn`` at ``params``, and it must stay differentiable with respect to
    ``params`` through the gradient itself (second order): the check also compares the gradient
    of a fixed function of the result with respect to ``params``.
    """
    return visible_check(ADAPTED_POLICY, fn)


__all__ = ["check_reinforce_loss", "check_adapted_policy"]
