"""Load a script of the repository (``benchmarks/*.py``, ``scripts/*.py``) as a module, for its tests.

The scripts are run as ``python benchmarks/x.py`` and are not part of the package, so tests import
them by path: ``load_script("benchmarks/paper_table.py")``. ``tests/`` is on ``sys.path`` under pytest.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


def load_script(relative_path: str) -> ModuleType:
    """The module of ``ROOT / relative_path``, executed afresh (a new module object on every call)."""
    path = ROOT / relative_path
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
