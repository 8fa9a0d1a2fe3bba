"""The practice edition (``practice/``): current with the book, badges that open it, links that resolve,
no quiz answer left in code, figures kept and every other output cleared."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from mllib.course import exercise_cells
from mllib.course.colab import BADGE_TAG, badge_markdown, readme_block, sync_course
from mllib.course.config import CONFIG_PATH, CourseConfig, load_config
from mllib.course.lint import heading_anchors
from mllib.course.nbio import list_notebooks, read_notebook, source, tags, write_notebook
from mllib.course.student import (PRACTICE_COMMAND, build_practice, build_student, drop_quiz_answer_asserts,
                                  link_target, stale_practice, student_version)

ROOT = Path(__file__).resolve().parents[1]
PUBLISHED = CourseConfig("https://github.com/owner/course", "v3")
PNG = "iVBORw0KGgo="


# ----------------------------------------------------------------------------- the real edition
def test_the_committed_practice_edition_is_current_with_the_book():
    stale = stale_practice(ROOT)
    assert stale == [], ("practice/ is out of date with notebooks/:\n  " + "\n  ".join(stale)
                         + f"\nregenerate it with:  {PRACTICE_COMMAND}   (then commit practice/)")


def _relative_links(nb) -> list[str]:
    from test_links import markdown_links   # tests/ is on sys.path under pytest

    return [t for c in nb.cells if c.cell_type == "markdown" for t in markdown_links(source(c))
            if not t.startswith("#") and ":" not in t.split("/")[0]]


def broken_notebook_links(folder: Path) -> list[str]:
    """One line per Markdown link of a notebook in ``folder`` whose file (or anchor) is not there."""
    problems = []
    for path in list_notebooks(folder):
        for target in _relative_links(read_notebook(path)):
            file, _, anchor = target.partition("#")
            goal = (path.parent / file).resolve()
            if not goal.exists():
                problems.append(f"{path.relative_to(folder.parent)}: link {target!r}: {file} does not exist")
            elif anchor and goal.suffix == ".ipynb" and anchor not in heading_anchors(read_notebook(goal)):
                problems.append(f"{path.relative_to(folder.parent)}: link {target!r}: no such heading")
    return problems


@pytest.mark.parametrize("folder", ["notebooks", "practice"])
def test_every_link_of_the_book_and_the_practice_edition_resolves(folder):
    assert broken_notebook_links(ROOT / folder) == []


def test_practice_notebooks_hold_no_answer_and_their_badges_open_the_practice_edition():
    cfg = load_config()
    book = {p.name for p in list_notebooks(ROOT / "notebooks")}
    assert {p.name for p in list_notebooks(ROOT / "practice")} == book
    for path in list_notebooks(ROOT / "practice"):
        nb = read_notebook(path)
        text = "\n".join(source(c) for c in nb.cells)
        assert "BEGIN SOLUTION" not in text and "HIDDEN TESTS" not in text, path.name
        assert not any("quiz answer" in source(c).lower() for c in nb.cells if c.cell_type == "code"), path.name
        (badge,) = [c for c in nb.cells if BADGE_TAG in tags(c)]
        assert source(badge) == badge_markdown(cfg, path.name, student=True)


# ----------------------------------------------------------------------------- a small repository
def make_book(root: Path, cfg: CourseConfig | None = None) -> Path:
    """root/notebooks/02_a.ipynb (an exercise, a quiz-answer assert, a figure, links out of the folder),
    root/docs/glossary.md, root/CITATION.cff, root/mllib/course_config.json."""
    cells = [new_markdown_cell("# 02 A\n\nTerms: [glossary](../docs/glossary.md#terms), "
                               "[cite](../CITATION.cff), [next](03_b.ipynb), [web](https://example.org/x.md), "
                               "[here](#a-part) ![map](figures/map.svg)"),
             new_markdown_cell("badge"), new_code_cell("import math")]
    cells[1].metadata = {"tags": [BADGE_TAG]}
    cells += exercise_cells("ci95", "def ci(v):\n    ### BEGIN SOLUTION\n    return 1, 2\n    ### END SOLUTION",
                            "checks.check_confidence_interval(ci)\n### BEGIN HIDDEN TESTS\nx = 1\n### END HIDDEN TESTS")
    cells.append(new_code_cell('n = 8 * 5 * 6\nprint(n)\nassert n == 240, "quiz answer 5"\nplot(n)'))
    nb = new_notebook(cells=cells)
    figure = new_output("display_data", data={"image/png": PNG, "text/plain": "<Figure>",
                                              "text/html": "<b>x</b>"})
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.execution_count = 3
            cell.outputs = [new_output("stream", name="stdout", text="240\n"), figure]
    write_notebook(nb, root / "notebooks" / "02_a.ipynb")
    write_notebook(new_notebook(cells=[new_markdown_cell("# 03 B")]), root / "notebooks" / "03_b.ipynb")
    (root / "notebooks" / "figures").mkdir()
    (root / "notebooks" / "figures" / "map.svg").write_text("<svg/>")
    (root / "docs").mkdir()
    (root / "docs" / "glossary.md").write_text("# Glossary\n\n## Terms\n")
    (root / "CITATION.cff").write_text("cff-version: 1.2.0\n")
    (root / "mllib").mkdir()
    raw = json.loads(CONFIG_PATH.read_text())
    if cfg is not None:
        raw.update(repository=cfg.repository, ref=cfg.ref)
    (root / "mllib" / "course_config.json").write_text(json.dumps(raw))
    return root


def test_a_stale_practice_edition_is_listed_with_the_command_that_fixes_it(tmp_path, capsys):
    from mllib.__main__ import main

    root = make_book(tmp_path)
    assert stale_practice(root) == [f"practice/{name} (missing)" for name in
                                    ("02_a.ipynb", "03_b.ipynb", "figures/map.svg")]
    assert main(["course", "practice", "--root", str(root)]) == 0
    assert stale_practice(root) == [] and build_practice(root) == []
    nb = read_notebook(root / "notebooks" / "03_b.ipynb")
    nb.cells[0].source = "# 03 B, edited"
    write_notebook(nb, root / "notebooks" / "03_b.ipynb")
    (root / "practice" / "old.ipynb").write_text("{}")
    (root / "practice" / "figures" / "map.svg").unlink()
    capsys.readouterr()
    assert main(["course", "practice", "--check", "--root", str(root)]) == 1
    out = capsys.readouterr().out
    assert "practice/03_b.ipynb (changed)" in out and "practice/old.ipynb (not from the book)" in out
    assert "practice/figures/map.svg (missing)" in out and f"run `{PRACTICE_COMMAND}`" in out
    assert main(["course", "practice", "--root", str(root)]) == 0
    assert stale_practice(root) == [] and not (root / "practice" / "old.ipynb").exists()
    assert not list(root.glob(".practice-*")), "the temporary build is removed"


def test_practice_edition_rules_on_a_small_book(tmp_path):
    root = make_book(tmp_path, PUBLISHED)
    build_practice(root)
    nb = read_notebook(root / "practice" / "02_a.ipynb")
    plain, check, later = nb.cells[2], nb.cells[4], nb.cells[5]
    assert "YOUR CODE HERE" in source(nb.cells[3]) and "HIDDEN" not in source(check)
    # the quiz answer's assert is gone, the rest of the cell stays
    assert source(later) == "n = 8 * 5 * 6\nprint(n)\nplot(n)"
    # figures of plain cells stay (images and their text alternative only); nothing else does
    assert [o.output_type for o in plain.outputs] == ["display_data"]
    assert set(plain.outputs[0].data) == {"image/png", "text/plain"}
    assert nb.cells[3].outputs == [] and check.outputs == []
    assert all(c.execution_count is None for c in nb.cells if c.cell_type == "code")
    # links: out of the folder rewritten to resolve from practice/ (the same depth: unchanged here)
    assert "](../docs/glossary.md#terms)" in source(nb.cells[0]) and "](../CITATION.cff)" in source(nb.cells[0])
    assert "](03_b.ipynb)" in source(nb.cells[0]) and "](figures/map.svg)" in source(nb.cells[0])
    # badges open the practice edition on the configured ref; the book's open the book
    assert source(nb.cells[1]) == badge_markdown(PUBLISHED, "02_a.ipynb", student=True)
    assert "/blob/v3/practice/02_a.ipynb" in source(nb.cells[1])
    assert "/v2/gh/owner/course/v3?urlpath=lab/tree/practice/02_a.ipynb" in source(nb.cells[1])
    assert "/blob/v3/notebooks/02_a.ipynb" in badge_markdown(PUBLISHED, "02_a.ipynb")
    assert "lab/tree/practice" in readme_block(PUBLISHED, ["02_a.ipynb"])
    # applying the rules again changes nothing
    assert student_version(nb, "02_a.ipynb", PUBLISHED) == nb


def test_the_student_build_links_resolve_wherever_it_is_written(tmp_path):
    root = make_book(tmp_path / "repo")
    out = root / "build" / "student"
    build_student(root / "notebooks", out)
    text = source(read_notebook(out / "02_a.ipynb").cells[0])
    assert "](../../docs/glossary.md#terms)" in text and "](../../CITATION.cff)" in text
    assert broken_notebook_links(out) == []
    assert "](03_b.ipynb)" in text and "](https://example.org/x.md)" in text and "](#a-part)" in text
    # outside the checkout: the published course's files on GitHub
    elsewhere = tmp_path / "handout"
    build_student(root / "notebooks", elsewhere, PUBLISHED)
    text = source(read_notebook(elsewhere / "02_a.ipynb").cells[0])
    assert "](https://github.com/owner/course/blob/v3/docs/glossary.md#terms)" in text
    assert "](https://github.com/owner/course/blob/v3/CITATION.cff)" in text
    assert "](03_b.ipynb)" in text
    assert link_target("../docs/glossary.md", root / "notebooks", root / "practice") == "../docs/glossary.md"


def test_set_repository_regenerates_the_practice_edition(tmp_path):
    from mllib.__main__ import main

    root = make_book(tmp_path)
    (root / "README.md").write_text("# C\n\n<!-- badges:start -->\n<!-- badges:end -->\n")
    sync_course(root, load_config(root / "mllib" / "course_config.json"))
    build_practice(root)
    assert main(["course", "set-repository", "https://github.com/me/c", "--ref", "v9", "--root", str(root)]) == 0
    assert stale_practice(root) == []
    assert "/blob/v9/practice/02_a.ipynb" in source(read_notebook(root / "practice" / "02_a.ipynb").cells[1])


# ----------------------------------------------------------------------------- quiz answers in code
def test_only_whole_asserts_that_confirm_a_quiz_answer_are_removed():
    assert drop_quiz_answer_asserts("x = 1\nassert x == 1, 'ok'") == "x = 1\nassert x == 1, 'ok'"
    two_lines = 'x = 4\nassert (x ==\n        4), "Quiz answer 2"\nprint(x)'
    assert drop_quiz_answer_asserts(two_lines) == "x = 4\nprint(x)"
    commented = "x = 4\n# quiz answer 3 restates section 5:\n# x is four\ncheck(x)\n# a later note"
    assert drop_quiz_answer_asserts(commented) == "x = 4\ncheck(x)\n# a later note"
    with pytest.raises(ValueError, match="outside an assert"):
        drop_quiz_answer_asserts('print("quiz answer 5: 240")', "02 cell 34")
    with pytest.raises(ValueError, match="outside an assert"):
        drop_quiz_answer_asserts("n = 240  # quiz answer 5", "02 cell 34")
    with pytest.raises(ValueError, match="empty block"):
        drop_quiz_answer_asserts('if True:\n    assert 1, "quiz answer 1"', "02 cell 3")
    with pytest.raises(ValueError, match="not plain Python"):
        drop_quiz_answer_asserts('%time assert 1, "quiz answer 1"', "02 cell 3")


def test_config_keeps_the_practice_edition_apart_from_the_book():
    with pytest.raises(ValueError, match="practice_dir must differ"):
        CourseConfig(None, "main", practice_dir="notebooks/")
    with pytest.raises(ValueError, match="practice_dir must be a folder"):
        CourseConfig(None, "main", practice_dir="../elsewhere")
    assert load_config().practice_dir == "practice"
