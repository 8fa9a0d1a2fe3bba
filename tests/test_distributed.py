"""Distributed meta-training on CPU with gloo, over loopback only.

* ``torchrun --nproc_per_node=2 -m mllib train`` (a real torchrun, in a subprocess) ends with the
  parameters of a single process that meta-trains on the same tasks with the same total meta-batch;
  resuming that run with 2 ranks continues it exactly;
* a rank that is killed or stops answering makes the other rank fail with a clear message, within
  a bounded time (the gloo timeout), instead of hanging.

The resume and fault tests start the two ranks as forks of this process with the environment
torchrun would set (a fork is ~20x cheaper than a fresh Python importing torch on a busy 2-core
CPU); the code path is the same ``python -m mllib train`` entry point.
"""
from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import mllib.data
from mllib import distributed
from mllib.__main__ import main
from mllib.checkpoint import load_checkpoint
from mllib.checkpoint import read_metrics
from mllib.device import cpu_threads
from mllib.local_workers import free_port
from mllib.train import TrainConfig, meta_train

# constant meta-lr: the resume test extends the run (a cosine schedule would refuse another length)
TINY = dict(filters=4, meta_batch=4, val_every=2, val_tasks=3, test_query=1, checkpoint_every=1,
            inner_steps_test=1, meta_lr_schedule="constant")
FLAGS = ["--algo", "maml", "--ways", "3", "--shots", "1", "--query", "1", "--profile", "quick", "--device", "cpu",
         "--filters", "4", "--meta-batch", "4", "--val-every", "2", "--val-tasks", "3", "--test-query", "1",
         "--checkpoint-every", "1", "--inner-steps-test", "1", "--seed", "5", "--meta-lr-schedule", "constant"]
REL_TOL = 1e-5


def single_process(omniglot, out: Path, steps: int) -> dict:
    """The one-process reference, on one thread as torchrun's ranks (OMP_NUM_THREADS=1): the thread
    count changes the float32 rounding, so the result would otherwise depend on earlier tests."""
    config = TrainConfig(algo="maml", ways=3, shots=1, query=1, profile="quick", overrides=dict(TINY), steps=steps,
                         device="cpu", seed=5, out=str(out), progress=False)
    with cpu_threads(1):
        return meta_train(config, data=omniglot, log=lambda m: None).meta_params


def assert_close(actual: dict, expected: dict) -> float:
    assert set(actual) == set(expected)
    a = torch.cat([actual[k].reshape(-1) for k in sorted(expected)])
    e = torch.cat([expected[k].reshape(-1) for k in sorted(expected)])
    rel = float((a - e).norm() / e.norm())
    assert rel < REL_TOL, f"relative difference {rel:.3g} >= {REL_TOL}"
    worst = max(float(((actual[k] - expected[k]).abs() / (expected[k].abs() + 1e-3)).max()) for k in expected)
    assert worst < 1e-4, f"an entry differs by {worst:.3g} (relative)"
    return rel


@pytest.fixture()
def fixture_data(monkeypatch, omniglot):
    monkeypatch.setattr(mllib.data, "load_omniglot", lambda *a, **k: omniglot)
    monkeypatch.setenv("CI", "1")
    return omniglot


def data_env(synthetic_root_factory, tmp_path) -> dict:
    """Environment for a fresh process: the real data when MLLIB_DATA is set, else the synthetic set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLLIB_DIST", "RANK", "WORLD_SIZE"))}
    env["CI"] = "1"
    if not env.get("MLLIB_DATA"):
        env["MLLIB_DATA"] = str(synthetic_root_factory())
        env["MLLIB_CACHE"] = str(tmp_path / "cache")
    return env


def _rank_main(rank: int, world: int, port: int, argv: list, extra_env: dict, log: str) -> None:
    handle = open(log, "w", buffering=1)  # noqa: SIM115 - closed by os._exit
    os.dup2(handle.fileno(), 1)
    os.dup2(handle.fileno(), 2)
    sys.stdout = sys.stderr = handle  # pytest replaced them with its capture objects
    torch.set_num_threads(1)
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank),
                       "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank), **extra_env})
    try:
        code = main(argv)
    except BaseException as err:  # noqa: BLE001 - report anything, then exit
        print(f"uncaught {type(err).__name__}: {err}", flush=True)
        code = 99
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def run_ranks(argv: list, tmp_path: Path, extra_env: dict | None = None, world: int = 2,
              limit: float = 60.0) -> tuple[list, list, float]:
    """Fork ``world`` ranks running ``main(argv)``; return (exit codes, logs, seconds)."""
    ctx = multiprocessing.get_context("fork")
    port = free_port()
    logs = [str(tmp_path / f"rank{r}.log") for r in range(world)]
    procs = [ctx.Process(target=_rank_main, args=(r, world, port, argv, extra_env or {}, logs[r]))
             for r in range(world)]
    start = time.monotonic()
    for p in procs:
        p.start()
    procs[0].join(limit)
    seconds = time.monotonic() - start  # rank 0 decides how the run ends
    for p in procs[1:]:
        p.join(1.0 if procs[0].exitcode else max(1.0, min(10.0, limit - seconds)))
    for p in procs:  # clean up anything still running (a hanging rank, or a failure of the test)
        if p.is_alive():
            os.kill(p.pid, signal.SIGKILL)
            p.join()
    return [p.exitcode for p in procs], [Path(log).read_text() for log in logs], seconds


# ------------------------------------------------------------------ pure functions

def test_detect_reads_torchrun_environment():
    assert distributed.detect({}) is None
    env = distributed.detect({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"})
    assert (env.rank, env.world_size, env.local_rank, env.is_main) == (3, 4, 1, False)
    assert distributed.detect({"RANK": "0", "WORLD_SIZE": "1"}).local_rank == 0
    with pytest.raises(ValueError, match="RANK must be in 0..1"):
        distributed.detect({"RANK": "2", "WORLD_SIZE": "2"})
    with pytest.raises(ValueError, match="WORLD_SIZE must be an integer"):
        distributed.detect({"RANK": "0", "WORLD_SIZE": "two"})
    with pytest.raises(ValueError, match="RANK is not set"):
        distributed.detect({"WORLD_SIZE": "2"})


def test_backend_timeout_and_fault_parsing():
    assert distributed.backend_for("cpu") == "gloo" and distributed.backend_for("cuda:1") == "nccl"
    assert distributed.timeout_seconds({}) == distributed.DEFAULT_TIMEOUT_S
    assert distributed.timeout_seconds({distributed.TIMEOUT_ENV: "2.5"}) == 2.5
    with pytest.raises(ValueError, match=distributed.TIMEOUT_ENV):
        distributed.timeout_seconds({distributed.TIMEOUT_ENV: "0"})
    assert distributed._parse_fault("kill:1:2") == ("kill", 1, 2)
    with pytest.raises(ValueError, match=distributed.FAULT_ENV):
        distributed._parse_fault("explode:1:2")


def test_flatten_unflatten_roundtrip_with_extra_slots():
    grads = {"a": torch.randn(2, 3), "b": torch.randn(4), "c": torch.randn(1, 1, 2)}
    flat = distributed.flatten(grads, extra=2)
    assert flat.shape == (14,) and flat[-2:].eq(0).all()
    back = distributed.unflatten(flat, grads)
    assert list(back) == ["a", "b", "c"] and all(torch.equal(back[k], grads[k]) for k in grads)


def _hook_rank(rank: int, port: int, queue) -> None:
    """One of 2 gloo ranks: the coordinator's grad hook and vote, and ``average``, on distinct inputs."""
    from datetime import timedelta

    import torch.distributed as dist

    try:
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2,
                                timeout=timedelta(seconds=20))
        env = distributed.DistEnv(rank=rank, world_size=2, local_rank=rank)
        coordinator = distributed._Coordinator(env, timeout=20)
        coordinator._installed = True  # leave the SIGINT handler alone here
        coordinator.local_stop = rank == 1  # rank 1 saw Ctrl-C
        grads = {"w": torch.full((2, 3), float(rank + 1)), "b": torch.tensor([10.0 * (rank + 1)])}
        averaged = coordinator.grad_hook(grads)
        plain = distributed.average({"x": torch.tensor([float(rank), 4.0])}, 2)
        try:
            coordinator.callback(1, {})
            stopped = False
        except KeyboardInterrupt:
            stopped = True
        dist.destroy_process_group()
        queue.put((rank, {k: v.tolist() for k, v in averaged.items()}, plain["x"].tolist(), stopped))
    except BaseException as err:  # noqa: BLE001
        queue.put((rank, repr(err), None, None))


def test_grad_hook_averages_across_two_ranks_and_votes_to_stop():
    """Mean (not sum) of the ranks' gradients, on every rank; one rank's Ctrl-C stops both."""
    ctx = multiprocessing.get_context("fork")
    queue, port = ctx.Queue(), free_port()
    procs = [ctx.Process(target=_hook_rank, args=(r, port, queue)) for r in range(2)]
    for p in procs:
        p.start()
    results = sorted(queue.get(timeout=60) for _ in procs)
    for p in procs:
        p.join(10)
    for rank, averaged, plain, stopped in results:
        assert isinstance(averaged, dict), averaged
        assert averaged == {"w": [[1.5] * 3] * 2, "b": [15.0]}  # (1 + 2) / 2 and (10 + 20) / 2
        assert plain == [0.5, 4.0]
        assert stopped is True  # both ranks stop after the step in which rank 1 saw Ctrl-C


# ------------------------------------------------------------------ end to end

def test_torchrun_two_ranks_equal_one_process_and_resume(fixture_data, synthetic_omniglot_root, tmp_path,
                                                         monkeypatch):
    """torchrun, 2 gloo ranks x 2 tasks == 1 process x 4 tasks; then a 2-rank resume continues exactly."""
    out = tmp_path / "dist"
    env = data_env(lambda: synthetic_omniglot_root, tmp_path)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
           f"--master_port={free_port()}", "-m", "mllib", "train", *FLAGS, "--steps", "2", "--out", str(out)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout.count("trained 2 steps") == 1  # rank 0 reports, rank 1 is silent
    two_ranks = load_checkpoint(out / "checkpoint.pt")
    single2 = single_process(fixture_data, tmp_path / "single2", steps=2)
    print(f"2 ranks vs 1 process after 2 steps: relative difference {assert_close(two_ranks['meta_params'], single2):.3g}")
    assert two_ranks["step"] == 2 and [r["step"] for r in read_metrics(out)] == [1, 2]

    # resume the 2-rank run to step 3: both ranks load checkpoint.pt
    codes, logs, _ = run_ranks(["train", *FLAGS, "--steps", "3", "--out", str(out), "--resume"], tmp_path)
    assert codes == [0, 0], logs
    assert "resumed from" in logs[0] and "trained 3 steps" in logs[0] and "trained" not in logs[1]
    single3 = single_process(fixture_data, tmp_path / "single3", steps=3)
    resumed = load_checkpoint(out / "checkpoint.pt")
    assert resumed["step"] == 3
    print(f"2 ranks resumed vs 1 process after 3 steps: relative difference "
          f"{assert_close(resumed['meta_params'], single3):.3g}")
    assert not torch.equal(resumed["meta_params"]["blocks.0.conv.weight"], single2["blocks.0.conv.weight"])  # step 3 did move


@pytest.mark.parametrize("fault, expected_seconds", [("kill", 30.0), ("hang", 30.0)])
def test_a_lost_rank_fails_the_run_cleanly(fixture_data, tmp_path, fault, expected_seconds):
    """Rank 1 is killed (or stops answering) after step 1: rank 0 stops with a clear error, no hang."""
    env = {distributed.FAULT_ENV: f"{fault}:1:1", distributed.TIMEOUT_ENV: "4"}
    codes, logs, seconds = run_ranks(["train", *FLAGS, "--steps", "4", "--out", str(tmp_path / "run")], tmp_path,
                                     extra_env=env, limit=60.0)
    assert codes[0] == 2, logs  # main() prints "error: ..." and returns 2
    assert "rank 0/2: averaging the meta-gradients of meta-step 2 failed" in logs[0], logs[0]
    assert "resume with --resume" in logs[0]
    assert seconds < expected_seconds
    assert codes[1] == -signal.SIGKILL  # killed itself, or still hanging and reaped by run_ranks
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["step"] == 1  # the last good state is kept


def test_train_on_cores_two_workers_equal_one_process_and_stream_the_log(fixture_data, synthetic_omniglot_root,
                                                                       tmp_path, monkeypatch):
    """mllib.local_workers: 2 spawned single-thread workers x 2 tasks == 1 process x 4 tasks (what
    notebook 05's live run relies on), rank 0's log lines reach the caller, its result comes back."""
    from mllib.local_workers import train_on_cores

    for key, value in data_env(lambda: synthetic_omniglot_root, tmp_path).items():
        monkeypatch.setenv(key, value)   # the spawned workers load the same data themselves
    config = TrainConfig(algo="maml", ways=3, shots=1, query=1, profile="quick", overrides=dict(TINY), steps=2,
                         device="cpu", seed=5, out=str(tmp_path / "cores"), progress=False)
    lines = []
    result = train_on_cores(config, workers=2, log=lines.append)
    assert result.step == 2 and result.out == tmp_path / "cores"
    assert any("rank 0/2" in line for line in lines) and any(line.startswith("done: 2 steps") for line in lines)
    print(f"2 workers vs 1 process after 2 steps: relative difference "
          f"{assert_close(result.meta_params, single_process(fixture_data, tmp_path / 'single', steps=2)):.3g}")
    with pytest.raises(ValueError, match="does not split into 3 workers"):
        train_on_cores(config, workers=3)
    with pytest.raises(ValueError, match="whole number >= 1"):
        train_on_cores(config, workers=0)


def test_train_cli_workers_flag_runs_the_same_job_and_refuses_bad_counts(fixture_data, synthetic_omniglot_root,
                                                                        tmp_path):
    """``python -m mllib train --workers 2`` (what ``make demo`` runs) is train_on_cores: one report,
    the one-process meta-parameters; a count that does not fit is one line and exit 2."""
    env = data_env(lambda: synthetic_omniglot_root, tmp_path)
    out = tmp_path / "cli"
    cmd = [sys.executable, "-m", "mllib", "train", *FLAGS, "--steps", "2", "--out", str(out)]
    done = subprocess.run([*cmd, "--workers", "2"], env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout.count("trained 2 steps") == 1
    workers = load_checkpoint(out / "checkpoint.pt")
    print(f"--workers 2 vs 1 process after 2 steps: relative difference "
          f"{assert_close(workers['meta_params'], single_process(fixture_data, tmp_path / 'single', steps=2)):.3g}")
    for count, message in (("0", "--workers must be a whole number >= 1"), ("two", "or auto, got 'two'"),
                           ("3", "does not split into 3 workers")):
        bad = subprocess.run([*cmd, "--workers", count, "--out", str(tmp_path / f"bad{count}")], env=env,
                             capture_output=True, text=True, timeout=60)
        assert bad.returncode == 2 and message in bad.stderr, bad.stderr
        assert len(bad.stderr.strip().splitlines()) == 1, bad.stderr   # one line, no traceback


def test_auto_workers_splits_the_meta_batch_over_the_cores(monkeypatch):
    """``--workers auto``: one worker per core, only counts that divide the meta-batch, 1 on a GPU."""
    from mllib import local_workers
    from mllib.local_workers import auto_workers

    quick = TrainConfig(profile="quick", device="cpu")                    # meta-batch 8
    assert [auto_workers(quick, cores=c) for c in (1, 2, 3, 4, 6, 8, 64)] == [1, 2, 2, 4, 4, 8, 8]
    twelve = TrainConfig(profile="quick", device="cpu", overrides={"meta_batch": 12})
    assert [auto_workers(twelve, cores=c) for c in (5, 7, 12)] == [4, 6, 12]
    monkeypatch.setattr(local_workers, "resolve_device", lambda device: torch.device("cuda"))  # a GPU machine
    assert auto_workers(quick, cores=8) == 1
