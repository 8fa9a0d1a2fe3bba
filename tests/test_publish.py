"""mllib.publish: a run becomes a slim checkpoint plus a model card whose numbers are measured."""
from __future__ import annotations

import json
import shlex

import pytest
import torch

import mllib.data
from mllib.__main__ import build_parser, main
from mllib.checkpoint import load_checkpoint
from mllib.cli.train import config_from_args
from mllib.evaluate import evaluate
from mllib.publish import profile_label, publish, slim_checkpoint, train_command
from mllib.results import cards_table
from mllib.train import TrainConfig, meta_train

TINY = dict(filters=4, meta_batch=2, val_every=2, val_tasks=4, test_query=1, checkpoint_every=2,
            inner_steps=1, inner_steps_test=1)


@pytest.fixture
def run(tmp_path, omniglot):
    config = TrainConfig(algo="maml", ways=3, shots=1, query=1, profile="quick", overrides=dict(TINY), steps=4,
                         device="cpu", seed=3, out=str(tmp_path / "run"), progress=False, max_seconds=600.0)
    meta_train(config, data=omniglot, log=lambda message: None)
    return tmp_path / "run"


def test_publish_writes_slim_checkpoint_card_and_log(run, tmp_path, omniglot):
    card = publish(run, "tiny_3w1s", dest=tmp_path / "dest", data=omniglot, device="cpu", progress=False,
                   card="test machine", notes="tiny", extra={"train_peak_rss_mb": 1})
    dest = tmp_path / "dest"
    assert {p.name for p in dest.iterdir()} == {"tiny_3w1s.pt", "tiny_3w1s.json", "tiny_3w1s.train.log"}
    assert json.loads((dest / "tiny_3w1s.json").read_text()) == card
    published = load_checkpoint(dest / "tiny_3w1s.pt")
    best = load_checkpoint(run / "best.pt")
    assert published["optimizer"] == {} and "sampler" not in published
    assert (dest / "tiny_3w1s.pt").stat().st_size < (run / "best.pt").stat().st_size
    for k, v in best["meta_params"].items():
        assert torch.equal(published["meta_params"][k], v)
    # the card's accuracy is the one evaluate() measures on the published file
    again = evaluate(dest / "tiny_3w1s.pt", data=omniglot, tasks=600, device="cpu", progress=False)
    assert card["accuracy"] == round(again["accuracy"], 4) and card["ci95"] == round(again["ci95"], 4)
    assert (card["algo"], card["ways"], card["shots"], card["tasks"], card["bn"]) == ("maml", 3, 1, 600, "batch")
    assert card["meta_steps"] == 4 and card["best_step"] == best["best_step"]
    assert card["profile"].startswith("quick (") and "meta_steps=4" in card["profile"]
    assert card["card"] == "test machine" and card["train_peak_rss_mb"] == 1 and card["notes"] == "tiny"
    assert card["seconds_to_best"] <= card["train_seconds"]
    row = cards_table([("tiny_3w1s.json", card)])[-1]
    assert "`tiny_3w1s.pt`" in row and "3-way 1-shot" in row and "test machine" in row


def test_train_command_rebuilds_the_run_config(run):
    state = load_checkpoint(run / "best.pt")
    command = train_command(state["config"])
    assert command.startswith("python -m mllib train --algo maml --ways 3 --shots 1 --profile quick")
    args = build_parser().parse_args(shlex.split(command)[3:])
    rebuilt = config_from_args(args).run_dict()
    rebuilt["requested"]["progress"] = False  # the one field the command line does not carry
    state["config"].pop("protocol_note", None)  # made by the data (the synthetic set is partial), not a flag
    assert rebuilt == state["config"]


def test_slim_checkpoint_keeps_what_evaluation_needs(run):
    state = load_checkpoint(run / "checkpoint.pt")
    slim = slim_checkpoint(state)
    assert set(slim) >= {"meta_params", "config", "step", "version"} and slim["optimizer"] == {}
    assert "sampler" not in slim and "torch_rng" not in slim


def test_bad_requests_say_what_to_do(run, tmp_path, omniglot):
    with pytest.raises(ValueError, match="name must be a file stem"):
        publish(run, "../escape", dest=tmp_path, data=omniglot)
    with pytest.raises(ValueError, match="tasks must be an integer >= 600"):
        publish(run, "x", dest=tmp_path, data=omniglot, tasks=100)
    with pytest.raises(FileNotFoundError, match="train there first"):
        publish(tmp_path / "nothing", "x", dest=tmp_path, data=omniglot)


def test_cli_publish_prints_the_card(run, tmp_path, omniglot, monkeypatch, capsys):
    monkeypatch.setattr(mllib.data, "load_omniglot", lambda *a, **k: omniglot)
    monkeypatch.setenv("CI", "1")
    dest = tmp_path / "cli"
    assert main(["publish", str(run), "--name", "cli_3w1s", "--dest", str(dest), "--device", "cpu",
                 "--set", "train_peak_rss_mb=816", "--set", "note=plain text"]) == 0
    card = json.loads(capsys.readouterr().out)
    assert card["train_peak_rss_mb"] == 816 and card["note"] == "plain text"
    assert (dest / "cli_3w1s.json").is_file()
    assert main(["publish", str(run), "--name", "x", "--dest", str(dest), "--set", "novalue"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err


def test_profile_label_names_what_the_run_changed():
    from mllib.config import resolve_profile

    config = {"ways": 5, "profile": resolve_profile("quick", 5).to_dict()}
    assert profile_label(config) == "quick"
    config["profile"].update(meta_batch=16, meta_steps=6000, meta_lr=1e-3)
    assert profile_label(config) == "quick (meta_batch=16, meta_lr=0.001, meta_steps=6000)"
    twenty = {"ways": 20, "profile": resolve_profile("full", 20).to_dict()}  # 20-way settings are the profile's
    assert profile_label(twenty) == "full"


# ---------------------------------------------------------------- issue 16: no writes into the package
def test_publish_defaults_to_a_folder_in_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = build_parser().parse_args(["publish", "runs/x", "--name", "x"])
    assert (tmp_path / args.dest).resolve() == tmp_path / "checkpoints"


def test_unwritable_dest_is_refused_before_the_evaluation(run, tmp_path, omniglot, monkeypatch, capsys):
    import mllib.publish

    (tmp_path / "plain").write_text("a file")
    monkeypatch.setattr(mllib.publish, "evaluate", lambda *a, **k: pytest.fail("evaluated first"))
    monkeypatch.setattr(mllib.data, "load_omniglot", lambda *a, **k: omniglot)
    dest = tmp_path / "plain" / "dest"
    assert main(["publish", str(run), "--name", "x", "--dest", str(dest), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and str(dest.parent) in err and "Traceback" not in err


def test_installed_package_is_never_written_to(run, tmp_path, omniglot, monkeypatch):
    import mllib.checkpoint
    import mllib.publish

    monkeypatch.setattr(mllib.publish, "evaluate", lambda *a, **k: pytest.fail("evaluated first"))
    monkeypatch.setattr(mllib.publish, "repo_root", lambda: None)  # as in site-packages
    with pytest.raises(ValueError, match="inside the installed mllib package"):
        publish(run, "x", dest=mllib.checkpoint.SHIPPED_CHECKPOINTS, data=omniglot)


def test_card_commands_work_from_an_installed_package(run, tmp_path, omniglot, monkeypatch):
    import mllib.checkpoint

    shipped = tmp_path / "site-packages" / "mllib" / "checkpoints"
    monkeypatch.setattr(mllib.checkpoint, "SHIPPED_CHECKPOINTS", shipped)
    card = publish(run, "tiny_3w1s", dest=shipped, data=omniglot, device="cpu", progress=False)
    monkeypatch.chdir(tmp_path)  # anywhere: the command names the shipped checkpoint, not a path
    assert "--checkpoint tiny_3w1s " in card["eval_command"]
    monkeypatch.setattr(mllib.data, "load_omniglot", lambda *a, **k: omniglot)
    monkeypatch.setenv("CI", "1")
    argv = shlex.split(card["eval_command"])[3:]
    argv[argv.index("--tasks") + 1] = "4"
    assert main(argv) == 0


def test_non_standard_protocol_is_on_the_card(run, tmp_path, omniglot, monkeypatch):
    from test_evaluate import without_alphabet

    partial, alphabet = without_alphabet(omniglot)
    with pytest.warns(UserWarning, match="non-standard"):
        card = publish(run, "partial", dest=tmp_path / "dest", data=partial, device="cpu", progress=False,
                       allow_partial_data=True)
    assert card["standard_protocol"] is False and alphabet in card["protocol_note"]
    assert "non-standard" in "\n".join(cards_table([("partial.json", card)]))
