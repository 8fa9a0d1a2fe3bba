"""Mutation testing in ``make test``: ``python -m mllib course mutants`` over every exercise, once.

The hidden tests must reject at least 95% and the visible checks at least 90% of the
non-equivalent mutants, and the surviving mutants must be exactly those documented in
``mllib.course.mutants.SURVIVORS`` and ``docs/instructors.md``. The full run (about 50 s on 2
cores) happens once, in the module fixture; the other tests judge made-up verdicts and are instant.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from mllib.__main__ import main
from mllib.course import mutants as mt

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, one_thread):
    """``(exit status, printed text, [Mutant])`` of ``python -m mllib course mutants --json FILE``."""
    import contextlib
    import io

    out, path = io.StringIO(), tmp_path_factory.mktemp("mutants") / "mutants.json"
    with contextlib.redirect_stdout(out):
        status = main(["course", "mutants", "--notebooks", str(ROOT / "notebooks"), "--json", str(path)])
    return status, out.getvalue(), [mt.Mutant(**m) for m in json.loads(path.read_text(encoding="utf-8"))]


def _mutant(exercise="e", kind="arith", change="line 3: + -> -", visible="failed", hidden="failed"):
    return mt.Mutant(exercise, kind, change, visible, hidden)


# ---------------------------------------------------------------- the real run
def test_every_exercise_meets_the_thresholds_and_the_command_says_ok(full_run):
    status, printed, mutants = full_run
    assert status == 0, printed
    assert "mutation testing: ok" in printed
    found = mt.score(mutants)
    assert found.non_equivalent >= 140
    assert found.fraction("hidden") >= 0.95 and found.fraction("visible") >= 0.90, found
    assert len({m.exercise for m in mutants}) == len(mt.solutions(ROOT / "notebooks"))   # every exercise ran


def test_the_surviving_mutants_are_exactly_the_documented_ones(full_run):
    _, _, mutants = full_run
    survivors = sorted((m.exercise, m.kind, m.change) for m in mutants if m.survived_visible or m.survived_hidden)
    assert survivors == sorted(s[:3] for s in mt.SURVIVORS)


def test_docs_state_the_measured_score_and_every_survivor(full_run):
    _, _, mutants = full_run
    docs = (ROOT / "docs" / "instructors.md").read_text(encoding="utf-8")
    section = docs[docs.index("### Mutation testing"):]
    section = section[:section.index("\n### ", 5)]
    rejected = sum(not m.survived_hidden for m in mutants)
    assert f"{len(mutants)} mutants, {rejected} rejected" in section
    assert "python -m mllib course mutants" in section
    for exercise, *_ in mt.SURVIVORS:
        assert f"| `{exercise}` |" in section, exercise


# ---------------------------------------------------------------- the verdict on made-up runs (instant)
def test_thresholds_are_the_issues():
    assert mt.MIN_REJECTED == {"hidden": 0.95, "visible": 0.90}


def test_a_documented_equivalent_survivor_does_not_count_against_the_score():
    runs = [_mutant("adaptation_curve", "compare", "line 8: < -> <=", "passed", "passed")] + [_mutant()] * 19
    found = mt.score(runs, {"adaptation_curve", "e"})
    assert (found.mutants, found.equivalent, found.non_equivalent) == (20, 1, 19)
    assert found.fraction("hidden") == found.fraction("visible") == 1.0
    assert mt.problems(runs, {"adaptation_curve", "e"}) == []


def test_an_undocumented_survivor_is_a_problem():
    runs = [_mutant(hidden="passed")] + [_mutant()] * 99
    lines = mt.problems(runs, {"e"})
    assert lines == ["undocumented survivor: e: arith: line 3: + -> - (reject it with a check, or add it to "
                     "SURVIVORS in mllib/course/mutants.py and docs/instructors.md with why)"]


def test_a_documented_survivor_that_is_now_rejected_is_a_problem():
    runs = [_mutant("adaptation_curve", "compare", "line 8: < -> <=")]
    assert mt.problems(runs, {"adaptation_curve"}) == [
        "documented survivor no longer survives: adaptation_curve: compare: line 8: < -> <= "
        "(remove it from SURVIVORS and docs/instructors.md)"]


@pytest.mark.parametrize("layer, passed, failing", [("hidden", 6, True), ("hidden", 5, False),
                                                    ("visible", 11, True), ("visible", 10, False)])
def test_a_layer_below_its_threshold_is_a_problem(layer, passed, failing):
    runs = [_mutant(**{layer: "passed"})] * passed + [_mutant()] * (100 - passed)
    lines = [line for line in mt.problems(runs, {"e"}) if "non-equivalent" in line]
    assert bool(lines) == failing, lines
    if failing:
        assert lines[0].startswith(f"the {layer} ") and "below the" in lines[0]


def test_an_unknown_exercise_ends_in_one_line(capsys):
    assert main(["course", "mutants", "no_such_exercise", "--notebooks", str(ROOT / "notebooks")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no exercise called 'no_such_exercise'; known: ") and err.count("\n") == 1
