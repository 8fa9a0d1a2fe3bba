"""Update rules as objects: one ``adapt`` for SGD, Meta-SGD, Adam and the learned optimizer."""
import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from mllib.inner import adapt
from mllib.learned_optimizer import FlatParams, LearnedOptimizer, LearnedRule, random_starts, unroll
from mllib.models import SineMLP, params_of
from mllib.tasks import SinusoidTasks
from mllib.update_rules import SGD, Adam, MetaSGD, UpdateRule, as_rule

pytestmark = pytest.mark.usefixtures("one_thread")


def quadratic(params, data):
    """``sum(a * w ** 2) + sum(v ** 3)``: gradients ``2 a w`` and ``3 v ** 2``."""
    return (data * params["w"] ** 2).sum() + (params["v"] ** 3).sum()


def learned_rule(seed: int = 0, dtype=torch.float32) -> LearnedRule:
    """A learned rule whose network is not the zero-output (plain SGD) one."""
    torch.manual_seed(seed)
    opt = LearnedOptimizer(hidden=5, lr=0.05).to(dtype)
    with torch.no_grad():
        opt.mlp[-1].weight.normal_(0, 0.5)
        opt.mlp[-1].bias.normal_(0, 0.1)
    return LearnedRule(opt)


def rules():
    rates = {"w": torch.tensor([0.1, 0.2, 0.3]), "v": torch.tensor([[0.05, 0.01]])}
    return {"sgd": SGD(0.1), "metasgd": MetaSGD(rates), "adam": Adam(0.05), "learned": learned_rule()}


def test_sgd_and_meta_sgd_rules_take_the_hand_computed_steps():
    params = {"w": torch.tensor([1.0, -2.0, 0.5]), "v": torch.tensor([[1.0, 2.0]])}
    a = torch.tensor([1.0, 2.0, 3.0])
    g = {"w": 2 * a * params["w"], "v": 3 * params["v"] ** 2}
    sgd = adapt(params, quadratic, a, steps=1, rule=SGD(0.1), evaluation=True)
    meta = adapt(params, quadratic, a, steps=1, rule=rules()["metasgd"], evaluation=True)
    for n in params:
        assert torch.equal(sgd[n], params[n] - 0.1 * g[n])
        assert torch.equal(meta[n], params[n] - rules()["metasgd"].rates[n] * g[n])


def test_a_number_is_sgd_and_a_dict_is_meta_sgd_bit_for_bit():
    params = {"w": torch.randn(3, generator=torch.Generator().manual_seed(0)), "v": torch.ones(1, 2)}
    a = torch.tensor([1.0, 2.0, 3.0])
    rates = rules()["metasgd"].rates
    assert all(torch.equal(adapt(params, quadratic, a, 3, 0.1)[n], adapt(params, quadratic, a, 3, SGD(0.1))[n])
               for n in params)
    assert all(torch.equal(adapt(params, quadratic, a, 3, rates)[n], adapt(params, quadratic, a, 3, MetaSGD(rates))[n])
               for n in params)


def test_adam_rule_in_adapt_matches_torch_optim_adam():
    params = {"w": torch.tensor([1.0, -2.0, 0.5]), "v": torch.tensor([[0.3, -0.2]])}
    a = torch.tensor([1.0, 2.0, 3.0])
    ours = adapt(params, quadratic, a, steps=5, rule=Adam(0.05), evaluation=True)
    leaves = {n: p.clone().requires_grad_() for n, p in params.items()}
    adam = torch.optim.Adam(leaves.values(), lr=0.05)
    for _ in range(5):
        adam.zero_grad()
        quadratic(leaves, a).backward()
        adam.step()
    for n in params:
        torch.testing.assert_close(ours[n], leaves[n].detach(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["sgd", "metasgd", "adam", "learned"])
def test_every_rule_gives_the_same_numbers_on_a_dict_and_on_the_flat_vector(name):
    """Coordinate-wise: a rule on ``{"w": [3], "v": [1, 2]}`` equals the rule on their concatenation ``[5]``."""
    rule = rules()[name]
    gen = torch.Generator().manual_seed(1)
    params = {"w": torch.randn(3, generator=gen), "v": torch.randn(1, 2, generator=gen)}
    flat_rule = MetaSGD(torch.cat([rule.rates["w"], rule.rates["v"].reshape(-1)])) if name == "metasgd" else rule
    flat = lambda d: torch.cat([d["w"], d["v"].reshape(-1)])
    state, flat_state = rule.init(params), flat_rule.init(flat(params))
    for _ in range(3):
        grads = {"w": torch.randn(3, generator=gen), "v": torch.randn(1, 2, generator=gen)}
        new_flat, flat_state = flat_rule.step(flat(params), flat(grads), flat_state)
        params, state = rule.step(params, grads, state)
        torch.testing.assert_close(flat(params), new_flat, rtol=1e-6, atol=1e-7)


def test_the_learned_rule_in_adapt_equals_the_learned_optimizer_unroll():
    """One function, two forms: ``adapt`` on a parameter dict and ``unroll`` on flat ``[T, P]`` agree."""
    model = SineMLP(hidden=8)
    rule = learned_rule(2)
    batch = SinusoidTasks(shots=5, query=5, seed=0).sample(2)
    start = random_starts(model, 2, seed=3)
    theta, _, _ = unroll(model, rule, start, batch, steps=4)
    flat = FlatParams(model)

    def support_mse(params, data):
        return F.mse_loss(functional_call(model, params, (data[0],)), data[1])

    for t in range(2):
        adapted = adapt(flat.unflatten(start[t]), support_mse, (batch.support_x[t], batch.support_y[t]), 4, rule)
        torch.testing.assert_close(flat.flatten(adapted), theta[t], rtol=1e-5, atol=1e-6)


def test_meta_gradient_through_adapt_with_a_learned_rule_matches_finite_differences_float64():
    model = SineMLP(hidden=2).double()
    rule = learned_rule(4, torch.float64)
    phi = {k: v.detach().clone().requires_grad_() for k, v in rule.phi.items()}
    batch = SinusoidTasks(shots=4, query=4, seed=1).sample(1)
    sx, sy, qx, qy = (t[0].double() for t in (batch.support_x, batch.support_y, batch.query_x, batch.query_y))
    start = params_of(model)

    def mse(params, data):
        return F.mse_loss(functional_call(model, params, (data[0],)), data[1])

    def outer(phi_):
        adapted = adapt(start, mse, (sx, sy), 3, LearnedRule(rule.optimizer, phi_))
        return mse(adapted, (qx, qy))

    grads = torch.autograd.grad(outer(phi), list(phi.values()))
    eps = 1e-6
    for (name, p), g in zip(phi.items(), grads):
        numeric = torch.zeros_like(p)
        for i in range(p.numel()):
            with torch.no_grad():
                old = p.view(-1)[i].item()
                p.view(-1)[i] = old + eps
                up = outer(phi)
                p.view(-1)[i] = old - eps
                down = outer(phi)
                p.view(-1)[i] = old
            numeric.view(-1)[i] = (up - down) / (2 * eps)
        torch.testing.assert_close(g, numeric, rtol=1e-5, atol=1e-8, msg=name)


@pytest.mark.parametrize("name", ["adam", "learned"])
def test_a_stateful_rule_gives_the_same_numbers_under_vmap_as_in_a_loop(name):
    rule = rules()[name]
    p = {"w": torch.tensor([1.0, -2.0, 0.5]), "v": torch.tensor([[0.3, -0.2]])}
    a = torch.tensor([[1.0, 2.0, 3.0], [0.5, 0.1, 2.0]])
    batched = torch.func.vmap(lambda ai: adapt(p, quadratic, ai, 3, rule, evaluation=True)["w"])(a)
    looped = torch.stack([adapt(p, quadratic, ai, 3, rule, evaluation=True)["w"] for ai in a])
    torch.testing.assert_close(batched, looped, rtol=1e-6, atol=1e-7)


def test_evaluation_detaches_the_rules_own_tensors():
    rates = {"w": torch.full((3,), 0.1, requires_grad=True), "v": torch.full((1, 2), 0.1, requires_grad=True)}
    p = {"w": torch.ones(3), "v": torch.ones(1, 2)}
    a = torch.ones(3)
    assert not adapt(p, quadratic, a, 2, MetaSGD(rates), evaluation=True)["w"].requires_grad
    assert adapt(p, quadratic, a, 2, MetaSGD(rates))["w"].requires_grad   # training: the rates learn
    rule = learned_rule()
    assert not any(v.requires_grad for v in rule.detach().phi.values())


def test_bad_rules_are_named_in_one_line():
    with pytest.raises(ValueError, match="rule must be an update rule"):
        as_rule("sgd")
    with pytest.raises(ValueError, match="rule must be an update rule"):
        as_rule(True)
    with pytest.raises(ValueError, match="lr must be a finite number > 0"):
        SGD(-0.1)
    with pytest.raises(ValueError, match="no rate for parameter 'v'"):
        adapt({"w": torch.ones(3), "v": torch.ones(1, 2)}, quadratic, torch.ones(3), 1, MetaSGD({"w": torch.ones(3)}))
    with pytest.raises(ValueError, match=r"betas\[1\] must be a number in \[0, 1\)"):
        Adam(0.1, betas=(0.9, 1.0))
    assert isinstance(as_rule(0.4), SGD) and isinstance(as_rule({"w": torch.ones(1)}), MetaSGD)
    assert all(isinstance(r, UpdateRule) for r in rules().values())
