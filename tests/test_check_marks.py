"""The checks' verdict marks read in any font: MLLIB_PLAIN_MARKS=1 (or an output that cannot encode the
emoji) prints [PASS] / [FAIL] / [TODO] instead of the emoji."""
from __future__ import annotations

import io

import pytest
import torch

from mllib import checks
from mllib.checks import core


def ci_right(values):
    values = values.double()
    return values.mean(), 1.96 * values.std() / len(values) ** 0.5


def ci_wrong(values):
    return values.double().mean(), torch.tensor(0.0, dtype=torch.float64)


def unfinished(values):
    raise NotImplementedError()


@pytest.fixture
def lenient(monkeypatch):
    monkeypatch.setenv(core.STRICT_ENV, "0")       # a failed check prints, as in a learner's notebook


@pytest.mark.parametrize("fn, mark", [(ci_right, "[PASS]"), (ci_wrong, "[FAIL]"), (unfinished, "[TODO]")])
def test_plain_marks_replace_every_emoji_when_asked(fn, mark, monkeypatch, capsys, lenient):
    monkeypatch.setenv(core.PLAIN_MARKS_ENV, "1")
    result = checks.check_confidence_interval(fn)
    out = capsys.readouterr().out
    assert out.startswith(f"{mark} confidence_interval: ") and result.message.startswith(mark)
    assert not any(emoji in out for emoji in core.PLAIN_MARK)
    assert out.isascii() or fn is unfinished         # the not-implemented line keeps its dash


def test_emoji_marks_stay_by_default_on_a_utf8_output(monkeypatch, capsys, lenient):
    monkeypatch.delenv(core.PLAIN_MARKS_ENV, raising=False)
    checks.check_confidence_interval(ci_right)
    assert capsys.readouterr().out.startswith("✅ confidence_interval: ")


def test_an_output_that_cannot_encode_emoji_gets_plain_marks(monkeypatch):
    monkeypatch.delenv(core.PLAIN_MARKS_ENV, raising=False)
    assert core.plain_marks_wanted(io.TextIOWrapper(io.BytesIO(), encoding="cp1252")) is True
    assert core.plain_marks_wanted(io.TextIOWrapper(io.BytesIO(), encoding="utf-8")) is False
    monkeypatch.setenv(core.PLAIN_MARKS_ENV, "yes")
    assert core.plain_marks_wanted(io.TextIOWrapper(io.BytesIO(), encoding="utf-8")) is True
