"""Outer-loop algorithms: vmap == loop, Reptile by hand, ANIL, Meta-SGD, evaluation, batch-norm leakage."""
import pytest
import torch

import mllib.algorithms as algorithms
from mllib.algorithms import (ALGORITHMS, MetaConfig, evaluate_tasks, init_meta_params, meta_gradient,
                              pick_form, predict, proto_logits)
from mllib.inner import adapt
from mllib.models import ConvLearner, SineMLP, head_names, params_of
from mllib.tasks.batch import TaskBatch


pytestmark = pytest.mark.usefixtures("one_thread")


def conv_tasks(tasks, ways=3, shots=1, query=2, size=12, dtype=torch.float32, seed=0, random_labels=False):
    gen = torch.Generator().manual_seed(seed)
    def labels(per_class):
        if random_labels:
            return torch.randint(0, ways, (tasks, ways * per_class), generator=gen)
        return torch.arange(ways).repeat(per_class).repeat(tasks, 1)
    return TaskBatch(torch.rand(tasks, ways * shots, 1, size, size, generator=gen, dtype=dtype), labels(shots),
                     torch.rand(tasks, ways * query, 1, size, size, generator=gen, dtype=dtype), labels(query))


def sine_tasks(tasks, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(tasks, 10, 1, generator=gen) * 10 - 5
    y = 2 * torch.sin(x + torch.rand(tasks, 1, 1, generator=gen))
    return TaskBatch(x[:, :5], y[:, :5], x[:, 5:], y[:, 5:])


def rel_err(a, b):
    num = sum(((a[k] - b[k]) ** 2).sum() for k in b) ** 0.5
    den = sum((b[k] ** 2).sum() for k in b) ** 0.5
    return (num / den).item()


# ----------------------------------------------------------------------------- 3. vmap == loop

@pytest.mark.parametrize("algo", ALGORITHMS)
@pytest.mark.parametrize("bn", ["batch", "support"])
def test_vmap_equals_loop_conv(algo, bn):
    torch.manual_seed(0)
    model = ConvLearner(ways=3, filters=8, depth=2, image_size=12)
    batch = conv_tasks(4)
    results = {}
    for form in ("loop", "vmap"):
        cfg = MetaConfig(algo=algo, inner_steps=2, inner_lr=0.2, bn=bn, form=form)
        params = init_meta_params(model, cfg)
        grads, stats = meta_gradient(model, params, batch, cfg)
        results[form] = grads, stats, evaluate_tasks(model, params, batch, cfg, inner_steps=3)
    (g_loop, s_loop, e_loop), (g_vmap, s_vmap, e_vmap) = results["loop"], results["vmap"]
    assert set(g_loop) == set(g_vmap) == set(init_meta_params(model, MetaConfig(algo=algo)))
    assert rel_err(g_vmap, g_loop) < 1e-5
    assert sum(float(g.abs().sum()) for g in g_loop.values()) > 0
    assert s_vmap["loss"] == pytest.approx(s_loop["loss"], rel=1e-5)
    assert s_vmap["accuracy"] == pytest.approx(s_loop["accuracy"], abs=1e-6)
    assert e_vmap.shape == (4,)
    torch.testing.assert_close(e_vmap, e_loop)


@pytest.mark.parametrize("algo", [a for a in ALGORITHMS if a != "protonet"])
def test_vmap_equals_loop_sine_regression(algo):
    torch.manual_seed(0)
    model = SineMLP()
    batch = sine_tasks(5)
    out = {}
    for form in ("loop", "vmap"):
        cfg = MetaConfig(algo=algo, inner_steps=2, inner_lr=0.01, form=form)
        params = init_meta_params(model, cfg)
        out[form] = meta_gradient(model, params, batch, cfg), evaluate_tasks(model, params, batch, cfg)
    (g_loop, s_loop), e_loop = out["loop"]
    (g_vmap, s_vmap), e_vmap = out["vmap"]
    assert rel_err(g_vmap, g_loop) < 1e-5
    assert s_loop["loss"] == pytest.approx(s_vmap["loss"], rel=1e-5)
    assert s_loop["accuracy"] != s_loop["accuracy"]          # NaN: no accuracy for regression
    torch.testing.assert_close(e_vmap, e_loop)
    # evaluate_tasks reports the per-task query MSE after adaptation
    assert e_loop.shape == (5,) and bool((e_loop > 0).all())


# ----------------------------------------------------------------------------- 4. Reptile, ANIL, Meta-SGD

@pytest.mark.parametrize("data", ["support+query", "support"])
@pytest.mark.parametrize("form", ["loop", "vmap"])
def test_reptile_update_matches_hand_computation_on_quadratic_loss(data, form):
    """Linear regression y = w x + b with MSE is quadratic in (w, b): SGD steps by hand."""
    model = torch.nn.Linear(1, 1).double()
    with torch.no_grad():
        model.weight.fill_(0.5)
        model.bias.fill_(-0.25)
    xs = torch.tensor([[[1.0], [2.0], [-1.0]], [[0.5], [-2.0], [3.0]]], dtype=torch.float64)
    ys = torch.tensor([[[2.0], [3.0], [0.0]], [[1.0], [-1.0], [4.0]]], dtype=torch.float64)
    batch = TaskBatch(xs[:, :2], ys[:, :2], xs[:, 2:], ys[:, 2:])
    steps, lr = 3, 0.1
    cfg = MetaConfig(algo="reptile", inner_steps=steps, inner_lr=lr, form=form, reptile_data=data)
    grads, _ = meta_gradient(model, init_meta_params(model, cfg), batch, cfg)
    used = 3 if data == "support+query" else 2
    adapted = []
    for t in range(2):
        w, b = 0.5, -0.25
        pts = [(xs[t, i, 0].item(), ys[t, i, 0].item()) for i in range(used)]
        for _ in range(steps):
            gw = sum(2 * (w * x + b - y) * x for x, y in pts) / len(pts)
            gb = sum(2 * (w * x + b - y) for x, y in pts) / len(pts)
            w, b = w - lr * gw, b - lr * gb
        adapted.append((w, b))
    mean_w = sum(a[0] for a in adapted) / 2
    mean_b = sum(a[1] for a in adapted) / 2
    assert grads["weight"].item() == pytest.approx(0.5 - mean_w, abs=1e-14)
    assert grads["bias"].item() == pytest.approx(-0.25 - mean_b, abs=1e-14)


def test_anil_inner_loop_leaves_body_unchanged(monkeypatch):
    torch.manual_seed(0)
    model = ConvLearner(ways=3, filters=4, depth=2, image_size=12)
    batch = conv_tasks(2)
    cfg = MetaConfig(algo="anil", inner_steps=2, inner_lr=0.5, form="loop")
    meta = init_meta_params(model, cfg)
    adapted_seen = []
    real = algorithms.adapt

    def spy(*args, **kwargs):
        out = real(*args, **kwargs)
        adapted_seen.append(out)
        return out

    monkeypatch.setattr(algorithms, "adapt", spy)
    grads, _ = meta_gradient(model, meta, batch, cfg)
    assert len(adapted_seen) == 2
    head = set(head_names(model))
    for adapted in adapted_seen:
        for name, value in adapted.items():
            if name in head:
                assert not torch.equal(value, meta[name])
            else:
                assert value is meta[name]
    # the body is still meta-learned by the outer loop, and differently from MAML
    assert all(grads[n].abs().sum() > 0 for n in meta)
    maml, _ = meta_gradient(model, meta, batch, MetaConfig(algo="maml", inner_steps=2, inner_lr=0.5, form="loop"))
    assert rel_err(grads, maml) > 1e-3


def test_metasgd_rates_are_parameters_and_receive_gradients():
    torch.manual_seed(0)
    model = ConvLearner(ways=3, filters=4, depth=2, image_size=12)
    cfg = MetaConfig(algo="metasgd", inner_steps=1, inner_lr=0.3, form="loop")
    meta = init_meta_params(model, cfg)
    names = [n for n, _ in model.named_parameters()]
    assert list(meta) == names + ["lr." + n for n in names]
    for n in names:
        assert meta["lr." + n].shape == meta[n].shape and meta["lr." + n].requires_grad
        assert bool((meta["lr." + n] == 0.3).all())
    grads, _ = meta_gradient(model, meta, conv_tasks(2), cfg)
    for n in names:
        assert torch.isfinite(grads["lr." + n]).all() and grads["lr." + n].abs().sum() > 0
    # at the initial rates Meta-SGD is MAML: the parameter gradients agree
    maml, _ = meta_gradient(model, {n: meta[n] for n in names}, conv_tasks(2),
                            MetaConfig(algo="maml", inner_steps=1, inner_lr=0.3, form="loop"))
    assert rel_err({n: grads[n] for n in names}, maml) < 1e-6


def test_protonet_logits_by_hand():
    torch.manual_seed(0)
    model = ConvLearner(ways=2, filters=4, depth=2, image_size=8).double()
    params = params_of(model)
    sx = torch.rand(4, 1, 8, 8, dtype=torch.float64)
    sy = torch.tensor([0, 1, 1, 0])
    qx = torch.rand(3, 1, 8, 8, dtype=torch.float64)
    logits = proto_logits(model, params, sx, sy, qx, ways=2, bn="batch")
    s, q = model.features(sx), model.features(qx)
    protos = torch.stack([(s[0] + s[3]) / 2, (s[1] + s[2]) / 2])
    expected = torch.stack([torch.stack([-((qi - p) ** 2).sum() for p in protos]) for qi in q])
    torch.testing.assert_close(logits, expected, rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------- 5. evaluation

@pytest.mark.parametrize("algo", ALGORITHMS)
def test_evaluation_builds_no_graph(algo):
    torch.manual_seed(0)
    model = ConvLearner(ways=3, filters=4, depth=2, image_size=12)
    cfg = MetaConfig(algo=algo, inner_steps=2, form="loop")
    meta = init_meta_params(model, cfg)
    for form in ("loop", "vmap"):
        acc = evaluate_tasks(model, meta, conv_tasks(3), MetaConfig(**{**cfg.__dict__, "form": form}))
        assert acc.shape == (3,) and acc.grad_fn is None and not acc.requires_grad
    assert all(p.grad is None for p in meta.values())
    adapted = adapt(params_of(model), algorithms.support_loss_fn(model), (conv_tasks(1).support_x[0],
                    conv_tasks(1).support_y[0]), steps=2, rule=0.1, evaluation=True)
    assert all(p.grad_fn is None and not p.requires_grad for p in adapted.values())


@pytest.mark.parametrize("algo", ["maml", "protonet"])
def test_accuracy_is_at_chance_on_random_labels(algo):
    """5-way, random labels: 300 tasks x 25 queries, each correct with probability 1/5 exactly.

    Standard error 0.0046; the bound 0.025 is 5.4 standard errors. The same evaluation on tasks
    whose query set *is* the support set must be far above chance (the check can fail).
    """
    torch.manual_seed(0)
    model = ConvLearner(ways=5, filters=4, depth=2, image_size=8)
    batch = conv_tasks(300, ways=5, shots=5, query=5, size=8, seed=1, random_labels=True)
    cfg = MetaConfig(algo=algo, inner_lr=0.5, form="vmap")
    meta = init_meta_params(model, cfg)
    for steps in (0, 5):
        acc = evaluate_tasks(model, meta, batch, cfg, inner_steps=steps).mean().item()
        assert abs(acc - 0.2) < 0.025, (steps, acc)
    seen = TaskBatch(batch.support_x[:50], batch.support_y[:50], batch.support_x[:50], batch.support_y[:50])
    assert evaluate_tasks(model, meta, seen, cfg, inner_steps=5).mean().item() > 0.35


# ----------------------------------------------------------------------------- 6. batch-norm leakage

@pytest.mark.parametrize("algo", ["maml", "protonet"])
def test_support_bn_has_no_query_leakage_batch_bn_has(algo):
    torch.manual_seed(0)
    model = ConvLearner(ways=3, filters=4, depth=2, image_size=12).double()
    batch = conv_tasks(1, query=3, dtype=torch.float64)
    sx, sy, qx = batch.support_x[0], batch.support_y[0], batch.query_x[0]
    other = qx.clone()
    other[1:] = torch.rand(other[1:].shape, dtype=torch.float64) * 3          # change every other query
    params = init_meta_params(model, MetaConfig(algo=algo))

    def first_query_output(bn, query_x):
        if algo == "protonet":
            return proto_logits(model, params, sx, sy, query_x, ways=3, bn=bn)[0]
        adapted = adapt(params, algorithms.support_loss_fn(model), (sx, sy), steps=2, rule=0.4, evaluation=True)
        return predict(model, adapted, sx, query_x, bn)[0]

    torch.testing.assert_close(first_query_output("support", other), first_query_output("support", qx),
                               rtol=1e-12, atol=1e-12)
    assert (first_query_output("batch", other) - first_query_output("batch", qx)).abs().max() > 1e-4


# ----------------------------------------------------------------------------- configuration

def test_meta_config_validation_and_pick_form():
    for bad in (dict(algo="mamll"), dict(bn="running"), dict(form="jit"), dict(inner_steps=-1),
                dict(inner_steps=1.5), dict(inner_lr=0), dict(reptile_data="query")):
        with pytest.raises(ValueError, match=next(iter(bad))):
            MetaConfig(**bad)
    assert MetaConfig().algo == "maml" and MetaConfig().inner_lr == 0.4 and MetaConfig().bn == "batch"
    assert pick_form("cpu") == "loop" and pick_form(torch.device("cuda", 0)) == "vmap"
    assert algorithms.resolve_form("auto", "cpu") == "loop" and algorithms.resolve_form("vmap", "cpu") == "vmap"
    with pytest.raises(ValueError, match="form"):
        algorithms.resolve_form("jit", "cpu")
    assert MetaConfig.from_profile("anil", {"inner_steps": 3, "inner_lr": 0.1}, bn="support") == MetaConfig(
        algo="anil", inner_steps=3, inner_lr=0.1, bn="support")


def test_mismatched_inputs_are_rejected():
    model = ConvLearner(ways=3, filters=4, depth=2, image_size=12)
    batch = conv_tasks(1)
    with pytest.raises(ValueError, match="init_meta_params"):
        meta_gradient(model, params_of(model), batch, MetaConfig(algo="metasgd"))
    with pytest.raises(ValueError, match="protonet"):
        meta_gradient(SineMLP(), params_of(SineMLP()), sine_tasks(1), MetaConfig(algo="protonet"))
    with pytest.raises(ValueError, match="inner_steps"):
        evaluate_tasks(model, params_of(model), batch, MetaConfig(), inner_steps=-2)


# ----------------------------------------------------------------------------- meta_step

def test_meta_step_is_gradient_then_optimizer_step():
    torch.manual_seed(0)
    model, batch = SineMLP(hidden=8), sine_tasks(4)
    cfg = MetaConfig(algo="maml", inner_lr=0.05, form="loop")
    stepped, by_hand = init_meta_params(model, cfg), init_meta_params(model, cfg)
    opt_a, opt_b = torch.optim.Adam(stepped.values(), lr=1e-2), torch.optim.Adam(by_hand.values(), lr=1e-2)
    for _ in range(2):
        grads, stats = algorithms.meta_step(model, stepped, batch, cfg, opt_a)
        expected, expected_stats = meta_gradient(model, by_hand, batch, cfg)
        for k, p in by_hand.items():
            p.grad = expected[k]
        opt_b.step()
        assert stats["loss"] == expected_stats["loss"] and all(torch.equal(grads[k], expected[k]) for k in grads)
    assert all(torch.equal(stepped[k], by_hand[k]) for k in stepped)
    assert all(p.grad is None for p in stepped.values())          # gradients cleared after the step


def small_fomaml():
    """A seeded SineMLP, 2 tasks, FOMAML config, its meta-parameters and a copy of them."""
    torch.manual_seed(0)
    model, batch = SineMLP(hidden=8), sine_tasks(2)
    cfg = MetaConfig(algo="fomaml", inner_lr=0.05, form="loop")
    params = init_meta_params(model, cfg)
    return model, batch, cfg, params, {k: v.detach().clone() for k, v in params.items()}


def test_meta_step_hook_replaces_gradients_and_bad_steps_apply_nothing():
    model, batch, cfg, params, before = small_fomaml()
    optimizer = torch.optim.SGD(params.values(), lr=1.0)
    algorithms.meta_step(model, params, batch, cfg, optimizer, grad_hook=lambda g: {k: torch.zeros_like(v)
                                                                                    for k, v in g.items()})
    assert all(torch.equal(params[k], before[k]) for k in params)  # zero gradients: SGD does not move
    with torch.no_grad():
        params["head.bias"].fill_(float("nan"))
    with pytest.raises(algorithms.MetaGradientNotFinite, match="loss is nan"):
        algorithms.meta_step(model, params, batch, cfg, optimizer, check_finite=True)
    assert all(p.grad is None for p in params.values())


def test_meta_step_that_makes_parameters_non_finite_is_undone():
    model, batch, cfg, params, before = small_fomaml()
    optimizer = torch.optim.SGD(params.values(), lr=1e10)
    overflow = lambda grads: {k: g * 1e30 for k, g in grads.items()}  # finite, but the step overflows float32
    with pytest.raises(algorithms.MetaGradientNotFinite, match=r"meta-parameter \S+ is not finite after"):
        algorithms.meta_step(model, params, batch, cfg, optimizer, grad_hook=overflow, check_finite=True)
    assert all(torch.equal(params[k], before[k]) for k in params)

