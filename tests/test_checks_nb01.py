"""Check of notebook 01 (learning bias): passes on correct fits, fails on plausible mistakes."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mllib import checks


pytestmark = pytest.mark.usefixtures("lenient_checks")


def fit_lstsq(x, y, degree):
    design = torch.stack([x ** d for d in range(degree + 1)], 1)
    return torch.linalg.lstsq(design, y[:, None]).solution[:, 0]


def fit_normal_equations(x, y, degree):
    design = np.vander(x.numpy(), degree + 1, increasing=True)
    return np.linalg.solve(design.T @ design, design.T @ y.numpy())


def fit_numpy_order(x, y, degree):
    return torch.from_numpy(np.polyfit(x.numpy(), y.numpy(), degree))


def fit_column(x, y, degree):
    return fit_lstsq(x, y, degree)[:, None]


def fit_one_short(x, y, degree):
    design = torch.stack([x ** d for d in range(degree)] or [torch.ones_like(x)], 1)
    return torch.linalg.lstsq(design, y[:, None]).solution[:, 0]


def fit_no_constant(x, y, degree):
    design = torch.stack([x ** d for d in range(1, degree + 2)], 1)
    return torch.linalg.lstsq(design, y[:, None]).solution[:, 0]


def unfinished(x, y, degree):
    raise NotImplementedError()


@pytest.mark.parametrize("fn", [fit_lstsq, fit_normal_equations])
def test_correct_fits_pass(fn, capsys):
    result = checks.check_polynomial_fit(fn)
    assert result and result.status == "passed", result.message
    assert f"✅ polynomial_fit: passed {result.total}/{result.total}" in capsys.readouterr().out


@pytest.mark.parametrize("fn, words", [
    (fit_numpy_order, "highest power first"),
    (fit_column, "1-D tensor"),
    (fit_one_short, "d + 1 coefficients"),
    (fit_no_constant, "design matrix"),
])
def test_mistakes_fail_with_a_hint(fn, words):
    result = checks.check_polynomial_fit(fn)
    assert not result and result.status == "failed"
    assert words in result.message


def test_not_implemented_and_strict(monkeypatch):
    assert checks.check_polynomial_fit(unfinished).status == "not_implemented"
    monkeypatch.setenv(checks.STRICT_ENV, "1")
    with pytest.raises(AssertionError, match="polynomial_fit"):
        checks.check_polynomial_fit(fit_numpy_order)
