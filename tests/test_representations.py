"""Linear CKA and the per-block representations used by notebook 06's feature-reuse measurement."""
import pytest
import torch

from mllib.models import ConvLearner, params_of
from mllib.representations import adaptation_cka, block_outputs, linear_cka


def _cka_by_definition(a, b):
    """||Bc^T Ac||_F^2 / (||Ac^T Ac||_F ||Bc^T Bc||_F), straight from the formula (feature-space form)."""
    a, b = a.double() - a.double().mean(0), b.double() - b.double().mean(0)
    return float((b.T @ a).norm() ** 2 / ((a.T @ a).norm() * (b.T @ b).norm()))


def test_cka_matches_its_definition():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(30, 7, generator=g), torch.randn(30, 11, generator=g)
    b = b + a @ torch.randn(7, 11, generator=g)
    assert linear_cka(a, b) == pytest.approx(_cka_by_definition(a, b), rel=1e-10)


def test_cka_invariances_and_range():
    g = torch.Generator().manual_seed(1)
    a = torch.randn(40, 6, generator=g)
    rotation, _ = torch.linalg.qr(torch.randn(6, 6, generator=g))
    assert linear_cka(a, 2.5 * a @ rotation + 3.0) == pytest.approx(1.0, abs=1e-12)
    independent = linear_cka(a, torch.randn(40, 6, generator=g))
    assert 0.0 <= independent < 0.5


def test_cka_is_not_fooled_by_a_shared_positive_mean():
    """Two unrelated non-negative (ReLU-like) representations: cosine similarity is high, CKA is not."""
    g = torch.Generator().manual_seed(2)
    a, b = torch.rand(200, 50, generator=g) + 1, torch.rand(200, 50, generator=g) + 1
    cosine = torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0)
    assert cosine > 0.9 and linear_cka(a, b) < 0.4


def test_cka_refuses_bad_shapes_and_constants():
    with pytest.raises(ValueError, match="same N"):
        linear_cka(torch.zeros(3, 2), torch.zeros(4, 2))
    with pytest.raises(ValueError, match="constant"):
        linear_cka(torch.ones(3, 2), torch.randn(3, 2))


def test_block_outputs_match_the_model_and_adaptation_cka_is_one_without_change():
    torch.manual_seed(0)
    model = ConvLearner(ways=3, filters=4)
    params, x = params_of(model), torch.rand(6, 1, 28, 28)
    outputs = block_outputs(model, params, x)
    assert [o.shape[1] for o in outputs] == [4 * 14 * 14, 4 * 7 * 7, 4 * 3 * 3, 4]
    assert torch.allclose(outputs[-1], model.features(x), atol=1e-6)
    assert adaptation_cka(model, params, params, x) == pytest.approx([1.0] * 4)
    moved = {k: v + 0.5 * torch.randn_like(v) if k.startswith("blocks.3") else v for k, v in params.items()}
    cka = adaptation_cka(model, params, moved, x)
    assert cka[:3] == pytest.approx([1.0] * 3) and cka[3] < 0.999
