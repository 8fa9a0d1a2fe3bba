"""verify-student --only: the student release can be shared between two processes by notebook prefix."""
from __future__ import annotations

from pathlib import Path

from mllib.course.grading import verify_student_build

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def test_only_runs_the_named_notebooks(monkeypatch):
    ran = []

    def fake_run(path, **kwargs):
        ran.append(Path(path).name)
        raise RuntimeError("stop here")   # the notebook run itself is not under test

    monkeypatch.setattr("mllib.course.grading.run_notebook", fake_run)
    try:
        verify_student_build(NOTEBOOKS, solutions=False, only=("02", "09"))
    except RuntimeError:
        pass
    assert ran == ["02_task_sampling.ipynb"]          # 01 skipped, 02 first
    ran.clear()
    report = verify_student_build(NOTEBOOKS, solutions=False, only=("99",))
    assert ran == [] and report.runs == {}
