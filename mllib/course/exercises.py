"""Exercises in a notebook: finding them, checking the convention, and hiding their solutions.

An exercise is a solution cell (nbgrader ``solution: true``) whose answer sits between
``### BEGIN SOLUTION`` and ``### END SOLUTION``, followed by its check cell (nbgrader
``grade: true, locked: true``, ``grade_id`` = the exercise's ``grade_id`` + ``_check``) that
calls a function of ``mllib.checks``. See ``mllib/course/__init__.py`` for the full convention.
"""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field

from nbformat import NotebookNode
from nbformat.v4 import new_code_cell

from .nbio import is_check_cell, is_solution_cell, nbgrader, source

BEGIN_SOLUTION = "### BEGIN SOLUTION"
END_SOLUTION = "### END SOLUTION"
BEGIN_HIDDEN = "### BEGIN HIDDEN TESTS"
END_HIDDEN = "### END HIDDEN TESTS"
STUB_CODE = ("# YOUR CODE HERE", "raise NotImplementedError()")
STUB_MARKDOWN = "YOUR ANSWER HERE"
# nbgrader treats any line that *contains* these words as a marker, in code and Markdown cells alike
MARKER_WORDS = {BEGIN_SOLUTION: "BEGIN SOLUTION", END_SOLUTION: "END SOLUTION",
                BEGIN_HIDDEN: "BEGIN HIDDEN TESTS", END_HIDDEN: "END HIDDEN TESTS"}


def is_marker(line: str, marker: str) -> bool:
    """Whether nbgrader reads ``line`` as ``marker`` (it matches the words anywhere in the line)."""
    return MARKER_WORDS[marker] in line


def canonical_marker(line: str, cell_type: str) -> bool:
    """A marker line written as the convention asks: ``### BEGIN SOLUTION`` (indented like the code)
    in code; in Markdown also ``<!-- BEGIN SOLUTION -->``, which renders as nothing."""
    stripped = line.strip()
    for marker, words in MARKER_WORDS.items():
        if words in line:
            return stripped == marker or (cell_type == "markdown" and stripped == f"<!-- {words} -->")
    return True


@dataclass
class Exercise:
    """One exercise: the index of its solution cell and of its check cell (None when missing)."""

    grade_id: str
    cell_index: int
    check_index: int | None
    check_grade_id: str | None
    points: float
    defines: list[str] = field(default_factory=list)   # names later cells must not use


_GRADE_ID_RE = re.compile(r"^[A-Za-z0-9_-]+$")


def solution_metadata(grade_id: str) -> dict:
    """The nbgrader metadata of an exercise (solution) cell."""
    if not _GRADE_ID_RE.match(grade_id or ""):
        raise ValueError(f"grade_id must be letters, digits, _ or -, got {grade_id!r}")
    return {"nbgrader": {"grade": False, "solution": True, "locked": False, "task": False,
                         "grade_id": grade_id, "schema_version": 3}}


def check_metadata(grade_id: str, points: float = 1) -> dict:
    """The nbgrader metadata of the check cell of exercise ``grade_id`` (its id gets ``_check``)."""
    if not _GRADE_ID_RE.match(grade_id or ""):
        raise ValueError(f"grade_id must be letters, digits, _ or -, got {grade_id!r}")
    if not points > 0:
        raise ValueError(f"points must be > 0, got {points!r}")
    return {"nbgrader": {"grade": True, "solution": False, "locked": True, "points": points,
                         "grade_id": f"{grade_id}_check", "schema_version": 3}}


def exercise_cells(grade_id: str, solution_source: str, check_source: str, points: float = 1) -> list[NotebookNode]:
    """The two cells of an exercise, metadata included, for notebooks written with nbformat.

    ``solution_source`` holds the function with its ``### BEGIN SOLUTION`` ... ``### END SOLUTION``
    region; ``check_source`` is the check call, e.g. ``"checks.check_label_remap(remap_labels)"``.
    """
    if not has_solution_region(solution_source):
        raise ValueError(f"solution_source of {grade_id!r} needs a {BEGIN_SOLUTION!r} ... {END_SOLUTION!r} region")
    if "checks." not in check_source:
        raise ValueError(f"check_source of {grade_id!r} must call a function of mllib.checks")
    return [new_code_cell(solution_source, metadata=solution_metadata(grade_id)),
            new_code_cell(check_source, metadata=check_metadata(grade_id, points))]


def _replace_regions(text: str, begin: str, end: str, stub: tuple[str, ...] | None, where: str) -> str:
    lines = text.split("\n")
    out: list[str] = []
    inside = False
    for number, line in enumerate(lines, start=1):
        if is_marker(line, begin):
            if inside:
                raise ValueError(f"{where}: line {number} opens {begin!r} inside another one")
            inside = True
            indent = line[: len(line) - len(line.lstrip())]
            out += [indent + s for s in (stub or ())]
        elif is_marker(line, end):
            if not inside:
                raise ValueError(f"{where}: line {number} has {end!r} without a {begin!r} before it")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError(f"{where}: {begin!r} is never closed by {end!r}")
    return "\n".join(out)


def strip_solutions(text: str, cell_type: str = "code", where: str = "cell") -> str:
    """The student version of one cell's source.

    Code: each ``### BEGIN SOLUTION`` ... ``### END SOLUTION`` region becomes ``# YOUR CODE HERE``
    and ``raise NotImplementedError()`` at the indentation of the BEGIN line; hidden-test regions
    are removed. Markdown: each solution region becomes ``YOUR ANSWER HERE``. Text without
    markers is returned unchanged, so stripping is idempotent.
    """
    if cell_type == "code":
        text = _replace_regions(text, BEGIN_SOLUTION, END_SOLUTION, STUB_CODE, where)
        return _replace_regions(text, BEGIN_HIDDEN, END_HIDDEN, None, where)
    return _replace_regions(text, BEGIN_SOLUTION, END_SOLUTION, (STUB_MARKDOWN,), where)


def has_solution_region(text: str) -> bool:
    return any(is_marker(line, BEGIN_SOLUTION) for line in text.split("\n"))


def has_hidden_region(text: str) -> bool:
    return any(is_marker(line, BEGIN_HIDDEN) for line in text.split("\n"))


def _parse(text: str) -> ast.Module | None:
    """Python syntax tree of a cell, with IPython magics and shell lines blanked out."""
    cleaned = "\n".join("" if re.match(r"\s*[%!]", line) else line for line in text.split("\n"))
    try:
        return ast.parse(cleaned)
    except SyntaxError:
        return None


def _top_level_names(tree: ast.Module) -> list[str]:
    names: list[str] = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.append(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                names += [n.id for n in ast.walk(target) if isinstance(n, ast.Name)]
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names += [alias.asname or alias.name.split(".")[0] for alias in node.names]
    return names


def _region_lines(text: str, begin: str = BEGIN_SOLUTION, end: str = END_SOLUTION) -> set[int]:
    """Line numbers (1-based) inside the regions between ``begin`` and ``end`` markers."""
    lines, inside = set(), False
    for number, line in enumerate(text.split("\n"), start=1):
        if is_marker(line, begin):
            inside = True
        elif is_marker(line, end):
            inside = False
        elif inside:
            lines.add(number)
    return lines


def _exercise_names(tree: ast.Module, text: str) -> list[str]:
    """Names that break in the student version: top-level functions and classes (their bodies
    become stubs) and names bound at top level inside a solution region (they vanish)."""
    inside = _region_lines(text)
    names = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.append(node.name)
        elif node.lineno in inside:
            names += _top_level_names(ast.Module(body=[node], type_ignores=[]))
    return names


def hidden_region(text: str) -> str:
    """The lines of ``text`` inside its hidden-tests region ('' when it has none)."""
    inside = _region_lines(text, BEGIN_HIDDEN, END_HIDDEN)
    return "\n".join(line for number, line in enumerate(text.split("\n"), start=1) if number in inside)


def _hidden_names(text: str) -> list[str]:
    """Names bound at top level inside a hidden-tests region (they vanish in the student version)."""
    tree = _parse(text)
    inside = _region_lines(text, BEGIN_HIDDEN, END_HIDDEN)
    if tree is None:
        return []
    return [name for node in tree.body if node.lineno in inside
            for name in _top_level_names(ast.Module(body=[node], type_ignores=[]))]


def find_exercises(nb: NotebookNode) -> list[Exercise]:
    """Every solution code cell of ``nb`` paired with the check cell that follows it."""
    exercises = []
    cells = nb.cells
    for i, cell in enumerate(cells):
        if cell.cell_type != "code" or not is_solution_cell(cell):
            continue
        meta = nbgrader(cell)
        check_index = next((j for j in range(i + 1, len(cells)) if cells[j].cell_type == "code"), None)
        if check_index is not None and not is_check_cell(cells[check_index]):
            check_index = None
        check_meta = nbgrader(cells[check_index]) if check_index is not None else {}
        tree = _parse(source(cell))
        exercises.append(Exercise(
            grade_id=str(meta.get("grade_id", f"cell-{i}")),
            cell_index=i,
            check_index=check_index,
            check_grade_id=check_meta.get("grade_id"),
            points=float(check_meta.get("points", 0) or 0),
            defines=_exercise_names(tree, source(cell)) if tree else [],
        ))
    return exercises


def lint_exercises(nb: NotebookNode, name: str = "notebook", *, student: bool = False) -> list[str]:
    """Problems with the exercise convention in ``nb`` (an empty list when it is followed).

    With ``student=False`` (the solution notebooks) every solution cell must hold a solution
    region. Checked: nbgrader metadata of solution and check cells, unique ``grade_id``s,
    ``<id>_check`` naming, a ``checks.`` call in every check cell, and that no later cell
    (other than the check cell) uses a name bound by a solution cell, so a student notebook
    with unsolved exercises still runs to the end.
    """
    problems: list[str] = []
    seen: dict[str, int] = {}
    for i, cell in enumerate(nb.cells):
        meta = nbgrader(cell)
        text = source(cell)
        where = f"{name} cell {i}"
        gid = meta.get("grade_id")
        if meta:
            if not gid:
                problems.append(f"{where}: nbgrader metadata without a grade_id")
            elif gid in seen:
                problems.append(f"{where}: grade_id {gid!r} is used twice (also cell {seen[gid]})")
            else:
                seen[gid] = i
        for number, line in enumerate(text.split("\n"), start=1):
            if not canonical_marker(line, cell.cell_type):
                problems.append(f"{where} line {number}: nbgrader reads {line.strip()[:60]!r} as a marker (it "
                                f"matches the words anywhere in a line); write markers as '### BEGIN SOLUTION' "
                                f"(Markdown also '<!-- BEGIN SOLUTION -->') and reword other text")
        if has_solution_region(text) and not is_solution_cell(cell):
            problems.append(f"{where}: has {BEGIN_SOLUTION!r} but no nbgrader metadata with solution: true")
        if has_hidden_region(text) and not (cell.cell_type == "code" and meta.get("grade")):
            problems.append(f"{where}: hidden tests belong in a check cell (nbgrader grade: true)")
        if is_solution_cell(cell):
            if not student and not has_solution_region(text):
                problems.append(f"{where}: solution cell without a {BEGIN_SOLUTION!r} ... {END_SOLUTION!r} region")
            if cell.cell_type == "code" and (meta.get("grade") or meta.get("locked")):
                problems.append(f"{where}: a solution cell must have grade: false and locked: false")
            if cell.cell_type == "markdown" and (not meta.get("grade") or meta.get("locked")
                                                 or not float(meta.get("points", 0) or 0) > 0):
                problems.append(f"{where}: a Markdown answer cell is graded by hand: grade: true, locked: false "
                                f"and points > 0 (nbgrader refuses an ungraded Markdown solution cell)")
            try:
                strip_solutions(text, cell.cell_type, where)
            except ValueError as err:
                problems.append(str(err))
    for ex in find_exercises(nb):
        where = f"{name} exercise {ex.grade_id!r} (cell {ex.cell_index})"
        if ex.check_index is None:
            problems.append(f"{where}: the next code cell must be its check cell (nbgrader grade: true)")
            continue
        check = nb.cells[ex.check_index]
        meta = nbgrader(check)
        if ex.check_grade_id != f"{ex.grade_id}_check":
            problems.append(f"{where}: its check cell's grade_id is {ex.check_grade_id!r}, expected "
                            f"{ex.grade_id + '_check'!r}")
        if not meta.get("locked") or meta.get("solution"):
            problems.append(f"{where}: its check cell must be locked: true and solution: false")
        if not ex.points > 0:
            problems.append(f"{where}: its check cell needs points > 0")
        if "checks." not in source(check):
            problems.append(f"{where}: its check cell does not call a function of mllib.checks")
        if not student and "checks.hidden_tests(" not in hidden_region(source(check)):
            problems.append(f"{where}: its check cell needs hidden tests: a {BEGIN_HIDDEN!r} ... {END_HIDDEN!r} "
                            f"region that calls checks.hidden_tests (with the graded reference)")
        problems += _later_uses(nb, ex, name)
    return problems


def _later_uses(nb: NotebookNode, ex: Exercise, name: str) -> list[str]:
    """Cells after the check cell that use a name the solution cell binds (and do not rebind it first)."""
    watched = set(ex.defines) | set(_hidden_names(source(nb.cells[ex.check_index])))
    problems = []
    for j in range(ex.check_index + 1, len(nb.cells)):
        if not watched:
            break
        cell = nb.cells[j]
        if cell.cell_type != "code":
            continue
        tree = _parse(source(cell))
        if tree is None:
            continue
        stored = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
        stored |= set(_top_level_names(tree))
        used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
        for bad in sorted((used & watched) - stored):
            problems.append(f"{name} cell {j}: uses {bad!r}, which exercise {ex.grade_id!r} defines; later "
                            f"cells must use the mllib reference so the student version runs to the end")
        watched -= stored
    return problems
