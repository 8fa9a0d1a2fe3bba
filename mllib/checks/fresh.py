"""An IPython extension for graders that run a submission in one kernel (nbgrader): fresh checks.

A submission can rebind the checks in its kernel (``checks.hidden_tests = lambda *a: None``) so
that a check cell raises nothing and nbgrader gives its points. Loaded in the grading kernel::

    # nbgrader_config.py
    c.Execute.extra_arguments = ["--IPKernelApp.extensions=mllib.checks.fresh"]

this extension runs before every cell that calls ``checks.<something>(...)`` at its top level:
it drops every ``mllib.checks`` module from ``sys.modules``, imports a fresh copy and binds it to
the name ``checks``, so the cell's checks are the package's, not the submission's. It lives in
the same process as the submission, which can still remove it: see "Grading guarantees and their
limits" in ``docs/instructors.md``. ``python -m mllib course grade`` does the same without the
extension (each graded cell starts with the fresh import).
"""
from __future__ import annotations

import ast
import importlib
import sys
from types import ModuleType

PACKAGE = "mllib.checks"


def fresh_checks() -> ModuleType:
    """A newly imported ``mllib.checks`` (and all its modules), whatever was patched before."""
    for name in [n for n in sys.modules if n == PACKAGE or n.startswith(PACKAGE + ".")]:
        sys.modules.pop(name, None)
    return importlib.import_module(PACKAGE)


def calls_checks(text: str) -> bool:
    """Whether a cell's source calls ``checks.<name>(...)`` as a top-level statement."""
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return False
    return any(isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)
               and isinstance(node.value.func, ast.Attribute) and isinstance(node.value.func.value, ast.Name)
               and node.value.func.value.id == "checks" for node in tree.body)


def load_ipython_extension(ipython) -> None:
    """Register the fresh import before every cell that calls the checks."""
    fresh, calls, namespace = fresh_checks, calls_checks, ipython.user_ns   # kept even if the module is patched

    def before_cell(info) -> None:
        if calls(getattr(info, "raw_cell", "") or ""):
            namespace["checks"] = fresh()

    ipython.events.register("pre_run_cell", before_cell)


__all__ = ["fresh_checks", "calls_checks", "load_ipython_extension"]
