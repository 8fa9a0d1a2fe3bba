"""Known wrong answers of every exercise (instructor material: not part of the installed package
and not published with the student release).

``MISTAKES[exercise][mistake_id]`` is a function with the exercise's signature that makes one
typical mistake. ``python -m mllib course check-values --write`` stores each mistake's results on
the visible cases in ``mllib/checks/fixed_values.json``, so the visible check can name the mistake
(the hint text is in the exercise's ``ExerciseSpec.mistakes``) without any solution code in the
package; ``tests/test_exercises.py`` shows that every mistake fails the visible check with its
hint and fails the hidden tests. The references themselves live in the notebooks' hidden tests.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call


def _mse(model, params, x, y, reduction="mean"):
    return F.mse_loss(functional_call(model, params, (x,)), y, reduction=reduction)


def _grads(loss, params, create_graph=False):
    return dict(zip(params, torch.autograd.grad(loss, list(params.values()), create_graph=create_graph)))


# ---------------------------------------------------------------- notebook 01
def _design(x, powers):
    return x[:, None] ** torch.as_tensor(powers, dtype=x.dtype)


def poly_reversed(x, y, degree):
    return torch.linalg.lstsq(_design(x, range(degree, -1, -1)), y[:, None]).solution[:, 0]


def poly_no_constant(x, y, degree):
    return torch.linalg.lstsq(_design(x, range(1, degree + 2)), y[:, None]).solution[:, 0]


# ---------------------------------------------------------------- notebook 02
def _remap(labels, order):
    position = {c: i for i, c in enumerate(order)}
    return torch.tensor([position[c] for c in labels.tolist()], dtype=torch.long)


def remap_sorted(labels, classes=None):
    return torch.unique(labels, return_inverse=True)[1] if classes is None else _remap(labels, classes.tolist())


def remap_ignores_classes(labels, classes=None):
    return _remap(labels, list(dict.fromkeys(labels.tolist())))


def remap_one_based(labels, classes=None):
    order = list(dict.fromkeys(labels.tolist())) if classes is None else classes.tolist()
    return _remap(labels, order) + 1


# ---------------------------------------------------------------- notebook 03
def sgd_no_create_graph(model, params, x, y, lr):
    g = _grads(_mse(model, params, x, y), params)
    return {k: p - lr * g[k] for k, p in params.items()}


def sgd_step_up(model, params, x, y, lr):
    g = _grads(_mse(model, params, x, y), params, create_graph=True)
    return {k: p + lr * g[k] for k, p in params.items()}


def sgd_sum_loss(model, params, x, y, lr):
    g = _grads(_mse(model, params, x, y, "sum"), params, create_graph=True)
    return {k: p - lr * g[k] for k, p in params.items()}


def _curve(model, params, train, test, steps, lr, sign=1.0, update=True):
    current, curve = dict(params), []
    for k in range(steps + 1):
        with torch.no_grad():
            curve.append(_mse(model, current, *test).item())
        if k < steps:
            g = _grads(_mse(model, current, *train), current)
            stepped = {n: (p - sign * lr * g[n]).detach().requires_grad_(True) for n, p in current.items()}
            current = stepped if update else current
    return curve


def curve_on_support(model, params, sx, sy, qx, qy, steps, lr):
    return _curve(model, params, (sx, sy), (sx, sy), steps, lr)


def curve_no_update(model, params, sx, sy, qx, qy, steps, lr):
    return _curve(model, params, (sx, sy), (qx, qy), steps, lr, update=False)


def curve_step_up(model, params, sx, sy, qx, qy, steps, lr):
    return _curve(model, params, (sx, sy), (qx, qy), steps, lr, sign=-1.0)


# ---------------------------------------------------------------- notebook 04
def _meta_gradient(model, params, sx, sy, qx, qy, lr, first_order):
    g = _grads(_mse(model, params, sx, sy), params, create_graph=not first_order)
    adapted = {k: p - lr * (g[k].detach() if first_order else g[k]) for k, p in params.items()}
    return _grads(_mse(model, adapted, qx, qy), params)


def mg_always_first_order(model, params, sx, sy, qx, qy, lr, first_order):
    return _meta_gradient(model, params, sx, sy, qx, qy, lr, True)


def mg_always_second_order(model, params, sx, sy, qx, qy, lr, first_order):
    return _meta_gradient(model, params, sx, sy, qx, qy, lr, False)


def mg_no_adaptation(model, params, sx, sy, qx, qy, lr, first_order):
    return _grads(_mse(model, params, qx, qy), params)


def mg_step_up(model, params, sx, sy, qx, qy, lr, first_order):
    return _meta_gradient(model, params, sx, sy, qx, qy, -lr, first_order)


def reptile_away(params, adapted, epsilon):
    return {k: p - epsilon * (torch.stack([a[k] for a in adapted]).mean(0) - p) for k, p in params.items()}


def reptile_sum(params, adapted, epsilon):
    return {k: p + epsilon * (sum(a[k] for a in adapted) - p) for k, p in params.items()}


def reptile_last_task(params, adapted, epsilon):
    return {k: p + epsilon * (adapted[-1][k] - p) for k, p in params.items()}


def _maml_step(model, params, optimizer, tasks, meta_batch, inner_lr, *, create_graph=True, zero_grad=True,
               swap=False, reduce=torch.mean):
    if zero_grad:
        optimizer.zero_grad()
    batch = tasks.sample(meta_batch)
    losses = []
    for sx, sy, qx, qy in batch:
        if swap:
            sx, sy, qx, qy = qx, qy, sx, sy
        g = _grads(_mse(model, params, sx, sy), params, create_graph=create_graph)
        adapted = {k: p - inner_lr * g[k] for k, p in params.items()}
        losses.append(_mse(model, adapted, qx, qy))
    meta_loss = reduce(torch.stack(losses))
    meta_loss.backward()
    optimizer.step()
    return meta_loss.item()


def maml_no_create_graph(*args):
    return _maml_step(*args, create_graph=False)


def maml_no_zero_grad(*args):
    return _maml_step(*args, zero_grad=False)


def maml_swapped(*args):
    return _maml_step(*args, swap=True)


def maml_sum(*args):
    return _maml_step(*args, reduce=torch.sum)


# ---------------------------------------------------------------- notebook 05
def ci_population_sd(values):
    return values.mean().item(), 1.96 * values.std(correction=0).item() / math.sqrt(len(values))


def ci_no_sqrt_n(values):
    return values.mean().item(), 1.96 * values.std().item()


def ci_variance(values):
    return values.mean().item(), 1.96 * values.var().item() / math.sqrt(len(values))


def proto_sum(embeddings, labels, ways):
    return torch.stack([embeddings[labels == c].sum(0) for c in range(ways)])


def proto_overall_mean(embeddings, labels, ways):
    return embeddings.mean(0).expand(ways, -1).clone()


# ---------------------------------------------------------------- notebook 06
def _rate_parts(model, params, rates, sx, sy, qx, qy):
    start = {k: p.detach().requires_grad_(True) for k, p in params.items()}
    g_support = _grads(_mse(model, start, sx, sy), start)
    adapted = {k: (p - rates[k] * g_support[k]).detach().requires_grad_(True) for k, p in start.items()}
    return start, g_support, _grads(_mse(model, adapted, qx, qy), adapted)


def rate_no_minus(*args):
    _, gs, gq = _rate_parts(*args)
    return {k: gs[k] * gq[k] for k in gs}


def rate_query_gradient_at_start(model, params, rates, sx, sy, qx, qy):
    start, gs, _ = _rate_parts(model, params, rates, sx, sy, qx, qy)
    g_start = _grads(_mse(model, start, qx, qy), start)
    return {k: -gs[k] * g_start[k] for k in gs}


def rate_times_rate(model, params, rates, *data):
    _, gs, gq = _rate_parts(model, params, rates, *data)
    return {k: -rates[k] * gs[k] * gq[k] for k in gs}


def rate_start_gradient(model, params, rates, sx, sy, qx, qy):
    start = {k: p.detach().requires_grad_(True) for k, p in params.items()}
    g = _grads(_mse(model, start, sx, sy), start, create_graph=True)
    adapted = {k: p - rates[k] * g[k] for k, p in start.items()}
    return _grads(_mse(model, adapted, qx, qy), start)


def anil_all_updated(params, grads, lr, head):
    return {k: p - lr * grads[k] for k, p in params.items()}


def anil_step_up(params, grads, lr, head):
    return {k: (p + lr * grads[k]) if k in head else p for k, p in params.items()}


# ---------------------------------------------------------------- notebook 07
def _mlp(features, w, relu=True, transpose_w2=True):
    act = torch.relu if relu else (lambda t: t)
    h = act(features @ w["w1"].T + w["b1"])
    h = act(h @ (w["w2"].T if transpose_w2 else w["w2"]) + w["b2"])
    return (h @ w["w3"].T + w["b3"])[:, 0]


def update_step_up(features, grad, weights, lr, scale):
    return lr * grad + scale * _mlp(features, weights)


def update_net_alone(features, grad, weights, lr, scale):
    return scale * _mlp(features, weights)


def update_no_scale(features, grad, weights, lr, scale):
    return -lr * grad + _mlp(features, weights)


def update_no_relu(features, grad, weights, lr, scale):
    return -lr * grad + scale * _mlp(features, weights, relu=False)


def update_w2_not_transposed(features, grad, weights, lr, scale):
    return -lr * grad + scale * _mlp(features, weights, transpose_w2=False)


def _attend(query, keys, values, scale, dim=-1, softmax=True):
    scores = query @ keys.T / scale
    return (torch.softmax(scores, dim) if softmax else scores) @ values


def attention_no_scale(query, keys, values):
    return _attend(query, keys, values, 1.0)


def attention_softmax_over_queries(query, keys, values):
    return _attend(query, keys, values, math.sqrt(query.shape[-1]), dim=0)


def attention_no_softmax(query, keys, values):
    return _attend(query, keys, values, math.sqrt(query.shape[-1]), softmax=False)


def attention_scale_by_d(query, keys, values):
    return _attend(query, keys, values, float(query.shape[-1]))


# ---------------------------------------------------------------- notebook 08
def _to_go(rewards):
    return rewards.flip(-1).cumsum(-1).flip(-1)


def loss_no_minus(lp, r, b):
    return (lp * (_to_go(r) - b)).sum(-1).mean()


def loss_no_baseline(lp, r, b):
    return -(lp * _to_go(r)).sum(-1).mean()


def loss_reward_not_to_go(lp, r, b):
    return -(lp * (r - b)).sum(-1).mean()


def loss_whole_return(lp, r, b):
    return -(lp * (r.sum(-1, keepdim=True) - b)).sum(-1).mean()


def loss_sum_over_episodes(lp, r, b):
    return -(lp * (_to_go(r) - b)).sum()


def loss_mean_over_steps(lp, r, b):
    return -(lp * (_to_go(r) - b)).mean()


def policy_step_up(params, loss_fn, episodes, lr):
    grads = torch.func.grad(loss_fn)(params, episodes)
    return {k: p + lr * grads[k] for k, p in params.items()}


def policy_first_order(params, loss_fn, episodes, lr):
    grads = torch.func.grad(loss_fn)({k: v.detach() for k, v in params.items()}, episodes)
    return {k: p - lr * grads[k] for k, p in params.items()}


def policy_detached(params, loss_fn, episodes, lr):
    grads = torch.func.grad(loss_fn)({k: v.detach() for k, v in params.items()}, episodes)
    return {k: (p - lr * grads[k]).detach() for k, p in params.items()}


# ---------------------------------------------------------------- notebook 09
def _nll(mean, var, y, constant=0.5 * math.log(2 * math.pi), log_scale=0.5, divisor=None):
    divisor = var if divisor is None else divisor
    return constant + log_scale * torch.log(var) + (y - mean) ** 2 / (2 * divisor)


def nll_no_constant(mean, log_var, y):
    return _nll(mean, log_var.exp(), y, constant=0.0).mean()


def nll_log_var_as_var(mean, log_var, y):
    return _nll(mean, log_var, y).mean()


def nll_sd_for_var(mean, log_var, y):
    return _nll(mean, log_var.exp(), y, divisor=(0.5 * log_var).exp()).mean()


def nll_no_half_log(mean, log_var, y):
    return _nll(mean, log_var.exp(), y, log_scale=1.0).mean()


def nll_sum(mean, log_var, y):
    return _nll(mean, log_var.exp(), y).sum()


def nll_log_likelihood(mean, log_var, y):
    return -_nll(mean, log_var.exp(), y).mean()


MISTAKES = {
    "polynomial_fit": {"reversed_order": poly_reversed, "no_constant_column": poly_no_constant},
    "label_remap": {"sorted_order": remap_sorted, "ignores_classes": remap_ignores_classes,
                    "one_based": remap_one_based},
    "sgd_step": {"no_create_graph": sgd_no_create_graph, "step_up": sgd_step_up, "sum_loss": sgd_sum_loss},
    "adaptation_curve": {"measured_on_support": curve_on_support, "no_update": curve_no_update,
                         "step_up": curve_step_up},
    "task_meta_gradient": {"always_first_order": mg_always_first_order,
                           "always_second_order": mg_always_second_order,
                           "no_adaptation": mg_no_adaptation, "step_up": mg_step_up},
    "reptile_update": {"away": reptile_away, "sum": reptile_sum, "last_task": reptile_last_task},
    "maml_meta_step": {"no_create_graph": maml_no_create_graph, "no_zero_grad": maml_no_zero_grad,
                       "support_query_swapped": maml_swapped, "sum_over_tasks": maml_sum},
    "confidence_interval": {"population_sd": ci_population_sd, "no_sqrt_n": ci_no_sqrt_n,
                            "variance": ci_variance},
    "prototypes": {"sum": proto_sum, "overall_mean": proto_overall_mean},
    "metasgd_rate_gradient": {"no_minus": rate_no_minus, "query_gradient_at_start": rate_query_gradient_at_start,
                              "times_rate": rate_times_rate, "start_gradient": rate_start_gradient},
    "anil_step": {"all_updated": anil_all_updated, "step_up": anil_step_up},
    "learned_update": {"step_up": update_step_up, "net_alone": update_net_alone, "no_scale": update_no_scale,
                       "no_relu": update_no_relu, "w2_not_transposed": update_w2_not_transposed},
    "support_attention": {"no_scale": attention_no_scale, "softmax_over_queries": attention_softmax_over_queries,
                          "no_softmax": attention_no_softmax, "scale_by_d": attention_scale_by_d},
    "reinforce_loss": {"no_minus": loss_no_minus, "no_baseline": loss_no_baseline,
                       "reward_not_to_go": loss_reward_not_to_go, "whole_return": loss_whole_return,
                       "sum_over_episodes": loss_sum_over_episodes, "mean_over_steps": loss_mean_over_steps},
    "adapted_policy": {"step_up": policy_step_up, "first_order": policy_first_order, "detached": policy_detached},
    "pfn_nll": {"no_constant": nll_no_constant, "log_var_as_var": nll_log_var_as_var, "sd_for_var": nll_sd_for_var,
                "no_half_log": nll_no_half_log, "sum": nll_sum, "log_likelihood": nll_log_likelihood},
}

__all__ = ["MISTAKES", "np"]
