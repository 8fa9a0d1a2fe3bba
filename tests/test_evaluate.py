"""evaluate: the 95% CI formula, fixed seeded tasks, the protocol carried with the result, and its parts
(load_run, test_tasks, task_accuracies)."""
from __future__ import annotations

import math

import pytest
import torch

import mllib.evaluate as ev
from mllib.algorithms import MetaConfig
from mllib.evaluate import EvalProtocol, LearnerToTest, evaluate, format_result, load_run, mean_ci95, task_accuracies
from mllib.tasks import OmniglotTasks, TaskBatch
from mllib.train import TrainConfig, meta_train

PROTOCOL_KEYS = {"accuracy", "ci95", "ways", "shots", "query", "algo", "tasks", "inner_steps", "inner_lr",
                 "bn", "split", "transductive", "seconds", "device"}


def test_mean_ci95_hand_values():
    mean, half = mean_ci95([1.0, 0.0, 1.0, 1.0])  # sample sd = 0.5, n = 4
    assert mean == 0.75
    assert half == pytest.approx(1.96 * 0.5 / 2)
    mean, half = mean_ci95(torch.tensor([0.2, 0.4, 0.6]))  # sd = 0.2, n = 3
    assert mean == pytest.approx(0.4) and half == pytest.approx(1.96 * 0.2 / math.sqrt(3))
    assert mean_ci95([0.5] * 600) == (0.5, 0.0)


@pytest.mark.parametrize("values", [[], [0.3], [0.1, float("nan")]])
def test_mean_ci95_rejects_bad_input(values):
    with pytest.raises(ValueError, match="values"):
        mean_ci95(values)


@pytest.fixture(scope="module")
def run(tmp_path_factory, omniglot):
    out = tmp_path_factory.mktemp("run")
    config = TrainConfig(algo="maml", ways=3, shots=1, query=1, profile="quick", steps=2, device="cpu",
                         seed=1, out=str(out), progress=False,
                         overrides=dict(filters=4, meta_batch=2, val_every=1, val_tasks=3, test_query=2,
                                        checkpoint_every=1, inner_steps_test=2))
    return meta_train(config, data=omniglot, log=lambda m: None)


def test_evaluate_checkpoint_carries_the_protocol(run, omniglot):
    result = evaluate(run.best_path, data=omniglot, tasks=12, device="cpu", progress=False)
    assert PROTOCOL_KEYS <= set(result)
    assert (result["ways"], result["shots"], result["query"], result["tasks"]) == (3, 1, 2, 12)
    assert (result["algo"], result["inner_steps"], result["bn"], result["split"]) == ("maml", 2, "batch", "test")
    assert result["transductive"] is True and result["device"] == "cpu"
    assert 0 <= result["accuracy"] <= 1 and result["ci95"] >= 0
    # accuracies are multiples of 1/6 (3 ways x 2 queries), so the mean is a multiple of 1/72
    assert abs(result["accuracy"] * 72 - round(result["accuracy"] * 72)) < 1e-5
    assert "3-way 1-shot" in format_result(result) and "12 test tasks" in format_result(result)


def test_evaluate_uses_fixed_tasks(run, omniglot):
    a = evaluate(run.checkpoint_path, data=omniglot, tasks=8, device="cpu", progress=False)
    b = evaluate(run.checkpoint_path, data=omniglot, tasks=8, device="cpu", progress=False, batch_size=3)
    c = evaluate(run.checkpoint_path, data=omniglot, tasks=8, device="cpu", progress=False, seed=1)
    assert (a["accuracy"], a["ci95"]) == (b["accuracy"], b["ci95"])
    d = evaluate(run.checkpoint_path, data=omniglot, tasks=8, device="cpu", progress=False, bn="support",
                 inner_steps=0)
    assert d["transductive"] is False and d["inner_steps"] == 0
    assert c["seed"] == 1


def test_evaluate_run_and_train_result_equal_checkpoint(run, omniglot):
    from_ckpt = evaluate(run.checkpoint_path, data=omniglot, tasks=6, device="cpu", progress=False)
    protocol = EvalProtocol(run.meta_config, ways=3, shots=1, query=2, inner_steps=2)
    direct = evaluate(LearnerToTest(run.model, run.meta_params, protocol), data=omniglot, tasks=6, device="cpu",
                      progress=False)
    assert direct["accuracy"] == from_ckpt["accuracy"]
    from_result = evaluate(run, data=omniglot, tasks=6, device="cpu", progress=False)  # run.step == 2 == checkpoint
    assert from_result["accuracy"] == from_ckpt["accuracy"] and from_result["step"] == 2
    with pytest.raises(ValueError, match="source must be"):
        evaluate((run.model, run.meta_params), data=omniglot, tasks=6, device="cpu")


def test_load_run_reads_the_protocol_and_applies_changes(run):
    loaded = load_run(run.best_path, "cpu")
    protocol = loaded.protocol
    assert (protocol.ways, protocol.shots, protocol.query, protocol.inner_steps, protocol.split) == (3, 1, 2, 2, "maml")
    assert protocol.meta_config == MetaConfig(algo="maml", inner_steps=1, inner_lr=0.4, bn="batch", form="loop",
                                              head_init="zero")  # the quick profile's zeroing trick
    assert loaded.params.keys() == run.meta_params.keys() and loaded.checkpoint == str(run.best_path)
    assert loaded.model.ways == 3
    changed = load_run(run, "cpu", query=4, inner_steps=0, bn="support", form="vmap").protocol
    assert (changed.query, changed.inner_steps, changed.meta_config.bn, changed.meta_config.form) == (
        4, 0, "support", "vmap")


def test_shots_at_test_time_can_differ_from_training(run, omniglot):
    one = evaluate(run.best_path, data=omniglot, tasks=6, device="cpu", progress=False)
    three = evaluate(run.best_path, data=omniglot, tasks=6, device="cpu", progress=False, shots=3)
    assert (one["shots"], three["shots"], load_run(run, "cpu", shots=3).protocol.shots) == (1, 3, 3)
    assert "3-way 3-shot" in format_result(three)
    # other support sets: the same tasks' queries are scored after adapting on 3 images per class
    assert (one["accuracy"], one["ci95"]) != (three["accuracy"], three["ci95"])


def test_test_tasks_are_the_protocols_fixed_chunked_stream(omniglot):
    protocol = EvalProtocol(MetaConfig(), ways=3, shots=1, query=2, inner_steps=1)
    tasks = ev.test_tasks(omniglot, protocol, count=5, seed=3)
    assert tuple(tasks.support_x.shape) == (5, 3, 1, 28, 28) and tuple(tasks.query_y.shape) == (5, 6)
    again = ev.test_tasks(omniglot, protocol, count=5, seed=3)
    assert all(torch.equal(a, b) for a, b in zip(tasks.tensors(), again.tensors()))
    # drawn SAMPLE_CHUNK tasks at a time from OmniglotTasks(split, part, seed)
    sampler = OmniglotTasks(omniglot, split="maml", part="test", ways=3, shots=1, query=2, seed=3)
    by_hand = TaskBatch.cat([sampler.sample(5)])
    assert torch.equal(by_hand.support_x, tasks.support_x)
    other = ev.test_tasks(omniglot, protocol, count=5, seed=4)
    assert not torch.equal(other.support_x, tasks.support_x)
    with pytest.raises(ValueError, match="part"):
        ev.test_tasks(omniglot, protocol, count=5, part="dev")


def test_test_tasks_chunks_are_part_of_the_protocol(omniglot, monkeypatch):
    monkeypatch.setattr(ev, "SAMPLE_CHUNK", 2)
    protocol = EvalProtocol(MetaConfig(), ways=3, shots=1, query=1, inner_steps=1)
    tasks = ev.test_tasks(omniglot, protocol, count=5)
    sampler = OmniglotTasks(omniglot, split="maml", part="test", ways=3, shots=1, query=1, seed=ev.TEST_SEED)
    by_hand = TaskBatch.cat([sampler.sample(2), sampler.sample(2), sampler.sample(1)])
    assert torch.equal(by_hand.query_x, tasks.query_x)


def test_task_accuracies_any_batch_size_same_numbers(run, omniglot):
    loaded = load_run(run.best_path, "cpu")
    tasks = ev.test_tasks(omniglot, loaded.protocol, count=7)
    whole = task_accuracies(loaded.model, loaded.params, loaded.protocol, tasks, batch_size=7)
    assert whole.shape == (7,) and whole.dtype == torch.float32 and whole.device.type == "cpu"
    assert torch.equal(whole, task_accuracies(loaded.model, loaded.params, loaded.protocol, tasks, batch_size=2))
    # accuracies of 3-way tasks with 2 queries per class are multiples of 1/6
    assert torch.allclose(whole * 6, (whole * 6).round(), atol=1e-5)
    with pytest.raises(ValueError, match="batch_size"):
        task_accuracies(loaded.model, loaded.params, loaded.protocol, tasks, batch_size=0)


def test_evaluate_rejects_bad_arguments(run, omniglot):
    with pytest.raises(ValueError, match="split"):
        evaluate(run.best_path, data=omniglot, split="dev")
    with pytest.raises(ValueError, match="tasks"):
        evaluate(run.best_path, data=omniglot, tasks=1)
    with pytest.raises(ValueError, match="seed must be an integer >= 0"):  # as train refuses it
        evaluate(run.best_path, data=omniglot, tasks=2, seed=-1)


# ---------------------------------------------------------------- issue 16: faults 3, 5, 6, memory
def test_evaluate_samples_and_scores_in_chunks_with_the_all_at_once_numbers(run, omniglot, monkeypatch):
    monkeypatch.setattr(ev, "SAMPLE_CHUNK", 3)
    loaded = load_run(run.best_path, "cpu")
    at_once = task_accuracies(loaded.model, loaded.params, loaded.protocol,
                              ev.test_tasks(omniglot, loaded.protocol, count=8), batch_size=2)
    scored = []
    real = ev.task_accuracies

    def recording(model, params, protocol, tasks, *args, **kwargs):
        scored.append(len(tasks))
        return real(model, params, protocol, tasks, *args, **kwargs)

    monkeypatch.setattr(ev, "task_accuracies", recording)
    result = evaluate(run.best_path, data=omniglot, tasks=8, device="cpu", progress=False, batch_size=2)
    assert scored == [3, 3, 2]  # never more than SAMPLE_CHUNK tasks in memory
    assert (result["accuracy"], result["ci95"]) == mean_ci95(at_once)


def test_eval_refuses_a_checkpoint_with_non_finite_parameters(run, omniglot, tmp_path):
    state = torch.load(run.best_path, weights_only=True)
    state["meta_params"]["blocks.0.conv.weight"][0, 0, 0, 0] = float("nan")
    torch.save(state, tmp_path / "nan.pt")  # as an older mllib could write it
    with pytest.raises(ValueError, match=r"nan.pt.*blocks.0.conv.weight.*not finite"):
        evaluate(tmp_path / "nan.pt", data=omniglot, tasks=2, device="cpu", progress=False)


@pytest.mark.parametrize("change", ["missing", "extra", "shape"])
def test_checkpoint_parameters_must_match_the_model(run, omniglot, tmp_path, change):
    state = torch.load(run.best_path, weights_only=True)
    params = state["meta_params"]
    if change == "missing":
        del params["blocks.1.conv.weight"]
    elif change == "extra":
        params["blocks.9.conv.weight"] = torch.zeros(3)
    else:
        params["head.weight"] = torch.zeros(5, 4)
    torch.save(state, tmp_path / "bad.pt")
    expected = {"missing": r"missing blocks.1.conv.weight", "extra": r"unexpected blocks.9.conv.weight",
                "shape": r"head.weight has shape \[5, 4\] in the checkpoint, \[3, 4\] in the model"}[change]
    with pytest.raises(ValueError, match=rf"bad.pt.*{expected}"):
        evaluate(tmp_path / "bad.pt", data=omniglot, tasks=2, device="cpu", progress=False)


def without_alphabet(data, alphabet=None):
    """``data`` less every character of one alphabet (the first one with a test character of the maml split)."""
    from mllib.data import OmniglotData, split_characters

    alphabet = alphabet or data.characters[split_characters("maml", "test", data.characters)[0]].split("/")[0]
    keep = [i for i, name in enumerate(data.characters) if not name.startswith(alphabet + "/")]
    return OmniglotData(data.images[keep], [data.characters[i] for i in keep], [data.sets[i] for i in keep],
                        source="partial copy"), alphabet


def test_incomplete_omniglot_is_refused_or_marked_non_standard(run, omniglot, monkeypatch):
    full = evaluate(run.best_path, data=omniglot, tasks=4, device="cpu", progress=False)
    assert full["standard_protocol"] is omniglot.complete  # the synthetic data is a partial set
    monkeypatch.delenv("MLLIB_ALLOW_PARTIAL_DATA")
    partial, alphabet = without_alphabet(omniglot)
    with pytest.raises(RuntimeError, match=rf"incomplete.*{alphabet}.*allow"):
        evaluate(run.best_path, data=partial, tasks=4, device="cpu", progress=False)
    with pytest.warns(UserWarning, match="non-standard"):
        result = evaluate(run.best_path, data=partial, tasks=4, device="cpu", progress=False,
                          allow_partial_data=True)
    assert result["standard_protocol"] is False and alphabet in result["protocol_note"]
    assert "NON-STANDARD" in format_result(result)
