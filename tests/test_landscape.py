"""The two-parameter sinusoid landscape of notebook 04: gradients, grids, and where the two starts go."""
from __future__ import annotations

import math

import pytest
import torch

from mllib.landscape import (JOINT_OPTIMUM, adapt_step, loss_surface, post_step_losses, task_loss, train_start,
                             wave)
from mllib.tasks import SinusoidTasks


@pytest.fixture(scope="module")
def task():
    batch, amplitude, phase = SinusoidTasks(shots=10, query=10, seed=3).sample(1, return_params=True)
    return batch, float(amplitude[0]), float(phase[0])


def test_the_model_is_the_task_family_so_each_optimum_is_its_amplitude_and_phase(task):
    batch, amplitude, phase = task
    optimum = torch.tensor([amplitude, phase])
    torch.testing.assert_close(wave(optimum, batch.support_x[0]), batch.support_y[0])
    assert task_loss(optimum, batch.support_x[0], batch.support_y[0]) < 1e-10
    assert task_loss(optimum + 0.3, batch.support_x[0], batch.support_y[0]) > 0.01


def test_one_step_uses_the_exact_gradient(task):
    batch, *_ = task
    x, y = batch.support_x[0].double(), batch.support_y[0].double()
    params, eps = torch.tensor([1.3, 0.7], dtype=torch.float64), 1e-6
    numeric = torch.stack([(task_loss(params + eps * e, x, y) - task_loss(params - eps * e, x, y)) / (2 * eps)
                           for e in torch.eye(2, dtype=torch.float64)])
    torch.testing.assert_close(adapt_step(params, x, y, 0.1), params - 0.1 * numeric, rtol=1e-7, atol=1e-9)


def test_the_surface_is_the_loss_at_every_grid_point(task):
    batch, *_ = task
    amplitudes, phases = torch.linspace(0, 5, 4), torch.linspace(0, 3, 3)
    surface = loss_surface(amplitudes, phases, batch.query_x[0], batch.query_y[0])
    assert surface.shape == (3, 4)
    for i, p in enumerate(phases):
        for j, a in enumerate(amplitudes):
            torch.testing.assert_close(surface[i, j], task_loss(torch.stack([a, p]), batch.query_x[0],
                                                                batch.query_y[0]))


def test_post_step_losses_match_a_loop_and_no_step_is_the_plain_loss():
    batch = SinusoidTasks(shots=10, query=10, seed=4).sample(5)
    params = torch.tensor([1.0, 1.0])
    looped = torch.stack([task_loss(adapt_step(params, batch.support_x[t], batch.support_y[t], 0.1),
                                    batch.query_x[t], batch.query_y[t]) for t in range(5)])
    torch.testing.assert_close(post_step_losses(params, batch, 0.1), looped)
    plain = torch.stack([task_loss(params, batch.query_x[t], batch.query_y[t]) for t in range(5)])
    torch.testing.assert_close(post_step_losses(params, batch, 0.0), plain)


def test_joint_training_finds_the_mean_task_and_maml_starts_adapt_better():
    test = SinusoidTasks(shots=10, query=10, seed=99).sample(500)
    joint, trajectory = train_start("joint", steps=300, seed=0)
    assert trajectory.shape == (301, 2) and torch.equal(trajectory[-1], joint)
    assert abs(joint[0] - JOINT_OPTIMUM[0]) < 0.2 and abs(joint[1] - math.pi / 2) < 0.1
    for inner_lr in (0.1, 1.0):
        maml, _ = train_start("maml", inner_lr=inner_lr, steps=300, seed=0)
        assert post_step_losses(maml, test, inner_lr).mean() < post_step_losses(joint, test, inner_lr).mean()
    again, _ = train_start("maml", inner_lr=1.0, steps=300, seed=0)
    assert torch.equal(again, maml)


@pytest.mark.parametrize("kwargs, message", [
    (dict(kind="reptile"), "kind must be one of joint, maml"),
    (dict(steps=0), "steps must be an integer >= 1"),
    (dict(inner_lr=0.0), "inner_lr must be a finite number > 0"),
    (dict(lr=float("nan")), "lr must be a finite number > 0"),
])
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        train_start(**kwargs)
