"""Student release and exercise convention, on small synthetic notebooks (no kernel needed)."""
from __future__ import annotations

import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from mllib.course import build_student, exercise_cells, find_exercises, lint_exercises, strip_solutions
from mllib.course.nbio import read_notebook, write_notebook
from mllib.course.student import student_version

SOLVED = '''def remap_labels(labels, classes=None):
    """[M] ids -> [M] labels 0..N-1"""
    if classes is None:
        ### BEGIN SOLUTION
        classes = list(dict.fromkeys(labels.tolist()))
        ### END SOLUTION
    ### BEGIN SOLUTION
    position = {c: i for i, c in enumerate(list(classes))}
    return [position[x] for x in labels.tolist()]
    ### END SOLUTION'''

STUB = '''def remap_labels(labels, classes=None):
    """[M] ids -> [M] labels 0..N-1"""
    if classes is None:
        # YOUR CODE HERE
        raise NotImplementedError()
    # YOUR CODE HERE
    raise NotImplementedError()'''


def hidden(exercise: str, fn: str) -> str:
    """A check cell's hidden-tests region (the instructor version only)."""
    return (f"\n\n### BEGIN HIDDEN TESTS\ndef {exercise}_reference(*args):\n    return None\n\n\n"
            f"checks.hidden_tests({exercise!r}, {fn}, {exercise}_reference)\n### END HIDDEN TESTS")


def make_notebook(later: str = "print('the rest runs', 1 + 1)") -> object:
    cells = [new_markdown_cell("# 02 Task sampling\n\nWhat you will learn."),
             new_code_cell("from mllib import checks")]
    cells += exercise_cells("remap", SOLVED, "checks.check_label_remap(remap_labels)" + hidden("label_remap", "remap_labels"),
                            points=3)
    cells += exercise_cells("ci95", "def ci(v):\n    ### BEGIN SOLUTION\n    return 1, 2\n    ### END SOLUTION",
                            "checks.check_confidence_interval(ci)" + hidden("confidence_interval", "ci"), points=2)
    cells.append(new_code_cell(later))
    nb = new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                            "language": "python"}})
    for i, cell in enumerate(nb.cells):  # stored outputs, as after `make notebooks`
        if cell.cell_type == "code":
            cell.execution_count = i
            cell.outputs = [new_output("stream", name="stdout", text=f"out {i}\n")]
    return nb


def test_strip_solutions_keeps_indentation_and_is_idempotent():
    assert strip_solutions(SOLVED) == STUB
    assert strip_solutions(STUB) == STUB
    assert strip_solutions("x = 1\n") == "x = 1\n"
    hidden = "assert f(1) == 1\n### BEGIN HIDDEN TESTS\nassert f(2) == 4\n### END HIDDEN TESTS\n"
    assert strip_solutions(hidden) == "assert f(1) == 1\n"
    assert strip_solutions("Why?\n### BEGIN SOLUTION\nBecause.\n### END SOLUTION", "markdown") == "Why?\nYOUR ANSWER HERE"


@pytest.mark.parametrize("text, message", [
    ("### BEGIN SOLUTION\nx = 1\n", "never closed"),
    ("x = 1\n### END SOLUTION\n", "without a"),
    ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION\n", "inside another"),
])
def test_strip_solutions_rejects_unbalanced_markers(text, message):
    with pytest.raises(ValueError, match=message):
        strip_solutions(text, where="nb cell 3")


def test_student_version_replaces_solutions_clears_outputs_and_keeps_the_rest():
    nb = make_notebook()
    student = student_version(nb)
    assert student.cells[2].source == STUB
    text = "".join(c.source for c in student.cells)
    assert "### BEGIN SOLUTION" not in text and "HIDDEN TESTS" not in text and "_reference" not in text
    assert student.cells[3].source == "checks.check_label_remap(remap_labels)\n"  # the visible check stays
    for before, after in zip(nb.cells, student.cells):
        assert after.metadata == before.metadata  # nbgrader metadata kept
        assert after.get("id") == before.get("id")
        if after.cell_type == "code":
            assert after.outputs == [] and after.execution_count is None
            if "BEGIN SOLUTION" not in before.source and "HIDDEN TESTS" not in before.source:
                assert after.source == before.source
    assert student.metadata == nb.metadata
    assert nb.cells[2].source == SOLVED and nb.cells[1].outputs  # the input is untouched


def test_build_is_idempotent_and_byte_identical(tmp_path):
    src, out, again = tmp_path / "notebooks", tmp_path / "student", tmp_path / "student2"
    write_notebook(make_notebook(), src / "02_task_sampling.ipynb")
    (src / "figures").mkdir()
    (src / "figures" / "map.svg").write_text("<svg/>")
    (src / ".ipynb_checkpoints").mkdir()
    (src / ".ipynb_checkpoints" / "x.ipynb").write_text("{}")
    written = build_student(src, out)
    assert [p.name for p in written] == ["02_task_sampling.ipynb"]
    first = (out / "02_task_sampling.ipynb").read_bytes()
    build_student(src, out)
    assert (out / "02_task_sampling.ipynb").read_bytes() == first
    build_student(out, again)  # building from the student version changes nothing
    assert (again / "02_task_sampling.ipynb").read_bytes() == first
    assert (out / "figures" / "map.svg").read_text() == "<svg/>"
    assert not (out / ".ipynb_checkpoints").exists()
    assert read_notebook(out / "02_task_sampling.ipynb").cells[2].metadata["nbgrader"]["solution"] is True


def test_build_refuses_to_overwrite_the_solutions(tmp_path):
    write_notebook(make_notebook(), tmp_path / "a.ipynb")
    with pytest.raises(ValueError, match="out must differ"):
        build_student(tmp_path, tmp_path)
    with pytest.raises(FileNotFoundError):
        build_student(tmp_path / "missing", tmp_path / "out")


def test_write_notebook_reproduces_a_jupyter_file_exactly(tmp_path):
    path = tmp_path / "a.ipynb"
    write_notebook(make_notebook(), path)
    text = path.read_text()
    assert text.endswith("}\n") and '\n "cells": [' in text  # Jupyter's one-space indent
    assert write_notebook(read_notebook(path), path) is False
    assert path.read_text() == text


# ---------------------------------------------------------------- the convention
def test_find_exercises_pairs_each_solution_with_its_check():
    exercises = find_exercises(make_notebook())
    assert [(e.grade_id, e.cell_index, e.check_index, e.check_grade_id, e.points) for e in exercises] == [
        ("remap", 2, 3, "remap_check", 3.0), ("ci95", 4, 5, "ci95_check", 2.0)]
    assert exercises[0].defines == ["remap_labels"]


def test_lint_accepts_the_convention():
    assert lint_exercises(make_notebook(), "nb") == []
    assert lint_exercises(student_version(make_notebook()), "nb", student=True) == []


def test_lint_flags_later_use_of_the_learners_function():
    problems = lint_exercises(make_notebook(later="labels = remap_labels(ids)"), "nb")
    assert len(problems) == 1 and "cell 6: uses 'remap_labels'" in problems[0]
    rebinding = "from mllib.evaluate import mean_ci95 as remap_labels\nremap_labels(ids)"
    assert lint_exercises(make_notebook(later=rebinding), "nb") == []
    nb = make_notebook(later="print(math.pi, answer)")
    nb.cells[4].source = "import math\n### BEGIN SOLUTION\nanswer = 42\n### END SOLUTION\ndef ci(v):\n    return 1, 2"
    problems = lint_exercises(nb, "nb")  # math survives in the student version, answer does not
    assert len(problems) == 1 and "cell 6: uses 'answer'" in problems[0]


def test_lint_flags_broken_metadata():
    nb = make_notebook()
    nb.cells[3].metadata["nbgrader"]["grade_id"] = "remap_test"
    nb.cells[5].metadata["nbgrader"]["locked"] = False
    nb.cells[4].source = "def ci(v):\n    return 1, 2"
    nb.cells.insert(6, new_code_cell("### BEGIN SOLUTION\nx = 1\n### END SOLUTION"))
    problems = "\n".join(lint_exercises(nb, "nb"))
    assert "expected 'remap_check'" in problems
    assert "must be locked: true" in problems
    assert "solution cell without a '### BEGIN SOLUTION'" in problems
    assert "cell 6: has '### BEGIN SOLUTION' but no nbgrader metadata" in problems
    nb = make_notebook()
    del nb.cells[3]  # the check cell deleted
    assert any("the next code cell must be its check cell" in p for p in lint_exercises(nb, "nb"))


def test_exercise_cells_validates_its_arguments():
    with pytest.raises(ValueError, match="grade_id"):
        exercise_cells("bad id", "### BEGIN SOLUTION\n### END SOLUTION", "checks.x(f)")
    with pytest.raises(ValueError, match="region"):
        exercise_cells("a", "def f(): pass", "checks.x(f)")
    with pytest.raises(ValueError, match="points"):
        exercise_cells("a", "### BEGIN SOLUTION\n### END SOLUTION", "checks.x(f)", points=0)
