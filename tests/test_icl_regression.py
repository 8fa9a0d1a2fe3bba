"""mllib.icl_regression: the prompts, the hand-designed learners (closed forms, batched against looped),
the linear self-attention transformer and its gradient-descent construction."""
import numpy as np
import pytest
import torch

from mllib.icl_regression import (LinearSelfAttention, gd_construction, gd_steps, least_squares, meta_train_lsa,
                                  query_errors, ridge, sample_prompts, tune_gd_rate)


def prompts(n, num=6, d=3, seed=0):
    return sample_prompts(num, n, d, queries=4, generator=torch.Generator().manual_seed(seed))


def test_sample_prompts_is_seeded_and_linear_without_noise():
    a, b = prompts(5, seed=1), prompts(5, seed=1)
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    x, y, qx, qy = sample_prompts(4, 6, 3, queries=2, noise=0.0, generator=torch.Generator().manual_seed(0))
    w = least_squares(x, y, x)                        # n > d, no noise: the fit reproduces y exactly
    assert torch.allclose(w, y, atol=1e-4)


def test_ridge_is_the_closed_form_per_prompt_and_least_squares_the_pinv():
    x, y, qx, _ = prompts(4, d=3)
    lam = 0.3
    for t in range(x.shape[0]):                       # looped numpy reference, one prompt at a time
        X, Y, Q = (v[t].double().numpy() for v in (x, y, qx))
        w = np.linalg.solve(X.T @ X + lam * np.eye(3), X.T @ Y)
        assert np.allclose(ridge(x, y, qx, lam)[t].numpy(), Q @ w, atol=1e-4)
        assert np.allclose(least_squares(x, y, qx)[t].numpy(), Q @ np.linalg.pinv(X) @ Y, atol=1e-3)


def test_least_squares_interpolates_when_fewer_points_than_inputs():
    x, y, _, _ = prompts(2, d=5)
    assert torch.allclose(least_squares(x, y, x), y, atol=1e-4)


def test_gd_steps_batched_matches_a_loop_and_converges_to_least_squares():
    x, y, qx, _ = prompts(8, d=3)
    batched = gd_steps(x, y, qx, steps=3, lr=0.2)
    for t in range(x.shape[0]):
        w = torch.zeros(3)
        for _ in range(3):
            w = w - 0.2 * x[t].T @ (x[t] @ w - y[t]) / 8
        assert torch.allclose(batched[t], qx[t] @ w, atol=1e-5)
    assert torch.allclose(gd_steps(x, y, qx, steps=3000, lr=0.3), least_squares(x, y, qx), atol=1e-3)


@pytest.mark.parametrize("layers", [1, 3])
def test_the_construction_computes_exactly_k_steps_of_gradient_descent(layers):
    x, y, qx, _ = prompts(7, d=4)
    model = gd_construction(4, lr=0.3, layers=layers)
    with torch.no_grad():
        assert torch.allclose(model(x, y, qx), gd_steps(x, y, qx, steps=layers, lr=0.3), atol=1e-5)


def test_lsa_ignores_the_order_of_the_context_and_the_other_queries():
    torch.manual_seed(0)
    model = LinearSelfAttention(3, layers=2, init_std=0.3)
    x, y, qx, _ = prompts(6, d=3)
    order = torch.randperm(6)
    with torch.no_grad():
        full = model(x, y, qx)
        assert torch.allclose(full, model(x[:, order], y[:, order], qx), atol=1e-5)
        assert torch.allclose(full[:, :1], model(x, y, qx[:, :1]), atol=1e-6)


def test_meta_training_is_seeded_and_learns_to_use_the_context(one_thread):
    def train():
        torch.manual_seed(0)
        model = LinearSelfAttention(3, layers=1)
        return model, meta_train_lsa(model, steps=300, batch=64, max_context=6, lr=1e-2, seed=0)
    (model, losses), (_, again) = train(), train()
    assert losses == again
    assert len(losses) == 300 and all(np.isfinite(losses))
    x, y, qx, qy = sample_prompts(2000, 6, 3, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        learned = query_errors(model(x, y, qx), qy).mean()
    zero = query_errors(torch.zeros_like(qy), qy).mean()
    assert learned < 0.7 * zero                       # it learned to use the context


def test_tune_gd_rate_picks_the_rate_with_the_lowest_error():
    sets = [prompts(n, num=200, d=3) for n in (3, 6)]
    best = tune_gd_rate(sets, steps=1, rates=(0.01, 0.5, 3.0))
    assert best == 0.5


@pytest.mark.parametrize("call, message", [
    (lambda: least_squares(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 1, 3)), "prompts need x"),
    (lambda: ridge(*prompts(3)[:3], lam=0.0), "lam must be > 0"),
    (lambda: gd_steps(*prompts(3)[:3], steps=1, lr=-1.0), "lr > 0"),
    (lambda: LinearSelfAttention(3)(*prompts(3, d=4)[:3]), "reads d=3"),
    (lambda: tune_gd_rate([], steps=1), "at least one prompt set"),
    (lambda: sample_prompts(0, 3), "num >= 1"),
])
def test_bad_input_says_what_is_wrong(call, message):
    with pytest.raises(ValueError, match=message):
        call()
