"""The device toggle and the run profiles."""
from __future__ import annotations

import pytest
import torch

from mllib.config import resolve_profile, profile_name
from mllib.device import resolve_device


def test_cpu_is_always_available(monkeypatch):
    monkeypatch.delenv("MLLIB_DEVICE", raising=False)
    assert resolve_device("cpu") == torch.device("cpu")


def test_environment_variable_sets_the_device_and_argument_overrides_it(monkeypatch):
    monkeypatch.setenv("MLLIB_DEVICE", "cpu")
    assert resolve_device() == torch.device("cpu")
    monkeypatch.setenv("MLLIB_DEVICE", "nonsense")
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="MLLIB_DEVICE"):
        resolve_device()


def test_auto_prefers_cuda_then_mps_then_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr("mllib.device._mps_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    monkeypatch.setattr("mllib.device._mps_available", lambda: True)
    assert resolve_device("auto") == torch.device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")


def test_missing_cuda_is_an_error_not_a_silent_fallback(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        resolve_device("cuda")
    monkeypatch.setattr("mllib.device._mps_available", lambda: False)
    with pytest.raises(RuntimeError, match="MPS is not available"):
        resolve_device("mps")


def test_profiles_resolve_and_auto_follows_the_gpu(monkeypatch):
    monkeypatch.delenv("MLLIB_PROFILE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert profile_name() == "quick"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert profile_name("auto") == "gpu"     # bounded (mllib.budget); the paper scale only by name
    assert resolve_profile("auto").to_dict() == dict(resolve_profile("quick").to_dict(), name="gpu")
    assert resolve_profile("gpu", ways=20).inner_lr == resolve_profile("quick", ways=20).inner_lr
    monkeypatch.setenv("MLLIB_PROFILE", "quick")
    assert profile_name() == "quick"
    with pytest.raises(ValueError, match="MLLIB_PROFILE"):
        profile_name("fast")


def test_full_profile_is_the_maml_paper_and_twenty_way_overrides():
    full5 = resolve_profile("full", ways=5)
    assert (full5.meta_batch, full5.inner_lr, full5.inner_steps, full5.meta_lr) == (32, 0.4, 1, 1e-3)
    full20 = resolve_profile("full", ways=20)
    assert (full20.meta_batch, full20.inner_lr, full20.inner_steps) == (16, 0.1, 5)
    assert resolve_profile("quick", meta_steps=3).meta_steps == 3
    with pytest.raises(ValueError, match="unknown profile field"):
        resolve_profile("quick", not_a_field=1)


def test_device_index_must_exist(monkeypatch):
    for device in ("cpu:7", "cpu:1", "mps:1"):
        with pytest.raises(ValueError, match=f"device={device!r}"):
            resolve_device(device)
    assert resolve_device("cpu:0") == torch.device("cpu:0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(ValueError, match=r"device='cuda:2'.*2 CUDA device"):
        resolve_device("cuda:2")
