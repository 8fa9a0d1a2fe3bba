"""Tests of mllib.sine_experiments: meta-training and pre-training on sinusoids, adaptation curves, polynomials."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from mllib.algorithms import MetaConfig, init_meta_params, meta_gradient
from mllib.models import SineMLP, params_of
from mllib.sine_experiments import (_seeded_model, adapt_sine_learner, adaptation_curve, fit_polynomial, meta_train_sinusoid,
                                    polynomial_mse, polyval, pretrain_sinusoid)
from mllib.tasks import SinusoidTasks


def _manual_curve(model, params, batch, steps, lr):
    """Plain autograd SGD, one task at a time: the textbook loop adaptation_curve must match."""
    curves = []
    for t in range(batch.num_tasks):
        p = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
        row = []
        for k in range(steps + 1):
            with torch.no_grad():
                row.append(F.mse_loss(functional_call(model, p, (batch.query_x[t],)), batch.query_y[t]).item())
            if k == steps:
                break
            loss = F.mse_loss(functional_call(model, p, (batch.support_x[t],)), batch.support_y[t])
            grads = torch.autograd.grad(loss, list(p.values()))
            p = {n: (v - lr * g).detach().requires_grad_(True) for (n, v), g in zip(p.items(), grads)}
        curves.append(row)
    return torch.tensor(curves)


@pytest.fixture(scope="module")
def sine_batch():
    return SinusoidTasks(shots=10, query=50, seed=123).sample(8)


@pytest.fixture(scope="module")
def short_maml():
    torch.manual_seed(99)
    before = torch.get_rng_state()
    result = meta_train_sinusoid("maml", steps=150, meta_batch=8, shots=10, inner_lr=0.01, meta_lr=3e-3,
                                 seed=0, progress=False)
    assert torch.equal(before, torch.get_rng_state()), "meta_train_sinusoid changed the global random state"
    return result


def test_adaptation_curve_matches_manual_loop(sine_batch):
    torch.manual_seed(0)
    model = SineMLP()
    params = params_of(model)
    got = adaptation_curve(model, params, sine_batch, steps=4, lr=0.05, per_task=True)
    want = _manual_curve(model, params, sine_batch, steps=4, lr=0.05)
    assert got.shape == (8, 5)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(adaptation_curve(model, params, sine_batch, steps=4, lr=0.05), want.mean(0),
                               rtol=1e-4, atol=1e-5)
    assert all(v.grad_fn is None for v in params.values()) and got.grad_fn is None


def test_adaptation_curve_uses_metasgd_rates(sine_batch):
    torch.manual_seed(1)
    model = SineMLP()
    params = params_of(model)
    with_rates = {**params, **{"lr." + k: torch.full_like(v, 0.03) for k, v in params.items()}}
    torch.testing.assert_close(adaptation_curve(model, with_rates, sine_batch, 3, lr=0.5),
                               adaptation_curve(model, params, sine_batch, 3, lr=0.03))


def test_adapt_sine_learner_agrees_with_curve(sine_batch):
    torch.manual_seed(2)
    model = SineMLP()
    params = params_of(model)
    curve = adaptation_curve(model, params, sine_batch, steps=3, lr=0.02, per_task=True)
    adapted = adapt_sine_learner(model, params, sine_batch.support_x[0], sine_batch.support_y[0], steps=3, lr=0.02)
    assert set(adapted) == set(params) and all(v.grad_fn is None for v in adapted.values())
    mse = F.mse_loss(functional_call(model, adapted, (sine_batch.query_x[0],)), sine_batch.query_y[0])
    torch.testing.assert_close(mse, curve[0, 3], rtol=1e-5, atol=1e-6)
    # zero steps: the start itself
    same = adapt_sine_learner(model, params, sine_batch.support_x[0], sine_batch.support_y[0], steps=0, lr=0.02)
    assert all(torch.equal(same[k], params[k]) for k in params)


def test_short_maml_run_improves_post_adaptation_loss(short_maml):
    model, meta_params, history = short_maml
    batch = SinusoidTasks(shots=10, query=50, seed=7).sample(40)
    init = params_of(_seeded_model(0))          # the start meta-training began from (seed 0)
    assert set(meta_params) == set(init)
    before = adaptation_curve(model, init, batch, steps=1, lr=0.01)
    after = adaptation_curve(model, meta_params, batch, steps=1, lr=0.01)
    assert after[1] < 0.8 * before[1], (before, after)
    # the history holds one post-adaptation query loss per step, and it went down
    assert history["step"] == list(range(1, 151)) and len(history["loss"]) == 150
    assert not history["interrupted"]
    assert np.mean(history["loss"][-30:]) < np.mean(history["loss"][:30])
    # the returned model carries the meta-parameters
    for name, p in model.named_parameters():
        assert torch.equal(p.detach(), meta_params[name])


def test_meta_train_is_seeded_and_uses_meta_gradient():
    a = meta_train_sinusoid("maml", steps=3, meta_batch=4, shots=5, inner_lr=0.02, meta_lr=1e-2, seed=4,
                            progress=False)
    b = meta_train_sinusoid("maml", steps=3, meta_batch=4, shots=5, inner_lr=0.02, meta_lr=1e-2, seed=4,
                            progress=False)
    assert all(torch.equal(a[1][k], b[1][k]) for k in a[1])
    # the same three updates written out with meta_gradient and Adam
    model = _seeded_model(4)
    cfg = MetaConfig(algo="maml", inner_steps=1, inner_lr=0.02, form="loop")
    params = init_meta_params(model, cfg)
    opt = torch.optim.Adam(params.values(), lr=1e-2)
    tasks = SinusoidTasks(shots=5, query=5, seed=4)
    losses = []
    for _ in range(3):
        grads, stats = meta_gradient(model, params, tasks.sample(4), cfg)
        for k, p in params.items():
            p.grad = grads[k]
        opt.step()
        losses.append(stats["loss"])
    for k in params:
        torch.testing.assert_close(a[1][k], params[k].detach(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(a[2]["loss"], losses, rtol=1e-4)
    # another seed gives another result
    c = meta_train_sinusoid("maml", steps=3, meta_batch=4, shots=5, inner_lr=0.02, meta_lr=1e-2, seed=5,
                            progress=False)
    assert not torch.equal(a[1]["head.weight"], c[1]["head.weight"])


@pytest.mark.parametrize("algo", ["fomaml", "reptile", "metasgd", "anil"])
def test_meta_train_other_algorithms(algo):
    model, meta_params, history = meta_train_sinusoid(algo, steps=2, meta_batch=3, shots=4, inner_lr=0.01,
                                                      seed=0, progress=False)
    assert len(history["loss"]) == 2 and all(np.isfinite(history["loss"]))
    assert any(k.startswith("lr.") for k in meta_params) == (algo == "metasgd")
    start = params_of(_seeded_model(0))
    assert not torch.equal(meta_params["head.weight"], start["head.weight"])


def test_meta_train_resumes_from_model():
    model, first, _ = meta_train_sinusoid("maml", steps=2, meta_batch=2, shots=3, inner_lr=0.01, seed=0,
                                          progress=False)
    _, second, _ = meta_train_sinusoid("maml", steps=0, meta_batch=2, shots=3, inner_lr=0.01, seed=0,
                                       model=model, progress=False)
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_pretrain_learns_the_average_function():
    torch.manual_seed(0)
    model, params = pretrain_sinusoid(steps=300, batch=10, shots=10, seed=0, lr=3e-3, progress=False)
    assert set(params) == {n for n, _ in SineMLP().named_parameters()}
    assert all(p.is_leaf and p.requires_grad for p in params.values())
    for name, p in model.named_parameters():
        assert torch.equal(p.detach(), params[name].detach())
    # joint regression learns the mean task, E[A sin(x - phase)] = -(2 E[A] / pi) cos x: phases uniform
    # on [0, pi] (half a period) do not cancel, so the function is a wave, not a flat line
    grid = torch.linspace(-5, 5, 100)[:, None]
    with torch.no_grad():
        learned = model(grid)[:, 0]
    assert torch.corrcoef(torch.stack([learned, -torch.cos(grid[:, 0])]))[0, 1] > 0.95
    batch = SinusoidTasks(shots=10, query=50, seed=9).sample(30)
    init = params_of(_seeded_model(0))
    assert adaptation_curve(model, params, batch, 0, 0.01)[0] < adaptation_curve(model, init, batch, 0, 0.01)[0]
    again = pretrain_sinusoid(steps=300, batch=10, shots=10, seed=0, lr=3e-3, progress=False)[1]
    assert all(torch.equal(params[k], again[k]) for k in params)


def test_fit_polynomial_recovers_and_matches_numpy():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(12, 1, generator=gen) * 10 - 5
    coefficients = torch.tensor([0.5, -1.0, 0.25, 0.1], dtype=torch.float64)
    y = polyval(coefficients, x)
    assert y.shape == (12, 1)
    torch.testing.assert_close(fit_polynomial(x, y, 3), coefficients)
    noisy = torch.sin(x[:, 0]) + 0.1 * torch.randn(12, generator=gen)
    want = np.polynomial.polynomial.polyfit(x[:, 0].double().numpy(), noisy.double().numpy(), 4)
    np.testing.assert_allclose(fit_polynomial(x, noisy, 4).numpy(), want, rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(polyval(torch.tensor([1.0, 2.0]), torch.tensor([3.0])),
                               torch.tensor([7.0], dtype=torch.float64))
    # fewer points than coefficients: interpolates them exactly (minimum-norm solution)
    few = fit_polynomial(x[:3], noisy[:3], 5)
    torch.testing.assert_close(polyval(few, x[:3, 0]), noisy[:3].double(), rtol=1e-6, atol=1e-6)


def test_polynomial_mse_matches_a_loop(sine_batch):
    got = polynomial_mse(sine_batch, 3)
    assert got.shape == (8,) and got.dtype == torch.float64
    for t in (0, 5):
        c = np.polynomial.polynomial.polyfit(sine_batch.support_x[t, :, 0].double().numpy(),
                                             sine_batch.support_y[t, :, 0].double().numpy(), 3)
        pred = np.polynomial.polynomial.polyval(sine_batch.query_x[t, :, 0].double().numpy(), c)
        want = np.mean((pred - sine_batch.query_y[t, :, 0].double().numpy()) ** 2)
        assert abs(got[t].item() - want) <= 1e-6 * want
    # a degree-0 polynomial predicts the support mean
    mean = sine_batch.support_y[2].double().mean()
    torch.testing.assert_close(polynomial_mse(sine_batch, 0)[2], (sine_batch.query_y[2].double() - mean).square().mean())


@pytest.mark.parametrize("call, name", [
    (lambda: meta_train_sinusoid("protonet", steps=1, meta_batch=1, shots=1, inner_lr=0.1), "algo"),
    (lambda: meta_train_sinusoid("maml", steps=-1, meta_batch=1, shots=1, inner_lr=0.1), "steps"),
    (lambda: meta_train_sinusoid("maml", steps=1, meta_batch=0, shots=1, inner_lr=0.1), "meta_batch"),
    (lambda: meta_train_sinusoid("maml", steps=1, meta_batch=1, shots=1, inner_lr=0.0), "inner_lr"),
    (lambda: pretrain_sinusoid(steps=1, batch=0, shots=1), "batch"),
    (lambda: fit_polynomial(torch.zeros(3), torch.zeros(3), -1), "degree"),
    (lambda: fit_polynomial(torch.zeros(3), torch.zeros(4), 1), "x and y"),
    (lambda: adaptation_curve(SineMLP(), params_of(SineMLP()),
                              SinusoidTasks(seed=0).sample(1), steps=-2, lr=0.1), "steps"),
])
def test_bad_arguments(call, name):
    with pytest.raises(ValueError, match=name):
        call()


def test_one_thread_inside_and_restored(monkeypatch, sine_batch):
    import mllib.algorithms as algorithms
    seen = []
    original = algorithms.meta_gradient

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return original(*args, **kwargs)

    monkeypatch.setattr(algorithms, "meta_gradient", spy)
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        meta_train_sinusoid("maml", steps=2, meta_batch=2, shots=3, inner_lr=0.01, progress=False)
        adaptation_curve(SineMLP(), params_of(SineMLP()), sine_batch, 1, 0.01)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(previous)
    assert seen == [1, 1]
