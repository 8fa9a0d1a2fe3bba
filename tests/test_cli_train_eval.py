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
              "--checkpoint-every", "1", "--inner-steps-test", "1", "--seed", "5",
              "--meta-lr-schedule", "constant"]  # the resume tests extend runs (cosine would refuse)


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


# ---------------------------------------------------------------- issue 16: faults 3, 4, 7, 8
def one_line_error(capsys, *parts) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1 and err.startswith("error: "), err
    for part in parts:
        assert str(part) in err, err
    return err


def test_infinite_meta_lr_is_refused_before_training(tmp_path, capsys):
    assert main(["train", *TINY_FLAGS, "--steps", "2", "--meta-lr", "inf", "--out", str(tmp_path / "r")]) == 2
    one_line_error(capsys, "meta_lr must be a finite number > 0, got inf")
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("where", ["file", "under_file", "too_long"])
def test_unusable_out_folder_is_one_line_naming_it(tmp_path, capsys, where):
    (tmp_path / "plain").write_text("a file")
    out = {"file": tmp_path / "plain", "under_file": tmp_path / "plain" / "run",
           "too_long": tmp_path / ("x" * 300)}[where]
    assert main(["train", *TINY_FLAGS, "--steps", "2", "--out", str(out)]) == 2
    one_line_error(capsys, out if where != "too_long" else "x" * 300)


def test_disk_full_says_so_with_the_path(tmp_path, capsys, monkeypatch):
    import errno

    import mllib.checkpoint

    def full(obj, handle):
        raise OSError(errno.ENOSPC, "No space left on device")  # what a write to a full disk raises

    monkeypatch.setattr(mllib.checkpoint.torch, "save", full)
    assert main(["train", *TINY_FLAGS, "--steps", "2", "--out", str(tmp_path)]) == 2
    one_line_error(capsys, "no space left on device", tmp_path / "best.pt")  # the first file saved


def test_unwritable_plot_is_refused_before_the_evaluation(tmp_path, capsys, monkeypatch):
    import mllib.cli.eval

    out = tmp_path / "run"
    assert main(["train", *TINY_FLAGS, "--steps", "1", "--out", str(out)]) == 0
    capsys.readouterr()
    (tmp_path / "plain").write_text("a file")
    monkeypatch.setattr(mllib.cli.eval, "evaluate", lambda *a, **k: pytest.fail("evaluated first"))
    plot = tmp_path / "plain" / "curve.png"
    assert main(["eval", "--checkpoint", str(out / "best.pt"), "--tasks", "6", "--plot", str(plot)]) == 2
    one_line_error(capsys, plot)


@pytest.mark.parametrize("argv,message", [
    (["train", *TINY_FLAGS, "--steps", "1", "--out", ""], "out must be a folder path"),
    (["train", *TINY_FLAGS, "--steps", "1", "--device", "cpu:7", "--out", "x"], "device='cpu:7'"),
    (["eval", "--checkpoint", "x.pt", "--seed", "-1"], "seed must be an integer >= 0"),
])
def test_bad_values_that_were_accepted_are_refused(tmp_path, capsys, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    one_line_error(capsys, message)
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_sigterm_saves_a_checkpoint_and_exits_143(tmp_path, cli_env):
    import signal
    import time

    out = tmp_path / "run"
    process = subprocess.Popen([sys.executable, "-m", "mllib", "train", *TINY_FLAGS, "--steps", "100000",
                                "--val-every", "1000", "--checkpoint-every", "1000", "--out", str(out)], env=cli_env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not ((out / "metrics.jsonl").is_file() and (out / "metrics.jsonl").read_text().count("\n") >= 2):
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)  # SLURM's, docker stop's and a kernel restart's signal
    _, err = process.communicate(timeout=120)
    assert process.returncode == 143, err
    assert "SIGTERM" in err and "--resume" in err
    from mllib.checkpoint import load_checkpoint

    assert load_checkpoint(out / "checkpoint.pt")["step"] >= 2
    assert not (out / "run.lock").exists()


def test_eval_shots_tests_a_one_shot_learner_on_more_shots(tmp_path, capsys):
    """``eval --shots K``: the test tasks have K support images per class (a 5-shot column of the
    papers' table from a 1-shot learner); the default stays the training shots; 0 is refused."""
    out = tmp_path / "run"
    assert main(["train", "--algo", "maml", *TINY_FLAGS, "--steps", "1", "--out", str(out)]) == 0
    capsys.readouterr()
    results = {}
    for extra in ([], ["--shots", "3"]):
        assert main(["eval", "--checkpoint", str(out / "best.pt"), "--tasks", "6", "--json", *extra]) == 0
        results[tuple(extra)] = json.loads(capsys.readouterr().out)
    assert results[()]["shots"] == 1 and results[("--shots", "3")]["shots"] == 3
    assert main(["eval", "--checkpoint", str(out / "best.pt"), "--tasks", "6", "--shots", "0"]) == 2
    assert "shots" in capsys.readouterr().err
