"""``python -m mllib train`` and ``eval`` end to end with a tiny net and 2 meta-steps."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

import mllib.data
from mllib.__main__ import main

TINY_FLAGS = ["--ways", "3", "--shots", "1", "--query", "1", "--profile", "quick", "--device", "cpu",
              "--filters", "4", "--meta-batch", "2", "--val-every", "1", "--val-tasks", "3", "--test-query", "1",
              "--checkpoint-every", "1", "--inner-steps-test", "1", "--seed", "5"]


@pytest.fixture(autouse=True)
def use_fixture_data(monkeypatch, omniglot):
    monkeypatch.setattr(mllib.data, "load_omniglot", lambda *a, **k: omniglot)
    monkeypatch.setenv("CI", "1")  # no progress bars


def test_train_then_eval_json_and_plot(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--algo", "maml", *TINY_FLAGS, "--steps", "2", "--out", str(out)]) == 0
    assert "trained 2 steps" in capsys.readouterr().out
    budget = tmp_path / "budget"  # a budget far beyond 2 steps changes nothing
    assert main(["train", "--algo", "maml", *TINY_FLAGS, "--steps", "2", "--max-seconds", "3600",
                 "--out", str(budget)]) == 0
    assert "trained 2 steps" in capsys.readouterr().out
    assert (budget / "metrics.jsonl").read_text().count("step") == 2
    assert {p.name for p in out.iterdir()} >= {"checkpoint.pt", "best.pt", "metrics.jsonl", "train.log"}

    plot = tmp_path / "curve.png"
    assert main(["eval", "--checkpoint", str(out / "best.pt"), "--tasks", "6", "--split", "test", "--json",
                 "--plot", str(plot)]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)  # stdout is pure JSON
    assert {"accuracy", "ci95", "ways", "shots", "algo", "tasks", "inner_steps", "bn", "split"} <= set(result)
    assert (result["ways"], result["shots"], result["algo"], result["tasks"], result["split"]) == \
        (3, 1, "maml", 6, "test")
    assert plot.read_bytes()[:4] == b"\x89PNG" and str(plot) in captured.err

    assert main(["eval", "--checkpoint", str(out / "checkpoint.pt"), "--tasks", "6"]) == 0
    assert "maml 3-way 1-shot" in capsys.readouterr().out


def test_train_resume_continues_and_mismatch_is_an_error(tmp_path, capsys):
    out = str(tmp_path / "run")
    assert main(["train", "--algo", "protonet", *TINY_FLAGS, "--steps", "1", "--out", out, "--resume"]) == 0
    assert main(["train", "--algo", "protonet", *TINY_FLAGS, "--steps", "2", "--out", out, "--resume"]) == 0
    assert "resumed from" in capsys.readouterr().out + (tmp_path / "run" / "train.log").read_text()
    assert main(["train", "--algo", "maml", *TINY_FLAGS, "--steps", "2", "--out", out, "--resume"]) == 2
    assert "algo: checkpoint='protonet', requested='maml'" in capsys.readouterr().err


def test_bad_arguments_and_missing_checkpoint(tmp_path, capsys):
    assert main(["train", *TINY_FLAGS, "--steps", "0", "--out", str(tmp_path)]) == 2
    assert "steps must be" in capsys.readouterr().err
    assert main(["train", *TINY_FLAGS, "--max-seconds", "-1", "--out", str(tmp_path)]) == 2
    assert "max_seconds must be a number of seconds > 0" in capsys.readouterr().err
    assert main(["eval", "--checkpoint", str(tmp_path / "none.pt")]) == 2
    assert "no checkpoint" in capsys.readouterr().err


def test_module_entry_point_lists_train_and_eval():
    out = subprocess.run([sys.executable, "-m", "mllib", "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "train" in out.stdout and "eval" in out.stdout
