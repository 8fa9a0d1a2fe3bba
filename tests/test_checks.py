"""mllib.checks: verdicts on right, wrong, unfinished and crashing learner functions."""
from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest
import torch

from mllib import checks

from conftest import notebook_reference
from mllib.checks import Case, compare_values, run_check


pytestmark = pytest.mark.usefixtures("lenient_checks")


# ---------------------------------------------------------------- learner functions
def ci_right(values):
    return values.mean().item(), 1.96 * values.std().item() / math.sqrt(len(values))


def ci_numpy(values):  # a different but correct route: NumPy, sample sd
    v = np.asarray(values)
    return float(v.mean()), 1.96 * float(v.std(ddof=1)) / math.sqrt(len(v))


def ci_population_sd(values):
    return values.mean(), 1.96 * values.std(correction=0) / math.sqrt(len(values))


def ci_no_sqrt(values):
    return values.mean(), 1.96 * values.std()


def unfinished(*args, **kwargs):
    # YOUR CODE HERE
    raise NotImplementedError()


def remap_right(labels, classes=None):
    order = list(dict.fromkeys(labels.tolist())) if classes is None else classes.tolist()
    position = {c: i for i, c in enumerate(order)}
    return torch.tensor([position[x] for x in labels.tolist()], dtype=torch.long)


def remap_sorted(labels, classes=None):  # a classic mistake: sorted order instead of first appearance
    if classes is not None:
        return remap_right(labels, classes)
    return torch.unique(labels, return_inverse=True)[1]


def remap_float(labels, classes=None):
    return remap_right(labels, classes).float()


def remap_ignores_classes(labels, classes=None):
    return remap_right(labels)


# ---------------------------------------------------------------- the two example checks
@pytest.mark.parametrize("fn", [ci_right, ci_numpy])
def test_confidence_interval_passes_correct_implementations(fn, capsys):
    result = checks.check_confidence_interval(fn)
    assert result and result.status == "passed" and result.passed == result.total
    assert capsys.readouterr().out.strip() == f"✅ confidence_interval: passed {result.total}/{result.total} cases"


def test_confidence_interval_reference_matches_the_formula():
    values = torch.tensor([0.2, 0.4, 0.9], dtype=torch.float64)
    mean, half = notebook_reference("confidence_interval")(values)
    sd = math.sqrt(((0.2 - 0.5) ** 2 + (0.4 - 0.5) ** 2 + (0.9 - 0.5) ** 2) / 2)  # sample sd, n - 1
    assert mean == pytest.approx(0.5) and half == pytest.approx(1.96 * sd / math.sqrt(3))


def test_confidence_interval_names_the_population_sd_mistake(capsys):
    result = checks.check_confidence_interval(ci_population_sd)
    out = capsys.readouterr().out
    assert not result and result.status == "failed" and result.passed == 0
    assert out.startswith("❌ confidence_interval: result[1] is ")
    assert "case 1 of " in out
    assert "Hint: you used the population standard deviation" in out


def test_confidence_interval_names_the_missing_sqrt(capsys):
    assert not checks.check_confidence_interval(ci_no_sqrt)
    assert "the interval is about the mean of n of them" in capsys.readouterr().out


def test_label_remap_passes_reference_and_fails_the_classic_mistakes(capsys):
    assert checks.check_label_remap(remap_right)
    capsys.readouterr()
    sorted_result = checks.check_label_remap(remap_sorted)
    assert not sorted_result and "order of first appearance, not in sorted order" in capsys.readouterr().out
    float_result = checks.check_label_remap(remap_float)
    out = capsys.readouterr().out
    assert not float_result and "dtype torch.float32" in out and "torch.long" in out
    ignored = checks.check_label_remap(remap_ignores_classes)
    out = capsys.readouterr().out
    assert not ignored and "case 2 of " in out  # case 1 has classes=None, case 2 gives an order
    assert ignored.passed == 1


def test_label_remap_reference_follows_its_docstring():
    labels = torch.tensor([812, 45, 812, 1203])
    assert notebook_reference("label_remap")(labels).tolist() == [0, 1, 0, 2]
    assert notebook_reference("label_remap")(labels, torch.tensor([1203, 812, 45])).tolist() == [1, 2, 1, 0]


# ---------------------------------------------------------------- verdict kinds
def test_not_implemented_gives_the_your_code_here_message(capsys):
    result = checks.check_label_remap(unfinished)
    out = capsys.readouterr().out
    assert result.status == "not_implemented" and not result
    assert out.strip() == ("⏳ label_remap: not implemented yet — write your code where it says "
                           "YOUR CODE HERE")


def test_other_exceptions_become_a_verdict_with_type_line_and_hint(capsys):
    def crashes(values):
        total = values.sum()
        return total + "oops"

    result = checks.check_confidence_interval(crashes)
    out = capsys.readouterr().out
    assert result.status == "error"
    assert out.startswith("❌ confidence_interval: your function raised TypeError: ")
    assert "return total + \"oops\"" in out  # the learner's own line
    assert "Hint: " in out and "Traceback" not in out


def test_wrong_return_shape_and_type_are_explained(capsys):
    assert not checks.check_confidence_interval(lambda v: v.mean())
    assert "Hint: return a pair (mean, half_width)" in capsys.readouterr().out
    assert not checks.check_label_remap(lambda labels, classes=None: labels[:-1])
    assert "result has shape" in capsys.readouterr().out


def test_passing_something_that_is_not_a_function(capsys):
    result = checks.check_label_remap(remap_right(torch.tensor([3, 4])))
    assert result.status == "error" and "expected a function" in capsys.readouterr().out


def test_result_does_not_display_twice_in_jupyter():
    result = checks.check_label_remap(remap_right)
    assert result._ipython_display_() is None  # the verdict was printed once, by the check


# ---------------------------------------------------------------- strict mode, record, determinism, speed
def test_strict_mode_raises_assertion_with_the_same_message(monkeypatch, capsys):
    monkeypatch.setenv(checks.STRICT_ENV, "1")
    with pytest.raises(AssertionError) as err:
        checks.check_confidence_interval(ci_population_sd)
    assert str(err.value).startswith("❌ confidence_interval:")
    assert str(err.value) in capsys.readouterr().out
    with pytest.raises(AssertionError, match="not implemented yet"):
        checks.check_label_remap(unfinished)
    assert checks.check_label_remap(remap_right)  # a pass never raises


_GRADER_VARIABLES = (checks.STRICT_ENV, checks.NBGRADER_ENV, checks.GRADER_ENV, "PYTEST_CURRENT_TEST")


@pytest.mark.parametrize("env, strict", [
    ({}, False),                                                   # an interactive session: lenient
    ({"NBGRADER_EXECUTION": "autograde"}, True),                   # nbgrader autograde
    ({"NBGRADER_EXECUTION": "validate"}, True),                    # nbgrader validate
    ({"NBGRADER_EXECUTION": "autograde", "MLLIB_CHECKS_STRICT": "0"}, True),  # nbgrader always wins
    ({"MLLIB_CHECKS_STRICT": "1"}, True),
    ({"MLLIB_CHECKS_STRICT": "true"}, True),
    ({"MLLIB_CHECKS_STRICT": "maybe"}, True),                      # unreadable: the safe side
    ({"MLLIB_CHECKS_STRICT": ""}, False),                          # empty = unset
    ({"MLLIB_CHECKS_STRICT": "0"}, False),
    ({"MLLIB_CHECKS_STRICT": "no"}, False),
    ({"PYTEST_CURRENT_TEST": "tests/x.py::t (call)"}, True),       # pytest, nbval
    ({"PYTEST_CURRENT_TEST": "tests/x.py::t (call)", "MLLIB_CHECKS_STRICT": "0"}, False),  # what a learner sees
    ({"MLLIB_GRADER": "course grade"}, True),                      # a grader says so
    ({"MLLIB_GRADER": "ci", "MLLIB_CHECKS_STRICT": "off"}, False),
])
def test_strict_whenever_a_grader_runs_and_lenient_only_interactively(monkeypatch, env, strict):
    for name in _GRADER_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert checks.strict_mode() is strict
    reason = checks.strict_reason()
    assert (reason is not None) is strict
    if strict:  # the reason names the variable that decided it
        decisive = "NBGRADER_EXECUTION" if "NBGRADER_EXECUTION" in env else next(iter(env))
        assert decisive in reason


def test_an_unanswered_exercise_raises_under_nbgrader_without_any_course_variable(monkeypatch, capsys):
    for name in _GRADER_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert checks.check_label_remap(unfinished).status == "not_implemented"   # interactive: prints only
    monkeypatch.setenv(checks.NBGRADER_ENV, "autograde")
    with pytest.raises(AssertionError, match="not implemented yet"):
        checks.check_label_remap(unfinished)
    with pytest.raises(AssertionError, match="hidden tests"):
        checks.hidden_tests("label_remap", unfinished, remap_right)
    assert checks.check_label_remap(remap_right)                              # a pass never raises


def test_under_pytest_the_checks_are_strict_by_default(monkeypatch):
    monkeypatch.delenv(checks.STRICT_ENV)          # undo the lenient_checks fixture: pytest alone decides
    with pytest.raises(AssertionError, match="not implemented yet"):
        checks.check_confidence_interval(unfinished)


def test_record_file_gets_one_json_line_per_check(monkeypatch, tmp_path, capsys):
    record = tmp_path / "record.jsonl"
    monkeypatch.setenv(checks.RECORD_ENV, str(record))
    checks.check_label_remap(remap_right)
    checks.check_confidence_interval(unfinished)
    rows = [json.loads(line) for line in record.read_text().splitlines()]
    assert [(r["exercise"], r["status"]) for r in rows] == [("label_remap", "passed"),
                                                            ("confidence_interval", "not_implemented")]


def test_checks_are_deterministic_and_fast(capsys):
    first = checks.check_confidence_interval(ci_population_sd).message
    second = checks.check_confidence_interval(ci_population_sd).message
    assert first == second
    seen = []
    checks.check_label_remap(lambda labels, classes=None: seen.append(labels.tolist()) or remap_right(labels, classes))
    checks.check_label_remap(lambda labels, classes=None: seen.append(labels.tolist()) or remap_right(labels, classes))
    half = len(seen) // 2
    assert seen[:half] == seen[half:] and len({str(s) for s in seen[:half]}) == half >= 3
    for check, fn in ((checks.check_confidence_interval, ci_right), (checks.check_label_remap, remap_right)):
        start = time.perf_counter()
        check(fn)
        assert time.perf_counter() - start < 0.5


def test_learner_mutating_its_input_cannot_change_the_reference(capsys):
    def mutates(values):
        values.zero_()
        return 0.0, 0.0

    result = checks.check_confidence_interval(mutates)                 # the side effect itself fails
    assert not result and "changed its input values in place" in result.message
    assert "Hint: your function changed its input" in result.message
    nothing_frozen = checks.properties.Properties(frozen=())                # and, unwatched, the reference
    result = run_check("ci", mutates, ci_right, [Case((torch.arange(3.0),))], hint="", properties=nothing_frozen)
    assert not result and "expected 1" in result.message                   # still saw the real values


# ---------------------------------------------------------------- run_check and compare_values directly
def test_run_check_counts_cases_and_stops_at_first_failure(capsys):
    cases = [Case((i,)) for i in range(4)]
    result = run_check("square", lambda x: x * x if x < 2 else -1, lambda x: x * x, cases, hint="multiply")
    assert result.status == "failed" and result.passed == 2 and result.total == 4
    assert "case 3 of 4 (input: 2)" in capsys.readouterr().out
    with pytest.raises(ValueError, match="cases"):
        run_check("empty", abs, abs, [], hint="")


def test_make_cases_is_seeded():
    a = checks.make_cases(3, 2, lambda gen, i: (checks.random_tensor(gen, 2, 3),))
    b = checks.make_cases(3, 2, lambda gen, i: (checks.random_tensor(gen, 2, 3),))
    assert all(torch.equal(x.args[0], y.args[0]) for x, y in zip(a, b))
    assert not torch.equal(a[0].args[0], a[1].args[0])


@pytest.mark.parametrize("got, want, expected", [
    (torch.ones(3), torch.ones(3), None),
    (np.ones(3), torch.ones(3), None),
    (torch.ones(3) + 1e-3, torch.ones(3), "differs at 3 of 3 positions"),
    (torch.ones(2), torch.ones(3), "shape (2,), expected (3,)"),
    (torch.tensor([0, 2]), torch.tensor([0, 1]), "first at flat index 1: got 2, expected 1"),
    (torch.tensor(0.5), 0.5, None),
    (torch.ones(2), 0.5, "single number"),
    ((1.0,), (1.0, 2.0), "has 1 items, expected 2"),
    ({"w": torch.zeros(2)}, {"w": torch.zeros(2), "b": torch.zeros(1)}, "missing ['b']"),
    ({"w": torch.zeros(2)}, {"w": torch.ones(2)}, "result['w'] differs"),
    (None, torch.ones(1), "should be a tensor"),
])
def test_compare_values(got, want, expected):
    problem = compare_values(got, want)
    if expected is None:
        assert problem is None
    else:
        assert problem is not None and expected in problem


# ---------------------------------------------------------------- the package layout
def test_package_reexports_every_notebook_check_and_holds_no_reference():
    import importlib
    import pkgutil
    from pathlib import Path

    notebooks = Path(__file__).resolve().parents[1] / "notebooks"
    modules = [m.name for m in pkgutil.iter_modules(checks.__path__) if m.name.startswith("nb")]
    assert len(modules) == len(list(notebooks.glob("[0-9][0-9]_*.ipynb")))  # one module per notebook
    for name in modules:  # nbNN_<notebook>.py holds the checks of notebooks/NN_<notebook>.ipynb
        assert (notebooks / f"{name[2:]}.ipynb").exists(), name
        module = importlib.import_module(f"mllib.checks.{name}")
        for public in module.__all__:
            assert public in checks.__all__ and getattr(checks, public) is getattr(module, public)
        assert not [n for n in vars(module) if n.endswith("_reference")], name  # references: hidden tests only
