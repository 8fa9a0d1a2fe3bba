"""mllib.baselines: training from scratch, pre-training on all classes, fine-tuning (tiny models, fast)."""
from __future__ import annotations

import pytest
import torch

from mllib import baselines as B
from mllib.models import ConvLearner, head_names, params_of
from mllib.tasks import OmniglotTasks, TaskBatch

SIDE = 8  # tiny images: 2 blocks take 8 -> 4 -> 2


def easy_tasks(num_tasks: int = 4, ways: int = 3, shots: int = 2, query: int = 4, seed: int = 0) -> TaskBatch:
    """Each class is a fixed random pattern plus a little noise: trivially learnable from the support set."""
    g = torch.Generator().manual_seed(seed)
    sx, sy, qx, qy = [], [], [], []
    for _ in range(num_tasks):
        patterns = torch.rand(ways, 1, SIDE, SIDE, generator=g)
        labels = torch.randperm(ways, generator=g)

        def draw(n):
            x = patterns.repeat_interleave(n, 0) + 0.1 * torch.randn(ways * n, 1, SIDE, SIDE, generator=g)
            return x, labels.repeat_interleave(n)

        (a, b), (c, d) = draw(shots), draw(query)
        sx.append(a), sy.append(b), qx.append(c), qy.append(d)
    return TaskBatch(torch.stack(sx), torch.stack(sy), torch.stack(qx), torch.stack(qy))


class ToyBatches:
    """A labelled-image sampler: 6 classes of fixed patterns (any object with num_classes and sample)."""

    num_classes = 6

    def __init__(self):
        self.g = torch.Generator().manual_seed(1)
        self.patterns = torch.rand(self.num_classes, 1, SIDE, SIDE, generator=self.g)

    def sample(self, n):
        y = torch.randint(self.num_classes, (n,), generator=self.g)
        return self.patterns[y] + 0.1 * torch.randn(n, 1, SIDE, SIDE, generator=self.g), y


@pytest.fixture(scope="module")
def toy_pretrained():
    return B.pretrain(ToyBatches(), steps=60, batch_size=16, lr=1e-2, filters=8, depth=2, progress=False)


# ---------------------------------------------------------------- from scratch
@pytest.mark.parametrize("optimizer,lr", [("adam", 0.05), ("sgd", 0.5)])
def test_scratch_beats_chance_on_an_easy_task(optimizer, lr):
    batch = easy_tasks()
    acc = B.scratch_accuracies(batch, steps=25, lr=lr, optimizer=optimizer, filters=8, depth=2, progress=False)
    assert acc.shape == (4,) and acc.dtype == torch.float32
    assert acc.mean() > 0.9  # chance is 1/3


def test_scratch_without_training_sits_near_chance():
    batch = easy_tasks(num_tasks=8)
    trained = B.scratch_accuracies(batch, steps=25, lr=0.05, filters=8, depth=2, progress=False)
    untrained = B.scratch_accuracies(batch, steps=0, lr=0.05, filters=8, depth=2, progress=False)
    assert untrained.mean() < 0.7 < trained.mean()


def test_scratch_is_seeded_per_task_and_leaves_the_global_rng_alone():
    batch = easy_tasks(num_tasks=3)
    state = torch.get_rng_state()
    a = B.scratch_accuracies(batch, steps=3, lr=0.05, filters=4, depth=2, seed=5, progress=False)
    assert torch.equal(torch.get_rng_state(), state)
    b = B.scratch_accuracies(batch, steps=3, lr=0.05, filters=4, depth=2, seed=5, progress=False)
    assert torch.equal(a, b)
    # task 1 alone gets the init of seed + 1, so its score matches its score inside the batch
    c = B.scratch_accuracies(batch[1:2], steps=3, lr=0.05, filters=4, depth=2, seed=6, progress=False)
    assert torch.equal(a[1:2], c)


def test_train_on_support_sgd_is_adapt_and_adam_differs():
    batch = easy_tasks(num_tasks=1)
    torch.manual_seed(0)
    model = ConvLearner(3, filters=4, depth=2, image_size=SIDE)
    p = params_of(model)
    sgd = B.train_on_support(model, p, batch.support_x[0], batch.support_y[0], 2, 0.1, "sgd")
    # hand-written SGD through plain autograd
    manual = {k: v.detach().clone().requires_grad_(True) for k, v in p.items()}
    for _ in range(2):
        loss = torch.nn.functional.cross_entropy(torch.func.functional_call(model, manual, (batch.support_x[0],)),
                                                 batch.support_y[0])
        grads = torch.autograd.grad(loss, list(manual.values()))
        manual = {k: (v - 0.1 * g).detach().requires_grad_(True) for (k, v), g in zip(manual.items(), grads)}
    for k in p:
        torch.testing.assert_close(sgd[k], manual[k].detach(), rtol=1e-5, atol=1e-6)
        assert not sgd[k].requires_grad
    adam = B.train_on_support(model, p, batch.support_x[0], batch.support_y[0], 2, 0.1, "adam")
    assert any(not torch.allclose(adam[k], sgd[k]) for k in p)
    assert all(torch.equal(p[k], params_of(model)[k]) for k in p)  # the start is not modified


@pytest.mark.parametrize("kwargs,name", [({"steps": -1}, "steps"), ({"lr": 0.0}, "lr"),
                                         ({"optimizer": "rmsprop"}, "optimizer"), ({"bn": "running"}, "bn")])
def test_scratch_rejects_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        B.scratch_accuracies(easy_tasks(num_tasks=1), **{"filters": 4, "depth": 2, "progress": False, **kwargs})


# ---------------------------------------------------------------- pre-training
def test_pretraining_loss_decreases(toy_pretrained):
    losses = toy_pretrained.losses
    assert len(losses) == 60 and toy_pretrained.num_classes == 6
    assert sum(losses[-10:]) / 10 < 0.5 * sum(losses[:10]) / 10
    assert sum(toy_pretrained.accuracies[-10:]) / 10 > 0.9
    assert toy_pretrained.params["head.weight"].shape == (6, toy_pretrained.model.feature_dim)


def test_pretraining_is_seeded():
    a = B.pretrain(ToyBatches(), steps=3, batch_size=8, filters=4, depth=2, seed=3, progress=False)
    b = B.pretrain(ToyBatches(), steps=3, batch_size=8, filters=4, depth=2, seed=3, progress=False)
    assert a.losses == b.losses and all(torch.equal(a.params[k], b.params[k]) for k in a.params)


def test_class_batches_cover_the_rotated_training_classes(omniglot):
    cb = B.ClassBatches(omniglot, split="maml", part="train", seed=0)
    tasks = OmniglotTasks(omniglot, split="maml", part="train")
    assert cb.num_classes == tasks.num_classes == 4 * len(tasks.characters)
    x, y = cb.sample(32)
    assert x.shape == (32, 1, 28, 28) and x.dtype == torch.float32 and y.shape == (32,) and y.dtype == torch.long
    assert 0 <= float(x.min()) and float(x.max()) <= 1 and int(y.max()) < cb.num_classes
    # an image of class c is its character's image turned by (c % 4) * 90 degrees: find one and compare
    c = int(y[0])
    char = int(tasks.characters[c // 4])
    originals = omniglot.images[char].float() / 255  # [drawers, 28, 28]
    turned = torch.rot90(originals, c % 4, dims=(1, 2))
    assert any(torch.equal(x[0, 0], t) for t in turned)
    again = B.ClassBatches(omniglot, split="maml", part="train", seed=0).sample(32)
    assert torch.equal(again[1], y) and torch.equal(again[0], x)
    no_rot = B.ClassBatches(omniglot, split="maml", part="test")
    assert no_rot.num_classes == len(OmniglotTasks(omniglot, split="maml", part="test").characters)


# ---------------------------------------------------------------- fine-tuning
def test_new_head_keeps_the_body_and_replaces_the_head(toy_pretrained):
    model, params = B.new_head(toy_pretrained, ways=3)
    assert model.ways == 3 and list(params) == [k for k, _ in model.named_parameters()]
    heads = head_names(model)
    for k, v in params.items():
        if k in heads:
            assert v.shape[0] == 3 and torch.count_nonzero(v) == 0
        else:
            assert torch.equal(v, toy_pretrained.params[k])
    _, rand = B.new_head(toy_pretrained, ways=3, init="random", seed=1)
    assert torch.count_nonzero(rand["head.weight"]) > 0


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_finetune_head_changes_only_the_head(toy_pretrained, optimizer):
    batch = easy_tasks(num_tasks=1)
    model, start = B.new_head(toy_pretrained, ways=3)
    tuned = B.finetune(model, start, batch.support_x[0], batch.support_y[0], 5, 0.1, "head", optimizer)
    heads = set(head_names(model))
    for k in start:
        if k in heads:
            assert not torch.equal(tuned[k], start[k]), k
        else:
            assert torch.equal(tuned[k], start[k]), k
    everything = B.finetune(model, start, batch.support_x[0], batch.support_y[0], 5, 0.1, "all", optimizer)
    assert not torch.equal(everything["blocks.0.conv.weight"], start["blocks.0.conv.weight"])


def test_finetune_accuracies_shape_and_learning(toy_pretrained):
    batch = easy_tasks(num_tasks=4)
    before = B.finetune_accuracies(toy_pretrained, batch, steps=0, lr=0.5, progress=False)
    after = B.finetune_accuracies(toy_pretrained, batch, steps=30, lr=0.5, mode="all", progress=False)
    assert after.shape == (4,) and after.dtype == torch.float32
    assert torch.allclose(before, torch.full((4,), 1 / 3))  # zero head: every logit ties, argmax picks class 0
    assert after.mean() > 0.9
    with pytest.raises(ValueError, match="mode"):
        B.finetune_accuracies(toy_pretrained, batch, mode="body", progress=False)
