"""The map of the package in ``mllib/__init__.py`` names every module, and the "Notebook NN, section M"
references in the code point at a section that exists."""
from __future__ import annotations

import json
import re
from pathlib import Path

import mllib

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "mllib"
NOTEBOOKS = ROOT / "notebooks"
GROUPS = ["Taught core", "Taught extensions", "Infrastructure", "Course tooling"]


# ----------------------------------------------------------------------------- the package map

def package_modules(package: Path = PACKAGE) -> set[str]:
    """The package's top-level modules (``*.py`` but ``__init__``/``__main__``) and sub-packages."""
    modules = {p.stem for p in package.glob("*.py") if p.stem not in ("__init__", "__main__")}
    return modules | {p.parent.name for p in package.glob("*/__init__.py")}


def mapped_modules(doc: str) -> dict[str, str]:
    """``{module: group}`` for every ````name```` that opens a bullet (``* ``name``, ``other``: ...``)."""
    mapped, group = {}, None
    for line in doc.splitlines():
        heading = next((g for g in GROUPS if line.startswith(g + " (")), None)
        group = heading or group
        if line.startswith("* "):
            for name in re.findall(r"``(\w+)``", line.split(":", 1)[0]):
                mapped[name] = group
    return mapped


def map_problems(doc: str, modules: set[str]) -> list[str]:
    """What is wrong with the map: modules it leaves out or lists outside a group, names of no module."""
    mapped = mapped_modules(doc)
    problems = [f"{m} is not in the package map" for m in sorted(modules - set(mapped))]
    problems += [f"{m} is in the map but is no module" for m in sorted(set(mapped) - modules)]
    return problems + [f"{m} is listed before any group" for m, g in sorted(mapped.items()) if g is None]


def test_map_problems_names_a_missing_and_a_stale_module():
    doc = "Taught core (x):\n\n* ``inner``, ``gone``: the inner loop.\n"
    assert map_problems(doc, {"inner", "models"}) == ["models is not in the package map",
                                                       "gone is in the map but is no module"]


def test_the_package_map_names_every_module_in_a_group():
    assert map_problems(mllib.__doc__, package_modules()) == []
    assert [g for g in GROUPS if g + " (" in mllib.__doc__] == GROUPS


# ----------------------------------------------------------------------------- notebook references

REFERENCE = re.compile(r"[Nn]otebooks? (\d\d),? sections? (\d+)(?:\s*(?:-|and|or)\s*(\d+))?"
                       r"|(\d\d) \(section (\d+)\)")


def notebook_sections(folder: Path = NOTEBOOKS) -> dict[str, set[str]]:
    """``{"05": {"1", "2", ...}}``: the numbered ``## M.`` headings of each notebook ``NN_*.ipynb``."""
    sections = {}
    for path in sorted(folder.glob("[0-9][0-9]_*.ipynb")):
        text = "\n".join("".join(cell["source"]) for cell in json.loads(path.read_text())["cells"]
                         if cell["cell_type"] == "markdown")
        sections[path.name[:2]] = set(re.findall(r"^##\s+(\d+)\.", text, flags=re.MULTILINE))
    return sections


def references(text: str) -> list[tuple[str, str]]:
    """Every ``(notebook, section)`` that ``text`` cites ("Notebook 04, sections 1-3" gives 1 and 3)."""
    found = []
    for m in REFERENCE.finditer(text):
        notebook = m.group(1) or m.group(4)
        found += [(notebook, s) for s in (m.group(2), m.group(3), m.group(5)) if s]
    return found


def broken_references(sections: dict[str, set[str]], package: Path = PACKAGE) -> list[str]:
    broken = []
    for path in sorted(package.rglob("*.py")):
        for notebook, section in references(path.read_text()):
            if section not in sections.get(notebook, set()):
                broken.append(f"{path.relative_to(package.parent)}: notebook {notebook}, section {section}")
    return broken


def test_references_are_read_in_each_form():
    text = "Notebook 02, sections 5-7. notebook 04, sections 1 and 2; Notebooks 01 (section 6) and 05 (section 2)"
    assert references(text) == [("02", "5"), ("02", "7"), ("04", "1"), ("04", "2"), ("01", "6"), ("05", "2")]


def test_a_reference_to_a_missing_section_is_reported(tmp_path):
    (tmp_path / "m.py").write_text('"""Taught in notebook 03, section 9 and notebook 07, section 1."""\n')
    assert broken_references({"03": {"1", "2"}}, tmp_path) == [f"{tmp_path.name}/m.py: notebook 03, section 9",
                                                                f"{tmp_path.name}/m.py: notebook 07, section 1"]


def test_every_notebook_section_reference_in_the_code_resolves():
    sections = notebook_sections()
    assert len(sections) >= 8 and all(sections.values())
    assert broken_references(sections) == []
