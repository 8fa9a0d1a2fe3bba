"""nbgrader itself grades a course notebook: an unanswered exercise gets no points by default.

A one-exercise course (``source/ps1/ci.ipynb``: a solution cell and an autograded check cell
worth 2 points) goes through ``nbgrader generate_assignment`` and ``nbgrader autograde``. The
release's unanswered notebook, submitted as it is, must score 0 without any course variable set
(nbgrader's own ``NBGRADER_EXECUTION`` makes the checks strict); the solution scores 2. Skipped
when nbgrader is not installed (``pip install nbgrader``, in the ``test`` extra). The real course
notebooks 02 and 03 go through the same round trip in ``tests/test_nbgrader_round_trip.py``.
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
POINTS = 2
SOLUTION = '''import math


def confidence_interval(values):
    """values: [n] float -> (mean, half_width of the 95% interval)."""
    ### BEGIN SOLUTION
    return values.mean().item(), 1.96 * values.std().item() / math.sqrt(len(values))
    ### END SOLUTION
'''


def _cell(source: str, grade_id: str, *, solution: bool = False, points: int | None = None):
    cell = nbformat.v4.new_code_cell(source)
    cell.metadata["nbgrader"] = {"grade": points is not None, "solution": solution, "locked": not solution,
                                 "grade_id": grade_id, "schema_version": 3, "task": False}
    if points is not None:
        cell.metadata["nbgrader"]["points"] = points
    return cell


def _course(root: Path) -> Path:
    """A course folder holding ``source/ps1/ci.ipynb`` and an ``nbgrader_config.py``."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [_cell("from mllib import checks", "imports"),
                _cell(SOLUTION, "ci_solution", solution=True),
                _cell("checks.check_confidence_interval(confidence_interval)", "ci_check", points=POINTS)]
    (root / "source" / "ps1").mkdir(parents=True)
    nbformat.write(nb, root / "source" / "ps1" / "ci.ipynb")
    (root / "nbgrader_config.py").write_text(
        "c = get_config()\n"
        f"c.CourseDirectory.root = {str(root)!r}\n"
        "c.CourseDirectory.db_url = 'sqlite:///' + " + repr(str(root / "gradebook.db")) + "\n"
        "c.ExecutePreprocessor.timeout = 120\n")
    return root


def _env() -> dict:
    """The grader's environment: none of the course's own strict switches, and not under pytest."""
    env = {k: v for k, v in os.environ.items()
           if k not in (checks.STRICT_ENV, checks.GRADER_ENV, checks.NBGRADER_ENV, "PYTEST_CURRENT_TEST")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", "")])  # nbgrader runs alembic
    env["OMP_NUM_THREADS"] = "1"
    return env


def _nbgrader(course: Path, *args: str) -> None:
    done = subprocess.run([sys.executable, "-m", "nbgrader", *args, "--force"], cwd=course, env=_env(),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


def _score(course: Path, student: str) -> float:
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        return gradebook.find_submission("ps1", student).score


def test_nbgrader_gives_no_points_to_an_unanswered_exercise(tmp_path):
    course = _course(tmp_path / "course")
    _nbgrader(course, "generate_assignment", "ps1")
    release = course / "release" / "ps1" / "ci.ipynb"
    assert "NotImplementedError" in release.read_text(encoding="utf-8")      # nbgrader removed the solution
    for student, notebook in (("unanswered", release), ("answered", course / "source" / "ps1" / "ci.ipynb")):
        (course / "submitted" / student / "ps1").mkdir(parents=True)
        shutil.copy(notebook, course / "submitted" / student / "ps1" / "ci.ipynb")
        _nbgrader(course, "autograde", "ps1", "--student", student, "--create")
    assert _score(course, "answered") == POINTS
    assert _score(course, "unanswered") == 0
