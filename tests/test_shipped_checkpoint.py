"""The pretrained checkpoint shipped in the package loads, matches its model card and works."""
from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
from pathlib import Path

import pytest

import mllib
from mllib.checkpoint import load_checkpoint
from mllib.cli.train import add_parser, config_from_args
from mllib.config import Profile
from mllib.evaluate import evaluate

CHECKPOINTS = Path(mllib.__file__).resolve().parent / "checkpoints"
CARDS = sorted(CHECKPOINTS.glob("*.json"))


def test_every_card_has_its_checkpoint_and_the_protocol():
    assert CARDS, "no model card shipped in mllib/checkpoints"
    for card_path in CARDS:
        card = json.loads(card_path.read_text())
        for key in ("algo", "ways", "shots", "accuracy", "ci95", "tasks", "bn", "command", "card", "train_seconds"):
            assert key in card, f"{card_path.name} lacks {key!r}"
        weights = CHECKPOINTS / card["checkpoint"]
        assert weights.exists() and weights.stat().st_size < 1_000_000, f"{weights} missing or over 1 MB"
        assert card["tasks"] >= 600


@pytest.mark.parametrize("card_path", CARDS, ids=lambda p: p.stem)
def test_checkpoint_agrees_with_its_card_and_beats_chance_by_far(card_path, omniglot):
    card = json.loads(card_path.read_text())
    checkpoint = load_checkpoint(CHECKPOINTS / card["checkpoint"])
    config = checkpoint["config"]
    assert (config["algo"], config["ways"], config["shots"], config["bn"]) == (
        card["algo"], card["ways"], card["shots"], card["bn"])
    if not omniglot.complete:
        pytest.skip("the shipped checkpoint is scored on the real Omniglot test split (set MLLIB_DATA)")
    result = evaluate(CHECKPOINTS / card["checkpoint"], data=omniglot, tasks=40, device="cpu")
    # 40 tasks: a loose bound around the card's 600-task figure, far above chance (1 / ways).
    assert result["accuracy"] > card["accuracy"] - 0.08
    assert result["accuracy"] > 3 / card["ways"]


def test_every_cards_eval_command_names_a_checkpoint_found_from_anywhere(tmp_path, monkeypatch):
    """The command on a card works from an installed package, whatever the working directory."""
    import shlex

    from mllib.checkpoint import find_checkpoint

    monkeypatch.chdir(tmp_path)
    for card_path in CARDS:
        argv = shlex.split(json.loads(card_path.read_text())["eval_command"])
        assert argv[:4] == ["python", "-m", "mllib", "eval"]
        name = argv[argv.index("--checkpoint") + 1]
        assert find_checkpoint(name) == CHECKPOINTS / json.loads(card_path.read_text())["checkpoint"]


@pytest.mark.parametrize("card_path", CARDS, ids=lambda p: p.stem)
def test_card_command_reproduces_the_training_profile(card_path):
    """Rerunning the card's command trains with the profile stored in the checkpoint (every field).

    Profiles change over time (issue 17 made the quick profile the zero-head recipe); a card made
    before that names the old settings as flags, so its command still reproduces its checkpoint.
    """
    card = json.loads(card_path.read_text())
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    words = shlex.split(card["command"])
    assert words[:3] == ["python", "-m", "mllib"], card["command"]
    profile = config_from_args(parser.parse_args(words[3:])).resolved_profile()
    saved = load_checkpoint(CHECKPOINTS / card["checkpoint"])["config"]["profile"]
    defaults = {"head_init": "learned", "meta_lr_schedule": "constant",   # older checkpoints lack them
                "multi_step_loss": False, "per_step_lr": False, "per_step_bn": False}
    differ = {f.name: (getattr(profile, f.name), saved.get(f.name, defaults.get(f.name)))
              for f in dataclasses.fields(Profile)
              if getattr(profile, f.name) != saved.get(f.name, defaults.get(f.name))}
    assert not differ, f"{card_path.name}: the command gives (command, checkpoint) {differ}"
