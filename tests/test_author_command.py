"""``python -m mllib course author``: an author's round in one command (issue 27).

Every step's function is replaced by a fake that records its call, so the whole round takes well
under a second: the order of the steps, the summary and the exit status, ``--times``, ``--dry-run``.
"""
from __future__ import annotations

import os
from types import SimpleNamespace

import pytest

import mllib.course.check_values
import mllib.course.colab
import mllib.course.effort
import mllib.course.execute
import mllib.course.grading
import mllib.course.student
import mllib.course.times
import mllib.results
from mllib.__main__ import main
from mllib.course import author

ORDER = ["sync", "execute", "times", "exercises", "fixed values", "practice", "results", "lint", "check",
         "course tests", "student release"]


@pytest.fixture
def course(tmp_path, monkeypatch):
    """A checkout with two notebooks and a course test file, and every step's function faked.

    Returns (root, calls, faults): ``calls`` lists the steps in the order they ran; ``faults`` maps a
    step to what its fake does instead (a list of problems to report, or an exception to raise)."""
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "tests").mkdir()
    for name in ("01_a.ipynb", "02_b.ipynb"):
        (tmp_path / "notebooks" / name).write_text("{}")
    (tmp_path / author.COURSE_TESTS[0]).write_text("")
    calls, faults = [], {}

    def fake(step, returns):
        def run(*args, **kwargs):
            calls.append(step)
            if isinstance(faults.get(step), Exception):
                raise faults[step]
            return returns(*args, **kwargs)
        return run

    def execute(paths, report, in_place, timeout):
        assert in_place and {k: os.environ.get(k) for k in author.BOOK_ENV} == author.BOOK_ENV
        paths[0].write_text('{"executed": true}')       # a stored output changed
        errors = faults.get("execute") or []
        return {"ok": not errors, "notebooks": [{"path": str(p), "ok": not errors, "error": "; ".join(errors)}
                                                for p in paths]}

    root = tmp_path
    problems = lambda step: list(faults.get(step) or [])   # noqa: E731
    monkeypatch.setattr(mllib.course.colab, "sync_course", fake("sync", lambda *a, **k: []))
    monkeypatch.setattr(mllib.course.execute, "execute_notebooks", fake("execute", execute))
    monkeypatch.setattr(mllib.course.times, "apply_times",
                        fake("times", lambda *a, **k: [root / "README.md", root / "docs" / "instructors.md"]))
    monkeypatch.setattr(mllib.course.effort, "apply_effort",
                        fake("exercises", lambda *a, **k: (problems("exercises"), [])))
    monkeypatch.setattr(mllib.course.check_values, "check_values", fake("fixed values", lambda *a, **k: True))
    monkeypatch.setattr(mllib.course.student, "build_practice",
                        fake("practice", lambda *a, **k: [root / "practice" / "01_a.ipynb"]))
    monkeypatch.setattr(mllib.results, "update_readme", fake("results", lambda *a, **k: False))
    monkeypatch.setattr(author, "lint_problems", fake("lint", lambda *a, **k: problems("lint")))
    monkeypatch.setattr(author, "check_problems", fake("check", lambda *a, **k: problems("check")))
    monkeypatch.setattr(author, "run_pytest", fake("course tests", lambda *a, **k: 1 if faults.get("course tests")
                                                   else 0))
    monkeypatch.setattr(mllib.course.grading, "verify_student_build",
                        fake("student release", lambda *a, **k: SimpleNamespace(problems=problems("student"))))
    return root, calls, faults


def author_main(root, *args) -> int:
    return main(["course", "author", "--root", str(root), *args])


def test_every_step_runs_once_in_order_and_the_summary_lists_what_changed(course, capsys, monkeypatch):
    root, calls, _ = course
    monkeypatch.setenv("MLLIB_PROFILE", "gpu")
    assert author_main(root, "--times") == 0
    assert calls == ORDER
    assert os.environ["MLLIB_PROFILE"] == "gpu"      # the book's settings held for the execute step only
    out = capsys.readouterr().out
    assert "== 2/11 execute: python -m mllib course execute notebooks/  (CI=1" in out   # each step says what it is
    summary = out[out.index("course author: summary"):]
    for path in ("notebooks/01_a.ipynb", "practice/01_a.ipynb", "docs/instructors.md"):
        assert path in summary                       # the notebook whose output changed, and the generated files
    assert "notebooks/02_b.ipynb" not in summary     # executed, but unchanged
    assert summary.rstrip().endswith("course author: every step passed")


def test_run_times_are_written_only_when_asked(course, capsys):
    root, calls, _ = course
    assert author_main(root) == 0
    assert calls == [step for step in ORDER if step != "times"]
    assert "times            skipped (not asked (--times)" in capsys.readouterr().out


@pytest.mark.parametrize("step", ["lint", "check", "exercises", "student", "course tests"])
def test_a_failing_check_exits_non_zero_and_every_other_step_still_runs(course, capsys, step):
    root, calls, faults = course
    faults[step] = ["notebooks/01_a.ipynb cell 3: a planted problem"]
    assert author_main(root, "--times") == 1
    assert calls == ORDER
    out = capsys.readouterr().out
    assert "FAILED: 1 problem(s)" in out and "1 problem(s) in 1 step(s)" in out
    assert step.startswith("course") or "a planted problem" in out[out.index("failed:"):]


def test_a_step_that_raises_is_reported_and_the_round_goes_on(course, capsys):
    root, calls, faults = course
    faults["fixed values"] = FileNotFoundError("instructor/known_mistakes.py not found")
    assert author_main(root) == 1
    assert calls[-1] == "student release"
    assert "fixed values: FileNotFoundError: instructor/known_mistakes.py not found" in capsys.readouterr().out


def test_no_run_times_after_a_failed_execute(course, capsys):
    root, calls, faults = course
    faults["execute"] = ["cell 4: ZeroDivisionError"]
    assert author_main(root, "--times") == 1
    assert "times" not in calls and "execute failed" in capsys.readouterr().out


def test_dry_run_prints_the_steps_in_order_and_runs_nothing(course, capsys):
    root, calls, _ = course
    before = (root / "notebooks" / "01_a.ipynb").read_text()
    assert author_main(root, "--dry-run", "--skip-student") == 0
    assert calls == [] and (root / "notebooks" / "01_a.ipynb").read_text() == before
    lines = [line for line in capsys.readouterr().out.splitlines() if line[:3].strip().rstrip(".").isdigit()]
    assert [line[4:21].strip() for line in lines] == ORDER
    assert "[skipped: not asked (--times)]" in lines[2] and "[skipped: --skip-student]" in lines[-1]


def test_times_for_a_subset_of_the_notebooks_is_refused_with_one_line(course, capsys):
    root, calls, _ = course
    assert author_main(root, "--times", str(root / "notebooks" / "01_a.ipynb")) == 2
    assert calls == [] and "--times needs every notebook" in capsys.readouterr().err
    assert author_main(root, "--times", str(root / "notebooks"), "--dry-run") == 0   # all of them: fine
