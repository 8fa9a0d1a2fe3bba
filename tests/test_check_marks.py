"""The checks' verdict marks read in any font: MLLIB_PLAIN_MARKS=1 (or an output that cannot encode the
emoji) prints [PASS] / [FAIL] / [TODO] instead of the emoji, and [HINT] / [LOCKED] for the hints."""
from __future__ import annotations

import io

import pytest
import torch

from mllib import checks
from mllib.checks import core, hints


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


@pytest.mark.parametrize("plain", ["1", "0"])
def test_the_hint_and_solution_marks_follow_the_same_switch(plain, monkeypatch, capsys):
    monkeypatch.setenv(core.PLAIN_MARKS_ENV, plain)
    monkeypatch.delenv(checks.SOLUTIONS_ENV, raising=False)
    monkeypatch.setattr(hints, "_ASKED", {})              # nobody has asked for a hint yet
    first = checks.hint("confidence_interval")
    again = checks.hint("confidence_interval")
    locked = checks.show_solution("confidence_interval")
    out = capsys.readouterr().out
    assert locked is None and out.startswith(f"{first}\n{again}\n")   # what is printed is what is returned
    lines = out.splitlines()
    hint_lines = [line for line in lines if "hint 1 (the idea)" in line or "hint 2 (the line" in line]
    assert len(hint_lines) == 3                          # tiers 1 and 2, then tier 2 again
    mark, lock = ("[HINT]", "[LOCKED]") if plain == "1" else ("💡", "🔒")
    assert all(line.startswith(f"{mark} confidence_interval, hint ") for line in hint_lines)
    assert lines[-1].startswith(f"{lock} confidence_interval: solutions are switched off")
    if plain == "1":
        assert not any(emoji in out for emoji in core.PLAIN_MARK) and out.isascii()


def test_hints_on_an_output_that_cannot_encode_emoji_are_plain(monkeypatch):
    monkeypatch.delenv(core.PLAIN_MARKS_ENV, raising=False)
    monkeypatch.setattr(hints, "_ASKED", {})
    stream = io.TextIOWrapper(io.BytesIO(), encoding="cp1252")
    monkeypatch.setattr("sys.stdout", stream)
    text = checks.hint("confidence_interval")            # would raise UnicodeEncodeError with the emoji
    stream.flush()
    written = stream.buffer.getvalue().decode("cp1252")
    assert text.startswith("[HINT] confidence_interval, hint") and written.startswith("[HINT] ")
