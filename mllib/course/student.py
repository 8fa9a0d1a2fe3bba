"""The student version of the book: the practice edition (``practice/``) and the student release
(``build/student/``), made by the same rules.

What changes, cell by cell (:func:`student_version`):

* solution regions become stubs, quiz answers ``YOUR ANSWER HERE``, hidden tests vanish
  (:func:`~mllib.course.exercises.strip_solutions`);
* an ``assert`` that confirms a quiz answer (its text says ``quiz answer``, e.g.
  ``assert images == 240, "quiz answer 5"``) is removed, and so is a comment that names one;
  any other code naming a quiz answer stops the build with one line saying which cell
  (:func:`drop_quiz_answer_asserts`);
* outputs: the figures (``image/*`` outputs) of a code cell that is neither an exercise nor a
  check stay, since the text around them reads them and the reference implementation drew
  them; every other output (text, numbers, errors) and every execution count is cleared;
* links in Markdown that leave the notebooks folder (``../docs/glossary.md``,
  ``../CITATION.cff``) are rewritten to resolve from where the build lives
  (:func:`link_target`);
* the badge cell opens the practice edition (``practice_dir`` on ``ref``).

Cell metadata (nbgrader's included), cell ids and notebook metadata are kept. ``build_student``
also copies the other files of the notebooks folder, among them the final project's template
(``notebooks/project/project_template.ipynb``, see ``docs/project.md``); a notebook in a subfolder
(the graded assignments, ``notebooks/assignments/``) gets the same student version, its links read
from its own folder. ``build_practice``
writes the committed practice edition and ``stale_practice`` says what in it is out of date.
"""
from __future__ import annotations

import ast
import copy
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Callable

from nbformat import NotebookNode

from .colab import student_badges
from .config import CourseConfig, config_path, load_config
from .exercises import strip_solutions
from .nbio import list_notebooks, nbgrader, read_notebook, source, write_notebook

QUIZ_ANSWER = re.compile(r"quiz answer", re.I)
PRACTICE_COMMAND = "python -m mllib course practice"
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_MD_LINK = re.compile(r"(\]\(\s*<?)([^)\s>]+)")          # [text](target ...) and ![alt](target ...)


# ----------------------------------------------------------------------------- one cell
def _quiz_comment_lines(lines: list[str]) -> set[int]:
    """Indices of full-line comments that name a quiz answer, with the comment lines continuing them."""
    drop, inside = set(), False
    for i, line in enumerate(lines):
        comment = line.lstrip().startswith("#")
        inside = comment and (inside or bool(QUIZ_ANSWER.search(line)))
        if inside:
            drop.add(i)
    return drop


def drop_quiz_answer_asserts(text: str, where: str = "cell") -> str:
    """``text`` (a code cell) without the ``assert`` statements that name a quiz answer, and
    without the comments that do (a full-line comment and the comment lines right after it).

    Any other line naming a quiz answer (a print, a variable, a comment at the end of a code
    line) raises a ValueError saying where: the student version must not show it, and only a
    whole assert or comment can go without changing what the cell does.
    """
    if not QUIZ_ANSWER.search(text):
        return text
    try:
        tree = ast.parse(text)
    except SyntaxError as err:
        raise ValueError(f"{where}: names a quiz answer but is not plain Python ({err.msg}); "
                         f"confirm quiz answers with an assert in a plain code cell") from None
    lines = text.split("\n")
    drop = _quiz_comment_lines(lines)
    for node in ast.walk(tree):
        if isinstance(node, ast.Assert):
            span = range(node.lineno - 1, node.end_lineno)
            if any(QUIZ_ANSWER.search(lines[i]) for i in span):
                drop.update(span)
    kept = [line for i, line in enumerate(lines) if i not in drop]
    for line in kept:
        if QUIZ_ANSWER.search(line):
            raise ValueError(f"{where}: line {line.strip()[:60]!r} names a quiz answer outside an assert or a "
                             f"comment line; the student version would show it: make it "
                             f"`assert ..., \"quiz answer N\"` or remove it")
    new = "\n".join(kept)
    try:
        ast.parse(new)
    except SyntaxError:
        raise ValueError(f"{where}: removing its quiz-answer assert leaves an empty block; "
                         f"put the assert at the top level of the cell") from None
    return new


def _is_figure(output: NotebookNode) -> bool:
    return any(key.startswith("image/") for key in output.get("data", {}))


def _figures_only(output: NotebookNode) -> NotebookNode:
    """A display output reduced to its images (and their plain-text alternative)."""
    out = copy.deepcopy(output)
    out.data = {k: v for k, v in out.data.items() if k.startswith("image/") or k == "text/plain"}
    if out.output_type == "execute_result":
        out.execution_count = None
    return out


def kept_outputs(cell: NotebookNode) -> list:
    """The outputs of a code cell that the student version keeps: the figures of a cell that is
    neither an exercise nor a check; nothing otherwise."""
    if nbgrader(cell):
        return []
    return [_figures_only(o) for o in cell.get("outputs", []) if _is_figure(o)]


def relink_markdown(text: str, relink: Callable[[str], str]) -> str:
    """``text`` with every Markdown link and image target passed through ``relink``."""
    return _MD_LINK.sub(lambda m: m.group(1) + relink(m.group(2)), text)


def student_version(nb: NotebookNode, name: str = "notebook", cfg: CourseConfig | None = None,
                    relink: Callable[[str], str] | None = None) -> NotebookNode:
    """A copy of ``nb`` as a student receives it (the rules are the module docstring's).

    ``cfg``: the badge cell opens the practice edition. ``relink``: maps each Markdown link
    target (see :func:`link_target`). Applying it to its own result changes nothing.
    """
    out = student_badges(nb, name, cfg) if cfg is not None else copy.deepcopy(nb)
    for i, cell in enumerate(out.cells):
        where = f"{name} cell {i}"
        if cell.cell_type in ("code", "markdown"):
            text = source(cell)
            new = strip_solutions(text, cell.cell_type, where=where)
            if cell.cell_type == "code":
                new = drop_quiz_answer_asserts(new, where)
            elif relink is not None:
                new = relink_markdown(new, relink)
            if new != text:
                cell.source = new
        if cell.cell_type == "code":
            cell.outputs = kept_outputs(cell)
            cell.execution_count = None
    return out


# ----------------------------------------------------------------------------- links
def link_target(target: str, src: Path, out: Path, cfg: CourseConfig | None = None) -> str:
    """Where a link of a notebook in ``src`` must point from its copy in ``out``.

    Web addresses, anchors and links to files inside ``src`` (copied along) stay. A link that
    leaves ``src`` (``../docs/glossary.md``) is rewritten relative to ``out`` when ``out`` lies in
    the same checkout (the parent of ``src``); for a build outside it, to the file on GitHub when
    the course is published, else relative to ``out`` on this machine.
    """
    if _SCHEME.match(target) or target.startswith("#"):
        return target
    path, hash_, anchor = target.partition("#")
    src, out = Path(src).resolve(), Path(out).resolve()
    absolute = Path(os.path.normpath(src / path))
    if absolute == src or src in absolute.parents:
        return target
    root = src.parent
    if cfg is not None and cfg.published and not (out == root or root in out.parents) and root in absolute.parents:
        new = f"https://github.com/{cfg.slug}/blob/{cfg.ref}/{absolute.relative_to(root).as_posix()}"
    else:
        new = Path(os.path.relpath(absolute, out)).as_posix()
    return new + hash_ + anchor


# ----------------------------------------------------------------------------- folders
def build_student(src: str | Path = "notebooks", out: str | Path = "build/student",
                  cfg: CourseConfig | None = None) -> list[Path]:
    """Write the student version of every notebook in ``src`` to ``out``; returns the notebooks written.

    ``cfg`` (default: the configuration of the checkout holding ``src``, else the package's) sets
    the badges' target. Other files of ``src`` (figures, small data files) are copied alongside,
    so relative paths keep working; links that leave ``src`` are rewritten (:func:`link_target`).
    Files are only rewritten when their contents change, and building twice, or building from an
    already-student folder, gives byte-identical files. The build is made in a temporary folder
    beside ``out`` and copied in only when every notebook built, so a failed build (a damaged
    notebook) leaves ``out`` as it was.
    """
    src, out = Path(src), Path(out)
    if not src.is_dir():
        raise FileNotFoundError(f"notebook folder not found: {src}")
    if src.resolve() == out.resolve():
        raise ValueError(f"out must differ from src ({src}): the student build never overwrites the solutions")
    if cfg is None:
        cfg = load_config(config_path(src.resolve().parent))
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out.name}-", dir=out.parent) as tmp:
        names = _build_student_into(src, Path(tmp), out, cfg)   # a failure here leaves ``out`` as it was
        _copy_changed(Path(tmp), out)
    return [out / name for name in names]


def _copy_changed(built: Path, out: Path) -> None:
    """Copy every file of ``built`` to the same place under ``out`` unless it already holds those bytes."""
    out.mkdir(parents=True, exist_ok=True)
    for rel, data in _files(built).items():
        target = out / rel
        if not target.is_file() or target.read_bytes() != data:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)


def _build_student_into(src: Path, dest: Path, out: Path, cfg: CourseConfig) -> list[str]:
    """Write the student build of ``src`` into the empty folder ``dest``, its links made for ``out``;
    returns the names of the top-level notebooks written."""
    def relink(target: str) -> str:
        return link_target(target, src, out, cfg)

    written = []
    for path in list_notebooks(src):
        write_notebook(student_version(read_notebook(path), path.name, cfg, relink), dest / path.name)
        written.append(path.name)
    for path in sorted(src.rglob("*")):
        rel = path.relative_to(src)
        if path.suffix == ".ipynb" and path.parent == src:
            continue
        if any(part.startswith(".") or part == "__pycache__" for part in rel.parts) or rel == Path("conftest.py"):
            continue                                  # conftest.py: the book's nbval hooks, not course material
        if path.is_file() and path.suffix == ".ipynb":   # a notebook in a subfolder (assignments/, project/)
            write_notebook(student_version(read_notebook(path), path.name, cfg, _relink_from(rel.parent, relink)),
                           dest / rel)
        elif path.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, dest / rel)
    return written


def _relink_from(folder: Path, relink: Callable[[str], str]) -> Callable[[str], str]:
    """``relink`` (for targets written from ``src``) for a notebook in ``src/folder``: its targets
    are read from ``folder`` and the rewritten ones made relative to ``out/folder`` again."""
    def relink_sub(target: str) -> str:
        if _SCHEME.match(target) or target.startswith("#"):
            return target
        path, hash_, anchor = target.partition("#")
        from_src = Path(os.path.normpath(folder / path)).as_posix() + hash_ + anchor
        new = relink(from_src)
        if new == from_src:          # inside the notebooks folder, copied along: the link stays
            return target
        if _SCHEME.match(new):       # the file on GitHub
            return new
        new_path, hash_, anchor = new.partition("#")
        return Path(os.path.relpath(new_path, folder)).as_posix() + hash_ + anchor

    return relink_sub


def _files(folder: Path) -> dict[str, bytes]:
    """relative POSIX path -> bytes of every file under ``folder`` (hidden files and caches left out)."""
    found = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if path.is_file() and not any(p.startswith(".") or p == "__pycache__" for p in rel.parts):
            found[rel.as_posix()] = path.read_bytes()
    return found


def _practice_paths(root: Path, cfg: CourseConfig | None) -> tuple[Path, Path, CourseConfig]:
    root = Path(root)
    cfg = cfg or load_config(config_path(root))
    src = root / cfg.notebooks_dir
    if not src.is_dir():
        raise FileNotFoundError(f"the book's folder {src} is missing: run this from the repository root "
                                f"(or pass --root)")
    return src, root / cfg.practice_dir, cfg


def _expected_practice(src: Path, practice: Path, cfg: CourseConfig) -> dict[str, bytes]:
    """The practice edition's files as ``build_student`` makes them, built in a temporary folder
    beside ``practice`` (so its links are the ones ``practice`` gets)."""
    practice.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{practice.name}-", dir=practice.parent) as tmp:
        build_student(src, tmp, cfg)
        return _files(Path(tmp))


def stale_practice(root: str | Path = ".", cfg: CourseConfig | None = None) -> list[str]:
    """The files of the practice edition that differ from the book: ``<path> (changed|missing|
    not from the book)``, paths relative to the repository root; empty when it is current."""
    src, practice, cfg = _practice_paths(Path(root), cfg)
    expected = _expected_practice(src, practice, cfg)
    present = _files(practice) if practice.is_dir() else {}
    stale = []
    for rel in sorted(set(expected) | set(present)):
        where = f"{cfg.practice_dir}/{rel}"
        if rel not in present:
            stale.append(f"{where} (missing)")
        elif rel not in expected:
            stale.append(f"{where} (not from the book)")
        elif present[rel] != expected[rel]:
            stale.append(f"{where} (changed)")
    return stale


def build_practice(root: str | Path = ".", cfg: CourseConfig | None = None) -> list[Path]:
    """Write the practice edition (``<root>/<practice_dir>``) from the book; returns the files
    written or removed. Files the book no longer makes are removed; others are left alone when
    already current."""
    src, practice, cfg = _practice_paths(Path(root), cfg)
    expected = _expected_practice(src, practice, cfg)
    present = _files(practice) if practice.is_dir() else {}
    changed = []
    for rel, data in expected.items():
        if present.get(rel) != data:
            path = practice / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            changed.append(path)
    for rel in sorted(set(present) - set(expected)):
        (practice / rel).unlink()
        changed.append(practice / rel)
    return changed
