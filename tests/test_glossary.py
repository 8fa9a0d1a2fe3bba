"""docs/glossary.md: at least 40 terms, each in English and Chinese, used in the notebook it points to."""
from __future__ import annotations

import json
import re
from pathlib import Path

from mllib.course.nbio import read_notebook, source

ROOT = Path(__file__).resolve().parents[1]
ROW = re.compile(r"^\| (?P<en>[^|]+?) \| (?P<zh>[^|]+?) \| (?P<definition>[^|]+?) \| \[(?P<nb>\d\d)\]\(\.\./notebooks/"
                 r"(?P<file>[^)]+\.ipynb)\) \|$")


def glossary() -> list[dict]:
    text = (ROOT / "docs" / "glossary.md").read_text(encoding="utf-8")
    return [m.groupdict() for m in map(ROW.match, text.splitlines()) if m]


def markdown_text(path: Path) -> str:
    return "\n".join(source(c) for c in read_notebook(path).cells if c.cell_type == "markdown")


def english_forms(term: str) -> list[str]:
    """'model-agnostic meta-learning (MAML)' -> ['model-agnostic meta-learning', 'MAML']."""
    head, _, alias = term.partition(" (")
    return [head] + ([alias.rstrip(")")] if alias else [])


def test_glossary_has_at_least_40_distinct_terms_with_definitions():
    rows = glossary()
    assert len(rows) >= 40
    assert len({r["en"] for r in rows}) == len(rows) and len({r["zh"] for r in rows}) == len(rows)
    for r in rows:
        assert all(re.search(r"[\u4e00-\u9fff]", form) for form in r["zh"].split(" / ")), r
        assert len(r["definition"].split()) >= 5, r
        assert r["file"].startswith(r["nb"] + "_") and (ROOT / "notebooks" / r["file"]).is_file(), r


def chinese_text(file: str) -> str:
    """The Chinese edition's text of a notebook (empty while it is not translated)."""
    path = ROOT / "zh" / "text" / file.replace(".ipynb", ".json")
    if not path.is_file():
        return ""
    return "\n".join(cell["text"] for cell in json.loads(path.read_text(encoding="utf-8"))["cells"].values())


def test_every_term_is_used_in_english_and_in_chinese_in_its_notebook():
    """The Chinese term (the first of ``A / B``; B lists synonyms readers meet elsewhere) is the one the
    Chinese edition uses, or, where the notebook is not translated yet, the one in parentheses after
    the English term."""
    texts: dict[str, str] = {}
    missing = []
    for r in glossary():
        text = texts.setdefault(r["file"], markdown_text(ROOT / "notebooks" / r["file"]))
        term = r["zh"].split(" / ")[0]
        chinese = chinese_text(r["file"])
        if chinese and term not in chinese:
            missing.append(f"{term} not used in the Chinese edition of {r['file']}")
        elif not chinese and not re.search(r"\([^)]*" + re.escape(term), text):
            missing.append(f"{term} not in parentheses in {r['file']}")
        if not any(re.search(re.escape(form).replace(r"\ ", r"[\s-]+").replace(r"\-", r"[\s-]"), text, re.I)
                   for form in english_forms(r["en"])):
            missing.append(f"{r['en']} not used in {r['file']}")
    assert missing == []


def test_notebook_01_links_the_glossary():
    assert "(../docs/glossary.md)" in markdown_text(ROOT / "notebooks" / "01_learning_bias.ipynb")
