"""Exercise effort: each notebook header's ``**Exercises**`` line and the instructors' table of
checks, both generated from the notebooks.

Every exercise cell and every quiz-answer cell carries its expected effort in its metadata::

    "mllib": {"effort_minutes": 10, "title": "relabelling a task's classes"}

``python -m mllib course exercises`` writes, from that and from the exercise cells themselves
(the learner's ``def`` line, the check call, the points):

* the line starting with ``**Exercises**`` in each notebook's header cell (the Markdown cell with
  "What you will learn"), e.g. ``**Exercises**: two with automatic checks (relabelling a task's
  classes, about 10 minutes; ...) and a written quiz (about 10 minutes): about 30 minutes in all.``;
* the table between ``<!-- exercises:start -->`` and ``<!-- exercises:end -->`` in
  ``docs/instructors.md``: one row per exercise and per quiz.

``check_effort`` reports what is missing or out of date (``tests/test_exercises.py`` runs it).
"""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

from nbformat import NotebookNode

from .exercises import find_exercises
from .nbio import list_notebooks, nbgrader, read_notebook, source, write_notebook

EXERCISES_LINE = re.compile(r"^\*\*Exercises\*\*:.*$", re.M)
TABLE_START = "<!-- exercises:start"
TABLE_END = "<!-- exercises:end -->"
NUMBERS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six"}


@dataclass(frozen=True)
class Effort:
    notebook: str        # file name
    grade_id: str
    kind: str            # "exercise" or "quiz"
    title: str
    minutes: int
    signature: str = ""  # the learner's def line (exercises)
    check: str = ""      # the check function called by the check cell (exercises)
    points: float = 0.0


def _signature(text: str) -> str:
    """``name(arguments)`` of the first top-level function the cell defines ('' when none)."""
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return ""
    node = next((n for n in tree.body if isinstance(n, ast.FunctionDef)), None)
    return f"{node.name}({ast.unparse(node.args)})" if node else ""


def _meta(cell) -> dict:
    return cell.metadata.get("mllib", {}) if hasattr(cell, "metadata") else {}


def notebook_efforts(nb: NotebookNode, name: str) -> tuple[list[Effort], list[str]]:
    """(the efforts of ``nb``'s exercises and quiz cells, problems: a cell without its effort)."""
    rows, problems = [], []
    for ex in find_exercises(nb):
        cell = nb.cells[ex.cell_index]
        meta = _meta(cell)
        if ex.check_index is None:    # a row without its check would read "`checks.` (0)"
            problems.append(f"{name} cell {ex.cell_index} ({ex.grade_id}): no check cell follows this exercise "
                            f"(the next code cell needs nbgrader grade: true, grade_id {ex.grade_id}_check)")
            continue
        check = re.search(r"checks\.(check_\w+)\(", source(nb.cells[ex.check_index])) if ex.check_index else None
        signature = _signature(source(cell))
        if not meta.get("effort_minutes") or not meta.get("title"):
            problems.append(f"{name} cell {ex.cell_index} ({ex.grade_id}): metadata mllib.effort_minutes and "
                            f"mllib.title are needed")
            continue
        rows.append(Effort(name, ex.grade_id, "exercise", meta["title"], int(meta["effort_minutes"]),
                           signature, check.group(1) if check else "", ex.points))
    for i, cell in enumerate(nb.cells):
        grading = nbgrader(cell)
        if cell.cell_type == "markdown" and grading.get("solution"):
            meta = _meta(cell)
            if not meta.get("effort_minutes"):
                problems.append(f"{name} cell {i} ({grading.get('grade_id')}): metadata mllib.effort_minutes is needed")
                continue
            rows.append(Effort(name, grading.get("grade_id", "?"), "quiz", meta.get("title", "written quiz"),
                               int(meta["effort_minutes"]), points=float(grading.get("points", 0) or 0)))
    return rows, problems


def exercises_line(rows: list[Effort]) -> str:
    """The header's ``**Exercises**`` line for one notebook's rows."""
    exercises = [r for r in rows if r.kind == "exercise"]
    quizzes = [r for r in rows if r.kind == "quiz"]
    parts = []
    if exercises:
        count = NUMBERS.get(len(exercises), str(len(exercises)))
        listed = "; ".join(f"{r.title}, about {r.minutes} minutes" for r in exercises)
        parts.append(f"{count} with automatic checks ({listed})")
    if quizzes:
        parts.append("a written quiz (about " + " + ".join(str(r.minutes) for r in quizzes) + " minutes)")
    total = sum(r.minutes for r in rows)
    return f"**Exercises**: {' and '.join(parts)}: about {total} minutes in all."


def header_index(nb: NotebookNode) -> int | None:
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown" and "What you will learn" in source(cell):
            return i
    return None


def update_header(nb: NotebookNode, rows: list[Effort], name: str) -> bool:
    """Rewrite (or add, at the end of the header cell) the ``**Exercises**`` line; True if changed."""
    index = header_index(nb)
    if index is None:
        raise ValueError(f"{name}: no header cell with 'What you will learn'")
    text = source(nb.cells[index])
    line = exercises_line(rows)
    new = EXERCISES_LINE.sub(lambda _: line, text, count=1) if EXERCISES_LINE.search(text) else \
        text.rstrip("\n") + "\n\n" + line
    if new == text:
        return False
    nb.cells[index].source = new
    return True


def table(rows: list[Effort]) -> str:
    """The instructors' table of exercises: one row per exercise and quiz, totals per notebook."""
    lines = ["| notebook | exercise id | what the learner writes | check (points) | expected effort |",
             "| --- | --- | --- | --- | ---: |"]
    for r in rows:
        label = r.notebook.removesuffix(".ipynb")
        if r.kind == "exercise":
            what = f"{r.title}: `{r.signature}`" if r.signature else r.title
            check = f"`checks.{r.check}` ({r.points:g})"
        else:
            what, check = "written answers to *Check your understanding*", f"by hand ({r.points:g})"
        lines.append(f"| {label} | `{r.grade_id}` | {what} | {check} | {r.minutes} min |")
    total = sum(r.minutes for r in rows)
    count = sum(r.kind == "exercise" for r in rows)
    lines.append(f"| all | | {count} exercises with checks, {sum(r.kind == 'quiz' for r in rows)} quizzes | | "
                 f"{total} min |")
    return "\n".join(lines)


def update_instructors(text: str, rows: list[Effort]) -> str:
    start, end = text.find(TABLE_START), text.find(TABLE_END)
    if start < 0 or end < start:
        raise ValueError(f"docs/instructors.md needs a {TABLE_START} ... {TABLE_END} block")
    head_end = text.index("-->", start) + 3
    return text[:head_end] + "\n" + table(rows) + "\n" + text[end:]


def collect(root: str | Path = ".") -> tuple[dict[Path, NotebookNode], list[Effort], list[str]]:
    notebooks, rows, problems = {}, [], []
    for path in list_notebooks(Path(root) / "notebooks"):
        nb = read_notebook(path)
        found, missing = notebook_efforts(nb, path.name)
        notebooks[path], problems = nb, problems + missing
        rows += found
    return notebooks, rows, problems


def apply_effort(root: str | Path = ".", write: bool = True) -> tuple[list[str], list[Path]]:
    """(problems, files that differ): headers and the instructors' table against the metadata;
    with ``write`` and no problems, the files are rewritten."""
    root = Path(root)
    notebooks, rows, problems = collect(root)
    write = write and not problems   # a table or header with rows left out is never written
    stale: list[Path] = []
    for path, nb in notebooks.items():
        if update_header(nb, [r for r in rows if r.notebook == path.name], path.name):
            stale.append(path)
            if write:
                write_notebook(nb, path)
    doc = root / "docs" / "instructors.md"
    text = doc.read_text(encoding="utf-8")
    new = update_instructors(text, rows)
    if new != text:
        stale.append(doc)
        if write:
            doc.write_text(new, encoding="utf-8")
    return problems, stale


def check_effort(root: str | Path = ".") -> list[str]:
    problems, stale = apply_effort(root, write=False)
    return problems + [f"{p}: exercise effort out of date (run `python -m mllib course exercises`)" for p in stale]


__all__ = ["Effort", "notebook_efforts", "exercises_line", "update_header", "table", "update_instructors",
           "apply_effort", "check_effort"]
