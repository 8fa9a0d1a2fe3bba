"""iMAML (``mllib.imaml``) on the sinusoid learner in float64: the implicit meta-gradient against finite
differences of ``L_query(phi*(theta))``, the unrolled gradient approaching it as the inner steps grow,
conjugate gradient against a dense solve, the graph memory of each, and the sentences bad input gets."""
import doctest

import pytest
import torch

import mllib.imaml
from mllib.algorithms import support_loss_fn
from mllib.imaml import (conjugate_gradient, hessian_vector_product, implicit_meta_gradient, peak_graph_bytes,
                         proximal_adapt, unrolled_meta_gradient)
from mllib.models import SineMLP, params_of
from mllib.tasks import SinusoidTasks

pytestmark = pytest.mark.usefixtures("one_thread")
LAM, LR, CONVERGED = 5.0, 0.1, 100       # 100 steps: phi* to about 1e-15 here


@pytest.fixture(scope="module")
def problem():
    """The 1 -> 8 -> 8 -> 1 MLP (97 parameters), one 10-shot sinusoid task, all float64."""
    torch.manual_seed(0)
    model = SineMLP(hidden=8).double()
    theta = {n: p.detach().double() for n, p in params_of(model).items()}
    task = SinusoidTasks(shots=10, query=10, seed=0).sample(1)
    support = (task.support_x[0].double(), task.support_y[0].double())
    query = (task.query_x[0].double(), task.query_y[0].double())
    return support_loss_fn(model), theta, support, query


@pytest.fixture(scope="module")
def converged(problem):
    """iMAML's gradient and info with phi* solved to convergence (the reference of the tests)."""
    loss, theta, support, query = problem
    return implicit_meta_gradient(loss, theta, support, query, LAM, CONVERGED, LR, cg_steps=50)


def flat(d):
    return torch.cat([t.reshape(-1) for t in d.values()])


def unflat(vector, like):
    parts = torch.split(vector, [t.numel() for t in like.values()])
    return {n: part.view(t.shape) for (n, t), part in zip(like.items(), parts)}


def relative(a, b):
    return ((flat(a) - flat(b)).norm() / flat(b).norm()).item()


def test_the_implicit_gradient_is_the_gradient_of_the_query_loss_at_the_solution(problem, converged):
    loss, theta, support, query = problem
    grad, info = converged
    assert info["stationarity"] < 1e-12 and info["residuals"][-1] < 1e-12       # phi* and CG converged

    def query_loss(start):
        return loss(proximal_adapt(start, loss, support, LAM, CONVERGED, LR), query).item()

    generator = torch.Generator().manual_seed(1)
    directions = [grad] + [unflat(torch.randn(flat(theta).numel(), generator=generator, dtype=torch.float64), theta)
                           for _ in range(2)]
    eps = 1e-5
    for d in directions:                        # directional finite differences: 2 inner solves each
        plus = query_loss({n: theta[n] + eps * d[n] for n in theta})
        minus = query_loss({n: theta[n] - eps * d[n] for n in theta})
        numeric = (plus - minus) / (2 * eps)
        assert torch.dot(flat(grad), flat(d)).item() == pytest.approx(numeric, rel=1e-6, abs=1e-9)


def test_the_unrolled_gradient_approaches_the_implicit_one_as_the_inner_loop_converges(problem, converged):
    loss, theta, support, query = problem
    reference = converged[0]
    errors = [relative(unrolled_meta_gradient(loss, theta, support, query, LAM, k, LR), reference)
              for k in (2, 8, 32, 128)]
    assert errors[0] > 0.05                                          # far apart after two steps
    assert all(a > 10 * b for a, b in zip(errors, errors[1:])), errors
    assert errors[-1] < 1e-10, errors


def test_conjugate_gradient_solves_the_system_with_the_dense_hessian(problem, converged):
    loss, theta, support, query = problem
    grad, info = converged
    phi = info["adapted"]
    hessian = torch.autograd.functional.hessian(lambda v: loss(unflat(v, phi), support), flat(phi))
    vector = unflat(torch.linspace(-1, 1, flat(phi).numel(), dtype=torch.float64), phi)
    hvp = hessian_vector_product(loss, phi, support)
    torch.testing.assert_close(flat(hvp(vector)), hessian @ flat(vector), rtol=1e-10, atol=1e-12)
    system = torch.eye(len(hessian), dtype=torch.float64) + hessian / LAM
    x, residuals = conjugate_gradient(lambda v: {n: v[n] + hvp(v)[n] / LAM for n in v}, vector, steps=60)
    assert residuals[-1] < 1e-12 and len(residuals) < 60                   # stopped on its tolerance
    torch.testing.assert_close(flat(x), torch.linalg.solve(system, flat(vector)), rtol=1e-9, atol=1e-12)
    point = {n: t.clone().requires_grad_() for n, t in phi.items()}
    query_grad = flat(dict(zip(point, torch.autograd.grad(loss(point, query), list(point.values())))))
    torch.testing.assert_close(flat(grad), torch.linalg.solve(system, query_grad), rtol=1e-9, atol=1e-12)


def test_conjugate_gradient_is_exact_after_n_steps_on_an_n_by_n_system():
    generator = torch.Generator().manual_seed(0)
    m = torch.randn(5, 5, generator=generator, dtype=torch.float64)
    a, b = m @ m.T + 0.5 * torch.eye(5, dtype=torch.float64), torch.randn(5, generator=generator, dtype=torch.float64)
    x, residuals = conjugate_gradient(lambda v: {"x": a @ v["x"]}, {"x": b}, steps=5, tol=0.0)
    assert len(residuals) == 5 and residuals[-1] < 1e-8
    torch.testing.assert_close(x["x"], torch.linalg.solve(a, b))


def test_memory_grows_with_the_inner_steps_for_the_unrolled_gradient_only(problem):
    loss, theta, support, query = problem
    unrolled = [peak_graph_bytes(unrolled_meta_gradient, loss, theta, support, query, LAM, k, LR)[1]
                for k in (4, 8, 16)]
    implicit = [peak_graph_bytes(implicit_meta_gradient, loss, theta, support, query, LAM, k, LR, 10)[1]
                for k in (4, 8, 16)]
    assert unrolled[2] - unrolled[1] == 2 * (unrolled[1] - unrolled[0]) > 0      # the same bytes per step
    assert implicit[0] == implicit[1] == implicit[2] < unrolled[0]


def test_peak_graph_bytes_counts_the_graph_alive_at_its_largest():
    w = torch.ones(1000, dtype=torch.float64, requires_grad=True)             # 8,000 bytes

    def freed_then_kept():
        for _ in range(3):
            torch.autograd.grad((w * w).sum(), w)                  # each graph freed by its backward
        return (w.exp() * w).sum()                                 # w, exp(w): kept

    loss, peak = peak_graph_bytes(freed_then_kept)
    assert peak == 16000 and loss.requires_grad


def test_the_module_examples_run():
    assert doctest.testmod(mllib.imaml).failed == 0


@pytest.mark.parametrize("lam", [0, -1.0, float("nan")])
def test_a_nonpositive_lam_is_refused_in_one_sentence(problem, lam):
    loss, theta, support, query = problem
    for call in (lambda: implicit_meta_gradient(loss, theta, support, query, lam, 2, LR),
                 lambda: unrolled_meta_gradient(loss, theta, support, query, lam, 2, LR)):
        with pytest.raises(ValueError, match=r"^lam must be a finite number > 0, got") as error:
            call()
        assert "\n" not in str(error.value)


def test_fewer_than_one_cg_step_or_an_indefinite_system_is_refused_in_one_sentence(problem):
    loss, theta, support, query = problem
    for steps in (0, -3, 2.5):
        with pytest.raises(ValueError, match=r"^cg_steps must be an integer >= 1, got"):
            implicit_meta_gradient(loss, theta, support, query, LAM, 2, LR, cg_steps=steps)
    minus_one = {"x": -torch.eye(2, dtype=torch.float64)}
    with pytest.raises(ValueError, match=r"not positive definite \(for iMAML: increase lam\)$"):
        conjugate_gradient(lambda v: {"x": minus_one["x"] @ v["x"]}, {"x": torch.ones(2, dtype=torch.float64)}, 3)
