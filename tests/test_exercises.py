"""Graded use of every exercise: the two layers of checks, hints, the student release.

For each exercise of the real notebooks: the instructor's solution passes the visible check and
the hidden tests; every known wrong answer (``instructor/known_mistakes.py``) fails both, and the
visible check prints that mistake's conceptual hint, never code. The package holds no reference
solution; a call to the library function an exercise replaces fails; the stored values are
current; solutions are shown only behind the instructor's switch; the student release holds no
hidden test, no quiz answer, no reference, and its badges open the student release.
"""
from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

import pytest
import torch

from mllib import checks
from mllib.checks.exercise import HIDDEN, SPECS, VISIBLE, hidden_check, hidden_tests, visible_check
from mllib.course import build_student, find_exercises
from mllib.course.check_values import check_values, hidden_references, load_mistakes, notebook_namespace
from mllib.course.config import CourseConfig, load_config
from mllib.course.grading import judge_release
from mllib.course.nbio import list_notebooks, read_notebook, source
from mllib.course.student import student_version

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
pytestmark = pytest.mark.usefixtures("lenient_checks")


def _solutions() -> dict:
    """{exercise: (notebook, the instructor's solution function)} from the solution cells."""
    found = {}
    for path in list_notebooks(NOTEBOOKS):
        nb = read_notebook(path)
        for ex in find_exercises(nb):
            call = re.search(r"checks\.check_(\w+)\((\w+)", source(nb.cells[ex.check_index]))
            namespace = notebook_namespace(nb)
            exec(source(nb.cells[ex.cell_index]), namespace)  # noqa: S102 - our own notebooks
            found[call.group(1)] = (path.name, namespace[call.group(2)])
    return found


SOLUTIONS = _solutions()
REFERENCES = {k: v for path in list_notebooks(NOTEBOOKS) for k, v in hidden_references(read_notebook(path)).items()}
MISTAKES = load_mistakes(ROOT)
MISTAKE_CASES = [(name, mid) for name in sorted(MISTAKES) for mid in sorted(MISTAKES[name])]


def test_every_exercise_has_a_spec_a_solution_a_reference_and_known_mistakes():
    assert set(SOLUTIONS) == set(SPECS)
    for name, spec in SPECS.items():
        if spec.fixed:
            assert name in REFERENCES, name
            assert set(MISTAKES.get(name, {})) == set(spec.mistakes) and spec.mistakes, name
        for text in (spec.hints.concept, spec.hints.reasoning, *spec.mistakes.values()):
            assert not re.search(r"\bdef \w+\(|\breturn \w+[.(\[]|\blambda \w*:|\.backward\(|autograd\.grad\(", text), (name, text)


@pytest.mark.parametrize("name", sorted(SOLUTIONS))
def test_the_solution_passes_both_layers(name, capsys):
    _, solution = SOLUTIONS[name]
    assert visible_check(SPECS[name], solution), capsys.readouterr().out
    assert hidden_tests(name, solution, REFERENCES.get(name)), capsys.readouterr().out


@pytest.mark.parametrize("name", sorted(SOLUTIONS))
def test_each_layer_runs_its_own_cases_under_the_exercise_name(name, capsys):
    """``visible_check`` runs the visible cases, ``hidden_check`` (the assignments' hidden tests too) the
    hidden ones; a fixed exercise's hidden tests need the instructor's reference."""
    spec, (_, solution) = SPECS[name], SOLUTIONS[name]
    visible = visible_check(spec, solution)
    hidden = hidden_check(spec, solution, REFERENCES.get(name))
    capsys.readouterr()
    assert (visible.exercise, visible.total) == (name, len(spec.cases(VISIBLE)))
    assert (hidden.exercise, hidden.total) == (f"{name} (hidden tests)", len(spec.cases(HIDDEN)))
    if spec.fixed:
        with pytest.raises(ValueError, match=f"the hidden tests of '{name}' need the instructor's reference"):
            hidden_check(spec, solution)


@pytest.mark.parametrize("name, mistake", MISTAKE_CASES)
def test_each_known_mistake_fails_both_layers_with_its_hint(name, mistake):
    spec, wrong = SPECS[name], MISTAKES[name][mistake]
    visible = visible_check(spec, wrong)
    assert not visible and visible.status == "failed"
    assert spec.mistakes[mistake] in visible.message      # the conceptual hint of this mistake
    assert f"checks.hint('{name}')" in visible.message     # and where the next tier is
    assert "### BEGIN SOLUTION" not in visible.message
    assert not hidden_tests(name, wrong, REFERENCES.get(name))


def test_the_package_holds_no_reference_solution():
    for info in pkgutil.iter_modules(checks.__path__):
        module = importlib.import_module(f"mllib.checks.{info.name}")
        assert not [n for n in vars(module) if n.endswith("_reference")], info.name
    assert not (ROOT / "mllib" / "instructor").exists()
    assert not list((ROOT / "mllib").rglob("known_mistakes.py"))


def test_stored_values_are_current():
    assert check_values(ROOT), "run `python -m mllib course check-values --write`"


@pytest.mark.parametrize("name", sorted(n for n, s in SPECS.items() if s.forbidden and n in REFERENCES))
def test_calling_the_library_function_fails(name):
    """The graded references call mllib; the same values from a learner fail the visible check."""
    reference = REFERENCES[name]
    from mllib.checks.library_calls import CallGuard

    case = SPECS[name].cases("visible")[0]
    guard = CallGuard(SPECS[name].wrap(reference) if SPECS[name].wrap else reference, SPECS[name].forbidden)
    import copy
    guard(*copy.deepcopy(case.args), **copy.deepcopy(case.kwargs))
    if not guard.calls:
        pytest.skip(f"the reference of {name} computes the answer itself")
    result = visible_check(SPECS[name], reference)
    assert not result and "the course library's own version" in result.message


def test_confidence_interval_fixed_values_and_the_library_call():
    from mllib.evaluate import mean_ci95

    def by_hand(values):
        values = torch.as_tensor(values, dtype=torch.float64)
        return values.mean().item(), 1.96 * values.std().item() / len(values) ** 0.5

    def by_library(values):
        return mean_ci95(values)

    assert checks.check_confidence_interval(by_hand)
    result = checks.check_confidence_interval(by_library)
    assert not result and "mllib.evaluate.mean_ci95" in result.message


def test_hint_tiers_and_the_solution_switch(monkeypatch, capsys, tmp_path):
    monkeypatch.delenv(checks.SOLUTIONS_ENV, raising=False)
    first = checks.hint("confidence_interval")
    assert SPECS["confidence_interval"].hints.reasoning in first
    again = checks.hint("confidence_interval")
    assert "switched off" in again and "### BEGIN SOLUTION" not in again
    assert checks.show_solution("confidence_interval") is None
    assert "switched off" in capsys.readouterr().out
    build_student(NOTEBOOKS, tmp_path / "student")
    monkeypatch.setenv(checks.SOLUTIONS_ENV, str(tmp_path / "student"))   # a student copy: nothing to show
    assert checks.show_solution("confidence_interval") is None
    monkeypatch.setenv(checks.SOLUTIONS_ENV, str(NOTEBOOKS))              # the instructor's switch
    shown = checks.show_solution("maml_meta_step")
    assert "### BEGIN SOLUTION" in shown and "create_graph=True" in shown


@pytest.fixture(scope="module")
def student_build(tmp_path_factory):
    out = tmp_path_factory.mktemp("student")
    build_student(NOTEBOOKS, out)
    return out


def test_student_build_has_no_hidden_tests_no_quiz_answers_no_references(student_build):
    config = load_config()
    for path in list_notebooks(NOTEBOOKS):
        instructor, student = read_notebook(path), read_notebook(student_build / path.name)
        assert judge_release(student, path.name, config) == []
        quizzes = [i for i, c in enumerate(instructor.cells)
                   if c.cell_type == "markdown" and c.metadata.get("nbgrader", {}).get("solution")]
        assert quizzes, f"{path.name} has no quiz answer cell"
        for i in quizzes:
            assert "BEGIN SOLUTION" in source(instructor.cells[i])
            assert "YOUR ANSWER HERE" in source(student.cells[i])
        hidden = [i for i, c in enumerate(instructor.cells) if "BEGIN HIDDEN TESTS" in source(c)]
        assert len(hidden) == len(find_exercises(instructor))
        for i in hidden:
            assert "hidden_tests" not in source(student.cells[i])


def test_judge_release_catches_a_leak():
    nb = read_notebook(NOTEBOOKS / "01_learning_bias.ipynb")
    problems = judge_release(nb, "01_learning_bias.ipynb")   # the instructor version
    assert any("HIDDEN TESTS" in p for p in problems) and any("SOLUTION" in p for p in problems)


def test_badges_open_the_practice_edition_in_the_student_build_only(tmp_path):
    cfg = CourseConfig(repository="https://github.com/owner/course", ref="main")
    from mllib.course.colab import sync_notebook

    path = NOTEBOOKS / "02_task_sampling.ipynb"
    instructor = sync_notebook(read_notebook(path), path.name, cfg)
    student = student_version(instructor, path.name, cfg)
    badge = next(i for i, c in enumerate(instructor.cells) if "colab-badge" in c.metadata.get("tags", []))
    assert "/blob/main/notebooks/02_task_sampling.ipynb" in source(instructor.cells[badge])
    assert "/v2/gh/owner/course/main?urlpath=lab/tree/notebooks/" in source(instructor.cells[badge])
    assert "/blob/main/practice/02_task_sampling.ipynb" in source(student.cells[badge])
    assert "/v2/gh/owner/course/main?urlpath=lab/tree/practice/02_task_sampling.ipynb" in source(student.cells[badge])
    assert "notebooks/" not in source(student.cells[badge])
    assert judge_release(student, path.name, cfg) == []
    assert any("practice edition" in p for p in judge_release(student_version(instructor), path.name, cfg))
    with pytest.raises(ValueError, match="practice_dir"):
        CourseConfig(repository=None, ref="main", practice_dir="notebooks")


def test_make_student_ships_the_project_template(student_build):
    template = student_build / "project" / "project_template.ipynb"
    assert template.is_file()
    text = "".join(source(c) for c in read_notebook(template).cells)
    assert "600" in text and "model card" in text.lower()


# Notebooks with a written quiz but no automatically checked exercise yet (none since notebook 09's
# PFN objective, issue 25).
QUIZ_ONLY: set[str] = set()


def test_effort_in_every_header_and_the_generated_table_are_current():
    from mllib.course.effort import check_effort, exercises_line, notebook_efforts

    assert check_effort(ROOT) == []
    for path in list_notebooks(NOTEBOOKS):
        rows, problems = notebook_efforts(read_notebook(path), path.name)
        assert problems == [] and any(r.kind == "quiz" for r in rows)
        assert path.name in QUIZ_ONLY or any(r.kind == "exercise" for r in rows), f"{path.name}: no exercise"
        header = next(source(c) for c in read_notebook(path).cells if "What you will learn" in source(c))
        assert exercises_line(rows) in header and "minutes in all" in header
    table = (ROOT / "docs" / "instructors.md").read_text(encoding="utf-8")
    for name in SPECS:
        assert f"checks.check_{name}`" in table, name
