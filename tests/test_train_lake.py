"""``--split lake``: unseen alphabets at test time, validation on held-out background alphabets."""
from __future__ import annotations

import json

import pytest

import mllib.data
from mllib.__main__ import main
from mllib.data import split_characters
from mllib.data.splits import LAKE_VAL_ALPHABETS, split_parts

TINY_FLAGS = ["--ways", "3", "--shots", "1", "--query", "1", "--profile", "quick", "--device", "cpu",
              "--filters", "4", "--meta-batch", "2", "--val-every", "1", "--val-tasks", "3", "--test-query", "1",
              "--checkpoint-every", "1", "--inner-steps-test", "1"]


def alphabets(indices, characters):
    return {characters[i].split("/")[0] for i in indices}


def test_lake_parts_keep_train_validation_and_test_alphabets_apart(omniglot):
    names = omniglot.characters
    parts = split_parts("lake", names)
    train, val = parts["train"]["characters"], parts["val"]["characters"]
    test = split_characters("lake", "test", names)
    assert train and val and test
    assert alphabets(val, names) == set(LAKE_VAL_ALPHABETS) & alphabets(val + train, names)
    assert alphabets(train, names).isdisjoint(alphabets(val, names))
    assert alphabets(train + val, names).isdisjoint(alphabets(test, names))
    assert sorted(train + val) == split_characters("lake", "train", names)   # the background set, all of it
    if omniglot.complete:
        assert (len(train), len(val), len(test)) == (792, 172, 659)
    assert split_parts("maml", names) == {"train": {"split": "maml"}, "val": {"split": "maml"}}
    with pytest.raises(ValueError, match="split must be one of"):
        split_parts("omniglot", names)


def test_cli_trains_on_the_lake_split_and_evaluates_on_evaluation_alphabets(tmp_path, capsys, monkeypatch,
                                                                             omniglot):
    monkeypatch.setattr(mllib.data, "load_omniglot", lambda *a, **k: omniglot)
    monkeypatch.setenv("CI", "1")
    out = tmp_path / "lake"
    assert main(["train", "--algo", "maml", *TINY_FLAGS, "--split", "lake", "--steps", "2", "--out", str(out)]) == 0
    assert "trained 2 steps" in capsys.readouterr().out
    assert main(["eval", "--checkpoint", str(out / "best.pt"), "--tasks", "4", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["split_name"], result["split"], result["tasks"]) == ("lake", "test", 4)
