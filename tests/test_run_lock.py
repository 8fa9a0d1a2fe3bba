"""One run per output folder (issue 16, fault 1): a second run into a folder in use refuses, naming the
folder and the owner's PID; the lock goes when the run ends, and a stale one (dead owner) is taken over."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mllib.train import TrainConfig, meta_train

TINY = dict(filters=4, meta_batch=2, val_every=2, val_tasks=4, test_query=1, checkpoint_every=2,
            inner_steps=1, inner_steps_test=1)
CLI_FLAGS = ["--ways", "3", "--shots", "1", "--query", "1", "--profile", "quick", "--device", "cpu",
             "--filters", "4", "--meta-batch", "2", "--val-every", "1000", "--val-tasks", "2", "--test-query", "1",
             "--checkpoint-every", "1000", "--inner-steps-test", "1", "--steps", "100000"]


def tiny(out, **kw) -> TrainConfig:
    fields = dict(algo="maml", ways=3, shots=1, query=1, profile="quick", overrides=dict(TINY), steps=2,
                  device="cpu", seed=3, out=str(out), progress=False)
    fields.update(kw)
    return TrainConfig(**fields)


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def start_training(out: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "mllib", "train", *CLI_FLAGS, "--out", str(out)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_steps(out: Path, process: subprocess.Popen, timeout: float = 120) -> None:
    metrics = out / "metrics.jsonl"
    deadline = time.monotonic() + timeout
    while not (metrics.is_file() and metrics.read_text().count("\n") >= 2):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the first run did not start training"
        time.sleep(0.2)


def test_second_run_into_the_same_folder_refuses_naming_folder_and_pid(tmp_path, cli_env):
    out = tmp_path / "run"
    first = start_training(out, cli_env)
    try:
        wait_for_steps(out, first)
        second = start_training(out, cli_env)
        try:
            _, err = second.communicate(timeout=120)
        finally:
            second.kill()
        assert second.returncode == 2, err
        line = err.strip().splitlines()[-1]
        assert str(out) in line and f"PID {first.pid}" in line and "Traceback" not in err
        assert first.poll() is None  # the first run goes on, undisturbed
    finally:
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=120)
    assert not (out / "run.lock").exists()  # released on exit


def test_stale_lock_of_a_dead_process_is_taken_over_and_removed_at_the_end(tmp_path, omniglot):
    tmp_path.joinpath("run.lock").write_text(f"{dead_pid()} {os.uname().nodename}\n")
    meta_train(tiny(tmp_path), data=omniglot, log=lambda message: None)
    assert not (tmp_path / "run.lock").exists()


def test_live_lock_refuses_and_a_failed_run_releases_its_lock(tmp_path, omniglot):
    from mllib.run_lock import RunLock, RunLocked

    with RunLock(tmp_path):  # held by this process, as by a run in progress
        with pytest.raises(RunLocked, match=rf"{tmp_path}.*PID {os.getpid()}"):
            meta_train(tiny(tmp_path), data=omniglot, log=lambda message: None)
        assert (tmp_path / "run.lock").read_text().split()[0] == str(os.getpid())
    assert not (tmp_path / "run.lock").exists()
    meta_train(tiny(tmp_path), data=omniglot, log=lambda message: None)
    with pytest.raises(ValueError, match="already holds a run"):  # fails after taking the lock
        meta_train(tiny(tmp_path), data=omniglot, log=lambda message: None)
    assert not (tmp_path / "run.lock").exists()
