"""``--algo incontext`` through the course's trainer, evaluator and publisher (tiny nets, few steps).

The in-context learner has no inner loop: ``mllib.algorithms`` scores a task as
``model(support_x, support_y, query_x)``. Checked here: its meta-gradient is the gradient of
``mllib.incontext``'s own loss, training through the CLI writes the usual run folder, resuming is
bit-exact, evaluation reports no inner loop and support-statistics batch norm, ``--bn batch`` is
refused with a clear error, and ``publish`` writes a measured card.
"""
from __future__ import annotations

import json

import pytest
import torch

import mllib.data
import mllib.evaluate
from mllib.__main__ import main
from mllib.algorithms import MetaConfig, evaluate_tasks, init_meta_params, meta_gradient
from mllib.checkpoint import load_checkpoint, read_metrics
from mllib.evaluate import evaluate, format_result
from mllib.incontext import batch_loss, evaluate_incontext, omniglot_incontext
from mllib.learners import INCONTEXT_SHAPE, build_learner
from mllib.models import ConvLearner
from mllib.publish import publish
from mllib.tasks.batch import TaskBatch
from mllib.train import TrainConfig, meta_train

TINY = dict(filters=4, meta_batch=2, val_every=2, val_tasks=4, test_query=1, checkpoint_every=2)
TINY_FLAGS = ["--ways", "3", "--shots", "1", "--query", "1", "--profile", "quick", "--device", "cpu",
              "--filters", "4", "--meta-batch", "2", "--val-every", "2", "--val-tasks", "3", "--test-query", "1",
              "--checkpoint-every", "2", "--seed", "5", "--meta-lr-schedule", "constant"]


@pytest.fixture
def fixture_data(monkeypatch, omniglot):
    for module in (mllib.data, mllib.evaluate):  # evaluate holds its own reference
        monkeypatch.setattr(module, "load_omniglot", lambda *a, **k: omniglot)
    monkeypatch.setenv("CI", "1")  # no progress bars
    return omniglot


def image_tasks(tasks: int = 3, ways: int = 3, query: int = 2) -> TaskBatch:
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(ways).repeat(tasks, 1)
    return TaskBatch(torch.rand(tasks, ways, 1, 28, 28, generator=g), labels,
                     torch.rand(tasks, ways * query, 1, 28, 28, generator=g),
                     torch.arange(ways).repeat_interleave(query).repeat(tasks, 1))


# ----------------------------------------------------------------------------- the algorithm

@pytest.mark.parametrize("form", ["loop", "vmap"])
def test_meta_gradient_is_the_gradient_of_the_incontext_loss(form):
    torch.manual_seed(0)
    model, batch = omniglot_incontext(3, filters=4), image_tasks()
    cfg = MetaConfig(algo="incontext", bn="support", form=form)
    params = init_meta_params(model, cfg)
    grads, stats = meta_gradient(model, params, batch, cfg)
    loss, metrics = batch_loss(model, batch, params)
    expected = torch.autograd.grad(loss, list(params.values()))
    for (name, g), e in zip(grads.items(), expected):
        torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-6, msg=name)
    assert sum(float(g.abs().sum()) for g in grads.values()) > 0
    assert stats["loss"] == pytest.approx(float(loss.detach()), rel=1e-5)
    assert stats["accuracy"] == pytest.approx(float(metrics.mean()), abs=1e-6)
    scores = evaluate_tasks(model, params, batch, cfg, inner_steps=5)  # inner steps do not apply
    torch.testing.assert_close(scores, evaluate_incontext(model, batch, params))
    assert scores.grad_fn is None


def test_incontext_needs_support_batch_norm_and_its_own_model():
    with pytest.raises(ValueError, match="bn must be 'support' for algo='incontext'"):
        MetaConfig(algo="incontext", bn="batch")
    with pytest.raises(ValueError, match="bn must be 'support'"):
        TrainConfig(algo="incontext", bn="batch").validate()
    assert TrainConfig(algo="incontext").bn == "support" and TrainConfig(algo="maml").bn == "batch"
    batch = image_tasks()
    conv, incontext = ConvLearner(ways=3, filters=4), omniglot_incontext(3, filters=4)
    with pytest.raises(ValueError, match="does not fit ConvLearner"):
        meta_gradient(conv, init_meta_params(conv, MetaConfig()), batch,
                      MetaConfig(algo="incontext", bn="support"))
    with pytest.raises(ValueError, match="does not fit InContextLearner"):
        meta_gradient(incontext, init_meta_params(incontext, MetaConfig()), batch, MetaConfig(algo="maml"))


def test_build_learner_picks_the_network_of_the_algorithm():
    model = build_learner("incontext", 5, filters=8, depth=3)
    assert model.ways == 5 and len(model.encoder.blocks) == 3 and model.encoder.feature_dim == 8 * 3 * 3
    assert len(model.blocks) == INCONTEXT_SHAPE["depth"] and model.unknown.shape == (INCONTEXT_SHAPE["dim"],)
    assert isinstance(build_learner("protonet", 5, filters=8), ConvLearner)
    with pytest.raises(ValueError, match="algo"):
        build_learner("sgd", 5, filters=8)


# ----------------------------------------------------------------------------- trainer, eval, publish

def test_cli_trains_resumes_and_evaluates_incontext(tmp_path, fixture_data, capsys):
    out = tmp_path / "run"
    assert main(["train", "--algo", "incontext", *TINY_FLAGS, "--steps", "4", "--out", str(out)]) == 0
    assert "trained 4 steps" in capsys.readouterr().out
    assert {p.name for p in out.iterdir()} >= {"checkpoint.pt", "best.pt", "metrics.jsonl", "train.log"}
    assert [r["val_accuracy"] is not None for r in read_metrics(out)] == [False, True, False, True]
    state = load_checkpoint(out / "checkpoint.pt")
    assert (state["config"]["algo"], state["config"]["bn"]) == ("incontext", "support")
    assert "unknown" in state["meta_params"]  # the in-context learner's parameters
    assert "no inner loop" in (out / "train.log").read_text()
    cut = str(tmp_path / "cut")  # 2 steps, then resumed to 4: the same parameters as 4 steps at once
    assert main(["train", "--algo", "incontext", *TINY_FLAGS, "--steps", "2", "--out", cut]) == 0
    assert main(["train", "--algo", "incontext", *TINY_FLAGS, "--steps", "4", "--out", cut, "--resume"]) == 0
    resumed = load_checkpoint(tmp_path / "cut" / "checkpoint.pt")
    assert resumed["step"] == 4 and all(torch.equal(v, resumed["meta_params"][k])
                                        for k, v in state["meta_params"].items())
    capsys.readouterr()

    assert main(["eval", "--checkpoint", str(out / "best.pt"), "--tasks", "6", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["algo"], result["ways"], result["shots"], result["tasks"], result["query"]) == (
        "incontext", 3, 1, 6, 1)
    assert (result["inner_steps"], result["inner_lr"], result["bn"], result["transductive"]) == (
        0, None, "support", False)
    assert 0 <= result["accuracy"] <= 1
    assert main(["eval", "--checkpoint", str(out / "best.pt"), "--tasks", "6"]) == 0
    assert "incontext 3-way 1-shot" in capsys.readouterr().out

    assert main(["eval", "--checkpoint", str(out / "best.pt"), "--tasks", "6", "--bn", "batch"]) == 2
    assert "bn must be 'support' for algo='incontext'" in capsys.readouterr().err
    assert main(["train", "--algo", "incontext", *TINY_FLAGS, "--bn", "batch", "--out", str(tmp_path / "b")]) == 2
    assert "bn must be 'support' for algo='incontext'" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


def tiny(out, **kw) -> TrainConfig:
    fields = dict(algo="incontext", ways=3, shots=1, query=1, profile="quick", overrides=dict(TINY), steps=5,
                  device="cpu", seed=3, out=str(out), progress=False)
    fields.update(kw)
    return TrainConfig(**fields)


def test_interrupted_and_resumed_incontext_run_is_bitwise_identical(tmp_path, omniglot):
    def train(config, **kw):
        return meta_train(config, data=omniglot, log=lambda message: None, **kw)

    full = train(tiny(tmp_path / "full"))

    def interrupt_at_3(step, record):
        if step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(tiny(tmp_path / "cut"), callback=interrupt_at_3)
    resumed = train(tiny(tmp_path / "cut", resume=True))
    assert resumed.step == 5 and full.meta_params.keys() == resumed.meta_params.keys()
    for k in full.meta_params:
        assert torch.equal(full.meta_params[k], resumed.meta_params[k]), k
    strip = [{k: v for k, v in r.items() if k != "seconds"} for r in read_metrics(tmp_path / "full")]
    assert strip == [{k: v for k, v in r.items() if k != "seconds"} for r in read_metrics(tmp_path / "cut")]
    assert not torch.equal(full.meta_params["unknown"], torch.zeros_like(full.meta_params["unknown"]))


def test_publish_writes_an_incontext_card(tmp_path, omniglot):
    meta_train(tiny(tmp_path / "run"), data=omniglot, log=lambda message: None)
    card = publish(tmp_path / "run", "incontext_tiny", dest=tmp_path / "ckpt", tasks=600, device="cpu",
                   data=omniglot, card="test machine (shared)", progress=False)
    assert (card["algo"], card["bn"], card["transductive"], card["inner_steps_test"], card["inner_lr"]) == (
        "incontext", "support", False, 0, None)
    assert card["card"] == "test machine (shared)" and card["tasks"] == 600
    assert "--algo incontext" in card["command"] and "--bn batch" not in card["command"]
    again = evaluate(tmp_path / "ckpt" / "incontext_tiny.pt", data=omniglot, tasks=600, device="cpu",
                     progress=False)
    assert again["accuracy"] == pytest.approx(card["accuracy"], abs=1e-4)  # the card's number is measured
    assert "no inner loop" in format_result(again)


def test_learners_docstring_example_runs():
    import doctest

    import mllib.learners
    assert doctest.testmod(mllib.learners).failed == 0
