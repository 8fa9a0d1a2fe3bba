"""Seeded inputs shared by the checks of notebooks 03 and 04.

A tiny float64 ``SineMLP`` with random parameters, and the points of a random sinusoid task.
"""
from __future__ import annotations

import math

import torch

from mllib.models import SineMLP

from .core import random_tensor


def _tiny_sine_model(gen: torch.Generator, hidden: int = 8):
    """A float64 ``SineMLP(hidden)`` and a params dict of random leaves (drawn from ``gen``)."""
    model = SineMLP(hidden=hidden).double()
    params = {name: (0.5 * random_tensor(gen, *p.shape)).requires_grad_(True) for name, p in model.named_parameters()}
    return model, params


def _sine_points(gen: torch.Generator, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.rand(count, 1, generator=gen, dtype=torch.float64) * 10 - 5
    amplitude = 0.1 + 4.9 * torch.rand(1, generator=gen, dtype=torch.float64)
    phase = math.pi * torch.rand(1, generator=gen, dtype=torch.float64)
    return x, amplitude * torch.sin(x - phase)


def _sine_task(gen: torch.Generator, support: int, query: int, hidden: int = 8):
    """``(model, params, support_x, support_y, query_x, query_y)``: a tiny model and one task's points
    ``[support, 1]`` and ``[query, 1]``, drawn from ``gen`` in that order."""
    model, params = _tiny_sine_model(gen, hidden)
    return (model, params, *_sine_points(gen, support), *_sine_points(gen, query))
