"""The inner loop ``adapt``: hand-computed SGD steps, orders, per-parameter rates, subsets, evaluation."""
import pytest
import torch

from mllib.inner import adapt


pytestmark = pytest.mark.usefixtures("one_thread")


def quadratic(params, data):
    """0.5 * a * w^2 + c * w * v  (gradients: a w + c v and c w)."""
    a, c = data
    return 0.5 * a * params["w"] ** 2 + c * params["w"] * params["v"]


def leaf(value):
    return torch.tensor(value, dtype=torch.float64, requires_grad=True)


def test_two_sgd_steps_match_hand_computation():
    w, v = 1.5, -0.5
    a, c, lr = 2.0, 0.3, 0.1
    out = adapt({"w": leaf(w), "v": leaf(v)}, quadratic, (a, c), steps=2, rule=lr)
    for _ in range(2):
        w, v = w - lr * (a * w + c * v), v - lr * (c * w)
    assert out["w"].item() == pytest.approx(w, abs=1e-14)
    assert out["v"].item() == pytest.approx(v, abs=1e-14)


def test_per_parameter_rates_and_subset():
    lr = {"w": torch.tensor(0.1, dtype=torch.float64), "v": torch.tensor(0.0, dtype=torch.float64)}
    params = {"w": leaf(1.0), "v": leaf(2.0)}
    out = adapt(params, quadratic, (1.0, 1.0), steps=1, rule=lr)
    assert out["w"].item() == pytest.approx(1.0 - 0.1 * (1.0 + 2.0))
    assert out["v"].item() == pytest.approx(2.0)
    only_v = adapt(params, quadratic, (1.0, 1.0), steps=3, rule=0.1, names=["v"])
    assert only_v["w"] is params["w"]                       # untouched: the very same tensor
    assert only_v["v"].item() == pytest.approx(2.0 - 3 * 0.1 * 1.0)


def test_second_order_keeps_graph_first_order_detaches():
    # L_s(w) = 0.5 a w^2 -> w' = w (1 - lr a);  outer L_q(w') = w'^2.
    a, lr, w = 3.0, 0.1, 2.0
    for first_order, expected in ((False, 2 * w * (1 - lr * a) ** 2), (True, 2 * w * (1 - lr * a))):
        p = {"w": leaf(w), "v": leaf(0.0)}
        adapted = adapt(p, quadratic, (a, 0.0), steps=1, rule=lr, first_order=first_order)
        grad, = torch.autograd.grad(adapted["w"] ** 2, p["w"])
        assert grad.item() == pytest.approx(expected, abs=1e-12), first_order


def test_evaluation_builds_no_graph():
    p = {"w": leaf(2.0), "v": leaf(1.0)}
    out = adapt(p, quadratic, (1.0, 1.0), steps=2, rule=0.1, evaluation=True)
    same = adapt(p, quadratic, (1.0, 1.0), steps=2, rule=0.1)
    for k in p:
        assert out[k].grad_fn is None and not out[k].requires_grad
        assert out[k].item() == pytest.approx(same[k].item(), abs=1e-15)


def test_zero_steps_is_identity_and_bad_steps_rejected():
    p = {"w": leaf(2.0), "v": leaf(1.0)}
    assert all(adapt(p, quadratic, (1.0, 1.0), steps=0, rule=0.1)[k] is p[k] for k in p)
    for bad in (-1, 1.5):
        with pytest.raises(ValueError, match="steps"):
            adapt(p, quadratic, (1.0, 1.0), steps=bad, rule=0.1)


def test_adapt_works_under_vmap():
    a = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    p = {"w": leaf(2.0), "v": leaf(1.0)}
    batched = torch.func.vmap(lambda ai: adapt(p, quadratic, (ai, 0.5), steps=2, rule=0.1)["w"])(a)
    looped = torch.stack([adapt(p, quadratic, (ai, 0.5), steps=2, rule=0.1)["w"] for ai in a])
    torch.testing.assert_close(batched, looped, rtol=0, atol=1e-14)


def test_inner_gradients_autograd_equals_torch_func_grad_bitwise():
    """Outside vmap the inner gradient comes from torch.autograd.grad, under vmap from torch.func.grad:
    the same numbers, including the outer (second-order) gradient through them."""
    from mllib.algorithms import support_loss_fn
    from mllib.inner import inner_gradients
    from mllib.models import ConvLearner, params_of

    torch.manual_seed(0)
    model = ConvLearner(ways=3, filters=4, depth=2, image_size=12)
    params, loss_fn = params_of(model), support_loss_fn(model)
    data = (torch.rand(6, 1, 12, 12), torch.arange(3).repeat(2))
    names = list(params)
    for create_graph in (True, False):
        plain = inner_gradients(loss_fn, params, data, names, create_graph)
        func = torch.func.grad(lambda fast: loss_fn(fast, data))(
            params if create_graph else {k: v.detach() for k, v in params.items()})
        assert all(torch.equal(plain[k], func[k]) for k in names)
        assert all(g.requires_grad == create_graph for g in plain.values())
    plain = inner_gradients(loss_fn, params, data, names, True)
    outer_plain = torch.autograd.grad(sum((g ** 2).sum() for g in plain.values()), list(params.values()))
    func = torch.func.grad(lambda fast: loss_fn(fast, data))(params)
    outer_func = torch.autograd.grad(sum((g ** 2).sum() for g in func.values()), list(params.values()))
    assert all(torch.equal(a, b) for a, b in zip(outer_plain, outer_func))


def test_adapt_leaves_tensors_that_need_no_grad_alone():
    w = torch.tensor([1.0, 2.0])                                  # no requires_grad: no outer graph
    adapted = adapt({"w": w}, lambda p, data: (p["w"] ** 2).sum(), None, steps=1, rule=0.25)
    assert torch.equal(adapted["w"], torch.tensor([0.5, 1.0])) and not w.requires_grad
