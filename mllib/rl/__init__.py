"""Meta-reinforcement learning on a 2-D point-navigation task family (notebook 08).

Modules, one job each:

* ``env``: ``PointNavigation``, the batched, seeded task family (a task = a goal in the plane).
* ``policy``: ``GaussianMLPPolicy`` used through ``functional_call`` with parameter dicts.
* ``rollout``: ``rollout`` samples ``Episodes`` ``[tasks, episodes, horizon, ...]``.
* ``losses``: REINFORCE with a (leave-one-out) baseline.
* ``maml``: the inner step (``adapt_policies``), the meta-gradient (``meta_gradient``, estimators
  ``"second_order"`` (unbiased), ``"no_sampling_term"``, ``"first_order"``), training
  (``meta_train``, ``pretrain_joint``) and fine-tuning curves (``adaptation_returns``, ``tuned_adaptation_returns``).
"""
from .env import PointNavigation
from .losses import leave_one_out_baseline, policy_loss_fn, reinforce_loss, reward_to_go
from .maml import (ESTIMATORS, TrainRun, adapt_policies, adaptation_returns, joint_gradient,
                   meta_gradient, meta_surrogate, meta_train, pretrain_joint, sample_meta_batch,
                   tuned_adaptation_returns)
from .policy import GaussianMLPPolicy, gaussian_log_prob, log_probs, policy_distribution, seeded_policy
from .rollout import Episodes, rollout

__all__ = [
    "PointNavigation", "GaussianMLPPolicy", "seeded_policy", "policy_distribution", "gaussian_log_prob",
    "log_probs", "Episodes", "rollout", "reward_to_go", "leave_one_out_baseline", "reinforce_loss",
    "policy_loss_fn", "ESTIMATORS", "adapt_policies", "sample_meta_batch", "meta_surrogate",
    "meta_gradient", "joint_gradient", "TrainRun", "meta_train", "pretrain_joint", "adaptation_returns",
    "tuned_adaptation_returns",
]
