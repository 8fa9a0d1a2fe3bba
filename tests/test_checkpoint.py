"""Checkpoints: round trip, atomic writes, damaged files and config mismatches are clear errors."""
from __future__ import annotations

import pytest
import torch

import mllib
from mllib.checkpoint import (CheckpointError, atomic_save, config_differences, load_checkpoint,
                              save_checkpoint, time_to_accuracy)

CONFIG = {"algo": "maml", "ways": 5, "shots": 1, "profile": {"filters": 32, "meta_steps": 600}}


def _save(path, config=CONFIG, step=7):
    params = {"w": torch.randn(3, 2), "b": torch.randn(2)}
    opt = torch.optim.Adam([p.requires_grad_() for p in params.values()], lr=0.1)
    for p in params.values():
        p.grad = torch.ones_like(p)
    opt.step()
    save_checkpoint(path, meta_params=params, optimizer_state=opt.state_dict(), config=config, step=step,
                    sampler_state={"generator": torch.Generator().manual_seed(3).get_state()},
                    best_val_accuracy=0.5, best_step=5, elapsed=1.5)
    return params, opt


def test_round_trip_keeps_everything(tmp_path):
    path = tmp_path / "run" / "checkpoint.pt"
    params, opt = _save(path)
    state = load_checkpoint(path, expected_config=CONFIG)
    assert set(state["meta_params"]) == {"w", "b"}
    for k, v in params.items():
        assert torch.equal(state["meta_params"][k], v.detach())
        assert not state["meta_params"][k].requires_grad
    assert state["optimizer"]["state"][0]["exp_avg"].shape == (3, 2)
    assert torch.equal(state["sampler"]["generator"], torch.Generator().manual_seed(3).get_state())
    assert (state["step"], state["best_val_accuracy"], state["best_step"], state["elapsed"]) == (7, 0.5, 5, 1.5)
    assert state["config"] == CONFIG
    assert state["version"] == mllib.__version__
    assert state["git_commit"] is None or len(state["git_commit"]) == 40
    assert [p.name for p in path.parent.iterdir()] == ["checkpoint.pt"]  # no temporary file left


def test_failed_save_leaves_the_old_file_intact(tmp_path):
    path = tmp_path / "checkpoint.pt"
    _save(path, step=3)
    with pytest.raises(Exception):
        atomic_save({"bad": lambda: None}, path)  # lambdas cannot be pickled
    assert load_checkpoint(path)["step"] == 3
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_damaged_file_is_a_clear_error(tmp_path, damage):
    path = tmp_path / "checkpoint.pt"
    _save(path)
    data = path.read_bytes()
    path.write_bytes({"truncate": data[: len(data) // 2], "garbage": b"not a checkpoint at all" * 10,
                      "empty": b""}[damage])
    with pytest.raises(CheckpointError, match="damaged"):
        load_checkpoint(path)


def test_foreign_file_and_missing_file(tmp_path):
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not an mllib checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load_checkpoint(tmp_path / "absent.pt")


def test_mismatched_config_names_every_difference(tmp_path):
    path = tmp_path / "checkpoint.pt"
    _save(path)
    wanted = {"algo": "maml", "ways": 20, "shots": 1, "profile": {"filters": 64, "meta_steps": 600}}
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path, expected_config=wanted)
    message = str(err.value)
    assert "ways: checkpoint=5, requested=20" in message
    assert "profile.filters: checkpoint=32, requested=64" in message
    assert "algo" not in message and "meta_steps" not in message
    # ignored keys may differ
    longer = {**CONFIG, "profile": {"filters": 32, "meta_steps": 900}}
    load_checkpoint(path, expected_config=longer, ignore=["profile.meta_steps"])
    with pytest.raises(CheckpointError, match="meta_steps"):
        load_checkpoint(path, expected_config=longer)


def test_config_differences_reports_absent_keys():
    assert config_differences({"a": 1}, {"a": 1}) == []
    assert config_differences({"a": 1}, {"a": 1, "b": 2}) == ["b: checkpoint='<absent>', requested=2"]
    assert config_differences({"a": (1, 2)}, {"a": [1, 2]}) == []  # tuples come back from JSON as lists


# ---------------------------------------------------------------- issue 16: faults 3, 8
def test_non_finite_parameters_are_never_saved(tmp_path):
    params = {"w": torch.tensor([1.0, float("inf")])}
    with pytest.raises(ValueError, match=r"w is not finite"):
        save_checkpoint(tmp_path / "c.pt", meta_params=params, optimizer_state={}, config=CONFIG, step=1)
    assert list(tmp_path.iterdir()) == []


def test_metrics_torn_last_line_is_dropped_and_a_bad_line_is_named(tmp_path):
    from mllib.checkpoint import read_metrics

    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\n{"step": 2}\n{"step": 3, "lo')  # the last write was cut short
    assert read_metrics(path) == [{"step": 1}, {"step": 2}]
    path.write_text('{"step": 1}\nnot json\n{"step": 3}\n')
    with pytest.raises(ValueError, match=rf"{path}, line 2"):
        read_metrics(path)


def test_time_to_accuracy_finds_the_first_validation_at_target():
    records = [{"step": 1, "seconds": 1.0, "val_accuracy": None},
               {"step": 2, "seconds": 2.0, "val_accuracy": 0.85},
               {"step": 3, "seconds": 3.5, "val_accuracy": 0.91},
               {"step": 4, "seconds": 4.0, "val_accuracy": 0.95}]
    assert time_to_accuracy(records, 0.9) == {"step": 3, "seconds": 3.5, "val_accuracy": 0.91}
    assert time_to_accuracy(records, 0.85)["step"] == 2
    assert time_to_accuracy(records, 0.96) is None
    with pytest.raises(ValueError, match="target"):
        time_to_accuracy(records, 90)
