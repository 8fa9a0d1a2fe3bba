"""Time budgets for the notebooks' live training: the one table (course data, never imported by the library).

Every cell of a notebook that trains something live (a sinusoid meta-training run, the MAML run of
notebook 05, the RL runs of notebook 08, ...) takes its number of steps, and in the ``gpu``
profile a wall-clock budget, from :data:`LIVE_TRAINING`, through :func:`live_budget`:

* ``quick`` (a CPU, CI): the ``quick`` steps, no time limit: the run the notebook's text and
  asserts describe, and whose time the notebook's header states (measured on a 2-core CPU).
* ``gpu`` (``MLLIB_PROFILE=auto`` on a GPU): at most ``gpu`` steps (more than ``quick`` where a GPU
  runs the network much faster; the same where the network is too small to gain), and never longer
  than ``seconds``: what the quick run of that cell takes on the header's CPU. A fast card trains
  more steps in that time; a slow device stops early and says so. Either way the cell takes no
  longer than in the quick run on the CPU, so the notebook stays within its stated run time as long
  as its other cells (evaluation) are no slower than on that CPU.
* ``laptop`` (a CLI training profile, wider and slower than quick): the ``quick`` steps within the
  same time budget as ``gpu``, so a notebook opened with it stays bounded too.
* ``full`` (``MLLIB_PROFILE=full``, only by explicit choice): the paper-scale ``full`` steps, no
  time limit.

The time budget itself is kept by ``mllib.timing`` (the one clock, ``TimeBudget``,
``check_max_seconds``), which every trainer uses; this module is the course's table, and the library
never imports it.

Example (notebook 05's live MAML run)::

    MAML = live_budget("05 maml", PROFILE)      # Budget(steps=1800, max_seconds=None) when quick
    meta_train(TrainConfig(..., steps=MAML.steps, max_seconds=MAML.max_seconds), data=data)
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from mllib.arguments import check_choice, check_positive
from mllib.timing import BUDGET_ROUNDING


@dataclass(frozen=True)
class LiveTraining:
    """One live training run of a notebook: its steps in each profile, and its measured CPU cost.

    ``cpu_step_seconds`` was measured with the quick profile's settings on the 2-core CPU that
    the notebooks' headers name (shared with other jobs, load about 3, one torch thread; validation
    included where the run validates) by ``benchmarks/live_training_costs.py``
    (``benchmarks/results/live_training_costs.json``): the larger of two such measurements on
    2026-11-29 (an earlier one whose script was not kept, and this script's; this machine's
    run-to-run noise is 15% and more), so that a device as fast as that
    CPU trains at least the quick steps within the gpu budget. Notebook 05's MAML run trains on two query
    images per class (``query=2``), which halves the images of a step: its cost is the script's
    five-query step (0.132 s) times the measured ratio of the two steps, 0.477 (interleaved in one
    process, 4 rounds of 15 steps, one thread, 2026-12-07), so 0.063 s. Measured afterwards in the
    notebook on an idle 2-core CPU with two threads: 1,800 steps in 122 s (0.068 s, validation and
    checkpoints included), 8% more than the estimate that sets the gpu budget (114 s). The notebook now
    runs it as two single-thread worker processes on two cores (``mllib.local_workers``): 74 s
    (``benchmarks/live_workers.py``); the gpu budget still follows the one-process estimate.
    """

    unit: str                 # what one step is
    quick: int                # steps in the quick profile (what the notebook asserts)
    gpu: int                  # most steps in the gpu profile (its time budget may stop it sooner)
    full: int                 # steps in the full profile (paper scale, no time budget)
    cpu_step_seconds: float   # measured seconds per quick step on the header's CPU
    device: str = "notebook"  # "notebook": runs on the notebook's DEVICE; "cpu": always on the CPU
    runs: int = 1             # how many times the notebook trains it (06: MAML, Meta-SGD, ANIL)

    @property
    def seconds(self) -> float:
        """The gpu profile's budget: the quick run's time on the header's CPU (whole seconds, >= 2)."""
        return float(max(2, math.ceil(self.quick * self.cpu_step_seconds)))


#: Every live training run of notebooks 01-08, keyed "NN name". Sinusoid networks, the learned
#: optimizer and the RL policies are too small to gain from a GPU (their ``gpu`` steps are the
#: quick ones); the Omniglot conv nets gain several times (notebook 07's ProtoNet gets the steps of the
#: shipped quick checkpoint, 1,000). Notebook 05's live MAML run is already about a minute of the CPU's
#: time: a GPU trains the same 1,800 steps, sooner. Notebook 05's supervised pre-training keeps its quick
#: length: the notebook reads its loss curve (ln 4400 -> about 7).
LIVE_TRAINING: dict[str, LiveTraining] = {
    "01 pretrain": LiveTraining("pre-training steps", 1000, 1000, 10000, 0.00113),
    "01 maml": LiveTraining("meta-steps", 1000, 1000, 10000, 0.00472),
    "03 maml": LiveTraining("meta-steps", 1000, 1000, 10000, 0.00472),
    "04 maml": LiveTraining("meta-steps", 1000, 1000, 70000, 0.00472),
    "04 pretrain": LiveTraining("pre-training steps", 1000, 1000, 70000, 0.00113),
    "05 maml": LiveTraining("meta-steps", 1800, 1800, 3000, 0.063),
    "05 pretrain": LiveTraining("minibatches", 400, 400, 5000, 0.119),
    "06 sinusoid": LiveTraining("meta-steps", 1000, 1000, 10000, 0.00608, runs=3),
    "07 learned optimizer": LiveTraining("meta-steps", 40, 40, 100, 0.081, device="cpu"),
    "07 protonet": LiveTraining("meta-steps", 100, 1000, 2000, 0.160),
    "08 maml": LiveTraining("iterations", 100, 100, 500, 0.096, device="cpu"),
    "08 pretrain": LiveTraining("iterations", 100, 100, 500, 0.078, device="cpu"),
}


@dataclass(frozen=True)
class Budget:
    """What a live training cell runs: ``steps``, and ``max_seconds`` of wall clock (None: no limit)."""

    steps: int
    max_seconds: float | None


def live_budget(key: str, profile) -> Budget:
    """The steps and time budget of the live training run ``key`` (e.g. ``"05 maml"``) in ``profile``.

    ``profile``: a ``mllib.config.Profile`` or its name (``quick``, ``gpu``, ``laptop``, ``full``).

        >>> live_budget("05 maml", "quick"), live_budget("05 maml", "gpu")
        (Budget(steps=1800, max_seconds=None), Budget(steps=1800, max_seconds=114.0))
    """
    check_choice("key", key, tuple(LIVE_TRAINING))
    name = check_choice("profile", getattr(profile, "name", profile), ("quick", "gpu", "laptop", "full"))
    run = LIVE_TRAINING[key]
    if name == "quick":
        return Budget(run.quick, None)
    if name == "full":
        return Budget(run.full, None)
    return Budget(run.gpu if name == "gpu" else run.quick, run.seconds)


def steps_within(key: str, step_seconds: float) -> int:
    """How many steps the gpu profile's run ``key`` trains on a device taking ``step_seconds`` per step."""
    check_choice("key", key, tuple(LIVE_TRAINING))
    step_seconds = check_positive("step_seconds", step_seconds)
    run = LIVE_TRAINING[key]
    return max(1, min(run.gpu, math.floor(run.seconds / step_seconds * BUDGET_ROUNDING)))


def notebook_budget(notebook: str) -> float:
    """Seconds of live training the gpu profile allows notebook ``notebook`` ("05"), all runs together."""
    check_choice("notebook", notebook, tuple(sorted({key.split()[0] for key in LIVE_TRAINING})))
    runs = {key: run for key, run in LIVE_TRAINING.items() if key.split()[0] == notebook}
    return sum(run.seconds * run.runs for run in runs.values())


__all__ = ["LiveTraining", "LIVE_TRAINING", "Budget", "live_budget", "steps_within", "notebook_budget"]
