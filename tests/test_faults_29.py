"""Issue 29, hangs and silent fallbacks: each test plants the fault the issue found and checks that it
now ends in one clear line (never a hang, a traceback or a silent fallback)."""
from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import pytest

import mllib.data.build as build
from mllib.data import OmniglotDataError, load_omniglot, write_synthetic_omniglot
from mllib.signals import terminate_as_interrupt

ROOT = Path(__file__).resolve().parent.parent


# ------------------------------------------------------------------ mllib data: damaged PNGs, bombs, workers


@pytest.fixture(scope="module")
def small_root(tmp_path_factory):
    """About 16 characters x 2 drawers in the upstream zip layout (32 PNGs)."""
    return write_synthetic_omniglot(tmp_path_factory.mktemp("small"), per_part=2, drawers=2)


def png_header_only(width: int, height: int) -> bytes:
    """A 1-bit greyscale PNG that declares ``width x height`` pixels but holds a few bytes of them
    (what a decompression bomb looks like before it is decoded)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def replace_member(root: Path, data_of) -> str:
    """Rewrite ``root/images_background.zip`` with its middle PNG's bytes replaced by
    ``data_of(old_bytes)``; return that member's name."""
    path = root / "images_background.zip"
    with zipfile.ZipFile(path) as zf:
        items = [(info.filename, zf.read(info)) for info in zf.infolist()]
    pngs = [name for name, _ in items if name.endswith(".png")]
    target = pngs[len(pngs) // 2]
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in items:
            zf.writestr(name, data_of(data) if name == target else data)
    return target


def copy_with(tmp_path: Path, small_root: Path, data_of) -> tuple[Path, str]:
    root = tmp_path / "damaged"
    root.mkdir()
    for name in ("images_background.zip", "images_evaluation.zip"):
        (root / name).write_bytes((small_root / name).read_bytes())
    return root, replace_member(root, data_of)


def run_data_command(root: Path, cache: Path, workers: int) -> subprocess.CompletedProcess:
    """``python -m mllib data`` on ``root`` with 4 images per job (so a pool decodes 32 PNGs in 8 jobs)."""
    code = ("import sys, mllib.data.build as b; b._CHUNK = 4; from mllib.__main__ import main; "
            f"sys.exit(main(['data', '--root', {str(root)!r}, '--cache', {str(cache)!r}, '--workers', '{workers}']))")
    env = {**os.environ, "CI": "1", "MLLIB_DATA_CUSTOM": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-W", "ignore", "-c", code], capture_output=True, text=True,
                          env=env, timeout=120, cwd=ROOT)


@pytest.mark.parametrize("workers", [1, 2])
def test_undecodable_png_in_zip_ends_in_one_line_naming_it(tmp_path, small_root, workers):
    root, member = copy_with(tmp_path, small_root, lambda data: data[:40])
    done = run_data_command(root, tmp_path / "cache", workers)   # a hang fails here (timeout)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and member in lines[0], done.stderr


@pytest.mark.parametrize("size", [(3000, 3000), (20000, 20000)])   # ours (1 Mpx), PIL's (179 Mpx)
def test_decompression_bomb_is_refused_in_one_line(tmp_path, small_root, size):
    root, member = copy_with(tmp_path, small_root, lambda data: png_header_only(*size))
    done = run_data_command(root, tmp_path / "cache", workers=2)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "decompression bomb" in lines[0] and member in lines[0], done.stderr
    assert "Traceback" not in done.stderr


def _handlers(_):
    return signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)


def test_decode_workers_die_on_sigterm_even_under_terminate_as_interrupt():
    with terminate_as_interrupt():
        pool = build.decode_pool(2)
        try:
            handlers = set(pool.map(_handlers, range(4)))
        finally:
            pool.shutdown()
    assert handlers == {(signal.SIG_DFL, signal.SIG_IGN)}


def _killed(job):
    os.kill(os.getpid(), signal.SIGKILL)


def test_a_killed_decode_worker_ends_the_build_instead_of_hanging(tmp_path, small_root, monkeypatch):
    monkeypatch.setattr(build, "_CHUNK", 4)
    monkeypatch.setattr(build, "_decode_job", _killed)
    with pytest.raises(OmniglotDataError, match="died"):
        load_omniglot(small_root, cache_dir=tmp_path, workers=2, progress=False)
    assert not any(tmp_path.iterdir())


# ------------------------------------------------------------------ publish: no forged card, no silent overwrite

TINY = dict(filters=4, meta_batch=2, val_every=2, val_tasks=4, test_query=1, checkpoint_every=2,
            inner_steps=1, inner_steps_test=1)


@pytest.fixture(scope="module")
def run(tmp_path_factory, omniglot):
    from mllib.train import TrainConfig, meta_train

    out = tmp_path_factory.mktemp("publish") / "run"
    config = TrainConfig(algo="maml", ways=3, shots=1, query=1, profile="quick", overrides=dict(TINY), steps=4,
                         device="cpu", seed=3, out=str(out), progress=False, max_seconds=600.0)
    meta_train(config, data=omniglot, log=lambda message: None)
    return out


def measured(accuracy: float):
    """A stand-in for ``evaluate`` that returns ``accuracy`` at once (what publish reads of a result)."""
    def evaluate(*args, **kwargs):
        return {"accuracy": accuracy, "ci95": 0.01, "query": 1, "device": "cpu", "tasks": kwargs["tasks"],
                "split_name": "maml", "split": "test", "inner_steps": 1, "inner_lr": 0.4, "bn": "batch",
                "transductive": True, "seconds": 0.1, "standard_protocol": True}
    return evaluate


def not_evaluated(*args, **kwargs):
    pytest.fail("publish evaluated before refusing")


def test_publish_set_cannot_forge_measured_fields(run, tmp_path, monkeypatch, capsys):
    import mllib.publish
    from mllib.__main__ import main

    monkeypatch.setattr(mllib.publish, "evaluate", not_evaluated)
    for forged in (["--set", "accuracy=0.999", "--set", "ci95=0.0001"], ["--set", "standard_protocol=true"],
                   ["--set", "card=A100"]):
        assert main(["publish", str(run), "--name", "forged", "--dest", str(tmp_path), *forged]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: --set cannot set ") and len(err.splitlines()) == 1, err
        assert forged[1].split("=")[0] in err
    assert not (tmp_path / "forged.json").exists()


def test_card_fields_name_every_field_publish_writes(run, tmp_path, monkeypatch):
    import mllib.publish

    monkeypatch.setattr(mllib.publish, "evaluate", measured(0.5))
    card = mllib.publish.publish(run, "fields", dest=tmp_path, progress=False, extra={"train_peak_rss_mb": 1})
    assert set(card) - {"train_peak_rss_mb"} <= set(mllib.publish.CARD_FIELDS)


def test_publish_refuses_an_existing_name_unless_overwrite(run, tmp_path, monkeypatch, capsys):
    import mllib.publish
    from mllib.__main__ import main

    monkeypatch.setattr(mllib.publish, "evaluate", measured(0.5))
    first = mllib.publish.publish(run, "twice", dest=tmp_path, progress=False)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    monkeypatch.setattr(mllib.publish, "evaluate", not_evaluated)
    assert main(["publish", str(run), "--name", "twice", "--dest", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "twice.pt exists" in err and "--overwrite" in err and len(err.splitlines()) == 1
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    monkeypatch.setattr(mllib.publish, "evaluate", measured(0.75))
    second = mllib.publish.publish(run, "twice", dest=tmp_path, progress=False, overwrite=True)
    assert (first["accuracy"], second["accuracy"]) == (0.5, 0.75)
    assert "note: replacing" in capsys.readouterr().err


def test_a_shipped_checkpoint_is_never_replaced_silently(run, monkeypatch):
    import mllib.checkpoint
    import mllib.publish

    monkeypatch.setattr(mllib.publish, "evaluate", not_evaluated)
    with pytest.raises(ValueError, match="shipped with the package.*--overwrite"):
        mllib.publish.publish(run, "maml_omniglot_5w1s", dest=mllib.checkpoint.SHIPPED_CHECKPOINTS)


class _FullDisk:
    """``json`` as publish uses it, except that the card cannot be written (a full disk)."""

    @staticmethod
    def dumps(*args, **kwargs):
        import errno
        raise OSError(errno.ENOSPC, "No space left on device")


def test_a_failed_card_write_leaves_the_old_pair(run, tmp_path, monkeypatch):
    import mllib.publish

    monkeypatch.setattr(mllib.publish, "evaluate", measured(0.5))
    mllib.publish.publish(run, "pair", dest=tmp_path, progress=False)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    monkeypatch.setattr(mllib.publish, "evaluate", measured(0.75))
    monkeypatch.setattr(mllib.publish, "json", _FullDisk)
    with pytest.raises(OSError):
        mllib.publish.publish(run, "pair", dest=tmp_path, progress=False, overwrite=True)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before   # no new weights, no temp files


@pytest.mark.parametrize("name", ["n" * 300, "é_accent", "-dash-first", "a/b", ""])
def test_bad_names_are_refused_before_the_evaluation(run, tmp_path, monkeypatch, name):
    import mllib.publish

    monkeypatch.setattr(mllib.publish, "evaluate", not_evaluated)
    with pytest.raises(ValueError, match="name must be a file stem of 1 to 100 ASCII"):
        mllib.publish.publish(run, name, dest=tmp_path, progress=False)


@pytest.mark.parametrize("card", ["A100 | 99.9% | fake row", "two\nlines", "<script>alert(1)</script>", "`x`",
                                  "x" * 201, ""])
def test_card_text_that_would_break_the_results_table_is_refused(run, tmp_path, monkeypatch, card):
    import mllib.publish

    monkeypatch.setattr(mllib.publish, "evaluate", not_evaluated)
    with pytest.raises(ValueError, match="--card must be one line"):
        mllib.publish.publish(run, "card", dest=tmp_path, progress=False, card=card)


# ------------------------------------------------------------------ course set-repository / course check

@pytest.mark.parametrize("repository", ["https://github.com/x/y\n", "https://github.com/../..",
                                        "https://github.com/x/..", "https://github.com/./y", "https://github.com/x/y\n\n"])
def test_set_repository_refuses_newlines_and_path_tricks(tmp_path, capsys, repository):
    from mllib.__main__ import main
    from mllib.course.config import CONFIG_PATH

    (tmp_path / "mllib").mkdir()
    config = tmp_path / "mllib" / "course_config.json"
    config.write_text(CONFIG_PATH.read_text())
    before = config.read_text()
    assert main(["course", "set-repository", repository, "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: repository must look like") and config.read_text() == before


def test_ref_with_a_final_newline_is_refused():
    from mllib.course.config import CourseConfig

    with pytest.raises(ValueError, match="ref must be"):
        CourseConfig("https://github.com/x/y", "main\n")


def test_course_check_sees_an_install_cell_that_does_not_compile(monkeypatch):
    """What a config with a newline in its URL wrote: a cell that matches the config but is no Python."""
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

    import mllib.course.colab as colab
    from mllib.course.config import CourseConfig

    cfg = CourseConfig("https://github.com/x/y", "main")
    broken = colab.setup_source(cfg).replace('SOURCE = "git+https://github.com/x/y@main"',
                                             'SOURCE = "git+https://github.com/x/y\n@main"')
    monkeypatch.setattr(colab, "setup_source", lambda cfg: broken)
    nb = colab.sync_notebook(new_notebook(cells=[new_markdown_cell("# 01 Title"), new_code_cell("x = 1")]),
                             "01_title.ipynb", cfg)
    problems = colab.check_notebook_sync(nb, "01_title.ipynb", cfg)
    assert len(problems) == 1 and "install cell is not valid Python" in problems[0], problems


# ------------------------------------------------------------------ LearnedRule: phi must match the optimizer

def test_learned_rule_refuses_missing_and_extra_entries():
    import torch

    from mllib.learned_optimizer import LearnedOptimizer, LearnedRule

    opt = LearnedOptimizer(hidden=4)
    phi = {k: v.detach().clone() for k, v in opt.named_parameters()}
    LearnedRule(opt, phi)   # exactly its parameters: fine
    dropped = sorted(phi)[0]
    with pytest.raises(ValueError, match=f"phi does not match the LearnedOptimizer: missing {dropped}"):
        LearnedRule(opt, {k: v for k, v in phi.items() if k != dropped})
    with pytest.raises(ValueError, match="unexpected stray"):
        LearnedRule(opt, {**phi, "stray": torch.zeros(1)})
    with pytest.raises(ValueError, match=f"{dropped} has shape \\[1\\]"):
        LearnedRule(opt, {**phi, dropped: torch.zeros(1)})


# ------------------------------------------------------------------ divergence: one "diverged" line, no NaN result

def test_learned_optimizer_training_stops_with_diverged_at_a_huge_meta_lr():
    import torch

    from mllib.learned_optimizer import LearnedOptimizer, meta_train_optimizer
    from mllib.models import SineMLP
    from mllib.train import TrainingDiverged

    torch.manual_seed(0)
    opt = LearnedOptimizer(hidden=4, lr=0.02)
    with pytest.raises(TrainingDiverged, match="diverged at meta-step .*lower meta_lr"):
        meta_train_optimizer(opt, SineMLP(hidden=8), steps=30, meta_batch=2, horizon=3, meta_lr=1e30,
                             progress=False)
    assert all(torch.isfinite(p).all() for p in opt.parameters())   # stopped before the step that spoiled it


@pytest.mark.parametrize("method", ["meta_train", "pretrain_joint"])
def test_rl_training_stops_with_diverged_at_a_huge_learning_rate(method):
    import mllib.rl.maml as rl_maml
    from mllib.rl import PointNavigation, seeded_policy
    from mllib.train import TrainingDiverged

    train = getattr(rl_maml, method)
    rate = {"meta_lr": 1e30} if method == "meta_train" else {"lr": 1e30}
    with pytest.raises(TrainingDiverged, match="diverged at iteration .*lower learning rate"):
        train(seeded_policy(0, hidden=(8,), init_std=0.2), PointNavigation(horizon=3), 20, meta_batch=2,
              episodes=2, progress=False, **rate)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_navigation_refuses_goals_that_are_not_finite(bad):
    import torch

    from mllib.rl import PointNavigation

    env = PointNavigation()
    goals = torch.tensor([[0.1, 0.2], [bad, 0.0]])
    with pytest.raises(ValueError, match="goals must be finite"):
        env.reset(goals, 2)
    with pytest.raises(ValueError, match="goals must be finite"):
        env.step(torch.zeros(2, 2, 2), torch.zeros(2, 2, 2), goals)


# ------------------------------------------------------------------ inner steps 0: refused where nothing is learned

@pytest.mark.parametrize("algo, overrides, flag", [
    ("reptile", {"inner_steps": 0, "head_init": "learned"}, "inner_steps=0"),
    ("maml", {"inner_steps": 0}, "inner_steps=0"),                    # the quick profile's zero head
    ("anil", {"inner_steps": 0, "head_init": "zero"}, "inner_steps=0"),
    ("maml", {"inner_steps_test": 0, "head_init": "zero"}, "inner_steps_test=0"),
])
def test_inner_steps_zero_that_trains_nothing_is_refused(algo, overrides, flag):
    from mllib.train import TrainConfig

    config = TrainConfig(algo=algo, ways=5, shots=1, profile="quick", overrides=overrides)
    with pytest.raises(ValueError, match=f"{flag} .*1 or more"):
        config.resolved_profile()


def test_inner_steps_zero_with_a_learned_head_is_still_allowed():
    from mllib.train import TrainConfig

    profile = TrainConfig(algo="maml", ways=5, shots=1, profile="quick",
                          overrides={"inner_steps": 0, "head_init": "learned"}).resolved_profile()
    assert profile.inner_steps == 0   # plain pre-training of the start: it learns something


def test_cli_train_refuses_reptile_with_inner_steps_zero_in_one_line(tmp_path, capsys):
    from mllib.__main__ import main

    assert main(["train", "--algo", "reptile", "--inner-steps", "0", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: inner_steps=0 trains nothing for algo=reptile") and len(err.splitlines()) == 1


# ------------------------------------------------------------------ smaller items: one line each, no silent fallback

def _tiny_checkpoint(path: Path, config: dict) -> Path:
    import torch

    from mllib.checkpoint import save_checkpoint

    save_checkpoint(path, meta_params={"w": torch.zeros(2)}, optimizer_state={}, config=config, step=1)
    return path


@pytest.mark.parametrize("config", [{"algo": "maml", "ways": 5, "shots": 1},
                                    {"algo": "maml", "ways": 5, "shots": 1, "profile": "quick"}])
def test_a_hand_edited_checkpoint_without_profile_ends_in_one_line(tmp_path, capsys, config):
    from mllib.__main__ import main

    path = _tiny_checkpoint(tmp_path / "edited.pt", config)
    assert main(["eval", "--checkpoint", str(path), "--tasks", "4"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: checkpoint") and "profile" in err[-1] and "edited by hand" in err[-1]


@pytest.mark.parametrize("value", ["", "abc", "0", "10000", "-2"])
def test_mllib_threads_errors_name_the_variable(monkeypatch, value):
    import torch

    from mllib.device import use_cpu_threads

    monkeypatch.setenv("MLLIB_THREADS", value)
    before = torch.get_num_threads()
    with pytest.raises(ValueError, match="environment variable MLLIB_THREADS must be an integer from 1 to"):
        use_cpu_threads(torch.device("cpu"))
    assert torch.get_num_threads() == before


def test_mllib_threads_still_sets_the_threads(monkeypatch):
    import torch

    from mllib.device import use_cpu_threads

    before = torch.get_num_threads()
    monkeypatch.setenv("MLLIB_THREADS", " 2 ")
    try:
        assert use_cpu_threads(torch.device("cpu")) == 2
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("value, allowed", [("off", False), ("OFF", False), ("no", False), ("0", False),
                                            ("", False), ("on", True), ("1", True), ("Yes", True)])
def test_allow_partial_data_off_means_off(monkeypatch, value, allowed):
    from mllib.data import check_split_complete

    monkeypatch.setenv("MLLIB_ALLOW_PARTIAL_DATA", value)
    if allowed:
        with pytest.warns(UserWarning, match="non-standard"):
            assert check_split_complete([], "maml", ("test",)).startswith("non-standard")
    else:
        with pytest.raises(OmniglotDataError, match="incomplete"):
            check_split_complete([], "maml", ("test",))


def test_allow_partial_data_with_an_unknown_word_names_the_variable(monkeypatch):
    from mllib.data import check_split_complete

    monkeypatch.setenv("MLLIB_ALLOW_PARTIAL_DATA", "maybe")
    with pytest.raises(ValueError, match="environment variable MLLIB_ALLOW_PARTIAL_DATA must be one of"):
        check_split_complete([], "maml", ("test",))


@pytest.mark.parametrize("command", [["train", "--out", "unused"], ["eval", "--checkpoint", "unused"]])
@pytest.mark.parametrize("seed", ["100000000000000000000", "4294967296", "-1"])
def test_a_seed_out_of_range_gives_one_clear_line(capsys, command, seed):
    from mllib.__main__ import main

    assert main([*command, "--seed", seed]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == f"error: seed must be an integer >= 0 and <= 4294967295, got {seed}", err


def test_eval_inner_steps_on_a_checkpoint_without_inner_loop_is_refused(capsys):
    from mllib.__main__ import main

    assert main(["eval", "--checkpoint", "incontext_omniglot_5w1s", "--inner-steps", "5", "--tasks", "4"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: --inner-steps does not apply") and "incontext" in err[-1]


def test_bench_threads_zero_is_refused(capsys):
    from mllib.__main__ import main

    assert main(["bench", "--quick", "--no-isolate", "--threads", "0"]) == 2
    assert "--threads must be >= 1" in capsys.readouterr().err


def test_bench_quick_keeps_explicit_sizes(monkeypatch, capsys):
    import mllib.cli.bench as cli_bench
    from mllib.__main__ import main

    seen = {}

    def fake_benchmark(**kwargs):
        seen.update(kwargs)
        raise ValueError("stop here")

    monkeypatch.setattr(cli_bench, "run_benchmark", fake_benchmark)
    assert main(["bench", "--quick", "--meta-batch", "4", "--filters", "16", "--rounds", "3"]) == 2
    assert (seen["meta_batch"], seen["filters"], seen["rounds"], seen["query"]) == (4, 16, 3, 2)
    assert main(["bench"]) == 2
    assert (seen["meta_batch"], seen["filters"], seen["rounds"], seen["query"], seen["warmup"]) == (32, 64, 15, 15, 1)


def test_a_file_size_limit_gives_a_clear_line(tmp_path):
    code = ("import resource, torch; resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, resource.RLIM_INFINITY)); "
            "import mllib.checkpoint as c; from mllib.files import describe_os_error\n"
            "try:\n    c.atomic_save({'x': torch.zeros(100_000)}, " + repr(str(tmp_path / 'big.pt')) + ")\n"
            "except OSError as err:\n    print(describe_os_error(err))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert "file-size limit of 100,000 bytes" in done.stdout and "big.pt" in done.stdout, done.stdout + done.stderr
    assert not list(tmp_path.iterdir())   # no temporary file left
