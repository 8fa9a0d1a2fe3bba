"""Checks of notebook 05 (prototypes; the CI exercise uses check_confidence_interval, tested in test_checks)."""
from __future__ import annotations

import pytest
import torch

from mllib import checks

from conftest import notebook_reference


pytestmark = pytest.mark.usefixtures("lenient_checks")


def protos_right(embeddings, labels, ways):
    one_hot = torch.nn.functional.one_hot(labels, ways).to(embeddings.dtype)
    return one_hot.T @ embeddings / one_hot.sum(0)[:, None]


def protos_sum(embeddings, labels, ways):
    return torch.stack([embeddings[labels == c].sum(0) for c in range(ways)])


def protos_transposed(embeddings, labels, ways):
    return protos_right(embeddings, labels, ways).T


def protos_in_order_of_appearance(embeddings, labels, ways):  # ignores the label values
    order = list(dict.fromkeys(labels.tolist()))
    return torch.stack([embeddings[labels == c].mean(0) for c in order])


def unfinished(embeddings, labels, ways):
    raise NotImplementedError()


def test_reference_is_the_class_mean():
    emb = torch.tensor([[1.0, 0.0], [3.0, 2.0], [5.0, 5.0]], dtype=torch.float64)
    labels = torch.tensor([1, 1, 0])
    want = torch.tensor([[5.0, 5.0], [2.0, 1.0]], dtype=torch.float64)
    assert torch.equal(notebook_reference("prototypes")(emb, labels, 2), want)


def test_passes_a_correct_implementation(capsys):
    result = checks.check_prototypes(protos_right)
    assert result and result.passed == result.total
    assert "✅ prototypes" in capsys.readouterr().out


@pytest.mark.parametrize("fn,words", [(protos_sum, "a prototype is their mean"),
                                      (protos_transposed, "not [D, ways]"),
                                      (protos_in_order_of_appearance, "average of its support embeddings")])
def test_fails_plausible_mistakes_with_a_hint(fn, words, capsys):
    result = checks.check_prototypes(fn)
    assert not result and result.status == "failed"
    assert words in capsys.readouterr().out


def test_not_implemented_and_strict_mode(capsys, monkeypatch):
    result = checks.check_prototypes(unfinished)
    assert result.status == "not_implemented" and "⏳ prototypes" in capsys.readouterr().out
    monkeypatch.setenv(checks.STRICT_ENV, "1")
    with pytest.raises(AssertionError):
        checks.check_prototypes(protos_sum)
