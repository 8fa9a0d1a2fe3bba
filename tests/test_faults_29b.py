"""Issue 29, the rest of "Hangs and silent fallbacks": the notebook-07 model bundle (named by eval, loadable
with ``weights_only=True``), damaged notebooks named in one line, a failed ``course build`` that leaves
the release as it was, ``course lint`` on a huge stored output, and ``course exercises`` on an exercise
whose check cell is gone. Each test plants the fault and checks the one clear line."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from mllib.checkpoint import SHIPPED_CHECKPOINTS
from mllib.course.nbio import read_notebook, write_notebook

ROOT = Path(__file__).resolve().parent.parent
NB07_BUNDLE = SHIPPED_CHECKPOINTS / "nb07_sine_models.pt"


# ------------------------------------------------------------------ notebook 07's model bundle


def test_nb07_bundle_loads_with_weights_only():
    saved = torch.load(NB07_BUNDLE, weights_only=True)      # raised UnpicklingError (a TorchVersion in the card)
    assert set(saved) == {"models", "config", "card"}
    assert set(saved["models"]) == {"maml", "metasgd", "lo_random", "lo_maml", "incontext"}
    assert all(isinstance(v, torch.Tensor) for model in saved["models"].values() for v in model.values())
    assert isinstance(saved["card"]["torch"], str)
    assert saved["models"]["maml"]["body.0.weight"].shape == (40, 1)


def test_eval_names_the_nb07_bundle_instead_of_calling_it_damaged(capsys):
    from mllib.__main__ import main

    assert main(["eval", "--checkpoint", "nb07_sine_models"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "damaged" not in err and "Traceback" not in err
    assert "notebook 07" in err and "not an Omniglot checkpoint" in err and "maml_omniglot_5w1s" in err


# ------------------------------------------------------------------ damaged notebooks, atomic builds


def _notebook(*cells) -> object:
    nb = new_notebook(cells=list(cells))
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


@pytest.mark.parametrize("text", ['{"cells": [', "[1, 2]", '{"metadata": {}}'])
def test_invalid_notebook_names_the_file(tmp_path, text):
    path = tmp_path / "02_broken.ipynb"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=r"02_broken\.ipynb is not a (valid )?notebook") as info:
        read_notebook(path)
    assert len(str(info.value).splitlines()) == 1


def test_failed_build_leaves_the_release_as_it_was(tmp_path):
    from mllib.course import build_student

    src, out = tmp_path / "notebooks", tmp_path / "build" / "student"
    src.mkdir()
    write_notebook(_notebook(new_markdown_cell("# One\nfirst version")), src / "01_one.ipynb")
    build_student(src, out)
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    write_notebook(_notebook(new_markdown_cell("# One\nsecond version")), src / "01_one.ipynb")
    (src / "figure.txt").write_text("new file", encoding="utf-8")
    (src / "02_two.ipynb").write_text('{"cells": [', encoding="utf-8")     # damaged: the build fails
    with pytest.raises(ValueError) as info:
        build_student(src, out)
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before                                  # neither the new 01 nor figure.txt went in
    assert "02_two.ipynb is not a valid notebook" in str(info.value)
    assert sorted(p.name for p in out.parent.iterdir()) == ["student"]   # no temporary folder left
    (src / "02_two.ipynb").unlink()
    assert [p.name for p in build_student(src, out)] == ["01_one.ipynb"]
    assert "second version" in (out / "01_one.ipynb").read_text(encoding="utf-8")
    assert (out / "figure.txt").read_text(encoding="utf-8") == "new file"


# ------------------------------------------------------------------ course lint: output size


def test_lint_flags_a_huge_stored_output(tmp_path):
    from mllib.course.lint import lint_notebook

    cell = new_code_cell("print('x' * 3_000_000)")
    cell.outputs = [new_output("stream", name="stdout", text="x" * 3_000_000 + "\n")]
    small = new_code_cell("print(1)")
    small.outputs = [new_output("stream", name="stdout", text="1\n")]
    path = tmp_path / "01_big.ipynb"
    write_notebook(_notebook(new_markdown_cell("# Big"), small, cell), path)
    problems = [p for p in lint_notebook(path) if "MB stored" in p]
    assert problems == ["01_big.ipynb cell 2 output 0: 3.0 MB stored (at most 2 MB); "
                        "print less, save a smaller figure, or clear the output"]


# ------------------------------------------------------------------ course exercises: a missing check cell


def _exercise_notebook(with_check: bool):
    from mllib.course.exercises import exercise_cells

    solution, check = exercise_cells("double", "def double(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n"
                                     "    ### END SOLUTION", "checks.check_double(double)")
    solution.metadata["mllib"] = {"effort_minutes": 5, "title": "Double a number"}
    cells = [new_markdown_cell("# Ex\n\n## What you will learn\n\n**Exercises**: none."), solution]
    return _notebook(*(cells + [check] if with_check else cells))


def test_efforts_of_an_exercise_without_its_check_cell_are_one_line_not_a_row():
    from mllib.course.effort import notebook_efforts

    rows, problems = notebook_efforts(_exercise_notebook(with_check=True), "01_ex.ipynb")
    assert [r.check for r in rows] == ["check_double"] and problems == []
    rows, problems = notebook_efforts(_exercise_notebook(with_check=False), "01_ex.ipynb")
    assert rows == []                                      # was a row reading "`checks.` (0)"
    assert problems == ["01_ex.ipynb cell 1 (double): no check cell follows this exercise (the next code cell "
                        "needs nbgrader grade: true, grade_id double_check)"]


def test_course_exercises_writes_nothing_when_a_check_cell_is_missing(tmp_path, capsys):
    from mllib.__main__ import main

    (tmp_path / "notebooks").mkdir()
    (tmp_path / "docs").mkdir()
    doc = tmp_path / "docs" / "instructors.md"
    doc.write_text("# Instructors\n\n<!-- exercises:start -->\nold table\n<!-- exercises:end -->\n", encoding="utf-8")
    nb_path = tmp_path / "notebooks" / "01_ex.ipynb"
    write_notebook(_exercise_notebook(with_check=False), nb_path)
    before = nb_path.read_bytes()
    assert main(["course", "exercises", "--root", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "no check cell follows this exercise" in out and "nothing written" in out
    assert "`checks.` (0)" not in doc.read_text(encoding="utf-8") and "old table" in doc.read_text(encoding="utf-8")
    assert nb_path.read_bytes() == before
