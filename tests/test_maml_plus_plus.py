"""MAML++'s tricks in mllib.algorithms (issue 25): multi-step loss, per-step learning rates, per-step
batch norm, each against a hand-written two-step inner loop in float64."""
import pytest
import torch
import torch.nn.functional as F

from mllib.algorithms import (MetaConfig, init_meta_params, meta_gradient, norm_names, query_loss_and_metric,
                              split_trick_params)
from mllib.config import resolve_profile
from mllib.models import ConvLearner, call_model
from mllib.tasks.batch import TaskBatch


pytestmark = pytest.mark.usefixtures("one_thread")


def _model():
    torch.manual_seed(0)
    return ConvLearner(ways=3, filters=4, depth=2).double()


def _task(seed=1):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(3, 1, 28, 28, generator=g, dtype=torch.float64), torch.arange(3),
            torch.rand(6, 1, 28, 28, generator=g, dtype=torch.float64), torch.arange(3).repeat(2))


def _params(model, cfg, seed=2):
    """Meta-parameters with every rate and every batch-norm set made different (so a mix-up shows)."""
    g = torch.Generator().manual_seed(seed)
    params = init_meta_params(model, cfg)
    with torch.no_grad():
        for k, v in params.items():
            if k.startswith("lslr."):
                v.copy_(0.05 + 0.3 * torch.rand((), generator=g, dtype=v.dtype))
            elif k.startswith("bnstep."):
                v.add_(0.3 * torch.randn(v.shape, generator=g, dtype=v.dtype))
    return params


def _reference(model, meta, task, cfg):
    """MAML++'s inner loop written out: step s uses rates ``lslr.s`` (or inner_lr) and batch-norm set s
    (set 0: the model's own entries), batch norm is not adapted when per_step_bn; the loss is the mean of
    the query losses after every step (multi_step_loss) or the last one."""
    sx, sy, qx, qy = task
    base, rates, norms = split_trick_params(meta)
    frozen = set(norm_names(model)) if cfg.per_step_bn else set()
    head = [k for k in base if k.startswith("head.")]
    p = {k: torch.zeros_like(v).requires_grad_() if (cfg.head_init == "zero" and k in head) else v
         for k, v in base.items()}

    def with_set(q, s):
        return {**q, **norms[s]} if (cfg.per_step_bn and s > 0) else q

    losses = []
    for s in range(cfg.inner_steps):
        names = [k for k in p if k not in frozen]
        loss = F.cross_entropy(call_model(model, with_set(p, s), sx), sy)
        grads = torch.autograd.grad(loss, [p[k] for k in names], create_graph=True)
        p = {**p, **{k: p[k] - (rates[s][k] if cfg.per_step_lr else cfg.inner_lr) * g for k, g in zip(names, grads)}}
        losses.append(F.cross_entropy(call_model(model, with_set(p, s + 1), qx), qy))
    return torch.stack(losses).mean() if cfg.multi_step_loss else losses[-1]


CASES = {
    "msl": dict(multi_step_loss=True),
    "lslr": dict(per_step_lr=True),
    "bn": dict(per_step_bn=True),
    "all, zero head": dict(multi_step_loss=True, per_step_lr=True, per_step_bn=True, head_init="zero"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_tricks_match_the_written_out_inner_loop(case):
    model = _model()
    cfg = MetaConfig(inner_steps=2, inner_lr=0.3, form="loop", **CASES[case])
    meta = _params(model, cfg)
    task = _task()
    loss, _ = query_loss_and_metric(model, meta, *task, cfg)
    expected = _reference(model, meta, task, cfg)
    assert torch.allclose(loss, expected, rtol=1e-12, atol=1e-12), (float(loss), float(expected))
    keys = [k for k in meta if not (cfg.head_init == "zero" and k.startswith("head."))]
    got = torch.autograd.grad(loss, [meta[k] for k in keys], allow_unused=True)
    want = torch.autograd.grad(expected, [meta[k] for k in keys], allow_unused=True)
    for k, a, b in zip(keys, got, want):
        a = torch.zeros_like(meta[k]) if a is None else a
        b = torch.zeros_like(meta[k]) if b is None else b
        assert torch.allclose(a, b, rtol=1e-9, atol=1e-12), k


def test_each_trick_changes_the_loss_and_the_extra_entries_learn():
    """Every trick is live: the loss differs from plain 2-step MAML, and the new meta-parameters get
    a non-zero meta-gradient (the rates of both steps, the batch-norm sets of both later forwards)."""
    model, task = _model(), _task()
    plain = MetaConfig(inner_steps=2, inner_lr=0.3, form="loop")
    plain_loss = query_loss_and_metric(model, init_meta_params(model, plain), *task, plain)[0]
    for case in ("msl", "lslr", "bn"):
        cfg = MetaConfig(inner_steps=2, inner_lr=0.3, form="loop", **CASES[case])
        meta = _params(model, cfg)
        loss = query_loss_and_metric(model, meta, *task, cfg)[0]
        assert abs(float(loss.detach() - plain_loss.detach())) > 1e-6, case
        extra = [k for k in meta if k.startswith(("lslr.", "bnstep."))]
        assert bool(extra) == (case != "msl")
        grads = torch.autograd.grad(loss, [meta[k] for k in extra]) if extra else ()
        for step in ("0", "1") if case == "lslr" else ("1", "2") if case == "bn" else ():
            assert any(float(g.abs().sum()) > 0 for k, g in zip(extra, grads) if k.split(".")[1] == step), (case, step)


def test_per_step_rates_at_their_start_are_plain_maml():
    model, task = _model(), _task()
    plain = MetaConfig(inner_steps=2, inner_lr=0.3, form="loop")
    lslr = MetaConfig(inner_steps=2, inner_lr=0.3, form="loop", per_step_lr=True)
    a = query_loss_and_metric(model, init_meta_params(model, plain), *task, plain)[0]
    b = query_loss_and_metric(model, init_meta_params(model, lslr), *task, lslr)[0]
    assert torch.allclose(a, b, rtol=1e-12, atol=0)


def test_per_step_rate_gradient_matches_finite_differences():
    model, task = _model(), _task()
    cfg = MetaConfig(inner_steps=2, inner_lr=0.3, form="loop", per_step_lr=True, multi_step_loss=True)
    meta = _params(model, cfg)
    key = "lslr.1.blocks.0.conv.weight"
    grad = torch.autograd.grad(query_loss_and_metric(model, meta, *task, cfg)[0], meta[key])[0]
    eps, values = 1e-6, []
    for sign in (1, -1):
        shifted = {**meta, key: (meta[key] + sign * eps).detach()}
        values.append(float(query_loss_and_metric(model, shifted, *task, cfg)[0]))
    assert abs(float(grad) - (values[0] - values[1]) / (2 * eps)) < 1e-6 * max(1.0, abs(float(grad)))


def test_meta_gradient_loop_and_vmap_agree_and_evaluation_runs():
    from mllib.algorithms import evaluate_tasks

    model = _model()
    tasks = [_task(seed) for seed in (3, 4)]
    batch = TaskBatch(*(torch.stack([t[i] for t in tasks]) for i in range(4)))
    grads = {}
    for form in ("loop", "vmap"):
        cfg = MetaConfig(inner_steps=2, inner_lr=0.3, form=form, **CASES["all, zero head"])
        grads[form], _ = meta_gradient(model, _params(model, cfg), batch, cfg)
    for k in grads["loop"]:
        assert torch.allclose(grads["loop"][k], grads["vmap"][k], rtol=1e-8, atol=1e-12), k
    scores = evaluate_tasks(model, _params(model, cfg), batch, cfg, inner_steps=3)  # beyond 2: last rate, last set
    assert scores.shape == (2,) and bool(((scores >= 0) & (scores <= 1)).all())


def test_tricks_travel_through_the_profile_and_are_refused_where_they_mean_nothing():
    profile = resolve_profile("quick", inner_steps=2, per_step_bn=True)
    cfg = MetaConfig.from_profile("maml", profile)
    assert (cfg.per_step_bn, cfg.per_step_lr, cfg.multi_step_loss) == (True, False, False)
    assert not MetaConfig.from_profile("maml", {"inner_steps": 1, "inner_lr": 0.4}).maml_plus_plus
    with pytest.raises(ValueError, match="MAML\\+\\+'s tricks .* need algo in maml, fomaml; got algo='reptile'"):
        MetaConfig(algo="reptile", per_step_lr=True)
    with pytest.raises(ValueError, match="per_step_lr must be True or False"):
        resolve_profile("quick", per_step_lr="yes")
