"""Executing, grading and verifying small synthetic notebooks in a real kernel (three kernel runs in all),
plus the judging logic on hand-made runs."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from mllib.__main__ import main
from mllib.course import exercise_cells, load_config, verify_student_build
from mllib.course.execute import CellOutcome, NotebookRun
from mllib.course.grading import format_grade_table, grade_run, judge_solution, judge_student
from mllib.course.nbio import list_notebooks, read_notebook, write_notebook
from mllib.course.student import student_version

ROOT = Path(__file__).resolve().parents[1]

CI_SOLVED = '''def confidence_interval(values):
    """values: [n] -> (mean, half_width)"""
    ### BEGIN SOLUTION
    return values.mean().item(), 1.96 * values.std().item() / math.sqrt(len(values))
    ### END SOLUTION'''
CI_WRONG = '''def confidence_interval(values):
    return values.mean().item(), 1.96 * values.std(correction=0).item() / math.sqrt(len(values))'''
REMAP_SOLVED = '''def remap_labels(labels, classes=None):
    """labels: [M] class ids -> [M] long labels 0..N-1"""
    ### BEGIN SOLUTION
    order = list(dict.fromkeys(labels.tolist())) if classes is None else classes.tolist()
    position = {c: i for i, c in enumerate(order)}
    return torch.tensor([position[x] for x in labels.tolist()])
    ### END SOLUTION'''


CI_CHECK = '''checks.check_confidence_interval(confidence_interval)

### BEGIN HIDDEN TESTS
def confidence_interval_reference(values):
    return values.mean().item(), 1.96 * values.std().item() / math.sqrt(len(values))


checks.hidden_tests("confidence_interval", confidence_interval, confidence_interval_reference)
### END HIDDEN TESTS'''
REMAP_CHECK = '''checks.check_label_remap(remap_labels)

### BEGIN HIDDEN TESTS
def label_remap_reference(labels, classes=None):
    order = list(dict.fromkeys(labels.tolist())) if classes is None else classes.tolist()
    return torch.tensor([order.index(x) for x in labels.tolist()])


checks.hidden_tests("label_remap", remap_labels, label_remap_reference)
### END HIDDEN TESTS'''


def make_notebook():
    cells = [new_markdown_cell("# 02 Tiny course notebook"),
             new_code_cell("import math, os\nimport torch\nfrom mllib import checks"),
             *exercise_cells("ci95", CI_SOLVED, CI_CHECK, points=2),
             *exercise_cells("remap", REMAP_SOLVED, REMAP_CHECK, points=3),
             new_code_cell("# the rest uses the reference, never the learner's functions\n"
                           "print(os.environ['MLLIB_PROFILE'], os.environ['MLLIB_DEVICE'])")]
    return new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                              "language": "python"}})


@pytest.fixture
def course(tmp_path, monkeypatch):
    for name in ("MLLIB_PROFILE", "MLLIB_DEVICE", "MLLIB_CHECKS_STRICT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    src = tmp_path / "notebooks"
    write_notebook(make_notebook(), src / "02_tiny.ipynb")
    return src


def test_execute_runs_in_place_and_reports_time_memory_and_checks(course, tmp_path, capsys):
    report_path = tmp_path / "build" / "notebook_report.json"
    assert main(["course", "execute", str(course), "--report", str(report_path)]) == 0
    nb = read_notebook(course / "02_tiny.ipynb")
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1))  # kept for nbval
    assert code[-1].outputs[0]["text"] == "quick cpu\n"  # the CI defaults reach the kernel
    out = "".join(o.get("text", "") for o in code[4].outputs)
    assert "✅ label_remap: passed 4/4 cases" in out and "✅ label_remap (hidden tests): passed" in out
    assert "execution" not in code[0].metadata  # no timing metadata churn in git
    report = json.loads(report_path.read_text())
    assert report["ok"] and report["env"]["MLLIB_PROFILE"] == "quick"
    (run,) = report["notebooks"]
    assert run["wall_s"] > 0 and run["cell_errors"] == []
    assert [c["status"] for c in run["checks"]] == ["passed"] * 4  # visible and hidden, two exercises
    if Path("/proc/self/status").exists():
        assert run["peak_rss_source"] == "VmHWM" and 50 < run["peak_rss_mb"] < 4000
    assert "| 02_tiny.ipynb |" in capsys.readouterr().out


def test_verify_student_build_on_a_synthetic_course(course):
    # The solution side is what `execute` (and nbval with MLLIB_CHECKS_STRICT=1) runs; here the student side.
    report = verify_student_build(course, solutions=False)
    assert report.ok, report.problems
    (run,) = report.runs.values()
    assert [c["status"] for c in run["checks"]] == ["not_implemented", "not_implemented"]
    assert run["cell_errors"] == []


def test_grade_a_submission_with_one_right_one_wrong_and_an_edited_check(course, tmp_path, capsys):
    submission = student_version(read_notebook(course / "02_tiny.ipynb"))
    submission.cells[2].source = CI_WRONG                 # wrong answer
    submission.cells[4].source = REMAP_SOLVED             # right answer
    submission.cells[5].source = "print('trust me')"      # tampered check cell
    path = tmp_path / "student" / "02_tiny.ipynb"
    write_notebook(submission, path)
    assert main(["course", "grade", str(path), "--json", "--reference", str(course / "02_tiny.ipynb")]) == 0
    result = json.loads(capsys.readouterr().out)
    scores = {s["grade_id"]: (s["points"], s["max_points"], s["status"]) for s in result["scores"]}
    assert scores == {"ci95_check": (0, 2, "failed"), "remap_check": (3, 3, "passed")}
    assert (result["total"], result["max_total"]) == (3, 5)
    assert "population standard deviation" not in result["scores"][0]["detail"]  # first line only
    assert result["scores"][0]["detail"].startswith("❌ confidence_interval: result[1] is")
    assert result["notes"] == ["locked cell 'remap_check' had been edited; restored from the reference",
                               "hidden tests of 2 check cell(s) run from the reference"]


# ---------------------------------------------------------------- judging logic on hand-made runs
def _run(cells: list[CellOutcome], ok: bool = True) -> NotebookRun:
    return NotebookRun("nb", ok, 1.0, 100.0, "VmHWM", None if ok else "stopped", cells)


def _verdict(status: str) -> dict:
    return {"exercise": "x", "status": status, "passed": 0, "total": 1, "message": f"mark x: {status}"}


def test_judges_catch_every_way_a_release_can_break():
    nb = make_notebook()
    good_student = [CellOutcome(i, i, 0.1) for i in range(1, 7)]
    good_student[2].verdicts = [_verdict("not_implemented")]
    good_student[4].verdicts = [_verdict("not_implemented")]
    assert judge_student(nb, _run(good_student), "nb") == []

    broken = [CellOutcome(i, i, 0.1) for i in range(1, 7)]
    broken[2].verdicts = [_verdict("error")]                      # the check fails for another reason
    broken[4].verdicts = [_verdict("not_implemented")] * 2         # a check cell reporting two exercises
    broken[5].error = "NameError: name 'remap_labels' is not defined"  # a later cell needs the exercise
    problems = "\n".join(judge_student(nb, _run(broken), "nb"))
    assert "reports 'error'" in problems and "printed 2 verdicts" in problems
    assert "cell 6 fails in the student version: NameError" in problems

    solved = [CellOutcome(i, i, 0.1) for i in range(1, 7)]
    solved[2].verdicts = [_verdict("passed")]
    solved[4].verdicts = [_verdict("failed")]
    problems = judge_solution(nb, _run(solved), "nb")
    assert problems == ["nb: the check of 'remap' fails on the solution: mark x: failed"]

    report = grade_run(nb, _run(solved), "nb")
    assert [(s.grade_id, s.points, s.status) for s in report.scores] == [("ci95_check", 2, "passed"),
                                                                         ("remap_check", 0, "failed")]
    table = format_grade_table(report)
    assert "total" in table and "2/5" in table


def test_real_student_release_verifies():
    """On the real notebooks: the student release runs and each check reports its own exercise.

    Runs every notebook's student version (as long as nbval's run of the solutions), so it is
    opt-in: `MLLIB_VERIFY_STUDENT=1` (`python -m mllib course verify-student --skip-solutions`)."""
    folder = ROOT / load_config().notebooks_dir
    if not folder.is_dir() or not list_notebooks(folder):
        pytest.skip("no notebooks yet")
    if os.environ.get("MLLIB_VERIFY_STUDENT") != "1":
        pytest.skip("the student release of every notebook runs in `make student-test` (part of `make test`); "
                    "set MLLIB_VERIFY_STUDENT=1 to run it here too")
    report = verify_student_build(folder, solutions=False)
    assert report.ok, "\n".join(report.problems)


def test_execute_leaves_a_failing_notebook_untouched_and_names_the_cell(tmp_path, monkeypatch, capsys):
    path = tmp_path / "03_broken.ipynb"
    write_notebook(new_notebook(cells=[new_code_cell("x = 1"), new_code_cell("x / 0"), new_code_cell("y = 2")],
                                metadata={"kernelspec": {"name": "python3", "display_name": "Python 3"}}), path)
    before = path.read_bytes()
    report_path = tmp_path / "report.json"
    assert main(["course", "execute", str(path), "--report", str(report_path)]) == 1
    assert path.read_bytes() == before
    (run,) = json.loads(report_path.read_text())["notebooks"]
    assert not run["ok"] and run["error"] == "cell 1: ZeroDivisionError: division by zero"
    assert "FAILED" in capsys.readouterr().out
