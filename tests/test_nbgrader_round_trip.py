"""nbgrader itself grades the real course notebooks 02 and 03: every exercise gets exactly its points.

The instructor notebooks ``notebooks/02_task_sampling.ipynb`` and ``notebooks/03_inner_loop.ipynb``
are nbgrader source notebooks as they are (schema-3 cell metadata). They go through
``nbgrader generate_assignment`` once, then ``nbgrader autograde`` grades three submissions:

* ``solutions``: the instructor notebooks themselves: every autograded cell gets its points;
* ``unanswered``: the release as nbgrader wrote it: no autograded cell gets a point, with no course
  variable set (nbgrader's own ``NBGRADER_EXECUTION`` makes the checks strict);
* ``planted``: the solutions with one plausible mistake per notebook (remap_labels numbers the classes
  in sorted order; sgd_step steps up the gradient): exactly those two exercises lose their points.

The notebooks run in the quick profile on the CPU, one torch thread, reading the synthetic Omniglot of
``tests/conftest.py`` (no download; the cells that describe the real Omniglot may fail, they carry no
points). Skipped when nbgrader is not installed (``pip install nbgrader``, in the ``test`` extra).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from mllib import checks

pytest.importorskip("nbgrader")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ("02_task_sampling", "03_inner_loop")
ASSIGNMENT = "ps1"
# one mistake per notebook: (notebook, its solution cell's grade_id, the check cell's grade_id, right, wrong)
PLANTED = (
    ("02_task_sampling", "label_remap", "label_remap_check",
     "list(dict.fromkeys(labels.tolist()))", "sorted(set(labels.tolist()))"),
    ("03_inner_loop", "sgd_step", "sgd_step_check",
     "{name: p - lr * g for", "{name: p + lr * g for"),
)


def _config(course: Path) -> None:
    (course / "nbgrader_config.py").write_text(
        "c = get_config()\n"
        f"c.CourseDirectory.root = {str(course)!r}\n"
        "c.CourseDirectory.db_url = 'sqlite:///' + " + repr(str(course / "gradebook.db")) + "\n"
        "c.ExecutePreprocessor.timeout = 300\n", encoding="utf-8")


def _env(cli_env: dict) -> dict:
    """A grader's environment: quick profile on the CPU, none of the course's own strict switches."""
    env = {k: v for k, v in cli_env.items()
           if k not in (checks.STRICT_ENV, checks.GRADER_ENV, checks.NBGRADER_ENV, checks.RECORD_ENV,
                        "PYTEST_CURRENT_TEST")}
    env.update(MLLIB_PROFILE="quick", MLLIB_DEVICE="cpu", MPLBACKEND="Agg")
    env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", "")])  # nbgrader runs alembic
    return env


def _nbgrader(course: Path, env: dict, *args: str) -> None:
    done = subprocess.run([sys.executable, "-m", "nbgrader", *args, "--force"], cwd=course, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def _planted(source: Path, notebook: str) -> str:
    """The instructor notebook ``notebook`` with its planted mistake in one solution cell, as text."""
    nb = nbformat.read(source, as_version=4)
    (_, solution_id, _, right, wrong), = [p for p in PLANTED if p[0] == notebook]
    cell, = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == solution_id]
    assert cell.source.count(right) == 1, f"{notebook}: the planted mistake's line changed; update PLANTED"
    cell.source = cell.source.replace(right, wrong)
    return nbformat.writes(nb)


def _submit(course: Path, student: str, notebook: str, text: str) -> None:
    folder = course / "submitted" / student / ASSIGNMENT
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{notebook}.ipynb").write_text(text, encoding="utf-8")


def _autograded_scores(course: Path) -> dict[tuple[str, str, str], tuple[float, float]]:
    """``{(student, notebook, grade_id): (score, max_score)}`` of every autograded cell."""
    from nbgrader.api import Gradebook

    scores = {}
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        for student in ("solutions", "unanswered", "planted"):
            submission = gradebook.find_submission(ASSIGNMENT, student)
            for notebook in submission.notebooks:
                for grade in notebook.grades:
                    if grade.cell.cell_type == "code":     # the quizzes (markdown) are graded by hand
                        scores[student, notebook.name, grade.name] = (grade.score, grade.max_score)
    return scores


@pytest.fixture(scope="module")
def graded(cli_env, tmp_path_factory):
    course = tmp_path_factory.mktemp("nbgrader_course")
    _config(course)
    source = course / "source" / ASSIGNMENT
    source.mkdir(parents=True)
    for notebook in NOTEBOOKS:
        shutil.copy(ROOT / "notebooks" / f"{notebook}.ipynb", source)
    env = _env(cli_env)
    _nbgrader(course, env, "generate_assignment", ASSIGNMENT)
    for notebook in NOTEBOOKS:
        _submit(course, "solutions", notebook, (source / f"{notebook}.ipynb").read_text(encoding="utf-8"))
        _submit(course, "unanswered", notebook,
                (course / "release" / ASSIGNMENT / f"{notebook}.ipynb").read_text(encoding="utf-8"))
        _submit(course, "planted", notebook, _planted(source / f"{notebook}.ipynb", notebook))
    _nbgrader(course, env, "autograde", ASSIGNMENT, "--create")
    return course, _autograded_scores(course)


def _expected_cells() -> set[tuple[str, str]]:
    """``{(notebook, grade_id)}`` of every autograded check cell of the instructor notebooks."""
    found = set()
    for notebook in NOTEBOOKS:
        for cell in nbformat.read(ROOT / "notebooks" / f"{notebook}.ipynb", as_version=4).cells:
            meta = cell.metadata.get("nbgrader", {})
            if cell.cell_type == "code" and meta.get("grade") and not meta.get("solution"):
                found.add((notebook, meta["grade_id"]))
    return found


def _of(scores: dict, student: str) -> dict[tuple[str, str], tuple[float, float]]:
    return {(nb, grade_id): value for (who, nb, grade_id), value in scores.items() if who == student}


def test_the_release_has_no_solution_and_no_hidden_test(graded):
    course, _ = graded
    for notebook in NOTEBOOKS:
        text = (course / "release" / ASSIGNMENT / f"{notebook}.ipynb").read_text(encoding="utf-8")
        assert "NotImplementedError" in text
        assert "BEGIN HIDDEN TESTS" not in text and "_reference" not in text


def test_the_solutions_get_every_autograded_point(graded):
    _, scores = graded
    mine = _of(scores, "solutions")
    assert set(mine) == _expected_cells() and len(mine) == 4
    assert all(score == maximum > 0 for score, maximum in mine.values()), mine


def test_the_unanswered_release_gets_no_autograded_point(graded):
    _, scores = graded
    mine = _of(scores, "unanswered")
    assert set(mine) == _expected_cells()
    assert all(score == 0 for score, _ in mine.values()), mine


def test_one_planted_mistake_per_notebook_loses_exactly_that_exercise(graded):
    _, scores = graded
    mine = _of(scores, "planted")
    lost = {(nb, check_id) for nb, _, check_id, *_ in PLANTED}
    assert set(mine) == _expected_cells()
    assert {key for key, (score, maximum) in mine.items() if score == 0} == lost, mine
    assert all(score == maximum for key, (score, maximum) in mine.items() if key not in lost), mine
