"""The meta learning rate over a run: constant, or cosine-annealed to zero (profile ``meta_lr_schedule``).

The rate of each meta-step is a pure function of the step number, so a resumed run takes
exactly the steps of an uninterrupted one (its state is the step, which every checkpoint holds,
and the schedule's settings, which the checkpoint's profile holds). Cosine annealing (Loshchilov
and Hutter 2017; one of the MAML++ fixes, Antoniou et al. 2019): the update that makes step
``s + 1`` of ``total`` uses ``base * (1 + cos(pi * s / total)) / 2``, from ``base`` down towards 0
(the last update still moves a little). Used by ``mllib.train.meta_train``.
"""
from __future__ import annotations

import math

import torch

from mllib.arguments import check_choice, check_int, check_positive
from mllib.config import META_LR_SCHEDULES


def meta_lr_at(base: float, step: int, total: int, schedule: str = "constant") -> float:
    """The meta learning rate of the update that follows ``step`` completed meta-steps of ``total``.

        >>> meta_lr_at(3e-3, 0, 100, "cosine"), meta_lr_at(3e-3, 50, 100, "cosine"), meta_lr_at(3e-3, 50, 100)
        (0.003, 0.0015, 0.003)
    """
    check_choice("schedule", schedule, META_LR_SCHEDULES)
    check_positive("base", base)
    check_int("total", total, 1)
    check_int("step", step, 0)
    if step >= total:
        raise ValueError(f"step must be in 0..{total - 1} (completed meta-steps before this update), got {step}")
    if schedule == "constant":
        return base
    return base * 0.5 * (1.0 + math.cos(math.pi * step / total))


def set_meta_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Give every parameter group of ``optimizer`` the learning rate ``lr``.

        >>> opt = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=1.0)
        >>> set_meta_lr(opt, 0.5); opt.param_groups[0]["lr"]
        0.5
    """
    for group in optimizer.param_groups:
        group["lr"] = lr
