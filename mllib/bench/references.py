"""The reference implementations the benchmark compares against, both optional (never mllib
dependencies): the usual ``higher`` and ``learn2learn`` MAML loops, on ``RefConvNet``, the conv4
learner as a plain ``nn.Module`` with the same parameter names and weights as ``ConvLearner``."""
from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version as dist_version

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mllib.tasks.batch import TaskBatch

REFERENCES = ("higher", "learn2learn")


def reference_status() -> dict[str, dict]:
    """``{name: {"loaded": bool, "version" or "reason": str}}`` for each optional reference."""
    status = {}
    for name in REFERENCES:
        try:
            module = importlib.import_module(name)
            version = getattr(module, "__version__", None)
            if version is None:
                try:
                    version = dist_version(name)
                except PackageNotFoundError:
                    version = "unknown"
            status[name] = {"loaded": True, "version": str(version)}
        except Exception as err:  # ImportError, or a broken build raising something else
            status[name] = {"loaded": False, "reason": f"{type(err).__name__}: {err}"}
    return status


class RefBlock(nn.Module):
    """conv 3x3 (no bias), ``nn.BatchNorm2d`` with batch statistics only, ReLU, 2x2 max-pool."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.norm = nn.BatchNorm2d(out_channels, track_running_stats=False)

    def forward(self, x: Tensor) -> Tensor:
        return F.max_pool2d(torch.relu(self.norm(self.conv(x))), 2)


class RefConvNet(nn.Module):
    """The conv4 learner as a plain module for the references; parameter names equal ``ConvLearner``'s."""

    def __init__(self, ways: int, in_channels: int = 1, filters: int = 64, depth: int = 4, side: int = 1) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([RefBlock(in_channels if i == 0 else filters, filters) for i in range(depth)])
        self.head = nn.Linear(filters * side * side, ways)

    def forward(self, x: Tensor) -> Tensor:
        for block in self.blocks:
            x = block(x)
        return self.head(x.flatten(1))


def reference_model(model: nn.Module) -> RefConvNet:
    """A ``RefConvNet`` holding a copy of the weights of ``model`` (an ``mllib.models.ConvLearner``)."""
    side = int(round((model.feature_dim / model.blocks[0].conv.out_channels) ** 0.5))
    ref = RefConvNet(model.ways, model.blocks[0].conv.in_channels, model.blocks[0].conv.out_channels,
                     len(model.blocks), side)
    ref.load_state_dict(model.state_dict(), strict=True)
    p = next(model.parameters())
    return ref.to(device=p.device, dtype=p.dtype)


def higher_step(ref: nn.Module, batch: TaskBatch, lr: float, first_order: bool) -> list[Tensor]:
    """The usual ``higher`` MAML loop; returns the meta-gradient (list, in ``ref.parameters()`` order).

    First order: ``grad_callback`` detaches the inner gradients (higher's way; its inner
    ``autograd.grad`` still runs with ``create_graph=True``).
    """
    import higher  # optional reference, imported only when asked for
    params = list(ref.parameters())
    for p in params:
        p.grad = None
    inner_opt = torch.optim.SGD(params, lr=lr)
    tasks = list(batch)
    detach = (lambda grads: [g.detach() for g in grads]) if first_order else None
    for sx, sy, qx, qy in tasks:
        with higher.innerloop_ctx(ref, inner_opt, copy_initial_weights=False) as (fmodel, diffopt):
            diffopt.step(F.cross_entropy(fmodel(sx), sy), grad_callback=detach)
            (F.cross_entropy(fmodel(qx), qy) / len(tasks)).backward()
    return [p.grad for p in params]


def learn2learn_step(maml, batch: TaskBatch) -> list[Tensor]:
    """The usual learn2learn loop: ``learner = maml.clone(); learner.adapt(loss)``; per-task backward."""
    params = list(maml.parameters())
    for p in params:
        p.grad = None
    tasks = list(batch)
    for sx, sy, qx, qy in tasks:
        learner = maml.clone()
        learner.adapt(F.cross_entropy(learner(sx), sy))
        (F.cross_entropy(learner(qx), qy) / len(tasks)).backward()
    return [p.grad for p in params]


