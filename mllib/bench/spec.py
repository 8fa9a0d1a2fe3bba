"""What the benchmark times: ``BenchSpec`` (one algorithm in one implementation on one task shape),
Omniglot-shaped synthetic tasks, and ``make_step``, one meta-gradient of any implementation."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from mllib.algorithms import ALGORITHMS, MetaConfig, init_meta_params, meta_gradient
from mllib.arguments import check_choice, check_int
from mllib.models import ConvLearner
from mllib.tasks.batch import TaskBatch

from .references import REFERENCES, higher_step, learn2learn_step, reference_model

MLLIB_IMPLS = ("mllib-loop", "mllib-vmap")
IMPLEMENTATIONS = MLLIB_IMPLS + REFERENCES
REFERENCE_ALGOS = ("maml", "fomaml")      # what the references implement (second / first order)
BENCH_KIND = "mllib-bench"


@dataclass(frozen=True)
class BenchSpec:
    """One configuration to time: an algorithm in one implementation on one task shape."""

    algo: str = "maml"
    impl: str = "mllib-loop"
    ways: int = 5
    shots: int = 1
    query: int = 15
    filters: int = 64
    meta_batch: int = 32
    inner_lr: float = 0.4
    inner_steps: int = 1
    steps: int = 5
    warmup: int = 1
    device: str = "cpu"
    seed: int = 0
    threads: int | None = None

    def validate(self) -> None:
        check_choice("algo", self.algo, ALGORITHMS)
        check_choice("impl", self.impl, IMPLEMENTATIONS)
        if self.impl in REFERENCES and self.algo not in REFERENCE_ALGOS:
            raise ValueError(f"the {self.impl} reference implements only {', '.join(REFERENCE_ALGOS)}; "
                             f"got algo={self.algo!r}")
        for name, low in (("ways", 2), ("shots", 1), ("query", 1), ("filters", 1), ("meta_batch", 1),
                          ("inner_steps", 1), ("steps", 1), ("warmup", 0)):
            check_int(name, getattr(self, name), low)

    @property
    def order(self) -> str:
        return "first" if self.algo in ("fomaml", "reptile") else ("none" if self.algo == "protonet" else "second")


def synthetic_batch(spec: BenchSpec, dtype: torch.dtype = torch.float32) -> TaskBatch:
    """Omniglot-shaped tasks: binary ``[T, ways*shots, 1, 28, 28]`` images, labels ``0..ways-1``."""
    gen = torch.Generator().manual_seed(spec.seed + 1)
    T, W = spec.meta_batch, spec.ways

    def images(n):
        return (torch.rand(T, W * n, 1, 28, 28, generator=gen) < 0.2).to(dtype)

    def labels(n):
        return torch.arange(W).repeat_interleave(n).repeat(T, 1)

    return TaskBatch(images(spec.shots), labels(spec.shots), images(spec.query), labels(spec.query))


def make_step(spec: BenchSpec, dtype: torch.dtype = torch.float32) -> tuple[Callable[[], dict], TaskBatch]:
    """``(step, batch)``: ``step()`` computes one meta-gradient of ``spec`` and returns it as a dict."""
    spec.validate()
    device = torch.device(spec.device)
    torch.manual_seed(spec.seed)
    model = ConvLearner(spec.ways, filters=spec.filters).to(device=device, dtype=dtype)
    batch = synthetic_batch(spec, dtype).to(device)
    if spec.impl in MLLIB_IMPLS:
        cfg = MetaConfig(algo=spec.algo, inner_steps=spec.inner_steps, inner_lr=spec.inner_lr,
                         form=spec.impl.split("-", 1)[1])
        params = init_meta_params(model, cfg)
        return (lambda: meta_gradient(model, params, batch, cfg)[0]), batch
    if spec.inner_steps != 1:
        raise ValueError("the reference meta-steps are written for inner_steps=1")
    ref = reference_model(model)
    names = [n for n, _ in ref.named_parameters()]
    first_order = spec.algo == "fomaml"
    if spec.impl == "higher":
        return (lambda: dict(zip(names, higher_step(ref, batch, spec.inner_lr, first_order)))), batch
    import learn2learn as l2l  # optional reference, imported only when asked for
    maml = l2l.algorithms.MAML(ref, lr=spec.inner_lr, first_order=first_order)
    return (lambda: dict(zip(names, learn2learn_step(maml, batch)))), batch


