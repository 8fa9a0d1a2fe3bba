"""Reading and writing notebooks byte-for-byte the way Jupyter does, and small cell helpers.

Notebooks are read with nbformat's plain JSON reader (no validation, no upgrade, no cell ids
added) and written with its writer (one-space indent, sorted keys, sources split in lines,
trailing newline), so writing an unchanged notebook reproduces the file exactly.
"""
from __future__ import annotations

import json
from pathlib import Path

from nbformat import NotebookNode
from nbformat.v4 import nbjson


def read_notebook(path: str | Path) -> NotebookNode:
    """The notebook at ``path``; cell sources are plain strings.

    ``FileNotFoundError`` when it is missing; ``ValueError`` naming ``path`` (and the line and
    column of a JSON error) when it is not UTF-8 text holding a notebook's JSON object.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"notebook not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path} is not a notebook: not UTF-8 text (byte {err.start}); "
                         f"restore it from git or re-save it in Jupyter") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not a valid notebook: invalid JSON at line {err.lineno} column "
                         f"{err.colno} ({err.msg}); restore it from git or re-save it in Jupyter") from None
    if not isinstance(data, dict) or not isinstance(data.get("cells"), list):
        raise ValueError(f"{path} is not a notebook: its JSON is not an object with a 'cells' list")
    return nbjson.to_notebook(data)


def notebook_text(nb: NotebookNode) -> str:
    """The file contents Jupyter would write for ``nb``."""
    text = nbjson.writes(nb)
    return text if text.endswith("\n") else text + "\n"


def write_notebook(nb: NotebookNode, path: str | Path) -> bool:
    """Write ``nb`` to ``path`` unless the file already holds exactly that; True when written."""
    path = Path(path)
    text = notebook_text(nb)
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return True


def list_notebooks(paths: str | Path | list) -> list[Path]:
    """Notebooks named by ``paths`` (files, or folders searched non-recursively), sorted, no checkpoints."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found += sorted(q for q in p.glob("*.ipynb") if not q.name.startswith("."))
        elif p.suffix == ".ipynb" and p.is_file():
            found.append(p)
        else:
            raise FileNotFoundError(f"not a notebook or a folder: {p}")
    return found


def source(cell: NotebookNode) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def tags(cell: NotebookNode) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def nbgrader(cell: NotebookNode) -> dict:
    """The cell's nbgrader metadata ({} when absent)."""
    return dict(cell.get("metadata", {}).get("nbgrader", {}))


def is_solution_cell(cell: NotebookNode) -> bool:
    return bool(nbgrader(cell).get("solution"))


def is_check_cell(cell: NotebookNode) -> bool:
    return cell.get("cell_type") == "code" and bool(nbgrader(cell).get("grade"))
