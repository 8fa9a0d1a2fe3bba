"""meta_train: same seed same metrics, exact resume, Ctrl-C, NaN stop, config checks (tiny nets, few steps)."""
from __future__ import annotations

import os
import signal
import time

import pytest
import torch

from mllib.checkpoint import CheckpointError, load_checkpoint, read_metrics
import mllib.algorithms
from mllib.models import build_conv_learner
from mllib.train import TrainConfig, TrainingDiverged, meta_train

# the trainer's mechanics on plain MAML (the quick profile's recipe is tested in test_recipe_options.py)
TINY = dict(filters=4, meta_batch=2, val_every=2, val_tasks=4, test_query=1, checkpoint_every=2,
            inner_steps=1, inner_steps_test=1, head_init="learned", meta_lr_schedule="constant")


def tiny(out, **kw) -> TrainConfig:
    fields = dict(algo="maml", ways=3, shots=1, query=1, profile="quick", overrides=dict(TINY), steps=5,
                  device="cpu", seed=3, out=str(out), progress=False)
    fields.update(kw)
    return TrainConfig(**fields)


def train(config, omniglot, **kw):
    return meta_train(config, data=omniglot, log=lambda message: None, **kw)


def without_time(records):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in records]


def assert_same_params(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_writes_metrics_checkpoints_and_best(tmp_path, omniglot):
    result = train(tiny(tmp_path), omniglot)
    records = read_metrics(tmp_path)
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5]
    assert set(records[0]) == {"step", "loss", "accuracy", "val_accuracy", "seconds"}
    assert [r["val_accuracy"] is not None for r in records] == [False, True, False, True, True]
    assert all(0 <= r["accuracy"] <= 1 and r["loss"] > 0 for r in records)
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    assert state["step"] == 5 == result.step
    assert_same_params(state["meta_params"], result.meta_params)
    best = load_checkpoint(tmp_path / "best.pt")
    vals = {r["step"]: r["val_accuracy"] for r in records if r["val_accuracy"] is not None}
    assert best["step"] == result.best_step and best["best_val_accuracy"] == max(vals.values())
    assert vals[result.best_step] == max(vals.values())
    assert state["config"]["profile"]["filters"] == 4 and state["config"]["ways"] == 3
    log = (tmp_path / "train.log").read_text()
    assert "form loop" in log and "device cpu" in log


def test_same_seed_same_metrics_other_seed_differs(tmp_path, omniglot):
    a = train(tiny(tmp_path / "a"), omniglot)
    b = train(tiny(tmp_path / "b"), omniglot)
    c = train(tiny(tmp_path / "c", seed=4), omniglot)
    ra, rb, rc = (without_time(read_metrics(tmp_path / n)) for n in "abc")
    assert ra == rb
    assert_same_params(a.meta_params, b.meta_params)
    assert ra != rc
    assert not torch.equal(a.meta_params["head.weight"], c.meta_params["head.weight"])


@pytest.mark.parametrize("algo", ["maml", "metasgd"])
def test_interrupted_and_resumed_is_bitwise_identical(tmp_path, omniglot, algo):
    full = train(tiny(tmp_path / "full", algo=algo), omniglot)

    def interrupt_at_3(step, record):
        if step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(tiny(tmp_path / "cut", algo=algo), omniglot, callback=interrupt_at_3)
    assert load_checkpoint(tmp_path / "cut" / "checkpoint.pt")["step"] == 3  # saved on Ctrl-C
    resumed = train(tiny(tmp_path / "cut", algo=algo, resume=True), omniglot)
    assert resumed.step == 5
    assert_same_params(full.meta_params, resumed.meta_params)
    a, b = (load_checkpoint(tmp_path / n / "checkpoint.pt") for n in ("full", "cut"))
    for s_a, s_b in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert torch.equal(s_a["exp_avg_sq"], s_b["exp_avg_sq"])
    assert without_time(read_metrics(tmp_path / "full")) == without_time(read_metrics(tmp_path / "cut"))
    assert a["best_step"] == b["best_step"] and a["best_val_accuracy"] == b["best_val_accuracy"]


def test_crash_resumes_from_last_periodic_checkpoint(tmp_path, omniglot):
    full = train(tiny(tmp_path / "full"), omniglot)

    def crash_at_3(step, record):
        if step == 3:
            raise RuntimeError("power cut")

    with pytest.raises(RuntimeError, match="power cut"):
        train(tiny(tmp_path / "cut"), omniglot, callback=crash_at_3)
    assert load_checkpoint(tmp_path / "cut" / "checkpoint.pt")["step"] == 2  # no save on a crash
    assert len(read_metrics(tmp_path / "cut")) == 3
    resumed = train(tiny(tmp_path / "cut", resume=True), omniglot)  # redoes step 3
    assert_same_params(full.meta_params, resumed.meta_params)
    assert without_time(read_metrics(tmp_path / "full")) == without_time(read_metrics(tmp_path / "cut"))


def test_sigint_finishes_the_step_then_saves(tmp_path, omniglot):
    def press_ctrl_c(step, record):
        if step == 1:
            os.kill(os.getpid(), signal.SIGINT)  # handled: stop after this step

    with pytest.raises(KeyboardInterrupt):
        train(tiny(tmp_path), omniglot, callback=press_ctrl_c)
    assert load_checkpoint(tmp_path / "checkpoint.pt")["step"] == 1
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored


def test_resume_without_checkpoint_starts_fresh_and_finished_run_is_a_no_op(tmp_path, omniglot):
    fresh = train(tiny(tmp_path / "a"), omniglot)
    resumed = train(tiny(tmp_path / "b", resume=True), omniglot)
    assert_same_params(fresh.meta_params, resumed.meta_params)
    again = train(tiny(tmp_path / "b", resume=True), omniglot)  # already complete: nothing to do
    assert again.step == 5 and len(read_metrics(tmp_path / "b")) == 5
    assert_same_params(fresh.meta_params, again.meta_params)
    longer = train(tiny(tmp_path / "b", resume=True, steps=6), omniglot)  # more steps: continues
    assert longer.step == 6 and len(read_metrics(tmp_path / "b")) == 6


def test_existing_run_needs_resume(tmp_path, omniglot):
    train(tiny(tmp_path, steps=2), omniglot)
    with pytest.raises(ValueError, match="--resume"):
        train(tiny(tmp_path, steps=2), omniglot)


def test_resume_with_another_config_names_the_difference(tmp_path, omniglot):
    train(tiny(tmp_path, steps=2), omniglot)
    with pytest.raises(CheckpointError, match=r"ways: checkpoint=3, requested=4"):
        train(tiny(tmp_path, steps=2, ways=4, resume=True), omniglot)
    with pytest.raises(CheckpointError, match=r"profile.meta_lr"):
        train(tiny(tmp_path, steps=2, resume=True, overrides={**TINY, "meta_lr": 0.1}), omniglot)


class NaNAfter:
    """Training tasks whose images become NaN from the ``bad``-th batch on (1-based)."""

    def __init__(self, tasks, bad):
        self.tasks, self.bad, self.count = tasks, bad, 0

    def sample(self, n):
        self.count += 1
        batch = self.tasks.sample(n)
        if self.count >= self.bad:
            batch.query_x[:] = float("nan")
        return batch

    def state_dict(self):
        return self.tasks.state_dict()

    def load_state_dict(self, state):
        self.tasks.load_state_dict(state)


def test_non_finite_loss_stops_naming_the_step_and_keeps_the_last_checkpoint(tmp_path, omniglot):
    from mllib.tasks import OmniglotTasks

    tasks = NaNAfter(OmniglotTasks(omniglot, ways=3, shots=1, query=1, seed=0), bad=4)
    with pytest.raises(TrainingDiverged, match=r"step 4: loss is nan.*lower learning rate") as err:
        train(tiny(tmp_path), omniglot, train_tasks=tasks)
    assert err.value.step == 4
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    assert state["step"] == 2
    assert all(torch.isfinite(v).all() for v in state["meta_params"].values())
    assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2, 3]


def test_huge_learning_rate_diverges(tmp_path, omniglot):
    config = tiny(tmp_path, steps=30, overrides={**TINY, "inner_lr": 1e30, "meta_lr": 1e30})
    with pytest.raises(TrainingDiverged, match=r"training stopped at step \d+.*lower learning rate"):
        train(config, omniglot)


def test_grad_hook_is_applied(tmp_path, omniglot):
    seen = []

    def zero(grads):
        seen.append(sorted(grads))
        return {k: torch.zeros_like(g) for k, g in grads.items()}

    torch.manual_seed(3)
    result = train(tiny(tmp_path, steps=2), omniglot, grad_hook=zero)
    assert len(seen) == 2 and "head.weight" in seen[0]
    torch.manual_seed(3)
    init = dict(build_conv_learner(3, 4).named_parameters())
    assert_same_params({k: v.detach() for k, v in init.items()}, result.meta_params)  # Adam on zeros: no move


def test_world_size_chunks_need_equal_shares(tmp_path, omniglot):
    with pytest.raises(ValueError, match="divisible by world_size"):
        train(tiny(tmp_path, overrides={**TINY, "meta_batch": 3}), omniglot, rank=0, world_size=2)
    with pytest.raises(ValueError, match="rank"):
        train(tiny(tmp_path), omniglot, rank=2, world_size=2)
    with pytest.raises(ValueError, match="max_seconds works in one process only"):
        train(tiny(tmp_path, max_seconds=60), omniglot, rank=0, world_size=2)


@pytest.mark.parametrize("field,value", [("algo", "maml2"), ("ways", 1), ("shots", 0), ("bn", "running"),
                                         ("form", "jit"), ("steps", 0), ("seed", -1),
                                         ("max_seconds", 0), ("max_seconds", float("nan")),
                                         ("max_seconds", "60")])
def test_bad_config_names_the_field(tmp_path, field, value):
    with pytest.raises(ValueError, match=field):
        tiny(tmp_path, **{field: value}).validate()


@pytest.fixture
def one_second_steps(monkeypatch):
    """A fake clock on which every meta-gradient takes exactly 1 s and nothing else takes time."""
    clock = [1000.0]
    real = mllib.algorithms.meta_gradient

    def timed(*args, **kwargs):
        clock[0] += 1.0
        return real(*args, **kwargs)

    monkeypatch.setattr(time, "perf_counter", lambda: clock[0])
    monkeypatch.setattr(mllib.algorithms, "meta_gradient", timed)


def test_time_budget_stops_validates_saves_and_resumes(tmp_path, omniglot, one_second_steps):
    budget = train(tiny(tmp_path / "budget", steps=10, max_seconds=2.5), omniglot)
    records = read_metrics(tmp_path / "budget")
    assert budget.step == 3 and [r["seconds"] for r in records] == [1.0, 2.0, 3.0]
    assert [r["val_accuracy"] is not None for r in records] == [False, True, True]  # step 3 validated
    assert load_checkpoint(tmp_path / "budget" / "checkpoint.pt")["step"] == 3
    assert "time budget of 2.5 s used up after step 3/10" in (tmp_path / "budget" / "train.log").read_text()
    # the same run as one asked for 3 steps, bit for bit
    three = train(tiny(tmp_path / "three", steps=3), omniglot)
    assert_same_params(budget.meta_params, three.meta_params)
    assert without_time(records) == without_time(read_metrics(tmp_path / "three"))
    # resuming with the budget spent does nothing; a larger budget continues where it stopped
    again = train(tiny(tmp_path / "budget", steps=10, max_seconds=2.5, resume=True), omniglot)
    assert again.step == 3 and len(read_metrics(tmp_path / "budget")) == 3
    more = train(tiny(tmp_path / "budget", steps=10, max_seconds=4.5, resume=True), omniglot)
    assert more.step == 5 and [r["seconds"] for r in read_metrics(tmp_path / "budget")] == [1, 2, 3, 4, 5]


def test_trained_model_holds_the_final_meta_parameters(tmp_path, omniglot):
    """The one rule for trained weights, as meta_train_sinusoid follows it (tests/test_sinusoid.py)."""
    result = train(tiny(tmp_path, steps=2), omniglot)
    weights = {k: v.detach() for k, v in result.model.named_parameters()}
    assert_same_params(weights, result.meta_params)


# ---------------------------------------------------------------- issue 16: faults 3, 6, 7, 8
@pytest.mark.parametrize("field,value", [("meta_lr", float("inf")), ("meta_lr", float("nan")),
                                         ("inner_lr", float("inf")), ("inner_lr", -0.1),
                                         ("sine_meta_lr", float("inf")), ("sine_inner_lr", 0)])
def test_every_learning_rate_must_be_a_finite_number_above_zero(tmp_path, field, value):
    with pytest.raises(ValueError, match=rf"^{field} must be a finite number > 0"):
        tiny(tmp_path, overrides={**TINY, field: value}).resolved_profile()


def test_parameters_that_stop_being_finite_stop_the_run_and_are_never_saved(tmp_path, omniglot):
    # the loss and the meta-gradient are finite; the step applied is not (a gradient hook gone wrong,
    # as a broken all-reduce would be, or a float32 overflow)
    config = tiny(tmp_path, overrides={**TINY, "val_every": 1, "checkpoint_every": 1})
    with pytest.raises(TrainingDiverged, match=r"step 1: meta-parameter \S+ is not finite"):
        train(config, omniglot, grad_hook=lambda grads: {k: g * float("inf") for k, g in grads.items()})
    assert not (tmp_path / "best.pt").exists() and not (tmp_path / "checkpoint.pt").exists()
    assert read_metrics(tmp_path) == []


def test_sigterm_is_handled_like_ctrl_c(tmp_path, omniglot):
    from mllib.signals import Interrupted

    def terminate(step, record):
        if step == 1:
            os.kill(os.getpid(), signal.SIGTERM)  # handled: stop after this step, then save

    with pytest.raises(Interrupted) as err:
        train(tiny(tmp_path), omniglot, callback=terminate)
    assert err.value.signum == signal.SIGTERM
    assert load_checkpoint(tmp_path / "checkpoint.pt")["step"] == 1
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handler restored


def test_torn_last_metrics_line_is_dropped_on_resume(tmp_path, omniglot):
    full = train(tiny(tmp_path / "full"), omniglot)

    def crash_at_3(step, record):
        if step == 3:
            raise RuntimeError("killed while writing")

    with pytest.raises(RuntimeError):
        train(tiny(tmp_path / "cut"), omniglot, callback=crash_at_3)
    with open(tmp_path / "cut" / "metrics.jsonl", "a") as handle:
        handle.write('{"step": 4, "lo')  # the torn line of a write cut short
    assert [r["step"] for r in read_metrics(tmp_path / "cut")] == [1, 2, 3]
    resumed = train(tiny(tmp_path / "cut", resume=True), omniglot)
    assert_same_params(full.meta_params, resumed.meta_params)
    assert without_time(read_metrics(tmp_path / "full")) == without_time(read_metrics(tmp_path / "cut"))


def test_metrics_rewrite_on_resume_is_atomic(tmp_path, omniglot, monkeypatch):
    def crash_at_4(step, record):
        if step == 4:
            raise RuntimeError("power cut")

    with pytest.raises(RuntimeError):  # checkpoint at step 3, metrics up to step 4
        train(tiny(tmp_path, overrides={**TINY, "checkpoint_every": 3}), omniglot, callback=crash_at_4)
    before = (tmp_path / "metrics.jsonl").read_text()
    replaced = []
    real_replace = os.replace

    def failing_replace(src, dst):
        replaced.append(os.path.basename(dst))
        if os.path.basename(dst) == "metrics.jsonl":
            raise OSError(28, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="metrics.jsonl"):
        train(tiny(tmp_path, resume=True, overrides={**TINY, "checkpoint_every": 3}), omniglot)
    assert "metrics.jsonl" in replaced
    assert (tmp_path / "metrics.jsonl").read_text() == before  # untouched by the failed rewrite
    assert [p.name for p in tmp_path.iterdir() if ".tmp" in p.name] == []


def test_orphaned_temporary_files_of_dead_writers_are_removed(tmp_path, omniglot):
    from test_run_lock import dead_pid

    train(tiny(tmp_path, steps=2), omniglot)
    pid = dead_pid()
    orphans = [tmp_path / f".checkpoint.pt.tmp-{pid}", tmp_path / f".metrics.jsonl.tmp-{pid}-x1"]
    alive = tmp_path / f".best.pt.tmp-{os.getpid()}-other"  # a write in progress in a live process
    for path in (*orphans, alive):
        path.write_bytes(b"half written")
    train(tiny(tmp_path, steps=3, resume=True), omniglot)
    assert not any(p.exists() for p in orphans) and alive.exists()


def test_incomplete_omniglot_is_refused_unless_allowed_and_then_marked(tmp_path, omniglot, monkeypatch):
    from test_evaluate import without_alphabet

    monkeypatch.delenv("MLLIB_ALLOW_PARTIAL_DATA")
    partial, alphabet = without_alphabet(omniglot, omniglot.characters[0].split("/")[0])
    with pytest.raises(RuntimeError, match=rf"incomplete.*{alphabet}.*allow_partial_data"):
        train(tiny(tmp_path / "refused"), partial)
    with pytest.warns(UserWarning, match="non-standard"):
        train(tiny(tmp_path / "allowed", allow_partial_data=True), partial)
    config = load_checkpoint(tmp_path / "allowed" / "best.pt")["config"]
    assert alphabet in config["protocol_note"]
    assert "non-standard" in (tmp_path / "allowed" / "train.log").read_text()
