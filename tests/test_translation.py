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


def _fake_run(monkeypatch, seen: list, ok: bool = True):
    """Stand in for the kernel: 'execute' each notebook by writing a Chinese output into its code cells."""
    import mllib.course.execute as execute
    import mllib.figure_text as figure_text
    from mllib.course.nbio import write_notebook

    def execute_notebooks(paths, **kwargs):
        import os

        seen.append(os.environ.get("MLLIB_LANG"))
        runs = []
        for path in paths:
            nb = read_notebook(path)
            for cell in nb.cells:
                if cell.cell_type == "code" and ok:
                    cell.outputs = [nbformat.v4.new_output("stream", text="二\n")]
            if ok:
                nb.metadata.update(kwargs.get("metadata") or {})   # written with the outputs, as the real one does
                write_notebook(nb, path)
            runs.append({"path": str(path), "ok": ok, "error": None if ok else "boom"})
        return {"ok": ok, "notebooks": runs}

    monkeypatch.setattr(execute, "execute_notebooks", execute_notebooks)
    monkeypatch.setattr(figure_text, "cjk_font", lambda sample="": "Noto Sans CJK SC")


def _outputs(root: Path) -> list:
    book = read_notebook(root / "zh" / "notebooks" / "01_title.ipynb")
    return [o.get("text") for c in book.cells if c.cell_type == "code" and "print" in source(c) for o in c.outputs]


def test_rendered_outputs_are_kept_until_the_code_changes(tmp_path, monkeypatch):
    from mllib.course.translation import english_figures, render_edition

    root = _course(tmp_path)
    _translate(root, {"cell0": "# 01 · 标题", "cell1": "见术语表。"})
    build_edition(root)
    assert _outputs(root) == ["2\n"] and "figures in English" in english_figures(root)[0]
    seen = []
    _fake_run(monkeypatch, seen)
    render_edition(root)
    assert seen == ["zh"] and _outputs(root) == ["二\n"]          # run with the language set; its outputs kept
    assert stale_translations(root) == [] and english_figures(root) == []
    build_edition(root)
    assert _outputs(root) == ["二\n"]                              # a rebuild keeps them
    practice = read_notebook(root / "zh" / "practice" / "01_title.ipynb")
    assert practice is not None
    path = root / "notebooks" / "01_title.ipynb"
    nb = read_notebook(path)
    nb.cells[2].source = "print(2 + 2)"                            # the English code moves on
    nb.cells[2].outputs = [nbformat.v4.new_output("stream", text="4\n")]
    nbformat.write(nb, path)
    assert "out of date" in stale_translations(root)[0]
    build_edition(root)
    assert _outputs(root) == ["4\n"]                               # back to the English run's outputs
    assert "since its code last changed" in english_figures(root)[0]


def test_render_needs_a_font_and_reports_a_failed_run(tmp_path, monkeypatch):
    import mllib.figure_text as figure_text
    from mllib.course.translation import render_edition

    root = _course(tmp_path)
    _translate(root, {"cell0": "# 01 · 标题", "cell1": "见术语表。"})
    monkeypatch.setattr(figure_text, "cjk_font", lambda sample="": None)
    with pytest.raises(ValueError, match="fonts-noto-cjk"):
        render_edition(root)
    _fake_run(monkeypatch, [], ok=False)
    with pytest.raises(ValueError, match="the zh run failed"):
        render_edition(root)
    assert _outputs(root) == ["2\n"]
    with pytest.raises(ValueError, match="not in the zh book: 09_x.ipynb"):
        render_edition(root, names=["09_x.ipynb"])


def test_a_new_run_time_measurement_is_carried_into_the_translation_without_making_it_stale(tmp_path):
    """`course author --times` rewrites the English header's measured run time: the translation stays
    current and the built book shows the new number in the translation's own words."""
    from mllib.course.translation import carry_run_time

    assert carry_run_time("**Run time**: 3.8 min in the quick profile", "quick配置用时13秒（实测）", "zh") \
        == "quick配置用时3.8分钟（实测）"
    assert carry_run_time("**Run time**: 7 s in the quick profile", "用时<measured>（实测）", "zh") == "用时7秒（实测）"
    assert carry_run_time("no run time here", "用时13秒", "zh") == "用时13秒"
    root = _course(tmp_path)
    path = root / "notebooks" / "01_title.ipynb"
    nb = read_notebook(path)
    nb.cells[1].source = "**Run time**: 13 s in the quick profile on an idle 2-core CPU (measured)."
    nbformat.write(nb, path)
    _translate(root, {"cell0": "# 01 · 标题", "cell1": "**运行时间**：在空闲的2核CPU上，quick配置用时13秒（实测）。"})
    build_edition(root)
    nb.cells[1].source = nb.cells[1].source.replace("13 s", "1.2 min")
    nbformat.write(nb, path)
    assert stale_translations(root, built=False) == []
    build_edition(root)
    book = read_notebook(root / "zh" / "notebooks" / "01_title.ipynb")
    assert any("quick配置用时1.2分钟（实测）" in source(c) for c in book.cells)
    nb.cells[1].source = nb.cells[1].source.replace("on an idle", "on a busy")   # other words still count
    nbformat.write(nb, path)
    assert "the English text changed" in stale_translations(root, built=False)[0]


def test_the_generated_badge_line_speaks_the_editions_language(tmp_path):
    """An unpublished copy's badge cell says so in Chinese in the Chinese book and its practice edition."""
    from mllib.course.colab import UNPUBLISHED, UNPUBLISHED_IN

    root = _course(tmp_path)
    _translate(root, {"cell0": "# 01 · 标题", "cell1": "见术语表。"})
    build_edition(root)
    for folder in ("notebooks", "practice"):
        texts = [source(c) for c in read_notebook(root / "zh" / folder / "01_title.ipynb").cells]
        assert UNPUBLISHED_IN["zh"] in texts and UNPUBLISHED not in texts, folder
