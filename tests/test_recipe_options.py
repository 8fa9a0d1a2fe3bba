"""The recipe options of issue 17: the zeroing trick (``head_init="zero"``) with its skipped body
backward, the channels-last input view, the cosine meta learning rate, the laptop profile.

Meta-gradients are checked in float64 against a reference written from scratch in plain autograd
that adapts *every* parameter from the zeroed head (the unskipped computation), and against
finite differences of that reference.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

import mllib.fast_ops as fast_ops
from mllib.algorithms import (MetaConfig, adapt_from_zero_head, adapt_task, evaluate_tasks, init_meta_params,
                              meta_gradient, meta_step, support_loss_fn, zero_head)
from mllib.checkpoint import load_checkpoint, read_metrics
from mllib.config import resolve_profile
from mllib.evaluate import evaluate, load_run
from mllib.inner import adapt
from mllib.models import ConvLearner, head_names
from mllib.schedules import meta_lr_at
from mllib.tasks.batch import TaskBatch
from mllib.train import TrainConfig, meta_train

pytestmark = pytest.mark.usefixtures("one_thread")
LR = 0.3


def conv_setup(seed=0, tasks=2, dtype=torch.float64, side=8):
    torch.manual_seed(seed)
    model = ConvLearner(ways=3, filters=3, depth=2, image_size=side).to(dtype)
    batch = TaskBatch(torch.rand(tasks, 3, 1, side, side, dtype=dtype), torch.arange(3).repeat(tasks, 1),
                      torch.rand(tasks, 6, 1, side, side, dtype=dtype), torch.arange(3).repeat(2).repeat(tasks, 1))
    return model, batch


def reference_loss(model, meta, batch, steps, bn="batch", first_order=False, names=None):
    """Mean query loss after ``steps`` SGD steps on every parameter (or ``names``) from a zero head."""
    params = {k: v for k, v in meta.items() if not k.startswith("lr.")}
    rates = {k[3:]: v for k, v in meta.items() if k.startswith("lr.")}
    head = head_names(model)
    names = list(params) if names is None else names
    total = 0.0
    for t in range(batch.num_tasks):
        sx, sy, qx, qy = batch.support_x[t], batch.support_y[t], batch.query_x[t], batch.query_y[t]
        fast = {k: torch.zeros_like(v).requires_grad_() if k in head else v for k, v in params.items()}
        for _ in range(steps):
            loss = F.cross_entropy(functional_call(model, fast, (sx,)), sy)
            grads = torch.autograd.grad(loss, [fast[n] for n in names], create_graph=not first_order)
            fast.update({n: fast[n] - rates.get(n, LR) * g for n, g in zip(names, grads)})
        if bn == "support":
            out = functional_call(model, fast, (torch.cat([sx, qx]),), {"stats_rows": len(sx)})[len(sx):]
        else:
            out = functional_call(model, fast, (qx,))
        total = total + F.cross_entropy(out, qy)
    return total / batch.num_tasks


def central_differences(fn, params, names, eps=1e-6, per_tensor=2, seed=0):
    gen = torch.Generator().manual_seed(seed)
    out = []
    for name in names:
        for i in torch.randperm(params[name].numel(), generator=gen)[:per_tensor].tolist():
            def shifted(sign):
                p = {k: v.detach().clone() for k, v in params.items()}
                p[name].view(-1)[i] += sign * eps
                return fn({k: v.requires_grad_() for k, v in p.items()}).item()
            out.append((name, i, (shifted(1) - shifted(-1)) / (2 * eps)))
    return out


@pytest.mark.parametrize("algo,steps,bn", [("maml", 1, "batch"), ("maml", 2, "support"), ("metasgd", 2, "batch"),
                                           ("anil", 2, "batch")])
def test_zero_head_meta_gradient_is_the_unskipped_one_and_matches_finite_differences(algo, steps, bn):
    model, batch = conv_setup(seed=steps)
    cfg = MetaConfig(algo=algo, inner_steps=steps, inner_lr=LR, bn=bn, form="loop", head_init="zero")
    meta = init_meta_params(model, cfg)
    head = head_names(model)
    assert all(float(meta[n].detach().abs().sum()) == 0 for n in head)
    names = head if algo == "anil" else None
    reference = torch.autograd.grad(reference_loss(model, meta, batch, steps, bn, names=names),
                                    list(meta.values()), allow_unused=True)
    reference = {k: torch.zeros_like(v) if g is None else g for (k, v), g in zip(meta.items(), reference)}
    for form in ("loop", "vmap"):
        grads, stats = meta_gradient(model, meta, batch, MetaConfig(**{**cfg.__dict__, "form": form}))
        for k in meta:
            assert torch.allclose(grads[k], reference[k], rtol=1e-10, atol=1e-13), (form, k)
        assert all(float(grads[n].abs().sum()) == 0 for n in head)  # the head is not meta-learned
        assert float(grads["blocks.0.conv.weight"].abs().sum()) > 0
    probe_names = ["blocks.0.conv.weight", "blocks.1.norm.weight"] + (["lr.head.weight"] if algo == "metasgd" else [])
    for name, i, numeric in central_differences(
            lambda p: reference_loss(model, p, batch, steps, bn, names=names), meta, probe_names):
        assert grads[name].view(-1)[i].item() == pytest.approx(numeric, rel=1e-6, abs=1e-9), (name, i)


def test_zero_head_first_step_skips_the_body_backward_and_first_order_detaches():
    model, batch = conv_setup(seed=5)
    cfg = MetaConfig(inner_steps=1, inner_lr=LR, form="loop", head_init="zero")
    meta = init_meta_params(model, cfg)
    sx, sy = batch.support_x[0], batch.support_y[0]
    adapted = adapt_task(model, meta, None, sx, sy, cfg)
    for k in meta:
        if k not in head_names(model):
            assert adapted[k] is meta[k]  # not touched: no body gradient was computed in the first step
    full = reference_loss(model, meta, batch, 1)
    assert full.item() == pytest.approx(meta_gradient(model, meta, batch, cfg)[1]["loss"], rel=1e-12)
    fo_cfg = MetaConfig(**{**cfg.__dict__, "algo": "fomaml", "inner_steps": 2})
    fo, _ = meta_gradient(model, meta, batch, fo_cfg)
    detached = torch.autograd.grad(reference_loss(model, meta, batch, 2, first_order=True), list(meta.values()),
                                   allow_unused=True)
    for (k, v), g in zip(meta.items(), detached):
        assert torch.allclose(fo[k], torch.zeros_like(v) if g is None else g, rtol=1e-10, atol=1e-13), k


def test_zero_head_ignores_the_stored_head_and_evaluates_like_the_unskipped_loop():
    model, batch = conv_setup(seed=6, tasks=3)
    cfg = MetaConfig(inner_steps=1, inner_lr=LR, form="loop", head_init="zero")
    meta = init_meta_params(model, MetaConfig())                      # a non-zero head in the dict
    zeroed = {k: v.detach() for k, v in zero_head(model, meta).items()}
    for steps in (1, 3):
        a = evaluate_tasks(model, meta, batch, cfg, inner_steps=steps)
        b = evaluate_tasks(model, zeroed, batch, MetaConfig(inner_steps=1, inner_lr=LR, form="loop"), inner_steps=steps)
        c = evaluate_tasks(model, meta, batch, MetaConfig(**{**cfg.__dict__, "form": "vmap"}), inner_steps=steps)
        assert torch.equal(a, b) and torch.allclose(a, c)


def test_the_zero_head_phase_adapts_like_every_parameter_from_a_zeroed_head():
    """``adapt_from_zero_head`` skips the body in its first step, yet ends where plain ``adapt`` of every
    parameter from the zeroed head ends; ``adapt_task`` hands a zero-head config to it."""
    model, batch = conv_setup(seed=7)
    cfg = MetaConfig(inner_steps=3, inner_lr=LR, form="loop", head_init="zero")
    meta = init_meta_params(model, MetaConfig())                      # a non-zero head: it is ignored
    sx, sy = batch.support_x[0], batch.support_y[0]
    for steps in (0, 1, 3):
        fast = adapt_from_zero_head(model, meta, LR, sx, sy, cfg, steps)
        plain = adapt(zero_head(model, meta), support_loss_fn(model), (sx, sy), steps, LR)
        assert fast.keys() == plain.keys()
        for k in plain:
            torch.testing.assert_close(fast[k], plain[k], rtol=1e-12, atol=1e-14)
        routed = adapt_task(model, meta, None, sx, sy, cfg, steps)
        assert all(torch.equal(routed[k], fast[k]) for k in fast)
    assert float(fast["head.weight"].abs().sum()) > 0


def test_zero_head_config_is_checked():
    for algo in ("maml", "fomaml", "metasgd", "anil"):
        assert MetaConfig(algo=algo, head_init="zero").head_init == "zero"
    for algo in ("reptile", "protonet"):
        with pytest.raises(ValueError, match="head_init='zero' needs an inner loop"):
            MetaConfig(algo=algo, head_init="zero")
    with pytest.raises(ValueError, match="head_init must be one of learned, zero"):
        MetaConfig(head_init="random")
    with pytest.raises(ValueError, match="head_init must be one of"):
        resolve_profile("quick", head_init="ones")
    with pytest.raises(ValueError, match="meta_lr_schedule must be one of constant, cosine"):
        resolve_profile("quick", meta_lr_schedule="linear")
    assert MetaConfig.from_profile("maml", {"inner_steps": 1, "inner_lr": 0.4}).head_init == "learned"


def test_zero_head_stays_zero_under_adam():
    model, batch = conv_setup(seed=7, dtype=torch.float32)
    cfg = MetaConfig(inner_steps=1, inner_lr=LR, form="loop", head_init="zero")
    meta = init_meta_params(model, cfg)
    optimizer = torch.optim.Adam(meta.values(), lr=1e-2)
    before = meta["blocks.0.conv.weight"].detach().clone()
    for _ in range(3):
        meta_step(model, meta, batch, cfg, optimizer)
    assert all(float(meta[n].detach().abs().sum()) == 0 for n in head_names(model))
    assert not torch.equal(before, meta["blocks.0.conv.weight"])


def test_channels_last_input_view_is_the_same_function():
    x = torch.rand(4, 1, 8, 8, dtype=torch.float64)
    view = fast_ops.channels_last_view(x)
    assert view.data_ptr() == x.data_ptr() and torch.equal(view, x)
    assert view.is_contiguous(memory_format=torch.channels_last)
    assert fast_ops.channels_last_view(torch.rand(2, 3, 4, 4)).is_contiguous()  # more channels: unchanged
    model, batch = conv_setup(seed=8)
    cfg = MetaConfig(inner_steps=2, inner_lr=LR, form="loop")
    meta = init_meta_params(model, cfg)
    with_view, _ = meta_gradient(model, meta, batch, cfg)
    real = fast_ops.channels_last_view
    try:
        fast_ops.channels_last_view = lambda t: t
        without, _ = meta_gradient(model, meta, batch, cfg)
    finally:
        fast_ops.channels_last_view = real
    for k in meta:
        assert torch.allclose(with_view[k], without[k], rtol=1e-11, atol=1e-14), k


def test_cosine_meta_lr():
    assert meta_lr_at(1.0, 0, 4, "cosine") == 1.0
    assert [round(meta_lr_at(1.0, s, 4, "cosine"), 6) for s in range(4)] == [1.0, 0.853553, 0.5, 0.146447]
    assert meta_lr_at(2.0, 3, 4) == 2.0
    for bad in (dict(step=4), dict(step=-1), dict(total=0)):
        with pytest.raises(ValueError, match=next(iter(bad))):
            meta_lr_at(**{"base": 1.0, "step": 0, "total": 4, "schedule": "cosine", **bad})
    with pytest.raises(ValueError, match="schedule must be one of"):
        meta_lr_at(1.0, 0, 4, "step")


def test_laptop_profile_and_twenty_way_settings():
    laptop, quick = resolve_profile("laptop"), resolve_profile("quick")
    assert (laptop.filters, laptop.meta_batch, laptop.head_init, laptop.meta_lr_schedule) == (64, 16, "zero", "cosine")
    assert (quick.meta_steps, quick.inner_steps_test, quick.filters, quick.meta_batch) == (2500, 1, 32, 8)
    assert resolve_profile("quick", ways=20).inner_lr == pytest.approx(4 * quick.inner_lr)
    assert (resolve_profile("laptop", ways=20).filters, resolve_profile("laptop", ways=20).meta_steps) == (32, 10000)
    assert resolve_profile("full").head_init == "learned" and resolve_profile("full").meta_lr_schedule == "constant"


TINY = dict(filters=4, meta_batch=2, val_every=2, val_tasks=4, test_query=1, checkpoint_every=2)


def tiny(out, **kw):
    fields = dict(algo="maml", ways=3, shots=1, query=1, profile="quick", overrides=dict(TINY), steps=6,
                  device="cpu", seed=3, out=str(out), progress=False)
    return TrainConfig(**{**fields, **kw})


def train(config, omniglot, **kw):
    return meta_train(config, data=omniglot, log=lambda message: None, **kw)


def test_quick_recipe_trains_with_cosine_lr_and_resumes_bit_exactly(tmp_path, omniglot):
    full = train(tiny(tmp_path / "full"), omniglot)
    assert all(float(full.meta_params[n].abs().sum()) == 0 for n in ("head.weight", "head.bias"))

    def interrupt_at_4(step, record):
        if step == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(tiny(tmp_path / "cut"), omniglot, callback=interrupt_at_4)
    resumed = train(tiny(tmp_path / "cut", resume=True), omniglot)
    for k in full.meta_params:
        assert torch.equal(full.meta_params[k], resumed.meta_params[k]), k
    strip = [{k: v for k, v in r.items() if k != "seconds"} for r in read_metrics(tmp_path / "full")]
    assert strip == [{k: v for k, v in r.items() if k != "seconds"} for r in read_metrics(tmp_path / "cut")]
    state = load_checkpoint(tmp_path / "cut" / "checkpoint.pt")
    # the last update used the schedule's last rate (the optimiser state in the checkpoint holds it)
    assert state["optimizer"]["param_groups"][0]["lr"] == pytest.approx(meta_lr_at(3e-3, 5, 6, "cosine"))
    assert state["config"]["profile"]["head_init"] == "zero"
    with pytest.raises(ValueError, match="cosine meta-lr schedule over 6 meta-steps"):
        train(tiny(tmp_path / "cut", resume=True, steps=8), omniglot)
    run = load_run(tmp_path / "cut" / "best.pt", "cpu")
    assert run.protocol.meta_config.head_init == "zero" and run.protocol.inner_steps == 1
    result = evaluate(tmp_path / "cut" / "best.pt", data=omniglot, tasks=4, device="cpu", progress=False)
    assert result["head_init"] == "zero"


def test_constant_schedule_keeps_the_meta_lr(tmp_path, omniglot):
    train(tiny(tmp_path, overrides={**TINY, "meta_lr_schedule": "constant", "head_init": "learned"}), omniglot)
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    assert state["optimizer"]["param_groups"][0]["lr"] == 3e-3
    assert float(state["meta_params"]["head.weight"].abs().sum()) > 0
    assert not math.isnan(read_metrics(tmp_path)[-1]["loss"])


def test_cli_flags_reach_the_checkpoint_the_card_and_the_train_command(tmp_path, omniglot):
    import shlex

    from mllib.__main__ import build_parser
    from mllib.cli.train import config_from_args
    from mllib.publish import publish, train_command

    flags = ["--ways", "3", "--query", "1", "--profile", "full", "--device", "cpu", "--filters", "4",
             "--meta-batch", "2", "--val-every", "2", "--val-tasks", "4", "--test-query", "1", "--inner-steps-test", "1",
             "--steps", "2", "--head-init", "zero", "--meta-lr-schedule", "cosine", "--out", str(tmp_path / "run")]
    config = config_from_args(build_parser().parse_args(["train", *flags]))
    config.progress = False
    assert config.resolved_profile().head_init == "zero"
    meta_train(config, data=omniglot, log=lambda message: None)
    state = load_checkpoint(tmp_path / "run" / "best.pt")
    command = train_command(state["config"])
    assert "--head-init zero" in command and "--meta-lr-schedule cosine" in command
    rebuilt = config_from_args(build_parser().parse_args(shlex.split(command)[3:]))
    assert rebuilt.run_dict()["profile"] == state["config"]["profile"]
    card = publish(tmp_path / "run", "tiny", dest=tmp_path / "dest", data=omniglot, device="cpu", progress=False)
    assert (card["head_init"], card["meta_lr_schedule"], card["inner_steps_test"]) == ("zero", "cosine", 1)
    with pytest.raises(ValueError, match="head_init='zero' needs an inner loop"):
        TrainConfig(algo="protonet", profile="quick", overrides={"head_init": "zero"}).resolved_profile()
    assert TrainConfig(algo="protonet", profile="quick").resolved_profile().head_init == "learned"
