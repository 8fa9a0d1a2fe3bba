"""The student release: solution regions replaced by stubs, outputs cleared, nothing else changed."""
from __future__ import annotations

import copy
import shutil
from pathlib import Path

from nbformat import NotebookNode

from .exercises import strip_solutions
from .nbio import list_notebooks, read_notebook, source, write_notebook


def student_version(nb: NotebookNode, name: str = "notebook") -> NotebookNode:
    """A copy of ``nb`` as a student receives it.

    In every code and markdown cell each solution region is replaced (see
    :func:`~mllib.course.exercises.strip_solutions`); every code cell loses its outputs and
    execution count. Cell metadata (nbgrader's included), cell ids and notebook metadata are
    kept. Applying it to its own result changes nothing.
    """
    out = copy.deepcopy(nb)
    for i, cell in enumerate(out.cells):
        if cell.cell_type in ("code", "markdown"):
            text = source(cell)
            new = strip_solutions(text, cell.cell_type, where=f"{name} cell {i}")
            if new != text:
                cell.source = new
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    return out


def build_student(src: str | Path = "notebooks", out: str | Path = "build/student") -> list[Path]:
    """Write the student version of every notebook in ``src`` to ``out``; returns the notebooks written.

    Other files of ``src`` (figures, small data files) are copied alongside, so relative paths
    keep working. Files are only rewritten when their contents change, and building twice, or
    building from an already-student folder, gives byte-identical files.
    """
    src, out = Path(src), Path(out)
    if not src.is_dir():
        raise FileNotFoundError(f"notebook folder not found: {src}")
    if src.resolve() == out.resolve():
        raise ValueError(f"out must differ from src ({src}): the student build never overwrites the solutions")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in list_notebooks(src):
        target = out / path.name
        write_notebook(student_version(read_notebook(path), path.name), target)
        written.append(target)
    for path in sorted(src.rglob("*")):
        rel = path.relative_to(src)
        if path.suffix == ".ipynb" and path.parent == src:
            continue
        if any(part.startswith(".") or part == "__pycache__" for part in rel.parts):
            continue
        if path.is_file():
            target = out / rel
            if not target.is_file() or target.read_bytes() != path.read_bytes():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, target)
    return written
