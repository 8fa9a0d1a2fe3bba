"""mllib.diagnostics: finite differences against known gradients, and the bytes a graph keeps."""
from __future__ import annotations

import pytest
import torch

from mllib.algorithms import MetaConfig, init_meta_params, meta_gradient, query_loss_and_metric
from mllib.diagnostics import finite_differences, saved_tensor_bytes
from mllib.models import ConvLearner, SineMLP
from mllib.tasks import SinusoidTasks, TaskBatch


def test_finite_differences_match_a_known_gradient():
    params = {"a": torch.tensor([[1.0, -2.0], [0.5, 3.0]], dtype=torch.float64),
              "b": torch.tensor([0.3], dtype=torch.float64)}

    def f(p):                                    # d/da = 2 a * b, d/db = sum(a ** 2) + cos(b)
        return ((p["a"] ** 2).sum() * p["b"] + torch.sin(p["b"])).sum()

    grads = finite_differences(f, params)
    torch.testing.assert_close(grads["a"], 2 * params["a"] * params["b"], rtol=1e-7, atol=1e-9)
    torch.testing.assert_close(grads["b"], (params["a"] ** 2).sum() + torch.cos(params["b"]), rtol=1e-7, atol=1e-9)
    assert grads["a"].shape == (2, 2) and grads["a"].dtype == torch.float64
    assert torch.equal(params["a"], torch.tensor([[1.0, -2.0], [0.5, 3.0]], dtype=torch.float64))  # untouched


def test_finite_differences_agree_with_the_maml_meta_gradient():
    torch.manual_seed(0)
    model = SineMLP(hidden=4).double()
    batch = SinusoidTasks(shots=5, query=5, seed=1).sample(1)
    batch = TaskBatch(*(t.double() for t in batch.tensors()))
    cfg = MetaConfig(algo="maml", inner_steps=2, inner_lr=0.05, form="loop")
    start = init_meta_params(model, cfg)
    (task,) = batch

    def meta_loss(params):
        return query_loss_and_metric(model, params, *task, cfg, evaluation=True)[0]

    numeric = finite_differences(meta_loss, start)
    analytic = meta_gradient(model, start, batch, cfg)[0]
    for k in start:
        torch.testing.assert_close(analytic[k], numeric[k], rtol=1e-6, atol=1e-8)
    first_order = meta_gradient(model, start, batch, MetaConfig(algo="fomaml", inner_steps=2, inner_lr=0.05))[0]
    assert max(float((first_order[k] - numeric[k]).abs().max()) for k in start) > 1e-4   # the check can fail


def test_saved_tensor_bytes_counts_distinct_storages_once():
    w = torch.ones(1000, requires_grad=True)
    _, kept = saved_tensor_bytes(lambda: (w * w).sum())
    assert kept == 4000                                       # w saved twice, one storage
    x = torch.ones(250, requires_grad=True)
    _, kept = saved_tensor_bytes(lambda: (w[:250] * x).sum())
    assert kept == 1000 + 4000                                # x, and all of w's storage (through the view)
    with torch.no_grad():
        assert saved_tensor_bytes(lambda: (w * w).sum())[1] == 0


def test_saved_tensor_bytes_ignores_graphs_freed_inside():
    w = torch.ones(1000, requires_grad=True)

    def gradient_then_nothing_kept():
        (g,) = torch.autograd.grad((w * w).sum(), w)         # the graph is used and freed here
        return g

    assert saved_tensor_bytes(gradient_then_nothing_kept)[1] == 0


def test_second_order_graph_grows_with_inner_steps_first_order_does_not():
    torch.manual_seed(0)
    model = ConvLearner(ways=3, filters=4, depth=2, image_size=12)
    task = (torch.rand(3, 1, 12, 12), torch.arange(3), torch.rand(6, 1, 12, 12), torch.arange(3).repeat(2))

    def kept(algo, steps):
        cfg = MetaConfig(algo=algo, inner_steps=steps, inner_lr=0.1, form="loop")
        return saved_tensor_bytes(query_loss_and_metric, model, init_meta_params(model, cfg), *task, cfg)[1]

    maml = [kept("maml", s) for s in (1, 2, 3)]
    fomaml = [kept("fomaml", s) for s in (1, 2, 3)]
    assert maml[0] < maml[1] < maml[2] and maml[2] - maml[1] == pytest.approx(maml[1] - maml[0], rel=0.05)
    assert fomaml[0] == fomaml[1] == fomaml[2] < maml[0]
