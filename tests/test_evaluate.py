"""evaluate: the 95% CI formula, fixed seeded tasks, the protocol carried with the result, the plot."""
from __future__ import annotations

import math

import pytest
import torch

from mllib.evaluate import evaluate, format_result, mean_ci95, plot_learning_curve
from mllib.train import TrainConfig, meta_train, read_metrics

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


def test_evaluate_model_and_params_equals_checkpoint(run, omniglot):
    from_ckpt = evaluate(run.checkpoint_path, data=omniglot, tasks=6, device="cpu", progress=False)
    direct = evaluate((run.model, run.meta_params), data=omniglot, tasks=6, device="cpu", progress=False,
                      meta_config=run.meta_config, ways=3, shots=1, query=2, inner_steps=2)
    assert direct["accuracy"] == from_ckpt["accuracy"]
    from_result = evaluate(run, data=omniglot, tasks=6, device="cpu", progress=False)  # run.step == 2 == checkpoint
    assert from_result["accuracy"] == from_ckpt["accuracy"] and from_result["step"] == 2
    with pytest.raises(ValueError, match="meta_config"):
        evaluate((run.model, run.meta_params), data=omniglot, tasks=6, device="cpu")


def test_evaluate_rejects_bad_arguments(run, omniglot):
    with pytest.raises(ValueError, match="split"):
        evaluate(run.best_path, data=omniglot, split="dev")
    with pytest.raises(ValueError, match="tasks"):
        evaluate(run.best_path, data=omniglot, tasks=1)


def test_plot_learning_curve_writes_a_png(run, tmp_path):
    path = plot_learning_curve(run.metrics_path, tmp_path / "plots" / "curve.png", title="tiny")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plot_learning_curve(read_metrics(run.out), tmp_path / "again.png").stat().st_size > 1000
    with pytest.raises(FileNotFoundError, match="metrics"):
        plot_learning_curve(tmp_path / "nothing", tmp_path / "x.png")
