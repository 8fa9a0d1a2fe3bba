"""A pytest plugin: while nbval runs a notebook, every figure it shows is checked; a bad one fails its cell.

``notebooks/conftest.py`` imports these hooks, so ``pytest --nbval-lax notebooks/`` (``make test``)
uses them with no extra flag; elsewhere enable the plugin with ``-p mllib.course.nbval_figures``.

At configuration, the plugin writes an IPython profile that installs
:func:`mllib.course.figures.install` at kernel start and points ``IPYTHONDIR`` and
``MLLIB_FIGURE_RECORD`` at it (nbval's kernel inherits the environment). After each notebook
cell has run, it reads the problems that cell's figures recorded and, if there are any, turns
the cell's passing report into a failure that lists them (``mllib.course.figures`` has the rules).
``MLLIB_FIGURE_CHECK=0`` turns the plugin off.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from mllib.course.figures import RECORD_ENV, ipython_dir, read_records

SWITCH_ENV = "MLLIB_FIGURE_CHECK"
_state: dict = {}


def _enabled() -> bool:
    return os.environ.get(SWITCH_ENV, "1") != "0"


def pytest_configure(config):
    if not _enabled() or _state:
        return
    folder = Path(tempfile.mkdtemp(prefix="mllib-figure-check-"))
    _state.update(folder=folder, record=folder / "figures.jsonl", offset=0,
                  saved={k: os.environ.get(k) for k in ("IPYTHONDIR", RECORD_ENV)})
    os.environ["IPYTHONDIR"] = str(ipython_dir(folder / "ipython"))
    os.environ[RECORD_ENV] = str(_state["record"])


def pytest_unconfigure(config):
    if not _state:
        return
    for key, value in _state["saved"].items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    shutil.rmtree(_state["folder"], ignore_errors=True)
    _state.clear()


def _is_notebook_cell(item) -> bool:
    return type(item).__name__ == "IPyNbCell"      # nbval's test item: one notebook cell


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    if not _state or call.when != "call" or not _is_notebook_cell(item):
        return
    records, _state["offset"] = read_records(_state["record"], _state["offset"])
    report = outcome.get_result()
    if records and report.passed:
        lines = [problem for record in records for problem in record["problems"]]
        report.outcome = "failed"
        report.longrepr = ("figure check (mllib.course.figures) failed for this cell:\n  - "
                           + "\n  - ".join(lines))
