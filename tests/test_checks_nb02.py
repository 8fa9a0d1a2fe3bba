"""Checks of notebook 02 (task sampling): pass on the reference, fail on plausible mistakes."""
from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from mllib import checks


pytestmark = pytest.mark.usefixtures("lenient_checks")


def split_right(num_examples, shots, query, generator):
    order = torch.randperm(num_examples, generator=generator)
    return order[:shots], order[shots:shots + query]


def split_other_route(num_examples, shots, query, generator):
    # a different but correct answer: random keys, sorted; query taken from the end
    order = torch.rand(num_examples, generator=generator).argsort()
    return order[:shots], order[num_examples - query:]


def split_list(num_examples, shots, query, generator):
    order = torch.randperm(num_examples, generator=generator).tolist()
    return order[:shots], order[shots:shots + query]


def split_int32(num_examples, shots, query, generator):
    a, b = split_right(num_examples, shots, query, generator)
    return a.int(), b.int()


def split_numpy_global(num_examples, shots, query, generator):
    order = torch.from_numpy(np.random.permutation(num_examples))
    return order[:shots], order[shots:shots + query]


def split_global_rng(num_examples, shots, query, generator):
    order = torch.randperm(num_examples)
    return order[:shots], order[shots:shots + query]


def split_independent_draws(num_examples, shots, query, generator):
    a = torch.randperm(num_examples, generator=generator)[:shots]
    b = torch.randperm(num_examples, generator=generator)[:query]
    return a, b


def split_not_random(num_examples, shots, query, generator):
    order = torch.arange(num_examples)
    return order[:shots], order[shots:shots + query]


def split_float(num_examples, shots, query, generator):
    a, b = split_right(num_examples, shots, query, generator)
    return a.float(), b.float()


def split_wrong_size(num_examples, shots, query, generator):
    order = torch.randperm(num_examples, generator=generator)
    return order[:shots], order[shots:]


def unfinished(*args):
    # YOUR CODE HERE
    raise NotImplementedError()


@pytest.mark.parametrize("fn", [split_right, split_other_route])
def test_support_query_split_passes_correct_answers(fn, capsys):
    start = time.perf_counter()
    result = checks.check_support_query_split(fn)
    assert result and result.status == "passed" and result.passed == result.total == 15
    assert time.perf_counter() - start < 1.0
    assert "✅ support_query_split: passed 15/15" in capsys.readouterr().out


@pytest.mark.parametrize("fn, words", [
    (split_global_rng, "drew from torch's global generator"),
    (split_numpy_global, "drew from NumPy's global generator"),
    (split_independent_draws, "share index"),
    (split_not_random, "never drew from the generator it was given"),
    (split_float, "integers"),
    (split_int32, "dtype torch.int32"),
    (split_list, "got a list"),
    (split_wrong_size, "expected 15"),
])
def test_support_query_split_fails_plausible_mistakes(fn, words, capsys):
    result = checks.check_support_query_split(fn)
    assert not result and result.status == "failed"
    out = capsys.readouterr().out
    assert words in out and "Hint:" in out and "Traceback" not in out


def test_support_query_split_overlap_gets_specific_hint(capsys):
    checks.check_support_query_split(split_independent_draws)
    assert "one random choice that serves both sets" in capsys.readouterr().out


def test_support_query_split_not_implemented_and_strict(capsys, monkeypatch):
    result = checks.check_support_query_split(unfinished)
    assert result.status == "not_implemented" and "⏳ support_query_split" in capsys.readouterr().out
    monkeypatch.setenv(checks.STRICT_ENV, "1")
    with pytest.raises(AssertionError, match="global generator"):
        checks.check_support_query_split(split_global_rng)


def test_label_remap_check_is_the_one_notebook_02_uses(capsys):
    def remap(labels, classes=None):
        order = list(dict.fromkeys(labels.tolist())) if classes is None else classes.tolist()
        return torch.tensor([order.index(x) for x in labels.tolist()])
    assert checks.check_label_remap(remap)
