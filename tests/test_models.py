"""Models: shapes, parameter dicts, and the elementary batch norm against torch's own."""
import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from mllib.models import BatchNorm, ConvLearner, SineMLP, head_names, load_into_model, params_of


pytestmark = pytest.mark.usefixtures("one_thread")


def test_conv_learner_shapes_and_names():
    model = ConvLearner(ways=5)
    x = torch.rand(7, 1, 28, 28)
    assert model(x).shape == (7, 5)
    assert model.features(x).shape == (7, 64)          # 28 -> 14 -> 7 -> 3 -> 1
    assert model.feature_dim == 64
    names = [n for n, _ in model.named_parameters()]
    assert names[:3] == ["blocks.0.conv.weight", "blocks.0.norm.weight", "blocks.0.norm.bias"]
    assert len(names) == 4 * 3 + 2
    assert head_names(model) == ["head.weight", "head.bias"]
    small = ConvLearner(ways=3, in_channels=2, filters=4, depth=2, image_size=8)
    assert small(torch.rand(5, 2, 8, 8)).shape == (5, 3)
    assert small.features(torch.rand(5, 2, 8, 8)).shape == (5, 4 * 2 * 2)


def test_sine_mlp_shapes_and_names():
    model = SineMLP()
    assert model(torch.rand(10, 1)).shape == (10, 1)
    assert model.features(torch.rand(10, 1)).shape == (10, 40)
    assert sum(p.numel() for p in model.parameters()) == 40 + 40 + 40 * 40 + 40 + 40 + 1
    assert head_names(model) == ["head.weight", "head.bias"]


@pytest.mark.parametrize("kwargs", [dict(ways=0), dict(ways=5, filters=0), dict(ways=5, depth=0),
                                    dict(ways=5, depth=5), dict(ways=5, in_channels=0), dict(ways=2.5)])
def test_conv_learner_rejects_bad_arguments(kwargs):
    name = [k for k in kwargs if k != "ways"] or ["ways"]
    with pytest.raises(ValueError, match=name[-1]):
        ConvLearner(**kwargs)


def test_head_names_needs_a_head():
    with pytest.raises(ValueError, match="head"):
        head_names(torch.nn.Linear(2, 2))


def test_params_of_are_detached_copies_requiring_grad():
    model = SineMLP()
    params = params_of(model)
    assert list(params) == [n for n, _ in model.named_parameters()]
    for name, p in params.items():
        assert p.is_leaf and p.requires_grad and p.grad_fn is None
        p.data.add_(1.0)                                # a copy: the module is untouched
        assert not torch.equal(p, dict(model.named_parameters())[name])
    x = torch.rand(4, 1)
    assert not torch.allclose(functional_call(model, params, (x,)), model(x))


def test_functional_call_with_params_matches_module():
    torch.manual_seed(0)
    model = ConvLearner(ways=3, filters=4, depth=2, image_size=8).double()
    x = torch.rand(6, 1, 8, 8, dtype=torch.float64)
    assert torch.equal(functional_call(model, params_of(model), (x,)), model(x))


def test_batch_norm_matches_torch_batch_statistics():
    torch.manual_seed(0)
    bn = BatchNorm(3).double()
    bn.weight.data = torch.rand(3, dtype=torch.float64) + 0.5
    bn.bias.data = torch.randn(3, dtype=torch.float64)
    x = torch.randn(7, 3, 5, 5, dtype=torch.float64) * 3 + 2
    expected = F.batch_norm(x, None, None, bn.weight, bn.bias, training=True, eps=bn.eps)
    torch.testing.assert_close(bn(x), expected, rtol=0, atol=1e-12)


def test_batch_norm_stats_rows_uses_first_rows_only():
    torch.manual_seed(0)
    bn = BatchNorm(3).double()
    x = torch.randn(7, 3, 5, 5, dtype=torch.float64) * 3 + 2
    mean = x[:4].mean(dim=(0, 2, 3), keepdim=True)
    var = x[:4].var(dim=(0, 2, 3), unbiased=False, keepdim=True)
    torch.testing.assert_close(bn(x, stats_rows=4), (x - mean) / torch.sqrt(var + bn.eps), rtol=0, atol=1e-12)
    # changing rows after the first 4 changes nothing for the other rows
    y = x.clone()
    y[5:] = torch.randn(2, 3, 5, 5, dtype=torch.float64)
    torch.testing.assert_close(bn(y, stats_rows=4)[:5], bn(x, stats_rows=4)[:5], rtol=0, atol=0)
    assert not torch.allclose(bn(y)[:5], bn(x)[:5])


def test_conv_learner_stats_rows_support_mode():
    torch.manual_seed(0)
    model = ConvLearner(ways=3, filters=4, depth=2, image_size=8).double()
    support = torch.rand(3, 1, 8, 8, dtype=torch.float64)
    query = torch.rand(4, 1, 8, 8, dtype=torch.float64)
    both = model(torch.cat([support, query]), stats_rows=3)
    torch.testing.assert_close(both[:3], model(support), rtol=0, atol=1e-12)
    alone = [model(torch.cat([support, query[i:i + 1]]), stats_rows=3)[3] for i in range(4)]
    torch.testing.assert_close(both[3:], torch.stack(alone), rtol=0, atol=1e-12)


def test_load_into_model_copies_the_weights_not_the_rates():
    model = SineMLP(hidden=4)
    params = {name: p.detach() + 1 for name, p in params_of(model).items()}
    meta = params | {"lr." + name: torch.full_like(p, 0.1) for name, p in params.items()}  # Meta-SGD's rates
    assert load_into_model(model, meta) is model
    assert all(torch.equal(p, params[name]) for name, p in model.named_parameters())
