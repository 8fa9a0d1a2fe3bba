"""Shared fixtures.

* ``omniglot`` (session): the real Omniglot when ``MLLIB_DATA`` is set (cache in ``MLLIB_CACHE`` or
  the default), else a synthetic Omniglot written in the upstream zip layout into a temporary
  folder and loaded through the same loader. Synthetic data reuses real character names (see
  ``mllib.data.synthetic``), so splits work on both; check ``omniglot.complete`` for the real set.
* ``synthetic_omniglot_root`` (session): the folder holding the synthetic ``images_background.zip``
  and ``images_evaluation.zip`` (about 160 characters x 20 drawers).
* ``lenient_checks`` (function): the exercise checks print verdicts instead of raising and record
  nothing (``MLLIB_CHECKS_STRICT=0``, ``MLLIB_CHECKS_RECORD`` unset), as a learner sees them.
* ``cli_env`` (session): environment variables for a ``python -m mllib`` subprocess that reads the
  synthetic Omniglot (``MLLIB_DATA``) with its cache already built (``MLLIB_CACHE``), without
  progress bars (``CI``).
* ``MLLIB_DATA_CUSTOM=1`` for the whole session: the synthetic zips are custom copies of Omniglot,
  which the loader refuses otherwise (tests of that check unset it).
* ``MLLIB_ALLOW_PARTIAL_DATA=1`` for the whole session: the synthetic Omniglot (and the subsets some
  tests build) lacks most alphabets, which ``train``, ``eval`` and ``publish`` refuse otherwise
  (``mllib.data.check_split_complete``; tests of that check unset it).
* ``one_thread`` (module): torch on one intra-op thread for the module's tests, then restored
  (small nets run faster on one thread, and much faster when the 2 cores are shared).
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from mllib.data import CUSTOM_ENV, PARTIAL_ENV, load_omniglot, write_synthetic_omniglot

os.environ.setdefault(CUSTOM_ENV, "1")
os.environ.setdefault(PARTIAL_ENV, "1")


@pytest.fixture(scope="session")
def synthetic_omniglot_root(tmp_path_factory):
    return write_synthetic_omniglot(tmp_path_factory.mktemp("synthetic_omniglot"))


@pytest.fixture(scope="session")
def omniglot(request, tmp_path_factory):
    if os.environ.get("MLLIB_DATA"):
        return load_omniglot(progress=False)
    root = request.getfixturevalue("synthetic_omniglot_root")
    return load_omniglot(root, cache_dir=tmp_path_factory.mktemp("omniglot_cache"), progress=False)


@pytest.fixture(scope="session")
def cli_env(synthetic_omniglot_root, tmp_path_factory):
    cache = tmp_path_factory.mktemp("cli_cache")
    load_omniglot(synthetic_omniglot_root, cache_dir=cache, progress=False)  # built once, here
    root = Path(__file__).resolve().parent.parent
    return {**os.environ, "MLLIB_DATA": str(synthetic_omniglot_root), "MLLIB_CACHE": str(cache), "CI": "1",
            "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]),
            PARTIAL_ENV: "1"}


@pytest.fixture(scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def lenient_checks(monkeypatch):
    from mllib import checks
    monkeypatch.setenv(checks.STRICT_ENV, "0")            # pytest itself would make the checks strict
    monkeypatch.delenv(checks.NBGRADER_ENV, raising=False)
    monkeypatch.delenv(checks.RECORD_ENV, raising=False)


_NOTEBOOK_REFERENCES: dict = {}


def notebook_reference(exercise: str):
    """The graded reference of ``exercise``: ``<exercise>_reference`` defined in the hidden tests of
    its check cell in the instructor notebooks (the installed package holds none)."""
    if not _NOTEBOOK_REFERENCES:
        from mllib.course.check_values import hidden_references
        from mllib.course.nbio import list_notebooks, read_notebook

        notebooks = Path(__file__).resolve().parents[1] / "notebooks"
        for path in list_notebooks(notebooks):
            _NOTEBOOK_REFERENCES.update(hidden_references(read_notebook(path), path.name))
    return _NOTEBOOK_REFERENCES[exercise]
