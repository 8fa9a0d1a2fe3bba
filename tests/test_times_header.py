"""`course times` replaces the whole run-time paragraph of a header, not only its first line (issue 22:
notebooks 07 and 08 showed "... measured yet.\\nrun; the longer-trained models are loaded from ..." after it)."""
import nbformat

from mllib.course import times

MEASURED = "**Run time**: 39 s in the quick profile on an idle 2-core CPU (measured)"


def header_cell(text: str):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# 07 A"), nbformat.v4.new_markdown_cell(text)]
    return nb


def test_a_run_time_paragraph_over_several_lines_is_replaced_whole():
    old = ("**What you will learn**\n\n- things\n\n"
           "**Expected run time**: about a minute in the quick profile (a short live\n"
           "run; the longer-trained models are loaded from `mllib/checkpoints/`); full profile: a few minutes more\n"
           "(longer live run, more test tasks).\n\n**Exercises**: two.")
    nb = header_cell(old)
    assert times.update_header(nb, 39.2, "an idle 2-core CPU")
    text = nb.cells[1].source
    assert MEASURED in text
    assert "longer-trained models" not in text and "(longer live run" not in text
    assert text.endswith("has not been measured yet.\n\n**Exercises**: two.")


def test_the_next_bold_item_right_below_is_kept():
    nb = header_cell("**What you will learn**\n\n**Run time**: about 40 s (a guess).\n**Exercises**: one.")
    times.update_header(nb, 39.2, "an idle 2-core CPU")
    assert nb.cells[1].source.endswith("has not been measured yet.\n**Exercises**: one.")
