"""The translated editions (mllib.course.translation): one source of code, translated text, a freshness check."""
from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from mllib.course.nbio import read_notebook, source
from mllib.course.translation import (LANGUAGE_LINES, build_edition, coverage, fingerprint, skeleton, stale_translations,
                                      translatable_cells)

ROOT = Path(__file__).resolve().parents[1]


def _course(tmp_path: Path) -> Path:
    """A one-notebook course: a title, a Markdown cell with a link out of the book, a code cell with output."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# 01 · Title"),
                nbformat.v4.new_markdown_cell("See the [glossary](../docs/glossary.md)."),
                nbformat.v4.new_code_cell("print(1 + 1)")]
    nb.cells[2].outputs = [nbformat.v4.new_output("stream", text="2\n")]
    for i, cell in enumerate(nb.cells):
        cell.id = f"cell{i}"
    (tmp_path / "notebooks").mkdir()
    nbformat.write(nb, tmp_path / "notebooks" / "01_title.ipynb")
    return tmp_path


def _translate(root: Path, texts: dict[str, str]) -> Path:
    data = skeleton(read_notebook(root / "notebooks" / "01_title.ipynb"), "01_title.ipynb")
    for cell_id, text in texts.items():
        data["cells"][cell_id]["text"] = text
    path = root / "zh" / "text" / "01_title.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


def test_fingerprint_names_the_english_text():
    assert fingerprint("a") == fingerprint("a") != fingerprint("a ")
    assert len(fingerprint("学习")) == 12


def test_build_swaps_the_text_and_keeps_code_outputs_and_relinks(tmp_path):
    root = _course(tmp_path)
    _translate(root, {"cell0": "# 01 · 标题", "cell1": "见[术语表](../docs/glossary.md)。"})
    assert stale_translations(root) == [f"{root / 'zh' / 'notebooks' / '01_title.ipynb'}: out of date; "
                                        "run `python -m mllib course build --lang zh`"]
    build_edition(root)
    book = read_notebook(root / "zh" / "notebooks" / "01_title.ipynb")
    texts = [source(c) for c in book.cells if c.cell_type == "markdown"]
    assert "# 01 · 标题" in texts and "见[术语表](../../docs/glossary.md)。" in texts   # the link still resolves
    code = [c for c in book.cells if c.cell_type == "code" and "print" in source(c)][0]
    assert code.outputs[0]["text"] == "2\n"                                  # the English run's output
    assert (root / "zh" / "practice" / "01_title.ipynb").is_file()
    assert stale_translations(root) == [] and coverage(root) == (["01_title.ipynb"], [])


def test_a_changed_english_cell_is_listed_and_blocks_the_build(tmp_path):
    root = _course(tmp_path)
    _translate(root, {"cell0": "# 01 · 标题", "cell1": "见术语表。"})
    build_edition(root)
    path = root / "notebooks" / "01_title.ipynb"
    nb = read_notebook(path)
    nb.cells[1].source = "See the [glossary](../docs/glossary.md) for every term."   # the English text moves on
    nbformat.write(nb, path)
    problems = stale_translations(root)
    assert len(problems) == 1 and "01_title.ipynb cell cell1: the English text changed" in problems[0]
    with pytest.raises(ValueError, match="1 translation problem"):
        build_edition(root)


def test_untranslated_and_orphaned_cells_are_listed(tmp_path):
    root = _course(tmp_path)
    text = _translate(root, {"cell0": "# 01 · 标题"})
    data = json.loads(text.read_text(encoding="utf-8"))
    del data["cells"]["cell1"]
    data["cells"]["gone"] = {"en": fingerprint("old"), "text": "旧"}
    text.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    problems = stale_translations(root)
    assert any("cell cell1: not translated" in p for p in problems)
    assert any("cell gone: translates a cell the English notebook no longer has" in p for p in problems)


def test_damaged_translation_file_is_one_sentence(tmp_path):
    root = _course(tmp_path)
    _translate(root, {}).write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match="not valid JSON"):
        stale_translations(root)


def test_the_course_editions_are_current_and_share_the_code():
    assert stale_translations(ROOT) == []
    for name in coverage(ROOT)[0]:
        english, chinese = (read_notebook(ROOT / folder / name) for folder in ("notebooks", "zh/notebooks"))
        code = [[source(c) for c in nb.cells if c.cell_type == "code"] for nb in (english, chinese)]
        assert code[0][1:] == code[1][1:], f"{name}: the Chinese book runs the English code"  # [0]: Colab setup
        assert code[1][0] == code[0][0] + LANGUAGE_LINES["zh"], "the setup cell sets the checks' language"
        assert len(translatable_cells(english)) == len(json.loads(
            (ROOT / "zh" / "text" / name.replace(".ipynb", ".json")).read_text(encoding="utf-8"))["cells"])


def test_a_link_to_a_notebook_not_yet_translated_opens_the_english_one(tmp_path):
    root = _course(tmp_path)
    nb = read_notebook(root / "notebooks" / "01_title.ipynb")
    nbformat.write(nb, root / "notebooks" / "02_next.ipynb")
    _translate(root, {"cell0": "# 01 · 标题", "cell1": "下一本：[02](02_next.ipynb#top)。"})
    build_edition(root)
    book = read_notebook(root / "zh" / "notebooks" / "01_title.ipynb")
    assert any("[02](../../notebooks/02_next.ipynb#top)" in source(c) for c in book.cells)


def test_the_landing_page_lists_the_notebooks_and_goes_stale(tmp_path):
    root = _course(tmp_path)
    nbformat.write(read_notebook(root / "notebooks" / "01_title.ipynb"), root / "notebooks" / "02_next.ipynb")
    _translate(root, {"cell0": "# 01 · 标题", "cell1": "见术语表。"})
    (root / "docs").mkdir()
    page = root / "docs" / "README.zh.md"
    page.write_text("# 中文版\n\n<!-- zh-notebooks:start -->\n<!-- zh-notebooks:end -->\n", encoding="utf-8")
    build_edition(root)
    text = page.read_text(encoding="utf-8")
    assert "- [01 · 标题](../zh/practice/01_title.ipynb)（[含答案](../zh/notebooks/01_title.ipynb)）" in text
    assert "- [01 · Title](../practice/02_next.ipynb)（尚未翻译，英文）" in text     # 02: not translated
    assert stale_translations(root) == []
    page.write_text(text.replace("01 · 标题", "01 · 旧标题"), encoding="utf-8")
    assert any("list of notebooks is out of date" in p for p in stale_translations(root))
    page.write_text("# 中文版\n", encoding="utf-8")
    with pytest.raises(ValueError, match="markers"):
        stale_translations(root)
