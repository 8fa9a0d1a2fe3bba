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
