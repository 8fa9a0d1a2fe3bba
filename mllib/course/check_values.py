"""The visible checks' fixed expected values, generated from the instructor's material.

The installed package holds no reference solution. The visible check of an exercise compares the
learner's results with values stored in ``mllib/checks/fixed_values.json`` (package data), which this module
writes from two instructor-only sources:

* the **graded references**: the functions ``<exercise>_reference`` defined inside the
  ``### BEGIN HIDDEN TESTS`` region of each check cell of the instructor notebooks
  (:func:`hidden_references` executes that region without its ``checks.hidden_tests`` call);
* the **known mistakes**: ``MISTAKES`` of ``instructor/known_mistakes.py``.

``python -m mllib course check-values`` reports whether the stored values are current;
``--write`` regenerates them (after changing a reference, a mistake or an exercise's cases).
"""
from __future__ import annotations

import ast
import importlib.util
import json
import re
from pathlib import Path
from typing import Callable

from nbformat import NotebookNode

from mllib.checks.exercise import VALUES_PATH, all_stored_values

from .exercises import find_exercises, hidden_region
from .nbio import list_notebooks, read_notebook, source
MISTAKES_IN_REPOSITORY = Path("instructor") / "known_mistakes.py"
_JSON_BETWEEN_COMMAS = re.compile(r'(?:"(?:\\.|[^"\\])*"|[^",])+')  # a comma inside a string stays
_HIDDEN_CALL = re.compile(r"checks\.hidden_tests\(\s*['\"](\w+)['\"]")


def notebook_namespace(nb: NotebookNode) -> dict:
    """A namespace holding every top-level import of the notebook's code cells (and ``checks``)."""
    namespace: dict = {}
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        try:
            tree = ast.parse("\n".join("" if re.match(r"\s*[%!]", line) else line for line in source(cell).split("\n")))
        except SyntaxError:
            continue
        imports = [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
        if imports:
            exec(compile(ast.Module(body=imports, type_ignores=[]), "<imports>", "exec"), namespace)  # noqa: S102
    from mllib import checks
    namespace["checks"] = checks
    return namespace


def hidden_references(nb: NotebookNode, name: str = "notebook") -> dict[str, Callable]:
    """``{exercise: reference}`` from the hidden regions of ``nb``'s check cells.

    A region defines ``<exercise>_reference`` and calls ``checks.hidden_tests("<exercise>", ...)``;
    the region runs here without that call, in a namespace of the notebook's imports.
    """
    namespace = notebook_namespace(nb)
    references: dict[str, Callable] = {}
    for ex in find_exercises(nb):
        if ex.check_index is None:
            continue
        region = hidden_region(source(nb.cells[ex.check_index]))
        exercise = _HIDDEN_CALL.search(region)
        if not exercise or f"def {exercise.group(1)}_reference" not in region:
            continue
        tree = ast.parse(region)
        body = [node for node in tree.body if not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Call))]
        local = dict(namespace)
        exec(compile(ast.Module(body=body, type_ignores=[]), f"<{name} hidden tests>", "exec"), local)  # noqa: S102
        references[exercise.group(1)] = local[f"{exercise.group(1)}_reference"]
    return references


def load_mistakes(root: str | Path = ".") -> dict[str, dict[str, Callable]]:
    """``MISTAKES`` of ``<root>/instructor/known_mistakes.py``."""
    path = Path(root) / MISTAKES_IN_REPOSITORY
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: the known mistakes are instructor material, kept in the "
                                f"course repository (run this from its root, or pass --root)")
    spec = importlib.util.spec_from_file_location("_mllib_known_mistakes", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.MISTAKES


def compute_all(root: str | Path = ".") -> dict:
    """The stored values of every exercise with fixed values, from ``root``'s notebooks and mistakes."""
    from mllib.checks.exercise import SPECS, compute_values

    root = Path(root)
    references: dict[str, Callable] = {}
    for path in list_notebooks(root / "notebooks"):
        references.update(hidden_references(read_notebook(path), path.name))
    mistakes = load_mistakes(root)
    values = {}
    for name, spec in sorted(SPECS.items()):
        if not spec.fixed:
            continue
        if name not in references:
            raise ValueError(f"no notebook defines {name}_reference in the hidden tests of its check cell")
        values[name] = compute_values(spec, references[name], mistakes.get(name, {}))
    return values


def _rounded(value):
    """``value`` with every float rounded to 10 significant digits (far inside the checks' tolerances)."""
    if isinstance(value, float):
        return float(f"{value:.10g}")
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


def render(values: dict, width: int = 100) -> str:
    """The text of ``mllib/checks/fixed_values.json``: compact JSON, keys sorted, floats rounded to 10
    significant digits, lines wrapped after commas that stand outside strings."""
    text = json.dumps(_rounded(values), separators=(",", ":"), sort_keys=True, allow_nan=False)
    lines, line = [], ""
    for piece in _JSON_BETWEEN_COMMAS.findall(text):
        if line and len(line) + len(piece) + 2 > width:
            lines.append(line + ",")
            line = piece
        else:
            line = f"{line},{piece}" if line else piece
    lines.append(line)
    return "\n".join(lines) + "\n"


def check_values(root: str | Path = ".", write: bool = False) -> bool:
    """True when the stored values are current; with ``write``, regenerate them when they are not."""
    text = render(compute_all(root))
    current = VALUES_PATH.read_text(encoding="utf-8") if VALUES_PATH.is_file() else ""
    if text == current:
        return True
    if write:
        VALUES_PATH.write_text(text, encoding="utf-8")
        all_stored_values.cache_clear()
    return False


__all__ = ["hidden_region", "hidden_references", "notebook_namespace", "load_mistakes", "compute_all", "render",
           "check_values", "VALUES_PATH"]
