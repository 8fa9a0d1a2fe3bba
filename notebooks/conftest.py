"""pytest over the notebooks (nbval, as in ``make test``): check every figure a notebook shows.

The hooks live in ``mllib.course.nbval_figures``; importing them here enables them for any
pytest run over this folder. ``MLLIB_FIGURE_CHECK=0`` turns the check off.
"""
from mllib.course.nbval_figures import pytest_configure, pytest_runtest_makereport, pytest_unconfigure  # noqa: F401
