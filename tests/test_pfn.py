"""mllib.pfn: the exact GP posterior (against a direct matrix computation and a closed form), the task
sampler (its draws have the prior's covariance), the transformer's invariances, the PFN objective's
training, and the comparison with the exact posterior."""
import math

import numpy as np
import pytest
import torch

from mllib.pfn import (GPPrior, compare_with_gp, gaussian_nll, gp_posterior, init_pfn, load_pfn, main, pfn_predict,
                       rbf_kernel, sample_gp_tasks, save_pfn, train_pfn)

PRIOR = GPPrior(lengthscale=0.3, variance=1.5, noise=0.2)


def tasks(num=5, n=6, m=4, prior=PRIOR, seed=0):
    return sample_gp_tasks(num, n, m, prior, torch.Generator().manual_seed(seed))


def test_rbf_kernel_is_the_formula_entry_by_entry():
    a, b = torch.tensor([0.0, 0.5, -1.0]), torch.tensor([0.2, 2.0])
    k = rbf_kernel(a, b, lengthscale=0.7, variance=2.0)
    for i in range(3):
        for j in range(2):
            assert math.isclose(float(k[i, j]), 2.0 * math.exp(-(float(a[i] - b[j])) ** 2 / (2 * 0.49)), rel_tol=1e-6)


def test_gp_posterior_is_the_direct_matrix_computation():
    x, y, tx, _ = tasks()
    mean, var = gp_posterior(x, y, tx, PRIOR)
    for t in range(x.shape[0]):                           # numpy, one task at a time, explicit inverse
        X, Y, Q = (v[t].double().numpy() for v in (x, y, tx))
        k = lambda a, b: 1.5 * np.exp(-(a[:, None] - b[None, :]) ** 2 / (2 * 0.3 ** 2))  # noqa: E731
        inv = np.linalg.inv(k(X, X) + 0.04 * np.eye(len(X)))
        assert np.allclose(mean[t].numpy(), k(Q, X) @ inv @ Y, atol=1e-5)
        assert np.allclose(var[t].numpy(), np.diag(k(Q, Q) - k(Q, X) @ inv @ k(X, Q)) + 0.04, atol=1e-5)


def test_gp_posterior_closed_forms_for_no_and_one_context_point():
    tx = torch.tensor([[0.0, 0.3, 5.0]])
    mean, var = gp_posterior(torch.zeros(1, 0), torch.zeros(1, 0), tx, PRIOR)
    assert torch.allclose(mean, torch.zeros(1, 3)) and torch.allclose(var, torch.full((1, 3), 1.5 + 0.04))
    mean, var = gp_posterior(torch.tensor([[0.0]]), torch.tensor([[2.0]]), tx, PRIOR)
    k = 1.5 * torch.exp(-tx ** 2 / (2 * 0.09))            # one point: k y / (v + s^2), v - k^2 / (v + s^2) + s^2
    assert torch.allclose(mean, k * 2.0 / 1.54, atol=1e-6)
    assert torch.allclose(var, 1.5 - k ** 2 / 1.54 + 0.04, atol=1e-6)


def test_gaussian_nll_is_minus_the_log_density():
    mean, var, y = torch.tensor([0.0, 1.0]), torch.tensor([1.0, 0.25]), torch.tensor([1.0, 0.0])
    density = torch.exp(-(y - mean) ** 2 / (2 * var)) / torch.sqrt(2 * math.pi * var)
    assert torch.allclose(gaussian_nll(mean, var, y), -torch.log(density))


def test_sample_gp_tasks_is_seeded_in_the_interval_and_has_the_prior_covariance():
    a, b = tasks(seed=3), tasks(seed=3)
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    prior = GPPrior(lengthscale=0.3, variance=1.5, noise=0.2, low=2.0, high=3.0)
    x, y, tx, ty = tasks(num=4000, n=3, m=2, prior=prior)
    assert tuple(x.shape) == (4000, 3) and tuple(ty.shape) == (4000, 2)
    assert float(torch.cat([x, tx], 1).min()) >= 2.0 and float(torch.cat([x, tx], 1).max()) <= 3.0
    # whitened by the prior's covariance k(X, X) + noise^2 I, every draw is N(0, I)
    xs, ys = torch.cat([x, tx], 1).double(), torch.cat([y, ty], 1).double()
    K = rbf_kernel(xs, xs, 0.3, 1.5) + 0.04 * torch.eye(5, dtype=torch.float64)
    z = torch.linalg.solve_triangular(torch.linalg.cholesky(K), ys.unsqueeze(-1), upper=False).flatten()
    assert abs(float(z.mean())) < 0.05 and abs(float(z.var()) - 1.0) < 0.05


def test_the_network_ignores_the_context_order_and_the_other_targets():
    params = init_pfn(width=16, layers=2, heads=2, hidden=8, generator=torch.Generator().manual_seed(0))
    x, y, tx, _ = tasks(n=6, m=4)
    order = torch.randperm(6, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        mean, log_var = pfn_predict(params, x, y, tx)
        assert tuple(mean.shape) == tuple(log_var.shape) == (5, 4)
        again = pfn_predict(params, x[:, order], y[:, order], tx)
        one = pfn_predict(params, x, y, tx[:, 2:3])
        empty = pfn_predict(params, x[:, :0], y[:, :0], tx)
    assert torch.allclose(mean, again[0], atol=1e-5) and torch.allclose(log_var, again[1], atol=1e-5)
    assert torch.allclose(mean[:, 2:3], one[0], atol=1e-5) and torch.allclose(log_var[:, 2:3], one[1], atol=1e-5)
    assert torch.isfinite(empty[0]).all() and not torch.allclose(empty[0], mean)   # the context is read


def test_training_is_seeded_and_learns_a_calibrated_predictive(one_thread):
    def train():
        params = init_pfn(width=32, layers=2, heads=2, hidden=32, generator=torch.Generator().manual_seed(0))
        return params, train_pfn(params, PRIOR, steps=150, batch=32, max_context=8, n_target=8, lr=3e-3, seed=0)
    (params, losses), (_, again) = train(), train()
    assert losses == again and len(losses) == 150 and all(np.isfinite(losses))
    test = tasks(num=300, n=8, m=8, seed=5)

    def predict(x, y, tx):
        mean, log_var = pfn_predict(params, x, y, tx)
        return mean, log_var.exp()
    result = compare_with_gp(predict, test, PRIOR)
    prior_only = gaussian_nll(torch.zeros_like(test[3]), torch.full_like(test[3], 1.54), test[3]).mean()
    assert float(result["nll"].mean()) < float(prior_only) - 0.2        # it reads the context
    assert float(result["nll"].mean()) >= float(result["gp_nll"].mean()) - 0.05   # and cannot beat Bayes


def test_compare_with_gp_is_zero_for_the_exact_posterior_and_the_kl_of_a_shift():
    test = tasks(num=50, n=5, m=6)
    exact = compare_with_gp(lambda x, y, tx: gp_posterior(x, y, tx, PRIOR), test, PRIOR)
    assert torch.allclose(exact["nll"], exact["gp_nll"], atol=1e-5)
    assert float(exact["kl"].abs().max()) < 1e-5 and float(exact["mean_gap"].max()) < 1e-5
    assert torch.allclose(exact["sd_ratio"], torch.ones(50, dtype=torch.float64), atol=1e-5)

    def shifted(x, y, tx):                                # mean + 0.1, variance x 4: KL and ratio in closed form
        mean, var = gp_posterior(x, y, tx, PRIOR)
        return mean + 0.1, 4 * var
    mean, var = (v.double() for v in gp_posterior(*test[:3], PRIOR))
    kl = (0.5 * (math.log(4) + (var + 0.01) / (4 * var) - 1)).mean(1)
    result = compare_with_gp(shifted, test, PRIOR)
    assert torch.allclose(result["kl"], kl, atol=1e-5)
    assert torch.allclose(result["mean_gap"], torch.full((50,), 0.1, dtype=torch.float64), atol=1e-5)
    assert torch.allclose(result["sd_ratio"], torch.full((50,), 2.0, dtype=torch.float64), atol=1e-5)
    direct = gaussian_nll(mean + 0.1, 4 * var, test[3].double()).mean(1)
    assert torch.allclose(result["nll"], direct, atol=1e-5)


def test_main_writes_a_checkpoint_and_card_that_load_back_to_the_same_predictions(tmp_path, one_thread):
    out = main(["--out", str(tmp_path / "pfn.pt"), "--steps", "3", "--seed", "1"])
    params, card = load_pfn(out)
    assert card["command"].startswith("python -m mllib.pfn --out") and card["config"]["steps"] == 3
    assert card["prior"] == {"lengthscale": 0.3, "variance": 1.0, "noise": 0.1, "low": -1.0, "high": 1.0}
    assert (tmp_path / "pfn.train.log").read_text().count('"command"') == 1
    again = init_pfn(width=64, layers=3, heads=4, hidden=64, generator=torch.Generator().manual_seed(1))
    train_pfn(again, GPPrior(), 3, batch=64, max_context=20, n_target=20, lr=1e-3, seed=1)
    x, y, tx, _ = tasks(n=4, m=3)
    with torch.no_grad():
        assert all(torch.equal(u, v) for u, v in zip(pfn_predict(params, x, y, tx), pfn_predict(again, x, y, tx)))
    assert not any(v.requires_grad for v in params.values())
    save_pfn(tmp_path / "copy.pt", params, {"note": "copy"})
    assert load_pfn(tmp_path / "copy.pt")[1] == {"note": "copy"}
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a prior-fitted network"):
        load_pfn(tmp_path / "other.pt")


@pytest.mark.parametrize("call, message", [
    (lambda: GPPrior(lengthscale=0.0), "lengthscale, variance, noise > 0"),
    (lambda: gp_posterior(torch.zeros(2, 3), torch.zeros(2, 2), torch.zeros(2, 1), PRIOR), "tasks need x"),
    (lambda: rbf_kernel(torch.zeros(2), torch.zeros(2), -1.0, 1.0), "lengthscale > 0"),
    (lambda: gaussian_nll(torch.zeros(2), torch.tensor([1.0, -1.0]), torch.zeros(2)), "var > 0"),
    (lambda: sample_gp_tasks(0, 3, 1, PRIOR), "num >= 1"),
    (lambda: init_pfn(width=10, heads=4), "heads dividing width"),
    (lambda: train_pfn(init_pfn(width=8, heads=2, layers=1), PRIOR, steps=0), "steps"),
    (lambda: compare_with_gp(lambda x, y, tx: (tx[:, :1], tx[:, :1]), tasks(), PRIOR), "predict must return"),
])
def test_bad_input_says_what_is_wrong(call, message):
    with pytest.raises(ValueError, match=message):
        call()
