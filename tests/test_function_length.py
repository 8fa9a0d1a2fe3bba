"""Every function of the taught core, the taught extensions and the trainers fits on a screen: at most
60 lines from its ``def`` to its last line, docstring included (decorators not counted).

The modules are the ones the package map (``mllib/__init__.py``) lists under "Taught core" and
"Taught extensions"; a folder there (``tasks``, ``rl``) counts with every file in it.
(``tests/test_structure.py`` counts code lines only, docstrings left out, for the taught core.)
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

import mllib
from test_package_map import mapped_modules

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "mllib"
TAUGHT = ("Taught core", "Taught extensions")
MAX_LINES = 60
# Over the limit in a file another change owns today: allowed up to this length, not longer, until it
# is split there (then delete the entry). Key: "path:function".
PENDING: dict[str, int] = {}


def taught_files(doc: str = mllib.__doc__, package: Path = PACKAGE) -> list[Path]:
    """The ``.py`` files of the modules the map lists in the taught groups (a package: all its files)."""
    files = []
    for name, group in sorted(mapped_modules(doc).items()):
        if group in TAUGHT:
            folder = package / name
            files += sorted(folder.rglob("*.py")) if folder.is_dir() else [package / f"{name}.py"]
    return [f for f in files if f.exists()]


def function_lengths(source: str) -> list[tuple[str, int, int]]:
    """``(name, first line, lines)`` of every function and method in ``source``, nested ones too;
    lines = ``end_lineno - lineno + 1`` (``lineno`` is the ``def`` line: decorators are left out)."""
    return [(node.name, node.lineno, node.end_lineno - node.lineno + 1) for node in ast.walk(ast.parse(source))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]


def too_long(files: list[Path], limit: int = MAX_LINES, pending: dict[str, int] = PENDING,
             root: Path = ROOT) -> list[str]:
    """One line per function over ``limit`` lines: ``path:line name is N lines (limit L)``."""
    found = []
    for path in files:
        where = path.relative_to(root).as_posix()
        for name, line, length in function_lengths(path.read_text()):
            if length > max(limit, pending.get(f"{where}:{name}", 0)):
                found.append(f"{where}:{line} {name} is {length} lines (limit {limit})")
    return found


def test_the_taught_files_are_the_map_s_taught_groups():
    files = {f.relative_to(PACKAGE).as_posix() for f in taught_files()}
    assert {"inner.py", "algorithms.py", "sine_experiments.py", "learned_optimizer.py", "incontext.py",
            "baselines.py", "rl/maml.py", "tasks/omniglot.py"} <= files
    assert not files & {"training_loop.py", "timing.py", "cli/train.py", "course/__init__.py"}


def test_a_planted_long_function_is_named_with_its_file_and_length(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(60))
    (tmp_path / "planted.py").write_text(f"@staticmethod\ndef short():\n    pass\n\n\ndef planted():\n{body}\n")
    problems = too_long([tmp_path / "planted.py"], root=tmp_path)
    assert problems == ["planted.py:6 planted is 61 lines (limit 60)"]
    assert too_long([tmp_path / "planted.py"], limit=61, root=tmp_path) == []
    assert too_long([tmp_path / "planted.py"], pending={"planted.py:planted": 61}, root=tmp_path) == []


def test_decorators_are_not_counted_and_methods_are():
    source = "class A:\n    @property\n    @staticmethod\n    def f():\n        return 1\n"
    assert function_lengths(source) == [("f", 4, 2)]


@pytest.mark.parametrize("path", taught_files(), ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_every_taught_function_is_at_most_60_lines(path):
    problems = too_long([path])
    assert not problems, "split these functions (private helpers, one job each):\n" + "\n".join(problems)
