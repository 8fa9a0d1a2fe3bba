"""The student release: solution regions, hidden tests and quiz answers removed, outputs cleared,
launch badges pointing to the student release; nothing else changed.

``build_student`` also copies the other files of the notebooks folder, among them the final
project's template (``notebooks/project/project_template.ipynb``, see ``docs/project.md``).
"""
from __future__ import annotations

import copy
import shutil
from pathlib import Path

from nbformat import NotebookNode

from .colab import student_badges
from .config import CourseConfig, config_path, load_config
from .exercises import strip_solutions
from .nbio import list_notebooks, read_notebook, source, write_notebook


def student_version(nb: NotebookNode, name: str = "notebook", cfg: CourseConfig | None = None) -> NotebookNode:
    """A copy of ``nb`` as a student receives it.

    In every code and markdown cell each solution region (and each hidden-tests region) is
    replaced (see :func:`~mllib.course.exercises.strip_solutions`): solutions become stubs, quiz
    answers become ``YOUR ANSWER HERE``, hidden tests vanish. Every code cell loses its outputs
    and execution count. With ``cfg``, the badge cell points to the student release
    (``cfg.student_ref``). Cell metadata (nbgrader's included), cell ids and notebook metadata
    are kept. Applying it to its own result changes nothing.
    """
    out = student_badges(nb, name, cfg) if cfg is not None else copy.deepcopy(nb)
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


def build_student(src: str | Path = "notebooks", out: str | Path = "build/student",
                  cfg: CourseConfig | None = None) -> list[Path]:
    """Write the student version of every notebook in ``src`` to ``out``; returns the notebooks written.

    ``cfg`` (default: the configuration of the checkout holding ``src``, else the package's) sets
    the badges' target, the student release's ref.

    Other files of ``src`` (figures, small data files) are copied alongside, so relative paths
    keep working. Files are only rewritten when their contents change, and building twice, or
    building from an already-student folder, gives byte-identical files.
    """
    src, out = Path(src), Path(out)
    if not src.is_dir():
        raise FileNotFoundError(f"notebook folder not found: {src}")
    if src.resolve() == out.resolve():
        raise ValueError(f"out must differ from src ({src}): the student build never overwrites the solutions")
    if cfg is None:
        cfg = load_config(config_path(src.resolve().parent))
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in list_notebooks(src):
        target = out / path.name
        write_notebook(student_version(read_notebook(path), path.name, cfg), target)
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
