"""mllib.budget's live-training table, mllib.timing's TimeBudget on a fake clock, and the trainers that honour it.

A fake device is a clock that only moves when a step runs: every step takes ``step_seconds``
(``slow``: more than the budget allows for all steps; ``fast``: all steps fit). Tiny sizes, one thread.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import torch

import mllib.baselines
import mllib.learned_optimizer
import mllib.rl.maml
import mllib.sine_experiments
import mllib.train
from mllib import timing
from mllib.budget import LIVE_TRAINING, Budget, live_budget, notebook_budget, steps_within
from mllib.timing import TimeBudget, use_clock

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


class FakeDevice:
    """A clock at 0 s that advances ``step_seconds`` whenever ``tick`` runs (once per step)."""

    def __init__(self, step_seconds: float) -> None:
        self.t, self.step_seconds, self.steps = 0.0, step_seconds, 0

    def __call__(self) -> float:
        return self.t

    def tick(self) -> None:
        self.t += self.step_seconds
        self.steps += 1


def run_budget(steps: int, max_seconds, step_seconds: float) -> tuple[TimeBudget, FakeDevice, list[str]]:
    device, said = FakeDevice(step_seconds), []
    loop = TimeBudget(range(1, steps + 1), max_seconds, what="meta-steps", say=said.append)
    with use_clock(device):
        for _ in loop:
            device.tick()
    return loop, device, said


@pytest.mark.parametrize("step_seconds, expected", [(0.5, 4), (0.3, 6), (0.01, 50), (10.0, 1)])
def test_time_budget_stops_before_overrunning_and_runs_at_least_one_step(step_seconds, expected):
    loop, device, said = run_budget(50, 2.0, step_seconds)
    assert loop.done == device.steps == expected
    assert loop.stopped == (expected < 50) and bool(said) == loop.stopped
    if expected > 1:
        assert loop.elapsed <= 2.0 * (1 + 1e-9)   # never over the budget (float sums), unless one step is
    assert loop.elapsed == pytest.approx(expected * step_seconds)
    if loop.stopped:
        assert f"stopped after {expected} of 50 meta-steps" in said[0] and "2 s" in said[0]


def test_time_budget_without_a_limit_runs_every_step_and_restores_the_clock():
    loop, device, said = run_budget(7, None, 100.0)
    assert (loop.done, loop.stopped, said, len(loop)) == (7, False, [], 7)
    assert timing._clock is None and timing.now() > 0


@pytest.mark.parametrize("bad", [0, -1, float("nan"), float("inf"), "10", True])
def test_bad_max_seconds_is_a_value_error_naming_it(bad):
    with pytest.raises(ValueError, match="max_seconds"):
        TimeBudget(range(3), bad)


def test_live_budget_per_profile():
    quick, gpu = live_budget("05 maml", "quick"), live_budget("05 maml", "gpu")
    run = LIVE_TRAINING["05 maml"]
    assert quick == Budget(run.quick, None) and live_budget("05 maml", "full") == Budget(run.full, None)
    assert gpu == Budget(run.gpu, run.seconds) and run.gpu >= run.quick
    assert live_budget("05 maml", "laptop") == Budget(run.quick, run.seconds)
    from mllib.config import resolve_profile
    assert live_budget("01 maml", resolve_profile("gpu")) == live_budget("01 maml", "gpu")
    with pytest.raises(ValueError, match="key"):
        live_budget("09 maml", "quick")
    with pytest.raises(ValueError, match="profile"):
        live_budget("05 maml", "auto")
    with pytest.raises(ValueError, match="step_seconds"):
        steps_within("05 maml", 0)
    with pytest.raises(ValueError, match="notebook"):
        notebook_budget("09")


@pytest.mark.parametrize("key", sorted(LIVE_TRAINING))
def test_gpu_profile_is_bounded_by_the_quick_run_on_the_headers_cpu(key):
    run = LIVE_TRAINING[key]
    assert run.quick <= run.gpu <= run.full and run.quick * run.cpu_step_seconds <= run.seconds
    gpu = live_budget(key, "gpu")
    # a device as slow as the header's CPU trains the quick steps (the run the notebook describes)
    loop, _, _ = run_budget(gpu.steps, gpu.max_seconds, run.cpu_step_seconds)
    assert loop.done >= run.quick and loop.done == steps_within(key, run.cpu_step_seconds)
    # any device, 10x slower to 100x faster: never over the budget, and at least one step
    for factor in (10.0, 3.0, 1.0, 0.1, 0.01):
        step = run.cpu_step_seconds * factor
        loop, _, _ = run_budget(gpu.steps, gpu.max_seconds, step)
        assert loop.done == steps_within(key, step) >= 1
        assert loop.elapsed <= gpu.max_seconds * (1 + 1e-9) or loop.done == 1


def test_notebook_budget_sums_the_live_runs():
    assert notebook_budget("05") == LIVE_TRAINING["05 maml"].seconds + LIVE_TRAINING["05 pretrain"].seconds
    assert notebook_budget("06") == 3 * LIVE_TRAINING["06 sinusoid"].seconds


def notebook_source(number: str) -> str:
    (path,) = NOTEBOOKS.glob(f"{number}_*.ipynb")
    cells = json.loads(path.read_text())["cells"]
    return "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")


@pytest.mark.parametrize("key", sorted(LIVE_TRAINING))
def test_every_live_run_of_the_table_is_wired_into_its_notebook(key):
    source = notebook_source(key.split()[0])
    assert f'live_budget("{key}", PROFILE)' in source, f"notebook {key.split()[0]} does not read {key!r}"


TRAINERS = ("meta_train_sinusoid", "pretrain_sinusoid", "meta_train_optimizer", "baselines.pretrain",
            "pretrain_joint", "meta_train", "TrainConfig")


def calls_of(source: str, name: str) -> list[str]:
    """The argument text of every call ``name(...)`` in ``source`` (parentheses matched)."""
    found = []
    for match in re.finditer(rf"(?<![\w.]){re.escape(name)}\(", source):
        depth, i = 1, match.end()
        while depth:
            depth += {"(": 1, ")": -1}.get(source[i], 0)
            i += 1
        found.append(source[match.end():i - 1])
    return found


@pytest.mark.parametrize("number", ["01", "03", "04", "05", "06", "07", "08"])
def test_every_trainer_call_of_a_notebook_passes_a_time_budget(number):
    source = notebook_source(number)
    calls = {name: calls_of(source, name) for name in TRAINERS}
    calls["TrainConfig"] = [c for c in calls["TrainConfig"] if "steps=" in c]  # not the imports
    calls["meta_train"] = [c for c in calls["meta_train"] if "_config" not in c]  # a TrainConfig run
    found = [c for cs in calls.values() for c in cs]
    assert found and all("max_seconds" in c for c in found), (number, found)


# ----------------------------------------------------------------------------- the trainers honour it

def slow_and_fast(monkeypatch, module, name, step_seconds):
    """Make ``module.name`` (called once per step) take ``step_seconds`` on a fake clock."""
    device, real = FakeDevice(step_seconds), getattr(module, name)

    def timed(*args, **kwargs):
        out = real(*args, **kwargs)
        device.tick()
        return out

    monkeypatch.setattr(module, name, timed)
    return device


@pytest.mark.parametrize("step_seconds, expected", [(1.0, 2), (0.01, 6)])
def test_sinusoid_trainers_honour_max_seconds(monkeypatch, step_seconds, expected):
    torch.set_num_threads(1)
    device = slow_and_fast(monkeypatch, mllib.sine_experiments, "meta_step", step_seconds)
    with use_clock(device):
        _, _, history = mllib.sine_experiments.meta_train_sinusoid(
            "maml", steps=6, meta_batch=2, shots=3, inner_lr=0.01, progress=False, max_seconds=2.5)
    assert len(history["step"]) == expected and history["stopped"] == (expected < 6)
    clock = FakeDevice(step_seconds)
    real_sample = mllib.sine_experiments.SinusoidTasks.sample

    def sample(self, n):
        clock.tick()
        return real_sample(self, n)

    monkeypatch.setattr(mllib.sine_experiments.SinusoidTasks, "sample", sample)
    with use_clock(clock):
        mllib.sine_experiments.pretrain_sinusoid(steps=6, batch=2, shots=3, progress=False, max_seconds=2.5)
    assert clock.steps == expected
    with pytest.raises(ValueError, match="max_seconds"):
        mllib.sine_experiments.meta_train_sinusoid("maml", steps=2, meta_batch=2, shots=3, inner_lr=0.01,
                                                   max_seconds=0)
    with pytest.raises(ValueError, match="max_seconds"):
        mllib.sine_experiments.pretrain_sinusoid(steps=2, batch=2, shots=3, max_seconds=-1)


@pytest.mark.parametrize("step_seconds, expected", [(1.0, 2), (0.01, 4)])
def test_learned_optimizer_honours_max_seconds(monkeypatch, step_seconds, expected):
    from mllib.learned_optimizer import LearnedOptimizer, meta_train_optimizer
    from mllib.models import SineMLP
    torch.manual_seed(0)
    device = slow_and_fast(monkeypatch, mllib.learned_optimizer, "unroll", step_seconds)
    with use_clock(device):
        _, history = meta_train_optimizer(LearnedOptimizer(hidden=4), SineMLP(hidden=4), steps=4,
                                          meta_batch=2, horizon=2, shots=3, query=3, progress=False,
                                          max_seconds=2.5)
    assert len(history["step"]) == expected and history["stopped"] == (expected < 4)
    with pytest.raises(ValueError, match="max_seconds"):
        meta_train_optimizer(LearnedOptimizer(hidden=4), SineMLP(hidden=4), steps=1, max_seconds=float("nan"))


@pytest.mark.parametrize("step_seconds, expected", [(1.0, 2), (0.01, 5)])
def test_rl_trainers_honour_max_seconds_and_resume(monkeypatch, step_seconds, expected):
    from mllib.rl import PointNavigation, meta_train, pretrain_joint
    from mllib.rl.policy import seeded_policy
    env = PointNavigation(horizon=3)
    for name, train in (("meta_gradient", meta_train), ("joint_gradient", pretrain_joint)):
        device = slow_and_fast(monkeypatch, mllib.rl.maml, name, step_seconds)
        with use_clock(device):
            run = train(seeded_policy(0, hidden=(4,)), env, 5, meta_batch=2, episodes=2, progress=False,
                        max_seconds=2.5)
            assert run.iterations_done == expected and run.stopped == (expected < 5)
            more = train(seeded_policy(0, hidden=(4,)), env, 5, meta_batch=2, episodes=2, progress=False,
                         resume=run)
        assert more.iterations_done == 5 and not more.stopped
    with pytest.raises(ValueError, match="max_seconds"):
        meta_train(seeded_policy(0, hidden=(4,)), env, 1, meta_batch=2, episodes=2, max_seconds=0)


def test_supervised_pretraining_honours_max_seconds(monkeypatch):
    class Batches:
        num_classes = 3

        def sample(self, n):
            return torch.randn(n, 1, 8, 8), torch.arange(n) % 3

    for step_seconds, expected in ((1.0, 2), (0.01, 5)):
        device = slow_and_fast(monkeypatch, mllib.baselines, "loss_and_metric", step_seconds)
        with use_clock(device):
            result = mllib.baselines.pretrain(Batches(), steps=5, batch_size=4, filters=2, depth=1,
                                              progress=False, max_seconds=2.5)
        assert len(result.losses) == expected
    with pytest.raises(ValueError, match="max_seconds"):
        mllib.baselines.pretrain(Batches(), steps=1, batch_size=4, filters=2, depth=1, max_seconds="1")


def test_meta_train_reads_the_budget_clock(tmp_path, omniglot, monkeypatch):
    """mllib.train.meta_train stops after the step that uses the budget up (its --max-seconds rule)."""
    from mllib.train import TrainConfig, meta_train
    device = slow_and_fast(monkeypatch, mllib.train, "meta_step", 1.0)
    tiny = dict(val_tasks=2, val_every=100, test_tasks=2, filters=4, meta_batch=2, checkpoint_every=100)
    config = TrainConfig(algo="maml", ways=3, shots=1, query=1, profile="quick", overrides=tiny, steps=10,
                         device="cpu", seed=3, out=str(tmp_path / "run"), progress=False, max_seconds=2.5)
    with use_clock(device):
        run = meta_train(config, data=omniglot, log=lambda message: None)
    assert run.step == 3 == math.ceil(2.5 / 1.0)


T4_ESTIMATE = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "t4_budget_estimate.json"


def t4_runs() -> dict[float, tuple[int, float, float]]:
    """{estimated T4 seconds per meta-step: (steps, accuracy, ci95)} of benchmarks/t4_budget_estimate.py's file."""
    data = json.loads(T4_ESTIMATE.read_text())
    runs = {run["t4_step_seconds"]: (run["steps"], run["accuracy"], run["ci95"]) for run in data["runs"]}
    assert sorted(runs) == sorted(data["t4_step_seconds"]), "one replayed run per estimated step time"
    return runs


def test_t4_replay_matches_the_budget():
    """The replayed T4 runs (benchmarks/t4_budget_estimate.py) stopped where today's budget stops them."""
    for step_seconds, (steps, accuracy, ci) in t4_runs().items():
        # mllib.train.meta_train stops after the step that uses the budget up: one more than fits
        assert steps - steps_within("05 maml", step_seconds) in (0, 1), "rerun t4_budget_estimate.py"
        assert 0.2 < accuracy < 1 and 0 < ci < 0.02


def test_notebook_05_quotes_the_t4_replay_as_the_benchmark_wrote_it():
    """Notebook 05's T4_REPLAY is benchmarks/results/t4_budget_estimate.json, rounded to 4 decimals."""
    import ast

    (line,) = [line for line in notebook_source("05").splitlines() if line.startswith("T4_REPLAY = ")]
    quoted = ast.literal_eval(line.split("=", 1)[1].strip())
    expected = {s: (steps, round(acc, 4), round(ci, 4)) for s, (steps, acc, ci) in t4_runs().items()}
    assert quoted == expected, f"copy benchmarks/results/t4_budget_estimate.json into notebook 05: {expected}"


def test_the_t4_estimates_are_benchmark_material_not_library_code():
    import mllib.budget

    assert not [name for name in dir(mllib.budget) if name.startswith("T4_")]
