"""The six small training loops stand on one helper (``mllib.training_loop.TrainingLoop``) and give, for
the same seeds, the numbers they gave before it: short fixed-seed runs against values recorded before the
loops were moved onto the helper; their Ctrl-C behaviour; the helper's own budget, bar and history."""
from __future__ import annotations

import pytest
import torch

import mllib.baselines
import mllib.incontext
import mllib.learned_optimizer
import mllib.rl.maml
import mllib.sine_experiments

pytestmark = pytest.mark.usefixtures("one_thread")


class Batches:
    """Labelled 8x8 'images' of 3 classes from a seeded generator (the supervised pre-training's input)."""

    num_classes = 3

    def __init__(self, seed: int = 0) -> None:
        self.generator = torch.Generator().manual_seed(seed)

    def sample(self, n: int):
        return torch.randn(n, 1, 8, 8, generator=self.generator), torch.arange(n) % 3


def six_runs(steps: int = 3) -> dict[str, tuple[list[float], dict[str, torch.Tensor]]]:
    """``{loop: (losses per step, final parameters)}`` of a short fixed-seed run of each of the six loops."""
    from mllib.incontext import InContextLearner, MLPEncoder, train_incontext
    from mllib.learned_optimizer import LearnedOptimizer, meta_train_optimizer
    from mllib.models import SineMLP
    from mllib.rl import PointNavigation, meta_train, pretrain_joint
    from mllib.rl.policy import seeded_policy
    from mllib.sine_experiments import meta_train_sinusoid, pretrain_sinusoid
    from mllib.tasks import SinusoidTasks

    runs = {}
    _, start, history = meta_train_sinusoid("maml", steps=steps, meta_batch=2, shots=3, inner_lr=0.01, seed=0,
                                            progress=False)
    runs["meta_train_sinusoid"] = history["loss"], start
    _, params = pretrain_sinusoid(steps=steps, batch=2, shots=3, seed=0, progress=False)
    runs["pretrain_sinusoid"] = [], params
    result = mllib.baselines.pretrain(Batches(), steps=steps, batch_size=4, filters=2, depth=1, progress=False)
    runs["baselines.pretrain"] = result.losses + result.accuracies, result.params
    torch.manual_seed(0)
    phi, history = meta_train_optimizer(LearnedOptimizer(hidden=4), SineMLP(hidden=4), steps=steps,
                                        meta_batch=2, horizon=2, truncation=1, shots=3, query=3, progress=False)
    runs["meta_train_optimizer"] = history["loss"], phi
    torch.manual_seed(0)
    model = InContextLearner(MLPEncoder(hidden=8), ways=None, dim=8, depth=1, heads=2)
    history = train_incontext(model, SinusoidTasks(shots=3, query=3, seed=0), steps=steps, meta_batch=2,
                              support_sizes=[1, 3], progress=False)
    runs["train_incontext"] = history["loss"] + history["metric"], dict(model.state_dict())
    env = PointNavigation(horizon=3)
    run = meta_train(seeded_policy(0, hidden=(4,)), env, steps, meta_batch=2, episodes=2, progress=False)
    runs["rl.meta_train"] = run.history["return_before"] + run.history["return_after"], run.params
    run = pretrain_joint(seeded_policy(0, hidden=(4,)), env, steps, meta_batch=2, episodes=2, progress=False)
    runs["rl.pretrain_joint"] = run.history["return"], run.params
    return runs


def checksum(params: dict[str, torch.Tensor]) -> float:
    """One float64 number that moves with every entry of every tensor (weights 1..2 along each)."""
    total = 0.0
    for name in sorted(params):
        flat = params[name].detach().double().flatten()
        total += float(flat @ torch.linspace(1, 2, flat.numel(), dtype=torch.float64))
    return total


# ----------------------------------------------------------------------------- same numbers as before

RECORDED = {   # six_runs() on one CPU thread, before the loops moved onto TrainingLoop (losses, checksum)
    "meta_train_sinusoid": ([4.709944725036621, 5.724370002746582, 0.26735225319862366], -1.9321471698782318),
    "pretrain_sinusoid": ([], -2.0085051451062252),
    "baselines.pretrain": ([1.1844756603240967, 1.7347831726074219, 1.5792465209960938, 0.5, 0.5, 0.25],
                           -3.321132002337245),
    "meta_train_optimizer": ([4.472185850143433, 5.59943699836731, 1.0536307096481323], -8.196103721981247),
    "train_incontext": ([7.549959659576416, 7.4792022705078125, 0.44007542729377747, 7.549959659576416,
                         7.4792022705078125, 0.44007542729377747], 30.190754227818978),
    "rl.meta_train": ([-0.9762572050094604, -1.2869648933410645, -1.0668777227401733, -0.850723385810852,
                       -1.040786623954773, -0.9900572896003723], -7.750010976312859),
    "rl.pretrain_joint": ([-0.9762572050094604, -1.0963408946990967, -1.168400764465332], -7.766087877031947),
}


def test_the_six_loops_give_the_numbers_recorded_before_the_helper():
    """Same seeds, same losses and final parameters (to float rounding across CPUs; bit-identical here)."""
    runs = six_runs()
    assert sorted(runs) == sorted(RECORDED)
    for name, (losses, params) in runs.items():
        want_losses, want_checksum = RECORDED[name]
        assert [float(x) for x in losses] == pytest.approx(want_losses, rel=1e-5, abs=1e-6), name
        assert checksum(params) == pytest.approx(want_checksum, rel=1e-5, abs=1e-6), name


def test_checksum_moves_with_one_entry():
    params = {"w": torch.zeros(3, 2), "b": torch.zeros(2)}
    moved = {"w": torch.zeros(3, 2).index_put_((torch.tensor(2), torch.tensor(1)), torch.tensor(1e-3)),
             "b": torch.zeros(2)}
    assert checksum(moved) != checksum(params)


# ----------------------------------------------------------------------------- Ctrl-C, as before

def interrupt_at_second_call(monkeypatch, module, name):
    """``module.name`` raises ``KeyboardInterrupt`` on its second call (Ctrl-C during the second step)."""
    real, calls = getattr(module, name), []

    def cut(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, cut)


def test_ctrl_c_keeps_the_finished_steps_of_the_sinusoid_and_optimizer_loops(monkeypatch):
    from mllib.learned_optimizer import LearnedOptimizer, meta_train_optimizer
    from mllib.models import SineMLP
    interrupt_at_second_call(monkeypatch, mllib.sine_experiments, "meta_step")
    _, _, history = mllib.sine_experiments.meta_train_sinusoid("maml", steps=4, meta_batch=2, shots=3,
                                                               inner_lr=0.01, progress=False)
    assert (history["step"], len(history["loss"]), history["interrupted"], history["stopped"]) == ([1], 1, True,
                                                                                                   False)
    interrupt_at_second_call(monkeypatch, mllib.learned_optimizer, "unroll")
    _, history = meta_train_optimizer(LearnedOptimizer(hidden=4), SineMLP(hidden=4), steps=4, meta_batch=2,
                                      horizon=2, shots=3, query=3, progress=False)
    assert (history["step"], len(history["loss"]), history["interrupted"], history["stopped"]) == ([1], 1, True,
                                                                                                   False)


def test_ctrl_c_in_pretrain_sinusoid_returns_the_steps_done(monkeypatch):
    one = mllib.sine_experiments.pretrain_sinusoid(steps=1, batch=2, shots=3, progress=False)[1]
    real = mllib.sine_experiments.SinusoidTasks.sample
    calls = []

    def sample(self, n):
        calls.append(n)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, n)

    monkeypatch.setattr(mllib.sine_experiments.SinusoidTasks, "sample", sample)
    cut = mllib.sine_experiments.pretrain_sinusoid(steps=4, batch=2, shots=3, progress=False)[1]
    assert all(torch.equal(cut[k], one[k]) for k in one)


def test_ctrl_c_in_incontext_training_keeps_the_steps_the_time_and_the_adam_state(monkeypatch):
    from mllib.incontext import InContextLearner, MLPEncoder, train_incontext
    from mllib.tasks import SinusoidTasks
    interrupt_at_second_call(monkeypatch, mllib.incontext, "batch_loss")
    model = InContextLearner(MLPEncoder(hidden=8), ways=None, dim=8, depth=1, heads=2)
    history = train_incontext(model, SinusoidTasks(shots=3, query=3, seed=0), steps=4, meta_batch=2,
                              progress=False)
    assert (history["step"], history["interrupted"]) == ([1], True)
    assert history["seconds"] > 0 and history["optimizer_state"]["state"]


def test_ctrl_c_in_supervised_pretraining_reaches_the_caller(monkeypatch):
    """baselines.pretrain has nothing to save half-way: Ctrl-C stops it and reaches the caller."""
    interrupt_at_second_call(monkeypatch, mllib.baselines, "loss_and_metric")
    with pytest.raises(KeyboardInterrupt):
        mllib.baselines.pretrain(Batches(), steps=4, batch_size=4, filters=2, depth=1, progress=False)


def test_a_time_budget_prints_the_same_notice(monkeypatch, capsys):
    from mllib.timing import use_clock
    clock = [0.0]

    def timed(real):
        def step(*args, **kwargs):
            clock[0] += 1.0
            return real(*args, **kwargs)
        return step

    monkeypatch.setattr(mllib.sine_experiments, "meta_step", timed(mllib.sine_experiments.meta_step))
    with use_clock(lambda: clock[0]):
        _, _, history = mllib.sine_experiments.meta_train_sinusoid("maml", steps=6, meta_batch=2, shots=3,
                                                                   inner_lr=0.01, progress=False, max_seconds=2.5)
    assert (history["step"], history["stopped"], history["interrupted"]) == ([1, 2], True, False)
    assert capsys.readouterr().out == ("time budget of 2.5 s: stopped after 2 of 6 meta-steps (2.0 s); the gpu "
                                       "profile bounds every live training run (MLLIB_PROFILE=full runs them all)\n")


# ----------------------------------------------------------------------------- the helper itself

def run_loop(loop, fail_at: int | None = None, error: type[BaseException] = KeyboardInterrupt,
             clock: list[float] | None = None) -> list[int]:
    """Iterate ``loop`` inside its block, each step logging ``loss = 1 / step`` and taking 1 s on
    ``clock``; step ``fail_at`` raises ``error`` instead. Returns the steps that started."""
    started = []
    with loop:
        for step in loop:
            started.append(step)
            if step == fail_at:
                raise error
            if clock is not None:
                clock[0] += 1.0
            loop.log(loss=1.0 / step)
    return started


def test_the_module_example_runs():
    import doctest
    import mllib.training_loop
    assert doctest.testmod(mllib.training_loop, optionflags=doctest.ELLIPSIS).failed == 0


def test_steps_history_and_seconds_of_a_full_run():
    from mllib.timing import use_clock
    from mllib.training_loop import TrainingLoop
    clock = [0.0]
    with use_clock(lambda: clock[0]):
        loop = TrainingLoop(3, "t", progress=False)
        assert run_loop(loop, clock=clock) == [1, 2, 3]
    assert loop.history == {"step": [1, 2, 3], "loss": [1.0, 0.5, 1 / 3], "interrupted": False, "stopped": False,
                            "seconds": 3.0}
    empty = TrainingLoop(0, "t", progress=False, keys=("loss", "metric"))
    assert run_loop(empty) == [] and (empty.history["step"], empty.history["metric"]) == ([], [])


def test_a_resumed_run_counts_on_from_done_and_its_bar_starts_there(monkeypatch):
    from mllib.training_loop import TrainingLoop
    monkeypatch.delenv("CI", raising=False)   # a bar that counts
    loop = TrainingLoop(5, "t", done=3)
    with loop:
        assert loop.bar.n == 3
        assert [step for step in loop] == [4, 5]
    assert loop.bar.n == 5
    assert run_loop(TrainingLoop(5, "t", progress=False, done=7)) == []


def test_the_budget_stops_before_a_step_would_overrun_it_and_says_so(capsys):
    from mllib.timing import use_clock
    from mllib.training_loop import TrainingLoop
    clock = [0.0]
    with use_clock(lambda: clock[0]):
        loop = TrainingLoop(10, "t", progress=False, max_seconds=2.5, what="meta-steps")
        assert run_loop(loop, clock=clock) == [1, 2]
    assert loop.stopped and not loop.interrupted
    assert "time budget of 2.5 s: stopped after 2 of 10 meta-steps (2.0 s)" in capsys.readouterr().out


@pytest.mark.parametrize("steps, expected, stopped", [(10, [1, 2, 3], True), (3, [1, 2, 3], False),
                                                      (2, [1, 2], False)])
def test_stop_after_ends_after_the_step_that_uses_the_budget_up_silently(capsys, steps, expected, stopped):
    from mllib.timing import use_clock
    from mllib.training_loop import TrainingLoop
    clock = [0.0]
    with use_clock(lambda: clock[0]):
        loop = TrainingLoop(steps, "t", progress=False, max_seconds=2.5, stop_after=True)
        assert run_loop(loop, clock=clock) == expected
    assert (loop.stopped, loop.seconds, capsys.readouterr().out) == (stopped, float(len(expected)), "")


def test_ctrl_c_and_sigterm_end_the_block_keeping_the_finished_steps(monkeypatch):
    import signal

    from mllib.signals import Interrupted
    from mllib.training_loop import TrainingLoop
    monkeypatch.delenv("CI", raising=False)   # a bar that counts
    for error in (KeyboardInterrupt, Interrupted(signal.SIGTERM)):
        loop = TrainingLoop(5, "t")
        assert run_loop(loop, fail_at=3, error=error) == [1, 2, 3]
        assert (loop.history["step"], loop.interrupted, loop.stopped, loop.bar.n) == ([1, 2], True, False, 2)


def test_a_loop_that_is_not_interruptible_passes_ctrl_c_on_and_other_errors_always_pass():
    from mllib.training_loop import TrainingLoop
    loop = TrainingLoop(5, "t", progress=False, interruptible=False)
    with pytest.raises(KeyboardInterrupt):
        run_loop(loop, fail_at=2)
    assert loop.interrupted and loop.history["step"] == [1]
    loop = TrainingLoop(5, "t", progress=False)
    with pytest.raises(ValueError):
        run_loop(loop, fail_at=2, error=ValueError)
    assert not loop.interrupted


def test_the_bar_shows_the_logged_values_every_show_every_steps():
    from mllib.training_loop import TrainingLoop
    shown = []
    loop = TrainingLoop(7, "t", progress=False, show_every=3)
    with loop:
        loop.bar.set_postfix = lambda values, refresh=True: shown.append(values)
        for step in loop:
            loop.log(loss=float(step))
    assert shown == [{"loss": "3.000"}, {"loss": "6.000"}]


def test_iterating_outside_the_block_is_one_clear_error():
    from mllib.training_loop import TrainingLoop
    with pytest.raises(RuntimeError, match="inside its block"):
        list(TrainingLoop(2, "t", progress=False))
    with pytest.raises(ValueError, match="max_seconds"):
        TrainingLoop(2, "t", max_seconds=0)


def test_clipped_step_clips_the_gradient_and_refuses_a_non_finite_loss_before_stepping():
    import pytest as _pytest
    from mllib.training_loop import clipped_step

    w = torch.nn.Parameter(torch.tensor([3.0, 4.0]))
    sgd = torch.optim.SGD([w], lr=1.0)
    value = clipped_step((10 * w).sum(), sgd, [w], clip=1.0, what="test", step=0, lr=1.0)
    assert value == 70.0
    torch.testing.assert_close(w.detach(), torch.tensor([3.0, 4.0]) - torch.tensor([1.0, 1.0]) / 2 ** 0.5)
    before = w.detach().clone()
    with _pytest.raises(FloatingPointError, match="test diverged at step 7 .*smaller lr than 1.0"):
        clipped_step(w.sum() * float("nan"), sgd, [w], clip=1.0, what="test", step=7, lr=1.0)
    assert torch.equal(w.detach(), before)
