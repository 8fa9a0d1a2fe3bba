"""Named run configurations in one place: ``MLLIB_PROFILE=auto|quick|gpu|laptop|full``.

* ``quick``: minutes on a 2-core laptop CPU (what CI, the notebooks and ``make demo`` use by
  default). Its Omniglot recipe is MAML with the zeroing trick (``head_init="zero"``, see
  ``mllib.algorithms``) and a cosine-annealed meta learning rate: 2,500 meta-steps, under five
  minutes of training on an idle 2-core CPU.
* ``laptop``: the same recipe, longer and wider (64 filters, meta-batch 16, 10,000 meta-steps):
  54 min of training on an idle 2-core CPU (measured) for 98.9% 5-way 1-shot, above the MAML
  paper's 98.7% (the default 5-way checkpoint ``maml_omniglot_5w1s``).
* ``gpu``: the quick settings, for a GPU. In the notebooks every live training run then takes
  more steps where a GPU gains (``mllib.budget.LIVE_TRAINING``) but never longer than its quick
  run takes on the 2-core CPU the notebooks' headers name: a bounded run on any card.
* ``full``: the MAML paper's Omniglot settings (all-parameter second-order MAML, the notebooks'
  paper-scale runs: hours), only by explicit choice.
* ``auto``: ``gpu`` when a GPU is present, ``quick`` otherwise (never ``full``).

A profile is a frozen dataclass; ``resolve_profile("quick", ways=20)`` applies the
per-ways settings (the paper's 20-way tasks use a smaller meta-batch, a smaller inner learning
rate and more inner steps; the zero-head profiles scale the inner learning rate with the number
of ways instead, see ``_WAYS_OVERRIDES``). Any field can be overridden with
``dataclasses.replace`` or from the command line (``--steps``, ``--head-init``, ...).
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, replace

import torch

from mllib.arguments import check_choice, check_positive

PROFILE_ENV = "MLLIB_PROFILE"
PROFILE_CHOICES = ("auto", "quick", "gpu", "laptop", "full")
HEAD_INITS = ("learned", "zero")            # mllib.algorithms.MetaConfig.head_init
META_LR_SCHEDULES = ("constant", "cosine")  # mllib.schedules.meta_lr_at
TRICK_FIELDS = ("multi_step_loss", "per_step_lr", "per_step_bn")  # MAML++ (mllib.algorithms.TRICKS)


@dataclass(frozen=True)
class Profile:
    """Every knob of an Omniglot meta-training run and of the sinusoid experiments."""

    name: str
    # Omniglot meta-training
    meta_steps: int          # outer-loop updates
    meta_batch: int          # tasks per outer update
    query: int               # query images per class in training tasks
    inner_steps: int         # inner-loop steps during meta-training
    inner_steps_test: int    # inner-loop steps at validation and test time
    inner_lr: float          # inner-loop learning rate (initial value for Meta-SGD)
    meta_lr: float           # Adam learning rate of the outer loop
    filters: int             # conv channels of the 4-block learner
    val_every: int           # meta-steps between validations
    val_tasks: int           # fixed validation tasks
    test_tasks: int          # fixed test tasks (>= 600 for the paper's protocol)
    test_query: int          # query images per class at validation and test time
    checkpoint_every: int    # meta-steps between checkpoints
    # Sinusoid regression (notebooks 01, 03, 04)
    sine_meta_steps: int
    sine_meta_batch: int
    sine_shots: int
    sine_inner_lr: float
    sine_meta_lr: float      # Adam learning rate of sinusoid meta-training
    # Omniglot recipe (defaults: plain MAML, as checkpoints written before these fields had them)
    head_init: str = "learned"          # "zero": the zeroing trick (head reset to zero for every task)
    meta_lr_schedule: str = "constant"  # "cosine": meta_lr annealed to 0 over meta_steps
    # MAML++'s tricks (mllib.algorithms, "MAML++'s tricks"; maml and fomaml only), all off by default
    multi_step_loss: bool = False       # training loss: mean of the query losses after every inner step
    per_step_lr: bool = False           # a learned inner rate per parameter tensor and inner step
    per_step_bn: bool = False           # batch-norm weights and biases per inner step, learned by the outer loop

    def to_dict(self) -> dict:
        return asdict(self)


_SINE_CPU = dict(sine_meta_steps=1000, sine_meta_batch=10, sine_shots=10, sine_inner_lr=0.01, sine_meta_lr=3e-3)

_BASE = {
    # MAML with the zeroing trick: one inner step (head only, from zero), one at test as in training
    # (more test steps move a body that was never trained to move: measured worse). Measured
    # (benchmarks/recipes/FINDINGS.md, 600 test tasks): 96.2% +- 0.4% 5-way 1-shot after 2,500 steps.
    "quick": dict(
        meta_steps=2500, meta_batch=8, query=5, inner_steps=1, inner_steps_test=1,
        inner_lr=0.4, meta_lr=3e-3, filters=32, val_every=250, val_tasks=100,
        test_tasks=600, test_query=5, checkpoint_every=100, head_init="zero", meta_lr_schedule="cosine",
        **_SINE_CPU,
    ),
    "laptop": dict(
        meta_steps=10000, meta_batch=16, query=5, inner_steps=1, inner_steps_test=1,
        inner_lr=0.4, meta_lr=3e-3, filters=64, val_every=500, val_tasks=100,
        test_tasks=600, test_query=5, checkpoint_every=250, head_init="zero", meta_lr_schedule="cosine",
        **_SINE_CPU,
    ),
    "full": dict(
        meta_steps=60000, meta_batch=32, query=15, inner_steps=1, inner_steps_test=10,
        inner_lr=0.4, meta_lr=1e-3, filters=64, val_every=500, val_tasks=300,
        test_tasks=600, test_query=15, checkpoint_every=1000,
        sine_meta_steps=70000, sine_meta_batch=25, sine_shots=10, sine_inner_lr=0.01, sine_meta_lr=1e-3,
    ),
}

_BASE["gpu"] = dict(_BASE["quick"])  # the bound lives in mllib.budget (the notebooks' live runs)

LEARNING_RATES = ("inner_lr", "meta_lr", "sine_inner_lr", "sine_meta_lr")  # each a finite number > 0

# 20-way tasks. MAML paper (full): meta-batch 16, inner lr 0.1, 5 inner steps. Zero head (quick,
# laptop): from a zero head one inner step gives logits (lr / N) (prototype_c - mean prototype) . f(x)
# for N support images, so the inner lr grows with the ways (0.4 x 20 / 5 = 1.6) to keep the logit
# scale; measured (quick, 2,000 steps): 93.2% +- 0.3% 20-way 1-shot on 600 test tasks.
_WAYS_OVERRIDES = {
    ("full", 20): dict(meta_batch=16, inner_lr=0.1, inner_steps=5, inner_steps_test=5),
    ("quick", 20): dict(meta_steps=2000, inner_lr=1.6),
    ("gpu", 20): dict(meta_steps=2000, inner_lr=1.6),
    # 20-way with 64 filters and meta-batch 16 costs ~4.5x the 5-way laptop step (4x the images):
    # the 20-way laptop recipe keeps the quick learner and runs longer instead (~0.33 s per step)
    ("laptop", 20): dict(inner_lr=1.6, filters=32, meta_batch=8),
}


def profile_name(name: str | None = None) -> str:
    """Resolve ``auto`` (argument, then ``$MLLIB_PROFILE``) to ``gpu`` or ``quick``; other names stay."""
    chosen = (name or os.environ.get(PROFILE_ENV) or "auto").strip().lower()
    if chosen not in PROFILE_CHOICES:
        raise ValueError(
            f"profile={chosen!r} is not one of {', '.join(PROFILE_CHOICES)} "
            f"(set it with the profile argument or ${PROFILE_ENV})."
        )
    if chosen == "auto":
        return "gpu" if torch.cuda.is_available() else "quick"
    return chosen


def resolve_profile(name: str | None = None, ways: int = 5, **overrides) -> Profile:
    """The named profile for ``ways``-way tasks, with ``overrides`` applied last.

    Every learning rate (:data:`LEARNING_RATES`) must come out a finite number > 0, ``head_init``
    one of :data:`HEAD_INITS` and ``meta_lr_schedule`` one of :data:`META_LR_SCHEDULES` (``ValueError``).

        >>> quick = resolve_profile("quick")
        >>> quick.head_init, quick.meta_lr_schedule, quick.meta_steps, quick.inner_steps_test
        ('zero', 'cosine', 2500, 1)
        >>> resolve_profile("laptop", ways=20).inner_lr
        1.6
    """
    resolved = profile_name(name)
    fields = dict(_BASE[resolved])
    fields.update(_WAYS_OVERRIDES.get((resolved, ways), {}))
    profile = Profile(name=resolved, **fields)
    unknown = set(overrides) - set(profile.to_dict())
    if unknown:
        raise ValueError(f"unknown profile field(s) {sorted(unknown)}; known: {sorted(profile.to_dict())}")
    profile = replace(profile, **overrides) if overrides else profile
    for name in LEARNING_RATES:
        check_positive(name, getattr(profile, name))
    check_choice("head_init", profile.head_init, HEAD_INITS)
    check_choice("meta_lr_schedule", profile.meta_lr_schedule, META_LR_SCHEDULES)
    for name in TRICK_FIELDS:
        if not isinstance(getattr(profile, name), bool):
            raise ValueError(f"{name} must be True or False, got {getattr(profile, name)!r}")
    return profile
