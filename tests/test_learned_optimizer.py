"""The learned update rule: meta-gradient against finite differences, coordinate-wise, zero init = SGD,
and the hand-designed rules against reference implementations."""
from __future__ import annotations

import math

import pytest
import torch

from mllib.learned_optimizer import (
    SGD, Adam, FlatParams, LearnedOptimizer, LearnedRule, MetaSGD, expand_start, meta_loss, meta_sgd_rule,
    meta_train_optimizer, optimize, random_starts, tune_rate, unroll,
)
from mllib.models import SineMLP
from mllib.sine_experiments import adaptation_curve
from mllib.tasks import SinusoidTasks

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_case(seed: int = 0):
    """float64: SineMLP(hidden=2) (13 weights), a 3-unit update network with a non-zero output
    layer, 2 tasks of 4 support and 4 query points, random starts."""
    torch.manual_seed(seed)
    model = SineMLP(hidden=2).double()
    opt = LearnedOptimizer(hidden=3, lr=0.05).double()
    with torch.no_grad():
        opt.mlp[-1].weight.normal_(0, 0.5)
        opt.mlp[-1].bias.normal_(0, 0.1)
    batch = SinusoidTasks(shots=4, query=4, seed=seed).sample(2)
    batch = type(batch)(*(t.double() for t in (batch.support_x, batch.support_y, batch.query_x, batch.query_y)))
    start = random_starts(model, 2, seed=seed).double()
    return model, opt, batch, start


@pytest.mark.parametrize("seed", [0, 1])
def test_unrolled_meta_gradient_matches_finite_differences_float64(seed):
    model, opt, batch, start = tiny_case(seed)
    phi = {k: v.detach().clone().requires_grad_(True) for k, v in opt.named_parameters()}
    loss = meta_loss(model, opt, phi, start, batch, steps=3)
    grads = torch.autograd.grad(loss, list(phi.values()))
    eps = 1e-6
    for (name, p), g in zip(phi.items(), grads):
        numeric = torch.zeros_like(p)
        for i in range(p.numel()):
            with torch.no_grad():
                flat = p.view(-1)
                old = flat[i].item()
                flat[i] = old + eps
                up = meta_loss(model, opt, phi, start, batch, steps=3)
                flat[i] = old - eps
                down = meta_loss(model, opt, phi, start, batch, steps=3)
                flat[i] = old
            numeric.view(-1)[i] = (up - down) / (2 * eps)
        assert torch.allclose(g, numeric, rtol=1e-5, atol=1e-8), name
    # the check can fail: dropping the second derivatives changes the meta-gradient here
    first = torch.autograd.grad(meta_loss(model, opt, phi, start, batch, steps=3, first_order=True),
                                list(phi.values()))
    assert max(float((a - b).abs().max()) for a, b in zip(first, grads)) > 1e-6


def test_update_rule_is_coordinate_wise():
    torch.manual_seed(0)
    opt = LearnedOptimizer(hidden=8)
    with torch.no_grad():
        opt.mlp[-1].weight.normal_()
    rule = LearnedRule(opt)
    theta, g1, g2 = torch.randn(3, 2, 50).unbind(0)
    perm = torch.randperm(50)
    state = rule.init(theta)
    _, state = rule.step(theta, g1, state)            # some history in the moving averages
    new, _ = rule.step(theta, g2, state)
    state_p = {"m": state["m"][:, perm], "v": state["v"][:, perm], "t": state["t"]}
    new_p, _ = rule.step(theta[:, perm], g2[:, perm], state_p)
    assert torch.allclose(new_p, new[:, perm], atol=1e-6)
    # and each coordinate's update depends on that coordinate only
    g3 = g2.clone()
    g3[:, 7] += 1.0
    other, _ = rule.step(theta, g3, state)
    changed = (other - new).abs().sum(0) > 0
    assert changed[7] and changed.sum() == 1


def test_zero_initialised_output_layer_is_plain_sgd():
    model = SineMLP()
    batch = SinusoidTasks(shots=10, query=20, seed=3).sample(5)
    start = random_starts(model, 5, seed=3)
    learned = optimize(model, LearnedRule(LearnedOptimizer(lr=0.02)), start, batch, steps=4)
    sgd = optimize(model, SGD(0.02), start, batch, steps=4)
    assert torch.allclose(learned, sgd, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(sgd[:, 0], sgd[:, -1])           # the steps did something
    opt = LearnedOptimizer(lr=0.02)
    with torch.no_grad():
        opt.mlp[-1].bias.fill_(0.1)
    moved = optimize(model, LearnedRule(opt), start, batch, steps=4)
    assert not torch.allclose(moved, sgd, rtol=1e-3)


def test_sgd_matches_the_sinusoid_adaptation_curve():
    model = SineMLP()
    torch.manual_seed(0)
    params = {k: v.detach() for k, v in model.named_parameters()}
    batch = SinusoidTasks(shots=10, query=30, seed=4).sample(6)
    want = adaptation_curve(model, params, batch, steps=5, lr=0.01, per_task=True)
    got = optimize(model, SGD(0.01), expand_start(model, params, 6), batch, steps=5)
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-6)


def test_meta_sgd_rule_matches_adaptation_curve_with_rates():
    model = SineMLP()
    torch.manual_seed(1)
    params = {k: v.detach() for k, v in model.named_parameters()}
    meta = dict(params, **{"lr." + k: 0.02 * torch.rand_like(v) for k, v in params.items()})
    batch = SinusoidTasks(shots=10, query=30, seed=5).sample(4)
    want = adaptation_curve(model, meta, batch, steps=3, lr=1.0, per_task=True)
    got = optimize(model, meta_sgd_rule(model, meta), expand_start(model, params, 4), batch, steps=3)
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="Meta-SGD rates"):
        meta_sgd_rule(model, params)


def test_adam_matches_torch_adam():
    model = SineMLP()
    batch = SinusoidTasks(shots=10, query=10, seed=6).sample(1)
    start = random_starts(model, 1, seed=6)
    theta, _, _ = unroll(model, Adam(0.01), start, batch, steps=5)
    flat = FlatParams(model)
    w = start[0].clone().requires_grad_(True)
    torch_adam = torch.optim.Adam([w], lr=0.01)
    for _ in range(5):
        loss = torch.nn.functional.mse_loss(
            torch.func.functional_call(model, flat.unflatten(w), (batch.support_x[0],)), batch.support_y[0])
        torch_adam.zero_grad()
        loss.backward()
        torch_adam.step()
    assert torch.allclose(theta[0].detach(), w.detach(), atol=1e-6)


def test_flat_params_and_random_starts():
    model = SineMLP()
    flat = FlatParams(model)
    params = dict(model.named_parameters())
    assert flat.numel == sum(p.numel() for p in model.parameters()) == 1761
    vec = flat.flatten(params)
    assert all(torch.equal(flat.unflatten(vec)[k], params[k]) for k in params)
    starts = random_starts(model, 3, seed=0)
    assert starts.shape == (3, 1761) and torch.equal(starts, random_starts(model, 3, seed=0))
    assert not torch.equal(starts[0], starts[1])
    first_layer = flat.unflatten(starts[0])["body.0.weight"]
    assert first_layer.abs().max() <= 1.0 and first_layer.abs().max() > 0.9      # fan-in 1: U(-1, 1)
    hidden = flat.unflatten(starts[0])["body.2.weight"]
    assert hidden.abs().max() <= 1 / math.sqrt(40)
    with pytest.raises(ValueError, match="flat must have 1761"):
        flat.unflatten(torch.zeros(5))
    with pytest.raises(ValueError, match="num_tasks"):
        random_starts(model, 0)


def test_tune_rate_picks_the_best_and_scores_divergence_as_inf():
    model = SineMLP()
    batch = SinusoidTasks(shots=10, query=50, seed=7).sample(20)
    start = random_starts(model, 20, seed=7)
    best, scores = tune_rate(model, SGD, [0.001, 0.01, 50.0], start, batch, steps=5)
    assert scores[50.0] == math.inf
    assert best == min(scores, key=scores.get) and best != 50.0


def test_meta_training_runs_truncated_unrolls_and_lowers_the_meta_loss():
    model = SineMLP()
    opt = LearnedOptimizer()
    phi, history = meta_train_optimizer(opt, model, steps=3, meta_batch=4, horizon=6, truncation=3,
                                        progress=False)
    assert set(phi) == {k for k, _ in opt.named_parameters()}
    assert history["step"] == [1, 2, 3] and len(history["loss"]) == 3 and not history["interrupted"]
    assert not torch.equal(phi["mlp.4.weight"], torch.zeros_like(phi["mlp.4.weight"]))
    # fixed tasks: a few meta-steps from MAML-like start lower the unrolled query loss
    torch.manual_seed(0)
    model = SineMLP()
    start = {k: v.detach() for k, v in model.named_parameters()}
    tasks = SinusoidTasks(shots=10, query=10, seed=1)
    batch = tasks.sample(8)
    opt = LearnedOptimizer()
    theta = expand_start(model, start, 8)
    before = float(meta_loss(model, opt, dict(opt.named_parameters()), theta, batch, 5).detach())

    class Fixed:
        def sample(self, n):
            return batch

    phi, _ = meta_train_optimizer(opt, model, start=start, steps=20, meta_batch=8, horizon=5, tasks=Fixed(),
                                  meta_lr=1e-2, progress=False)
    after = float(meta_loss(model, opt, phi, theta, batch, 5))
    assert after < before


@pytest.mark.parametrize("kwargs, match", [
    ({"horizon": 0}, "horizon"), ({"truncation": 11}, "truncation"), ({"meta_lr": 0}, "meta_lr"),
    ({"meta_batch": 0}, "meta_batch"), ({"steps": -1}, "steps"),
])
def test_meta_training_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        meta_train_optimizer(LearnedOptimizer(), SineMLP(), progress=False, **kwargs)


def test_bad_inputs_are_named():
    model = SineMLP()
    batch = SinusoidTasks(shots=5, query=5, seed=0).sample(3)
    with pytest.raises(ValueError, match="start must be"):
        unroll(model, SGD(0.1), torch.zeros(2, 1761), batch, 1)
    with pytest.raises(ValueError, match="lr must be"):
        SGD(0)
    with pytest.raises(ValueError, match="betas"):
        Adam(0.1, betas=(1.0, 0.9))
    with pytest.raises(ValueError, match="rates must be a flat vector"):
        MetaSGD(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="hidden"):
        LearnedOptimizer(hidden=0)
    with pytest.raises(ValueError, match="momenta"):
        LearnedOptimizer(momenta=(0.9,))
    with pytest.raises(ValueError, match="features must be"):
        LearnedOptimizer()(torch.zeros(5, 3), torch.zeros(5))
    with pytest.raises(ValueError, match="rates"):
        tune_rate(model, SGD, [], random_starts(model, 3), batch, 1)


def test_one_meta_step_is_one_adam_step_on_the_unrolled_loss_and_truncation_changes_it():
    torch.manual_seed(0)
    model = SineMLP()
    start = {k: v.detach() for k, v in model.named_parameters()}
    batch = SinusoidTasks(shots=10, query=10, seed=2).sample(4)

    class Fixed:
        def sample(self, n):
            return batch

    def fresh():
        torch.manual_seed(1)
        opt = LearnedOptimizer(hidden=6)
        with torch.no_grad():
            opt.mlp[-1].weight.normal_(0, 0.1)
        return opt

    opt = fresh()
    phi, _ = meta_train_optimizer(opt, model, start=start, steps=1, meta_batch=4, horizon=4, tasks=Fixed(),
                                  meta_lr=1e-2, progress=False)
    ref = fresh()
    loss = meta_loss(model, ref, dict(ref.named_parameters()), expand_start(model, start, 4), batch, 4)
    adam = torch.optim.Adam(ref.parameters(), lr=1e-2)
    loss.backward()
    adam.step()
    assert all(torch.allclose(phi[k], v, atol=1e-6) for k, v in ref.named_parameters())
    truncated, _ = meta_train_optimizer(fresh(), model, start=start, steps=1, meta_batch=4, horizon=4, truncation=2,
                                        tasks=Fixed(), meta_lr=1e-2, progress=False)
    assert not torch.allclose(truncated["mlp.0.weight"], phi["mlp.0.weight"])
