"""One implementation of the sinusoid adaptation curves: ``adaptation_curve`` is the query half of
``support_query_curves`` (mllib.per_task re-exports it), and the notebook 03 check refuses both."""
from __future__ import annotations

import pytest
import torch

import mllib.per_task
from mllib import checks
from mllib.models import SineMLP, params_of
from mllib.sine_experiments import adaptation_curve, support_query_curves
from mllib.tasks import SinusoidTasks
from mllib.tasks.batch import TaskBatch


def test_adaptation_curve_is_the_query_half_to_the_bit():
    torch.manual_seed(0)
    net = SineMLP()
    batch = SinusoidTasks(shots=5, query=7, seed=1).sample(4)
    support, query = support_query_curves(net, params_of(net), batch, steps=3, lr=0.01)
    assert support.shape == query.shape == (4, 4)
    assert torch.equal(query, adaptation_curve(net, params_of(net), batch, steps=3, lr=0.01, per_task=True))
    assert torch.equal(query.mean(0), adaptation_curve(net, params_of(net), batch, steps=3, lr=0.01))
    assert mllib.per_task.support_query_curves is support_query_curves


def curve_from_the_library(model, params, support_x, support_y, query_x, query_y, steps, lr):
    batch = TaskBatch(support_x[None], support_y[None], query_x[None], query_y[None])
    return support_query_curves(model, params, batch, steps, lr)[1][0]


def test_the_notebook_03_check_refuses_the_library_curves():
    with pytest.raises(AssertionError, match=r"calls `mllib\.sine_experiments\.support_query_curves`"):
        checks.check_adaptation_curve(curve_from_the_library)
