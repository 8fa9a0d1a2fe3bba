"""mllib.memorization: non-mutually-exclusive tasks (fixed labels) against permuted labels, and the
memorization they cause in MAML."""
import pytest
import torch

from mllib.algorithms import MetaConfig, evaluate_tasks, init_meta_params, meta_gradient, meta_step
from mllib.memorization import MLPClassifier, PrototypeClasses, PrototypeTasks, sample_tasks, shuffle_support_labels


def class_of(x, pool):
    """The pool index of each noiseless example ``x [..., dim]``."""
    return torch.cdist(x.reshape(-1, pool.shape[1]), pool).argmin(dim=1).reshape(x.shape[:-1])


def test_fixed_labels_are_the_group_of_the_class_in_every_task():
    pool = torch.randn(20, 6, generator=torch.Generator().manual_seed(0))
    batch = sample_tasks(pool, 0.0, 50, ways=5, shots=2, query=3, permute=False,
                         generator=torch.Generator().manual_seed(1))
    for x, y in ((batch.support_x, batch.support_y), (batch.query_x, batch.query_y)):
        assert torch.equal(class_of(x, pool) % 5, y)          # label = group of the class, always
    assert len(set(class_of(batch.support_x, pool).flatten().tolist())) == 20   # every class is drawn


def test_permuted_labels_differ_between_tasks_for_the_same_class():
    pool = torch.randn(10, 6, generator=torch.Generator().manual_seed(0))
    batch = sample_tasks(pool, 0.0, 200, ways=5, shots=1, query=1, permute=True,
                         generator=torch.Generator().manual_seed(1))
    classes = class_of(batch.support_x, pool)
    for t in range(200):
        assert sorted(batch.support_y[t].tolist()) == [0, 1, 2, 3, 4]
        assert torch.equal(batch.query_y[t], batch.support_y[t])       # 1 shot, 1 query, same class order
    labels_of_class0 = {int(batch.support_y[t][classes[t] == 0]) for t in range(200) if (classes[t] == 0).any()}
    assert labels_of_class0 == {0, 1, 2, 3, 4}


def test_sampling_is_seeded_and_the_sampler_matches_the_function():
    pool = PrototypeClasses(num_train=10, num_new=5, dim=4, seed=3).train
    a = sample_tasks(pool, 0.5, 3, generator=torch.Generator().manual_seed(7))
    b = PrototypeTasks(pool, 0.5, seed=7).sample(3)
    assert all(torch.equal(u, v) for u, v in zip(a.tensors(), b.tensors()))


def test_shuffled_support_labels_keep_inputs_and_query():
    batch = sample_tasks(torch.randn(10, 4), 0.5, 4, generator=torch.Generator().manual_seed(0))
    shuffled = shuffle_support_labels(batch, torch.Generator().manual_seed(1))
    assert torch.equal(shuffled.support_x, batch.support_x) and torch.equal(shuffled.query_y, batch.query_y)
    assert not torch.equal(shuffled.support_y, batch.support_y)


def test_maml_on_the_mlp_classifier_loop_and_vmap_agree():
    model, batch = MLPClassifier(8, 5, hidden=16), sample_tasks(torch.randn(10, 8), 0.5, 3)
    grads = {}
    for form in ("loop", "vmap"):
        cfg = MetaConfig(algo="maml", inner_lr=0.1, form=form)
        torch.manual_seed(0)
        grads[form] = meta_gradient(model, init_meta_params(model, cfg), batch, cfg)[0]
    for name, g in grads["loop"].items():
        assert torch.allclose(g, grads["vmap"][name], atol=1e-5), name


def test_fixed_labels_make_maml_memorize_and_permuted_labels_do_not(one_thread):
    """The claim of notebook 09, section 1, in small: with fixed labels the start alone (no adaptation)
    solves the training tasks; with permuted labels it cannot (chance), it must adapt."""
    classes = PrototypeClasses(num_train=20, num_new=10, seed=0)
    cfg = MetaConfig(algo="maml", inner_steps=1, inner_lr=0.1, form="vmap")
    zero_step = {}
    for permute in (False, True):
        torch.manual_seed(0)
        model = MLPClassifier(classes.dim, 5, hidden=32)
        params = init_meta_params(model, cfg)
        optimizer = torch.optim.Adam(params.values(), lr=5e-3)
        tasks = PrototypeTasks(classes.train, classes.noise, permute=permute, seed=1)
        for _ in range(120):
            meta_step(model, params, tasks.sample(8), cfg, optimizer)
        test = PrototypeTasks(classes.train, classes.noise, permute=permute, seed=2).sample(200)
        zero_step[permute] = float(evaluate_tasks(model, params, test, cfg, inner_steps=0).mean())
    assert zero_step[False] > 0.9, zero_step
    assert zero_step[True] < 0.3, zero_step


@pytest.mark.parametrize("call, message", [
    (lambda: sample_tasks(torch.randn(12, 3), 0.5, 2, ways=5), "must split into ways=5 equal groups"),
    (lambda: sample_tasks(torch.randn(12), 0.5, 2), r"must be \[classes, dim\]"),
    (lambda: PrototypeClasses(noise=-1.0), "noise must be >= 0"),
    (lambda: MLPClassifier(4, 1), "ways >= 2"),
])
def test_bad_input_says_what_is_wrong(call, message):
    with pytest.raises(ValueError, match=message):
        call()
