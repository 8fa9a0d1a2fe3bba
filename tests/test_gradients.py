"""Meta-gradients against finite differences (float64), and first vs second order.

The reference meta-loss here is written from scratch with ``torch.autograd.grad`` (not with
``mllib.inner``), so a bug shared by the library's loss and gradient cannot hide.
"""
import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

import mllib.algorithms as algorithms
from mllib.algorithms import MetaConfig, init_meta_params, meta_gradient
from mllib.models import ConvLearner, SineMLP, head_names
from mllib.tasks.batch import TaskBatch

STEPS, LR = 2, 0.3


pytestmark = pytest.mark.usefixtures("one_thread")


def conv_setup(seed=0, tasks=2):
    torch.manual_seed(seed)
    model = ConvLearner(ways=3, filters=3, depth=2, image_size=8).double()
    batch = TaskBatch(torch.rand(tasks, 3, 1, 8, 8, dtype=torch.float64),
                      torch.arange(3).repeat(tasks, 1),
                      torch.rand(tasks, 6, 1, 8, 8, dtype=torch.float64),
                      torch.arange(3).repeat(2).repeat(tasks, 1))
    return model, batch


def sine_setup(seed=0, tasks=2):
    torch.manual_seed(seed)
    model = SineMLP(hidden=10).double()
    xs = torch.rand(tasks, 10, 1, dtype=torch.float64) * 10 - 5
    ys = torch.sin(xs + torch.rand(tasks, 1, 1, dtype=torch.float64)) * 2
    return model, TaskBatch(xs[:, :5], ys[:, :5], xs[:, 5:], ys[:, 5:])


def reference_meta_loss(model, params, batch, bn, lr=LR, steps=STEPS, detach_inner=False, names=None):
    """Mean query loss after ``steps`` SGD steps on each support set, in plain autograd."""
    classification = not torch.is_floating_point(batch.query_y)
    crit = F.cross_entropy if classification else F.mse_loss
    names = list(params) if names is None else names
    total = 0.0
    for t in range(batch.num_tasks):
        sx, sy, qx, qy = batch.support_x[t], batch.support_y[t], batch.query_x[t], batch.query_y[t]
        fast = dict(params)
        for _ in range(steps):
            loss = crit(functional_call(model, fast, (sx,)), sy)
            grads = torch.autograd.grad(loss, [fast[n] for n in names], create_graph=not detach_inner)
            rates = lr if isinstance(lr, dict) else {n: lr for n in names}
            fast.update({n: fast[n] - rates[n] * g for n, g in zip(names, grads)})
        if bn == "support":
            out = functional_call(model, fast, (torch.cat([sx, qx]),), {"stats_rows": len(sx)})[len(sx):]
        else:
            out = functional_call(model, fast, (qx,))
        total = total + crit(out, qy)
    return total / batch.num_tasks


def flat(tensors):
    return torch.cat([t.reshape(-1) for t in tensors])


def finite_difference(fn, params, per_tensor=8, directions=3, eps=1e-6, seed=0):
    """Central differences of ``fn(params)``: ``per_tensor`` seeded coordinates of every parameter
    tensor (all of them when it is smaller), plus ``directions`` random directions over all parameters.

    Returns ``[(direction dict, derivative)]``; a coordinate is a one-hot direction.
    """
    gen = torch.Generator().manual_seed(seed)
    probes = []
    for name, p in params.items():
        picks = torch.randperm(p.numel(), generator=gen)[:per_tensor]
        for i in picks.tolist():
            d = {k: torch.zeros_like(v) for k, v in params.items()}
            d[name].view(-1)[i] = 1.0
            probes.append(d)
    for _ in range(directions):
        probes.append({k: torch.randn(v.shape, generator=gen, dtype=v.dtype) for k, v in params.items()})
    out = []
    for d in probes:
        plus = fn({k: (v + eps * d[k]).detach().requires_grad_() for k, v in params.items()}).item()
        minus = fn({k: (v - eps * d[k]).detach().requires_grad_() for k, v in params.items()}).item()
        out.append((d, (plus - minus) / (2 * eps)))
    return out


def probe_error(grads, probes):
    """Relative error between the analytic and finite-difference derivatives along all probes."""
    analytic = torch.tensor([sum((grads[k] * d[k]).sum() for k in d).item() for d, _ in probes],
                            dtype=torch.float64)
    numeric = torch.tensor([fd for _, fd in probes], dtype=torch.float64)
    return ((analytic - numeric).norm() / numeric.norm()).item()


def rel_err(a, b):
    a, b = flat(a.values() if isinstance(a, dict) else a), flat(b.values() if isinstance(b, dict) else b)
    return ((a - b).norm() / b.norm()).item()


CASES = [("conv", "batch"), ("conv", "support"), ("sine", "batch")]


@pytest.mark.parametrize("kind,bn", CASES)
def test_maml_meta_gradient_matches_finite_differences(kind, bn):
    model, batch = conv_setup() if kind == "conv" else sine_setup()
    cfg_loop = MetaConfig(algo="maml", inner_steps=STEPS, inner_lr=LR, bn=bn, form="loop")
    params = init_meta_params(model, cfg_loop)
    probes = finite_difference(lambda p: reference_meta_loss(model, p, batch, bn), params)
    for form in ("loop", "vmap"):
        grads, stats = meta_gradient(model, params, batch, MetaConfig(**{**cfg_loop.__dict__, "form": form}))
        assert probe_error(grads, probes) < 1e-6, form
        assert stats["loss"] == pytest.approx(reference_meta_loss(model, params, batch, bn).item(), rel=1e-12)
    # the check has teeth: the first-order gradient is far from the finite differences
    fo, _ = meta_gradient(model, params, batch, MetaConfig(**{**cfg_loop.__dict__, "algo": "fomaml"}))
    assert probe_error(fo, probes) > 1e-3


@pytest.mark.parametrize("algo", ["metasgd", "anil"])
def test_metasgd_and_anil_meta_gradients_match_finite_differences(algo):
    model, batch = conv_setup(seed=1)
    cfg = MetaConfig(algo=algo, inner_steps=STEPS, inner_lr=LR, bn="batch", form="loop")
    meta = init_meta_params(model, cfg)
    names = head_names(model) if algo == "anil" else None

    def loss(mp):
        params = {k: v for k, v in mp.items() if not k.startswith("lr.")}
        rates = {k[3:]: v for k, v in mp.items() if k.startswith("lr.")} or LR
        return reference_meta_loss(model, params, batch, "batch", lr=rates, names=names)

    probes = finite_difference(loss, meta, per_tensor=2, directions=3)
    for form in ("loop", "vmap"):
        grads, _ = meta_gradient(model, meta, batch, MetaConfig(**{**cfg.__dict__, "form": form}))
        assert probe_error(grads, probes) < 1e-6, form
        if algo == "metasgd":
            assert all(grads[k].abs().sum() > 0 for k in meta if k.startswith("lr."))


@pytest.mark.parametrize("form", ["loop", "vmap"])
def test_first_order_differs_from_second_and_equals_detached_inner_gradient(form):
    model, batch = conv_setup(seed=2)
    params = init_meta_params(model, MetaConfig())
    second, _ = meta_gradient(model, params, batch,
                              MetaConfig(algo="maml", inner_steps=STEPS, inner_lr=LR, form=form))
    first, _ = meta_gradient(model, params, batch,
                             MetaConfig(algo="fomaml", inner_steps=STEPS, inner_lr=LR, form=form))
    assert rel_err(first, second) > 1e-2
    detached = torch.autograd.grad(reference_meta_loss(model, params, batch, "batch", detach_inner=True),
                                   list(params.values()))
    assert rel_err(first, detached) < 1e-12
    full = torch.autograd.grad(reference_meta_loss(model, params, batch, "batch"), list(params.values()))
    assert rel_err(second, full) < 1e-12


def test_first_order_inner_loop_really_is_detached(monkeypatch):
    """meta_gradient(fomaml) must call adapt with first_order=True, MAML with False."""
    seen = []
    real = algorithms.adapt

    def spy(*args, **kwargs):
        seen.append(kwargs.get("first_order"))
        return real(*args, **kwargs)

    monkeypatch.setattr(algorithms, "adapt", spy)
    model, batch = conv_setup(tasks=1)
    for algo in ("maml", "fomaml"):
        cfg = MetaConfig(algo=algo, inner_steps=1, form="loop")
        meta_gradient(model, init_meta_params(model, cfg), batch, cfg)
    assert seen == [False, True]
