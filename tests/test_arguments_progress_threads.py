"""The one-place helpers: argument checks, the progress bar switch and the CPU thread settings."""
from __future__ import annotations

import pytest
import torch

from mllib.arguments import check_choice, check_int, check_positive
from mllib.device import THREADS_ENV, cpu_threads, use_cpu_threads
from mllib.progress import progress_bar


@pytest.mark.parametrize("value", [0, -3, 1.5, "2", True, None])
def test_check_int_rejects_with_the_name_and_range(value):
    with pytest.raises(ValueError, match=r"^steps must be an integer >= 1, got "):
        check_int("steps", value, 1)


def test_checks_return_good_values():
    assert check_int("steps", 0, 0) == 0 and check_positive("lr", 2) == 2.0
    assert check_choice("bn", "support", ("batch", "support")) == "support"
    for bad in (0, -1.0, float("nan"), False, "0.1"):
        with pytest.raises(ValueError, match="lr must be a number > 0"):
            check_positive("lr", bad)
    with pytest.raises(ValueError, match="bn must be one of batch, support; got 'running'"):
        check_choice("bn", "running", ("batch", "support"))


def test_progress_bar_is_off_under_ci_or_when_disabled(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    assert not progress_bar(total=2).disable and progress_bar(total=2, enabled=False).disable
    monkeypatch.setenv("CI", "true")
    assert progress_bar(total=2).disable
    assert list(progress_bar(range(3))) == [0, 1, 2]


def test_cpu_threads_sets_and_restores(monkeypatch):
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        with cpu_threads(1):
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        with cpu_threads(None):
            assert torch.get_num_threads() == 2
        monkeypatch.setenv(THREADS_ENV, "1")
        assert use_cpu_threads(torch.device("cpu")) == 1
        torch.set_num_threads(2)
        assert use_cpu_threads(torch.device("cuda")) == 2            # other devices: left alone
        assert use_cpu_threads(torch.device("cpu"), threads=2) == 2
    finally:
        torch.set_num_threads(before)
