"""The in-context learner: support-order invariance, labels really used, no test-time gradient,
shapes, the functional API, and bad input."""
from __future__ import annotations

import pytest
import torch

from mllib.algorithms import MetaConfig, evaluate_tasks
from mllib.incontext import (
    InContextLearner, MLPEncoder, attend, batch_loss, evaluate_incontext, omniglot_incontext, predict_tasks,
    sine_incontext, task_loss_fn, train_incontext,
)
from mllib.models import SineMLP
from mllib.tasks import SinusoidTasks
from mllib.tasks.batch import TaskBatch

pytestmark = pytest.mark.usefixtures("one_thread")


class ClusterTasks:
    """Synthetic ``ways``-way ``shots``-shot tasks: each class is a random centre in R^dim, its examples
    the centre plus small noise; labels are a random permutation per task (as in OmniglotTasks)."""

    def __init__(self, ways=3, shots=1, query=4, dim=8, noise=0.1, seed=0):
        self.ways, self.shots, self.query, self.dim, self.noise = ways, shots, query, dim, noise
        self.gen = torch.Generator().manual_seed(seed)

    def sample(self, n):
        centres = torch.randn(n, self.ways, self.dim, generator=self.gen)
        labels = torch.stack([torch.randperm(self.ways, generator=self.gen) for _ in range(n)])   # [n, ways]

        def draw(k):
            x = centres.repeat_interleave(k, 1)
            x = x + self.noise * torch.randn(x.shape, generator=self.gen)
            return x, labels.repeat_interleave(k, 1)

        (sx, sy), (qx, qy) = draw(self.shots), draw(self.query)
        return TaskBatch(sx, sy, qx, qy)


@pytest.fixture(scope="module")
def trained_classifier():
    torch.manual_seed(0)
    model = InContextLearner(MLPEncoder(8, 32), ways=3, dim=32, depth=1, heads=2)
    history = train_incontext(model, ClusterTasks(seed=0), steps=150, meta_batch=32, lr=3e-3, progress=False)
    return model, history


def test_attend_is_softmax_attention():
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, n, 4, generator=gen) for n in (3, 5, 5))
    want = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    assert torch.allclose(attend(q, k, v), want, atol=1e-6)
    perm = torch.randperm(5, generator=gen)
    assert torch.allclose(attend(q, k[:, perm], v[:, perm]), want, atol=1e-6)   # a set: order-free
    with pytest.raises(ValueError, match="do not match"):
        attend(q, k[..., :3], v)


@pytest.mark.parametrize("kind", ["sine", "omniglot"])
def test_predictions_do_not_depend_on_support_order_and_queries_are_independent(kind):
    torch.manual_seed(0)
    if kind == "sine":
        model = sine_incontext(dim=32)
        batch = SinusoidTasks(shots=7, query=4, seed=0).sample(1)
    else:
        model = omniglot_incontext(ways=5, filters=8, dim=32)
        gen = torch.Generator().manual_seed(0)
        batch = TaskBatch(torch.rand(1, 10, 1, 28, 28, generator=gen), torch.arange(5).repeat(2)[None],
                          torch.rand(1, 4, 1, 28, 28, generator=gen), torch.arange(4)[None])
    sx, sy, qx = batch.support_x[0], batch.support_y[0], batch.query_x[0]
    with torch.no_grad():
        for p in model.parameters():      # new blocks are the identity (zero last layers): use random ones
            p.add_(0.2 * torch.randn_like(p))
        out = model(sx, sy, qx)
        perm = torch.randperm(sx.shape[0])
        assert torch.allclose(model(sx[perm], sy[perm], qx), out, atol=1e-5)
        assert torch.allclose(model(sx, sy, qx[[2, 0, 3, 1]]), out[[2, 0, 3, 1]], atol=1e-5)
        assert torch.allclose(model(sx, sy, qx[:1]), out[:1], atol=1e-5)           # no query sees another
        # the check can fail: a different support set changes the prediction
        assert not torch.allclose(model(sx[1:], sy[1:], qx), out, atol=1e-4)


def test_labels_are_really_used(trained_classifier):
    model, history = trained_classifier
    batch = ClusterTasks(seed=123).sample(200)
    accuracy = float(evaluate_incontext(model, batch).mean())
    assert accuracy > 0.9, f"the tiny model should have learned the task family, got {accuracy:.2f}"
    gen = torch.Generator().manual_seed(1)
    shuffled_y = torch.stack([y[torch.randperm(len(y), generator=gen)] for y in batch.support_y])
    shuffled = TaskBatch(batch.support_x, shuffled_y, batch.query_x, batch.query_y)
    chance = float(evaluate_incontext(model, shuffled).mean())
    assert abs(chance - 1 / 3) < 0.1, f"with shuffled support labels accuracy should be chance (1/3), got {chance:.2f}"
    assert history["loss"][-1] < history["loss"][0]


def test_no_gradient_is_taken_at_test_time(trained_classifier, monkeypatch):
    model, _ = trained_classifier
    batch = ClusterTasks(seed=5).sample(10)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    want = evaluate_incontext(model, batch)

    def forbidden(*args, **kwargs):
        raise AssertionError("a gradient was taken at test time")

    for target in ("torch.autograd.grad", "torch.autograd.backward", "torch.func.grad", "torch.func.vjp",
                   "torch.Tensor.backward"):
        monkeypatch.setattr(target, forbidden)
    assert torch.equal(evaluate_incontext(model, batch), want)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    # the check can fail: MAML's evaluation takes inner gradient steps
    sine = SineMLP()
    with pytest.raises(AssertionError, match="gradient was taken"):
        evaluate_tasks(sine, dict(sine.named_parameters()), SinusoidTasks(seed=0).sample(2),
                       MetaConfig(inner_steps=1, inner_lr=0.01, form="loop"))


def test_attention_readout_probabilities_are_attention_mass_on_each_class():
    torch.manual_seed(0)
    model = InContextLearner(MLPEncoder(8, 16), ways=4, dim=16, depth=1, heads=2)
    batch = ClusterTasks(ways=4, shots=2, seed=3).sample(1)
    with torch.no_grad():
        logits = model(batch.support_x[0], batch.support_y[0], batch.query_x[0])
        probs = logits.exp()
        assert torch.allclose(probs.sum(-1), torch.ones(len(probs)), atol=1e-4)   # a distribution over classes
        # a class missing from the support set gets (almost) no probability
        keep = batch.support_y[0] != 2
        missing = model(batch.support_x[0][keep], batch.support_y[0][keep], batch.query_x[0]).exp()
        assert float(missing[:, 2].max()) < 1e-5 and float(probs[:, 2].min()) > 1e-3
    linear = InContextLearner(MLPEncoder(8, 16), ways=4, dim=16, depth=1, heads=2, readout="linear")
    assert linear(batch.support_x[0], batch.support_y[0], batch.query_x[0]).shape == (16, 4)


def test_shapes_and_the_functional_api_agree():
    torch.manual_seed(0)
    model = omniglot_incontext(ways=5, filters=8, dim=32)
    gen = torch.Generator().manual_seed(0)
    batch = TaskBatch(torch.rand(3, 5, 1, 28, 28, generator=gen), torch.stack([torch.randperm(5) for _ in range(3)]),
                      torch.rand(3, 10, 1, 28, 28, generator=gen), torch.randint(0, 5, (3, 10), generator=gen))
    out = predict_tasks(model, batch.support_x, batch.support_y, batch.query_x)
    assert out.shape == (3, 10, 5)
    with torch.no_grad():
        assert torch.allclose(out[1], model(batch.support_x[1], batch.support_y[1], batch.query_x[1]), atol=1e-5)
    params = {k: v.detach() for k, v in model.named_parameters()}
    loss, acc = task_loss_fn(model)(params, *(t[1] for t in (batch.support_x, batch.support_y, batch.query_x,
                                                              batch.query_y)))
    want = torch.nn.functional.cross_entropy(out[1], batch.query_y[1])
    assert torch.allclose(loss, want, atol=1e-5) and 0 <= float(acc) <= 1
    l_loss, l_acc = batch_loss(model, batch, form="loop")
    grads_l = torch.autograd.grad(l_loss, list(model.parameters()))
    for form in ("batched", "vmap"):
        loss, acc = batch_loss(model, batch, form=form)
        assert torch.allclose(loss, l_loss, atol=1e-5) and torch.allclose(acc, l_acc), form
        grads = torch.autograd.grad(loss, list(model.parameters()))
        assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(grads, grads_l)), form
    sine = sine_incontext(dim=32)
    sb = SinusoidTasks(shots=6, query=9, seed=0).sample(4)
    assert torch.allclose(batch_loss(sine, sb)[1], batch_loss(sine, sb, form="loop")[1], atol=1e-5)
    assert predict_tasks(sine, sb.support_x, sb.support_y, sb.query_x).shape == (4, 9, 1)
    assert evaluate_incontext(sine, sb).shape == (4,)


def test_training_on_sinusoids_with_varying_support_sizes():
    torch.manual_seed(0)
    model = sine_incontext(dim=32)
    tasks = SinusoidTasks(shots=10, query=10, seed=0)
    history = train_incontext(model, tasks, steps=40, meta_batch=16, lr=3e-3, support_sizes=[1, 5, 10],
                              progress=False)
    assert len(history["loss"]) == 40 and not history["interrupted"]
    assert sum(history["loss"][-10:]) < sum(history["loss"][:10])
    with pytest.raises(ValueError, match="exceeds"):
        train_incontext(model, tasks, steps=1, support_sizes=[11], progress=False)


def test_bad_input_is_named():
    model = omniglot_incontext(ways=5, filters=8, dim=32)
    x = torch.rand(5, 1, 28, 28)
    with pytest.raises(ValueError, match="labels must be in 0..4"):
        model(x, torch.tensor([0, 1, 2, 3, 5]), x)
    with pytest.raises(ValueError, match="integer class labels"):
        model(x, torch.zeros(5), x)
    with pytest.raises(ValueError, match="same example shape"):
        model(x, torch.arange(5), torch.rand(5, 1, 14, 14))
    with pytest.raises(ValueError, match="same\\s+number of tasks"):
        predict_tasks(model, x[None], torch.arange(5)[None], x[None].expand(2, -1, -1, -1, -1))
    sine = sine_incontext(dim=32)
    with pytest.raises(ValueError, match="float values"):
        sine(torch.rand(4, 1), torch.arange(4), torch.rand(2, 1))
    with pytest.raises(ValueError, match="divisible by heads"):
        sine_incontext(dim=30, heads=4)
    with pytest.raises(ValueError, match="ways"):
        InContextLearner(MLPEncoder(), ways=1)
    with pytest.raises(ValueError, match="readout"):
        InContextLearner(MLPEncoder(), ways=None, readout="attention")
    with pytest.raises(ValueError, match="readout"):
        InContextLearner(MLPEncoder(), ways=3, readout="mean")
    with pytest.raises(ValueError, match="feature_dim"):
        InContextLearner(torch.nn.Linear(1, 4))
    with pytest.raises(ValueError, match="form"):
        batch_loss(sine, SinusoidTasks(seed=0).sample(2), form="scan")
    with pytest.raises(ValueError, match="support_sizes"):
        train_incontext(sine, SinusoidTasks(seed=0), steps=1, support_sizes=[0])
    with pytest.raises(ValueError, match="lr"):
        train_incontext(sine, SinusoidTasks(seed=0), steps=1, lr=0)


def test_support_batch_norm_is_the_course_support_mode_for_many_tasks():
    from mllib.incontext import SupportBatchNorm
    from mllib.models import BatchNorm
    torch.manual_seed(0)
    x = torch.randn(3, 7, 4, 5, 5, dtype=torch.float64)
    ours, course = SupportBatchNorm(4).double(), BatchNorm(4).double()
    with torch.no_grad():
        for norm in (ours, course):
            norm.weight.copy_(torch.arange(1.0, 5.0))
            norm.bias.copy_(torch.arange(4.0) / 10)
        got = ours(x, support=2)
        for t in range(3):
            assert torch.allclose(got[t], course(x[t], stats_rows=2))
