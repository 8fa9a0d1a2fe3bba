"""Checks of notebook 04 (outer loop): pass on the reference, fail on plausible mistakes."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from mllib import checks


pytestmark = pytest.mark.usefixtures("lenient_checks")


def unfinished(*args, **kwargs):
    # YOUR CODE HERE
    raise NotImplementedError()


# ---------------------------------------------------------------- task meta-gradient
def mg_right(model, params, support_x, support_y, query_x, query_y, inner_lr, first_order):
    loss = F.mse_loss(functional_call(model, params, (support_x,)), support_y)
    grads = torch.autograd.grad(loss, list(params.values()), create_graph=not first_order)
    adapted = {k: p - inner_lr * (g.detach() if first_order else g) for (k, p), g in zip(params.items(), grads)}
    outer = F.mse_loss(functional_call(model, adapted, (query_x,)), query_y)
    return dict(zip(params, torch.autograd.grad(outer, list(params.values()))))


def mg_always_first_order(model, params, sx, sy, qx, qy, inner_lr, first_order):
    return mg_right(model, params, sx, sy, qx, qy, inner_lr, True)


def mg_always_second_order(model, params, sx, sy, qx, qy, inner_lr, first_order):
    return mg_right(model, params, sx, sy, qx, qy, inner_lr, False)


def mg_no_adaptation(model, params, sx, sy, qx, qy, inner_lr, first_order):
    outer = F.mse_loss(functional_call(model, params, (qx,)), qy)
    return dict(zip(params, torch.autograd.grad(outer, list(params.values()))))


def mg_step_up(model, params, sx, sy, qx, qy, inner_lr, first_order):
    return mg_right(model, params, sx, sy, qx, qy, -inner_lr, first_order)


def mg_list(model, params, sx, sy, qx, qy, inner_lr, first_order):
    return list(mg_right(model, params, sx, sy, qx, qy, inner_lr, first_order).values())


def test_task_meta_gradient_passes_reference(capsys):
    result = checks.check_task_meta_gradient(mg_right)
    assert result and result.passed == result.total
    assert f"✅ task_meta_gradient: passed {result.total}/{result.total}" in capsys.readouterr().out


@pytest.mark.parametrize("fn, words", [
    (mg_always_first_order, "must stay in the graph"),
    (mg_always_second_order, "treat the inner gradient as a constant"),
    (mg_no_adaptation, "adapt first"),
    (mg_step_up, "differs"),
    (mg_list, "dict"),
])
def test_task_meta_gradient_fails_plausible_mistakes(fn, words, capsys):
    result = checks.check_task_meta_gradient(fn)
    assert not result and result.status == "failed"
    out = capsys.readouterr().out
    assert words in out and "Hint:" in out and "Traceback" not in out


def test_task_meta_gradient_not_implemented(capsys):
    assert checks.check_task_meta_gradient(unfinished).status == "not_implemented"
    assert "⏳ task_meta_gradient" in capsys.readouterr().out


def test_task_meta_gradient_reference_is_mllib_maml():
    """The check's reference equals mllib's meta_gradient (maml / fomaml, one task, one step)."""
    from mllib.algorithms import MetaConfig, meta_gradient
    from mllib.models import SineMLP
    from mllib.tasks import TaskBatch
    gen = torch.Generator().manual_seed(0)
    model = SineMLP(hidden=8).double()
    params = {k: (0.5 * torch.randn(p.shape, generator=gen, dtype=torch.float64)).requires_grad_(True)
              for k, p in model.named_parameters()}
    sx, qx = (torch.rand(1, 10, 1, generator=gen, dtype=torch.float64) * 10 - 5 for _ in range(2))
    sy, qy = torch.sin(sx), torch.sin(qx)
    for algo in ("maml", "fomaml"):
        cfg = MetaConfig(algo=algo, inner_steps=1, inner_lr=0.3, form="loop")
        want, _ = meta_gradient(model, params, TaskBatch(sx, sy, qx, qy), cfg)
        got = mg_right(model, params, sx[0], sy[0], qx[0], qy[0], 0.3, algo == "fomaml")
        for k in params:
            torch.testing.assert_close(got[k], want[k], rtol=1e-9, atol=1e-12)


# ---------------------------------------------------------------- Reptile update
def reptile_right(params, adapted, epsilon):
    return {k: p + epsilon * (torch.stack([a[k] for a in adapted]).mean(0) - p) for k, p in params.items()}


def reptile_sum(params, adapted, epsilon):
    return {k: p + epsilon * (sum(a[k] for a in adapted) - p) for k, p in params.items()}


def reptile_away(params, adapted, epsilon):
    return {k: p - epsilon * (torch.stack([a[k] for a in adapted]).mean(0) - p) for k, p in params.items()}


def reptile_last_task(params, adapted, epsilon):
    return {k: p + epsilon * (adapted[-1][k] - p) for k, p in params.items()}


def reptile_in_place(params, adapted, epsilon):  # right values, but the caller's start is gone
    for k, p in params.items():
        p += epsilon * (sum(a[k] for a in adapted) / len(adapted) - p)
    return params


def reptile_same_dict(params, adapted, epsilon):  # new tensors, but written into the caller's dict
    for k in list(params):
        params[k] = params[k] + epsilon * (torch.stack([a[k] for a in adapted]).mean(0) - params[k])
    return params


def test_reptile_update_passes_correct_answers(capsys):
    assert checks.check_reptile_update(reptile_right)
    assert capsys.readouterr().out.count("✅ reptile_update: passed 3/3") == 1


@pytest.mark.parametrize("fn, words", [
    (reptile_sum, "the sum grows with the number of tasks"),
    (reptile_away, "TOWARDS"),
    (reptile_last_task, "not only the last one"),
    (reptile_in_place, "changed its input params['w'] in place"),
    (reptile_same_dict, "changed the dict params it was given"),
])
def test_reptile_update_fails_plausible_mistakes(fn, words, capsys):
    result = checks.check_reptile_update(fn)
    assert not result and result.status == "failed"
    out = capsys.readouterr().out
    assert words in out and "Traceback" not in out


def test_reptile_update_not_implemented_and_strict(capsys, monkeypatch):
    assert checks.check_reptile_update(unfinished).status == "not_implemented"
    monkeypatch.setenv(checks.STRICT_ENV, "1")
    with pytest.raises(AssertionError, match="reptile_update"):
        checks.check_reptile_update(reptile_sum)


def _sgd_step_with_backward(model, params, x, y, lr):
    """Notebook 03's sgd_step written with .backward(): values right, .grad left behind."""
    loss = torch.nn.functional.mse_loss(torch.func.functional_call(model, params, (x,)), y)
    loss.backward(create_graph=True)
    return {k: p - lr * p.grad for k, p in params.items()}


def maml_with_backward_sgd_step(model, params, optimizer, tasks, meta_batch, inner_lr):
    optimizer.zero_grad()
    losses = []
    for sx, sy, qx, qy in tasks.sample(meta_batch):
        adapted = _sgd_step_with_backward(model, params, sx, sy, inner_lr)
        losses.append(torch.nn.functional.mse_loss(torch.func.functional_call(model, adapted, (qx,)), qy))
    meta_loss = torch.stack(losses).mean()
    meta_loss.backward()
    optimizer.step()
    return meta_loss.item()


def test_a_backward_based_sgd_step_is_diagnosed_in_notebook_04_pointing_back_to_notebook_03(capsys):
    result = checks.check_maml_meta_step(maml_with_backward_sgd_step)
    assert not result
    assert "received 5 gradients per meta-step, not one" in result.message   # meta_batch 4 inner + 1 outer
    assert "sgd_step from notebook 03" in result.message
