"""Hostile submissions to `python -m mllib course grade` (issue 29, "Grading integrity").

Each test grades a tiny synthetic course notebook (two exercises: a 95% interval, 2 points, and a
label remap, 3 points) that a student has tampered with, in a real kernel: patched checks and
forged record lines, an extra graded cell, a deleted and a duplicated check cell, an empty
notebook, a submission reading the grader's environment and the files around it, a wrong
reference, a cell that times out. Six kernel runs of a few seconds each, one run of a real course
notebook (01, its solution graded against itself), and one nbgrader round trip (skipped without
nbgrader) showing the `mllib.checks.fresh` extension gives nbgrader the same guard.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from mllib.__main__ import main
from mllib.checks import SPECS
from mllib.course import exercise_cells, load_config
from mllib.course.grading import (
    GRADER_PRELUDE, check_calls, check_reference, format_grade_table, grade_notebook, grading_env,
    restore_locked_cells,
)
from mllib.course.nbio import nbgrader, read_notebook, source, write_notebook
from mllib.course.student import student_version

ROOT = Path(__file__).resolve().parents[1]
NAME = "02_tiny_graded_probe.ipynb"

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
REMAP_WRONG = '''def remap_labels(labels, classes=None):
    return labels.clone()'''
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
SETUP = "import math, os\nimport torch\nfrom mllib import checks"
KERNEL = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}

# cells of the instructor notebook: 0 title, 1 setup, 2-3 ci95 exercise and check, 4-5 remap exercise and check
CI_CELL, CI_CHECK_CELL, REMAP_CELL, REMAP_CHECK_CELL = 2, 3, 4, 5


def instructor_notebook():
    return new_notebook(cells=[new_markdown_cell("# 02 Tiny course notebook"), new_code_cell(SETUP),
                               *exercise_cells("ci95", CI_SOLVED, CI_CHECK, points=2),
                               *exercise_cells("remap", REMAP_SOLVED, REMAP_CHECK, points=3)], metadata=KERNEL)


@pytest.fixture
def course(tmp_path, monkeypatch):
    """(reference path, a function writing a submission and returning its path)."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    reference = tmp_path / "notebooks" / NAME
    write_notebook(instructor_notebook(), reference)

    def submit(nb):
        path = tmp_path / "student" / NAME
        write_notebook(nb, path)
        return path
    return reference, submit


def handed_out():
    return student_version(instructor_notebook())


def scores_of(report):
    return {s.grade_id: (s.points, s.max_points, s.status) for s in report.scores}


# ---------------------------------------------------------------- 1: patched checks, forged records
def forging_remap():
    """A wrong remap that, when the check calls it, appends "passed" records to the grader's file."""
    return '''import json as _json, os as _os
def remap_labels(labels, classes=None):
    for name in ("label_remap", "label_remap (hidden tests)"):
        with open(_os.environ["MLLIB_CHECKS_RECORD"], "a") as fh:
            fh.write(_json.dumps({"exercise": name, "status": "passed", "passed": 4, "total": 4,
                                  "message": "✅ " + name + ": passed 4/4 cases"}) + "\\n")
    return labels.clone()'''


def aborting_ci(visible_cases):
    """A right interval on the visible cases that stops the hidden tests (KeyboardInterrupt escapes
    the checks' error handling), so only the visible verdict is recorded."""
    return f'''calls = []
def confidence_interval(values):
    calls.append(1)
    if len(calls) > {visible_cases}:
        raise KeyboardInterrupt
    return values.mean().item(), 1.96 * values.std().item() / math.sqrt(len(values))'''


PATCH_CHECKS = '''import mllib.checks as c
from mllib.checks import core
from mllib.checks.core import CheckResult
def passed(name):
    """A verdict printed and recorded by the checks' own machinery, whatever the function does."""
    return core._finish(CheckResult(name, "passed", 4, 4, f"✅ {name}: passed 4/4 cases"))
c.check_label_remap = lambda fn: passed("label_remap")
c.check_confidence_interval = lambda fn: passed("confidence_interval")
c.hidden_tests = lambda name, *args: passed(name + " (hidden tests)")
core.run_check = lambda name, *args, **kwargs: passed(name)
checks = c'''


def test_rebound_checks_and_forged_records_score_nothing(course):
    reference, submit = course
    nb = handed_out()
    nb.cells[CI_CELL].source = aborting_ci(len(SPECS["confidence_interval"].cases("visible")))
    nb.cells[REMAP_CELL].source = forging_remap()
    nb.cells.insert(CI_CELL, new_code_cell(PATCH_CHECKS))
    report = grade_notebook(submit(nb), reference=reference, timeout=120)
    scores = scores_of(report)
    assert scores["remap_check"] == (0, 3, "failed"), scores       # the real checks ran, and only they count
    assert scores["ci95_check"][:2] == (0, 2), scores               # the hidden tests never reported
    assert "recorded 1 of its 2 verdicts" in report.scores[0].detail
    assert (report.total, report.max_total) == (0, 5)
    assert "remap_check: 4 check record(s) without the grader's token ignored" in " ".join(report.notes)


def test_a_submission_that_deletes_the_record_file_scores_zero_and_says_why(course, capsys):
    reference, submit = course
    nb = handed_out()
    nb.cells[CI_CELL].source = "import os\nos.remove(os.environ['MLLIB_CHECKS_RECORD'])"
    assert main(["course", "grade", str(submit(nb)), "--reference", str(reference), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["total"], result["max_total"]) == (0, 5)
    assert [s["status"] for s in result["scores"]] == ["error", "error"]
    assert "record file" in result["cell_errors"][0] and "was removed" in result["cell_errors"][0]


class LyingTensor(torch.Tensor):
    """A result whose ``__torch_function__`` answers every closeness test with "equal"."""

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        out = super().__torch_function__(func, types, args, kwargs or {})
        if func is torch.isclose:
            return torch.ones_like(out, dtype=torch.bool)
        if func in (torch.Tensor.ne, torch.Tensor.__ne__):
            return torch.zeros_like(out, dtype=torch.bool)
        return out


def test_a_wrong_answer_returned_as_a_lying_tensor_subclass_fails_both_layers(lenient_checks):
    from mllib import checks

    def remap_labels(labels, classes=None):
        return torch.zeros(len(labels), dtype=torch.long).as_subclass(LyingTensor)

    def label_remap_reference(labels, classes=None):
        order = list(dict.fromkeys(labels.tolist())) if classes is None else classes.tolist()
        return torch.tensor([order.index(x) for x in labels.tolist()])

    assert checks.check_label_remap(remap_labels).status == "failed"
    assert checks.hidden_tests("label_remap", remap_labels, label_remap_reference).status == "failed"


def test_each_graded_cell_first_imports_fresh_checks():
    from mllib.course.grading import arm_graded_cells

    nb, armed = arm_graded_cells(instructor_notebook())
    assert [(c.grade_id, c.index, c.max_points, c.expected) for c in armed] == [("ci95_check", 3, 2.0, 2),
                                                                              ("remap_check", 5, 3.0, 2)]
    assert len({c.token for c in armed}) == 2 and all(len(c.token) == 32 for c in armed)
    for cell in armed:
        text = source(nb.cells[cell.index])
        assert text.startswith(GRADER_PRELUDE.format(token=cell.token))
        assert text.count("\n") == source(instructor_notebook().cells[cell.index]).count("\n") + 1  # one line
    assert check_calls("checks.a(f)\nx = 1\nchecks.hidden_tests('a', f, g)") == 2


# ---------------------------------------------------------------- 2-4: extra, deleted, copied cells
def test_restored_copy_counts_only_reference_cells_once_and_puts_back_missing_ones():
    ref = instructor_notebook()
    nb = handed_out()
    nb.cells[REMAP_CHECK_CELL].metadata["nbgrader"]["points"] = 100           # points come from the reference
    del nb.cells[CI_CHECK_CELL]                                                # deleted check cell
    bonus = new_code_cell("print('free points')", metadata={"nbgrader": {
        "grade": True, "grade_id": "bonus", "points": 100, "locked": False, "solution": False}})
    nb.cells.append(bonus)                                                     # extra graded cell
    nb.cells += [new_code_cell(source(nb.cells[-2]), metadata=nb.cells[-2].metadata) for _ in range(4)]
    restored, notes = restore_locked_cells(nb, ref)
    graded = [(i, nbgrader(c).get("grade_id"), nbgrader(c).get("points")) for i, c in enumerate(restored.cells)
              if nbgrader(c).get("grade")]
    assert graded == [(3, "ci95_check", 2), (6, "remap_check", 3)]   # back after its exercise; the last copy
    assert source(restored.cells[3]) == CI_CHECK and source(restored.cells[6]) == REMAP_CHECK
    assert source(restored.cells[5]) == "print('free points')" and len(restored.cells) == 7
    text = "\n".join(notes)
    assert "claims grade_id 'bonus' with 100 point(s); the reference grades no such cell: not counted" in text
    assert "'remap_check' appears 5 times; the last is graded, once, the copies removed" in text
    assert "graded cell 'ci95_check' is missing from the student's notebook; put back" in text


def test_a_quiz_answer_keeps_its_text_but_not_its_points_and_a_deleted_one_comes_back_unanswered():
    quiz = new_markdown_cell("**Q1.** Why?\n\n<!-- BEGIN SOLUTION -->\nBecause.\n<!-- END SOLUTION -->",
                             metadata={"nbgrader": {"grade": True, "solution": True, "locked": False,
                                                    "grade_id": "quiz", "points": 1, "schema_version": 3}})
    ref = instructor_notebook()
    ref.cells.append(quiz)
    nb = student_version(ref)
    nb.cells[-1].source = "My own answer."
    nb.cells[-1].metadata["nbgrader"]["points"] = 50
    restored, _ = restore_locked_cells(nb, ref)
    assert source(restored.cells[-1]) == "My own answer." and nbgrader(restored.cells[-1])["points"] == 1
    del nb.cells[-1]
    restored, notes = restore_locked_cells(nb, ref)
    assert "Because" not in source(restored.cells[-1]) and "YOUR ANSWER HERE" in source(restored.cells[-1])
    assert "graded cell 'quiz' is missing from the student's notebook; put back from the reference" in notes


def test_deleted_duplicated_and_extra_graded_cells_cannot_raise_the_score(course):
    reference, submit = course
    nb = handed_out()
    nb.cells[CI_CELL].source = CI_WRONG                    # a failing exercise ...
    nb.cells[REMAP_CELL].source = REMAP_SOLVED             # ... and a passing one
    remap_check = nb.cells[REMAP_CHECK_CELL]
    nb.cells += [new_code_cell(source(remap_check), metadata=remap_check.metadata) for _ in range(4)]
    nb.cells.append(new_code_cell("checks.check_label_remap(remap_labels)", metadata={"nbgrader": {
        "grade": True, "grade_id": "bonus", "points": 100, "locked": True, "solution": False}}))
    del nb.cells[CI_CHECK_CELL]                            # ... whose check cell is deleted
    report = grade_notebook(submit(nb), reference=reference, timeout=120)
    assert scores_of(report) == {"ci95_check": (0, 2, "failed"), "remap_check": (3, 3, "passed")}
    assert (report.total, report.max_total) == (3, 5)


def test_an_empty_notebook_scores_zero_of_the_full_total(course):
    reference, submit = course
    report = grade_notebook(submit(new_notebook(metadata=KERNEL)), reference=reference, timeout=120)
    assert (report.total, report.max_total) == (0, 5)
    assert [s.status for s in report.scores] == ["error", "error"]
    assert "NameError" in report.scores[0].detail


# ---------------------------------------------------------------- 5: environment and files
STEAL = '''import glob, json, os
leaked = [k for k in ("MLLIB_SOLUTIONS_DIR", "GRADER_SECRET") if k in os.environ]
found = glob.glob("../*/{name}") + glob.glob("../../*/{name}")
found += glob.glob(os.path.join(os.environ.get("MLLIB_SOLUTIONS_DIR", "/nonexistent"), "*.ipynb"))
found = [p for p in found if os.path.realpath(p) != os.path.realpath("{name}")]   # not its own copy
for path in found:
    for cell in json.load(open(path))["cells"]:
        text = "".join(cell["source"])
        if cell["cell_type"] == "code" and "BEGIN SOLUTION" in text:
            exec(text, globals())
here = sorted(os.listdir("."))
if leaked or found or here != ["{name}"]:
    raise RuntimeError(f"leaked: variables {{leaked}}, notebooks {{found}}, working folder {{here}}")'''


def test_the_submission_sees_neither_the_graders_environment_nor_the_files_around_it(course, monkeypatch):
    reference, submit = course
    monkeypatch.setenv("MLLIB_SOLUTIONS_DIR", str(reference.parent))
    monkeypatch.setenv("GRADER_SECRET", "s3cret")
    nb = handed_out()
    nb.cells[CI_CELL].source = nb.cells[REMAP_CELL].source = STEAL.format(name=NAME)   # the "answers"
    report = grade_notebook(submit(nb), reference=reference, timeout=120)
    assert report.cell_errors == []                       # the cells found nothing to steal
    assert (report.total, report.max_total) == (0, 5)
    assert [s.status for s in report.scores] == ["error", "error"], report.scores   # NameError: nothing defined


def test_grading_env_passes_only_what_the_kernel_needs():
    env = grading_env({"PATH": "/bin", "HOME": "/home/t", "LC_ALL": "C", "MLLIB_DATA": "/d",
                       "MLLIB_SOLUTIONS_DIR": "/solutions", "MLLIB_CHECKS_STRICT": "1", "AWS_SECRET": "x",
                       "MLLIB_CHECKS_RECORD": "/tmp/r", "PYTEST_CURRENT_TEST": "t"})
    assert env == {"PATH": "/bin", "HOME": "/home/t", "LC_ALL": "C", "MLLIB_DATA": "/d",
                   "MLLIB_PROFILE": "quick", "MLLIB_DEVICE": "cpu", "MLLIB_CHECKS_STRICT": "0"}


# ---------------------------------------------------------------- 6: wrong reference, timeout
def test_a_reference_for_another_notebook_is_one_line(course, tmp_path, capsys):
    reference, submit = course
    other = tmp_path / "notebooks" / "03_other.ipynb"
    write_notebook(new_notebook(cells=[new_code_cell(SETUP), *exercise_cells("sgd", CI_SOLVED, CI_CHECK)],
                                metadata=KERNEL), other)
    path = submit(handed_out())
    assert main(["course", "grade", str(path), "--reference", str(other)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "shares no exercise with" in err and "same notebook" in err
    no_grades = tmp_path / "plain.ipynb"
    write_notebook(new_notebook(cells=[new_code_cell("x = 1")], metadata=KERNEL), no_grades)
    assert main(["course", "grade", str(path), "--reference", str(no_grades)]) == 2
    assert "has no graded cell" in capsys.readouterr().err
    assert main(["course", "grade", str(path), "--reference", str(reference), "--timeout", "0"]) == 2
    assert capsys.readouterr().err == "error: --timeout must be an integer >= 1, got 0\n"
    renamed = check_reference(read_notebook(path), read_notebook(reference), "a/x.ipynb", "b/y.ipynb")
    assert renamed == ["the reference is y.ipynb, the submission x.ipynb"]


def test_a_cell_that_times_out_is_one_line_and_later_checks_are_not_run(course, capfd):
    reference, submit = course
    nb = handed_out()
    nb.cells[CI_CELL].source = CI_SOLVED
    nb.cells.insert(REMAP_CELL, new_code_cell("import time\ntime.sleep(600)"))
    path = submit(nb)
    # 20 s per cell: the setup cell's `import torch` must fit on a loaded 2-core machine
    assert main(["course", "grade", str(path), "--reference", str(reference), "--timeout", "20"]) == 0
    out, err = capfd.readouterr()
    assert "Traceback" not in out + err, out + err
    lines = out.splitlines()
    assert [ln for ln in lines if ln.startswith("error outside the checks")] == [
        "error outside the checks: cell 4 (import time) timed out after 20 s (--timeout); "
        "the cells after it did not run"]
    remap = next(ln for ln in lines if ln.startswith("remap_check"))
    assert "not_run" in remap and "not run: cell 4 (import time) timed out" in remap
    assert next(ln for ln in lines if ln.startswith("ci95_check")).split()[1:3] == ["2/2", "passed"]


# ---------------------------------------------------------------- a real course notebook
def test_a_real_solution_notebook_gets_full_marks_through_the_fresh_checks(tmp_path, monkeypatch):
    path = ROOT / load_config().notebooks_dir / "01_learning_bias.ipynb"
    if not path.is_file():
        pytest.skip("no notebook 01")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    report = grade_notebook(path, reference=path, timeout=600)
    assert report.scores and all(s.status == "passed" for s in report.scores), format_grade_table(report)
    assert report.total == report.max_total and report.cell_errors == []
    assert json.loads(json.dumps(report.to_dict()))["max_total"] == report.max_total


# ---------------------------------------------------------------- the same guarantee under nbgrader
def test_nbgrader_with_the_fresh_checks_extension_ignores_rebound_checks(tmp_path):
    """nbgrader runs a submission that rebinds the checks to no-ops: without the extension it got
    the points of a wrong answer; with ``mllib.checks.fresh`` loaded it gets none, and a right
    answer still gets them all."""
    pytest.importorskip("nbgrader")
    from nbgrader.api import Gradebook

    course = tmp_path / "course"
    (course / "source" / "ps1").mkdir(parents=True)
    lock = {"grade": False, "solution": False, "locked": True, "grade_id": "imports", "schema_version": 3}
    check = {"grade": True, "solution": False, "locked": True, "grade_id": "ci_check", "points": 2,
             "schema_version": 3}
    answer = {"grade": False, "solution": True, "locked": False, "grade_id": "ci", "schema_version": 3}
    source_nb = new_notebook(cells=[new_code_cell(SETUP, metadata={"nbgrader": lock}),
                                    new_code_cell(CI_SOLVED, metadata={"nbgrader": answer}),
                                    new_code_cell(CI_CHECK, metadata={"nbgrader": check})], metadata=KERNEL)
    write_notebook(source_nb, course / "source" / "ps1" / "ci.ipynb")
    env = {k: v for k, v in os.environ.items()
           if k not in ("MLLIB_CHECKS_STRICT", "MLLIB_GRADER", "NBGRADER_EXECUTION", "PYTEST_CURRENT_TEST")}
    env.update(PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]), OMP_NUM_THREADS="1",
               PATH=os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", "")]))

    (course / "nbgrader_config.py").write_text(
        "c = get_config()\n"
        f"c.CourseDirectory.root = {str(course)!r}\n"
        f"c.CourseDirectory.db_url = {'sqlite:///' + str(course / 'gradebook.db')!r}\n"
        "c.ExecutePreprocessor.timeout = 120\n"
        "c.Execute.extra_arguments = ['--IPKernelApp.extensions=mllib.checks.fresh']\n")   # the guard

    def nbgrader(*args: str) -> None:
        done = subprocess.run([sys.executable, "-m", "nbgrader", *args, "--force"], cwd=course, env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]

    def grade(student: str, nb) -> float:
        write_notebook(nb, course / "submitted" / student / "ps1" / "ci.ipynb")
        nbgrader("autograde", "ps1", "--student", student, "--create")
        with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
            return gradebook.find_submission("ps1", student).score

    nbgrader("generate_assignment", "ps1")
    patched = read_notebook(course / "release" / "ps1" / "ci.ipynb")
    patched.cells[1].source = CI_WRONG + "\n\nchecks.check_confidence_interval = checks.hidden_tests = print"
    solved = read_notebook(course / "release" / "ps1" / "ci.ipynb")
    solved.cells[1].source = CI_SOLVED
    # without the extension this submission got 2 of 2 (measured once; not repeated here, it costs a run)
    assert grade("patched", patched) == 0
    assert grade("solved", solved) == 2
