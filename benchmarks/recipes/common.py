"""Shared pieces of the recipe experiments of issue 17 (phase A): no library file is edited.

A functional conv4 learner with the parameter names of ``mllib.models.ConvLearner`` (so a result
loads into the library), a meta-gradient with the candidate recipe features, and the library's
validation / test protocol (``mllib.train.VAL_SEED`` val tasks, ``mllib.evaluate.TEST_SEED``
test tasks in chunks of ``SAMPLE_CHUNK``, the maml split, ``bn="batch"`` i.e. transductive).

Recipe features (``Recipe``), each off by default so ``Recipe()`` is today's quick profile:

* ``channels_last_input``: the ``[N, 1, 28, 28]`` input viewed with channels-last strides
  ``(784, 1, 28, 1)`` (same memory, no copy), so the first conv's output, batch norm and max-pool
  run channels-last too; today they run NCHW (oneDNN picks NCHW for a 1-channel input) and the
  NCHW max-pool is ~10x slower on this CPU. Same function: only float rounding differs.
* ``zero_head``: the head is not meta-learned and starts every task at zero (the "zeroing trick"
  of Kao et al. 2022). Then the first inner step changes only the head (the gradient of every
  body and batch-norm parameter is exactly zero at a zero head), so that step needs no backward
  pass through the body (``skip_zero_grads``), and its head is a prototype-like classifier.
* ``first_order_until``: derivative-order annealing: first order before this meta-step, second after.
* ``cosine``: the meta learning rate follows a half cosine from ``meta_lr`` to ``meta_lr * lr_floor``.
* ``lslr``: learned per-layer, per-step inner rates (MAML++): ``"lslr.<param>.<step>"`` scalars.
* ``msl``: multi-step loss (MAML++): query loss after every inner step, weights annealed to the last.
* ``protonet_steps``: warm start: this many prototypical-network meta-steps on the body first.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")


def env_setup(threads: int = 1) -> None:
    os.environ.setdefault("MLLIB_DATA", "/work/shared/data/omniglot")
    os.environ.setdefault("MLLIB_CACHE", "/work/cache")
    os.environ.setdefault("CI", "1")  # no progress bars in logs
    torch.set_num_threads(threads)


@dataclass
class Recipe:
    name: str = "baseline"
    ways: int = 5
    shots: int = 1
    query: int = 5
    meta_batch: int = 8
    steps: int = 1000
    filters: int = 32
    inner_steps: int = 1
    inner_steps_test: int = 3
    inner_lr: float = 0.4
    meta_lr: float = 3e-3
    cosine: bool = False
    lr_floor: float = 0.0
    warmup_steps: int = 0
    channels_last_input: bool = True
    zero_head: bool = False
    skip_zero_grads: bool = True
    first_order_until: int = 0
    lslr: bool = False
    msl: bool = False
    protonet_steps: int = 0
    seed: int = 0
    val_every: int = 250
    val_tasks: int = 100
    test_query: int = 5
    extra_test_steps: list = field(default_factory=lambda: [10])

    def to_dict(self) -> dict:
        return asdict(self)


def param_names(depth: int = 4) -> list[str]:
    names = []
    for i in range(depth):
        names += [f"blocks.{i}.conv.weight", f"blocks.{i}.norm.weight", f"blocks.{i}.norm.bias"]
    return names + ["head.weight", "head.bias"]


def init_params(r: Recipe) -> dict[str, Tensor]:
    """ConvLearner's initial weights for ``r.seed`` (the library's own initialiser, same seed)."""
    from mllib.models import ConvLearner, params_of
    torch.manual_seed(r.seed)
    params = params_of(ConvLearner(r.ways, filters=r.filters))
    if r.zero_head:
        params = {k: (torch.zeros_like(v) if k.startswith("head.") else v) for k, v in params.items()}
        for k in ("head.weight", "head.bias"):
            params[k].requires_grad_(False)
    if r.lslr:
        for k in list(params):
            if not k.startswith("lslr."):
                for s in range(max(r.inner_steps, r.inner_steps_test)):
                    params[f"lslr.{k}.{s}"] = torch.tensor(r.inner_lr).requires_grad_(True)
    return params


def to_channels_last(x: Tensor) -> Tensor:
    """``[N, 1, H, W]`` -> the same memory viewed with channels-last strides ``(H*W, 1, W, 1)``."""
    n, c, h, w = x.shape
    if c != 1:
        return x.contiguous(memory_format=torch.channels_last)
    return x.reshape(n, h, w, 1).permute(0, 3, 1, 2)


def features(p: dict, x: Tensor, cl: bool = True, depth: int = 4) -> Tensor:
    """``x [N, 1, 28, 28]`` -> ``[N, filters]``: conv, batch norm (batch statistics), max-pool, ReLU."""
    if cl:
        x = to_channels_last(x)
    for i in range(depth):
        w = p[f"blocks.{i}.conv.weight"].contiguous(memory_format=torch.channels_last)
        x = F.conv2d(x, w, padding=1)
        x = F.batch_norm(x, None, None, p[f"blocks.{i}.norm.weight"], p[f"blocks.{i}.norm.bias"], True, 0.0, 1e-5)
        x = torch.relu(F.max_pool2d(x, 2))
    return x.flatten(1)


def logits(p: dict, x: Tensor, cl: bool = True) -> Tensor:
    return F.linear(features(p, x, cl), p["head.weight"], p["head.bias"])


def rate(p: dict, r: Recipe, name: str, step: int):
    if r.lslr:
        key = f"lslr.{name}.{step}"
        return p[key] if key in p else p[f"lslr.{name}.{r.inner_steps - 1}"]
    return r.inner_lr


def adapt_with_recipe(p: dict, r: Recipe, sx, sy, steps: int, first_order: bool, create_graph: bool,
                      qx=None, qy=None):
    """Inner loop on one task; returns (adapted params, [query losses after each step] if msl)."""
    fast = {k: v for k, v in p.items() if not k.startswith("lslr.")}
    names = [k for k in fast if fast[k].requires_grad or (r.zero_head and k.startswith("head."))]
    if r.zero_head:
        fast["head.weight"] = fast["head.weight"].detach().requires_grad_(True)
        fast["head.bias"] = fast["head.bias"].detach().requires_grad_(True)
    per_step = []
    for s in range(steps):
        head_only = r.zero_head and r.skip_zero_grads and s == 0
        if head_only:
            # at a zero head every body / batch-norm gradient is exactly zero: only the head moves
            f = features(fast, sx, r.channels_last_input)
            loss = F.cross_entropy(F.linear(f, fast["head.weight"], fast["head.bias"]), sy)
            todo = ["head.weight", "head.bias"]
        else:
            loss = F.cross_entropy(logits(fast, sx, r.channels_last_input), sy)
            todo = names
        grads = torch.autograd.grad(loss, [fast[n] for n in todo], create_graph=create_graph and not first_order)
        if head_only:
            # new graph nodes for the unchanged body, so that a later inner gradient is the partial
            # derivative at the current point (not also through the head's dependence on the body)
            for n in names:
                if n not in todo:
                    fast[n] = fast[n].view_as(fast[n])
        for n, g in zip(todo, grads):
            if first_order:
                g = g.detach()
            fast[n] = fast[n] - rate(p, r, n, s) * g
        if qx is not None and r.msl and s < steps - 1:
            per_step.append(F.cross_entropy(logits(fast, qx, r.channels_last_input), qy))
    return fast, per_step


def msl_weights(r: Recipe, step: int) -> list[float]:
    """MAML++ multi-step loss weights: uniform at first, annealed to the last step over the first 30%."""
    k = r.inner_steps
    if not r.msl or k == 1:
        return [0.0] * (k - 1) + [1.0]
    decay = 1.0 / k * min(1.0, step / max(1, 0.3 * r.steps))
    w = [max(1.0 / k - decay, 0.03 / k) for _ in range(k - 1)]
    return w + [1.0 - sum(w)]


def meta_grad(p: dict, r: Recipe, batch, step: int = 0) -> tuple[dict, float, float]:
    """Mean meta-gradient over the tasks of ``batch`` (loop form, one backward per task)."""
    first_order = step < r.first_order_until
    keys = [k for k, v in p.items() if v.requires_grad]
    sums = {k: torch.zeros_like(p[k]) for k in keys}
    T = batch.num_tasks
    losses, accs = [], []
    weights = msl_weights(r, step)
    for t in range(T):
        sx, sy, qx, qy = batch.support_x[t], batch.support_y[t], batch.query_x[t], batch.query_y[t]
        fast, per_step = adapt_with_recipe(p, r, sx, sy, r.inner_steps, first_order, True, qx, qy)
        out = logits(fast, qx, r.channels_last_input)
        last = F.cross_entropy(out, qy)
        loss = sum(w * l for w, l in zip(weights, per_step + [last])) if per_step else last
        grads = torch.autograd.grad(loss, [p[k] for k in keys], allow_unused=True)
        for k, g in zip(keys, grads):
            if g is not None:
                sums[k] += g
        losses.append(float(last.detach()))
        accs.append(float((out.argmax(-1) == qy).float().mean()))
    return {k: v / T for k, v in sums.items()}, sum(losses) / T, sum(accs) / T


def proto_grad(p: dict, r: Recipe, batch) -> tuple[dict, float, float]:
    """Prototypical-network meta-gradient of the body (head unused)."""
    keys = [k for k, v in p.items() if v.requires_grad and not k.startswith(("head.", "lslr."))]
    sums = {k: torch.zeros_like(p[k]) for k in keys}
    T = batch.num_tasks
    losses, accs = [], []
    for t in range(T):
        sx, sy, qx, qy = batch.support_x[t], batch.support_y[t], batch.query_x[t], batch.query_y[t]
        fs, fq = features(p, sx, r.channels_last_input), features(p, qx, r.channels_last_input)
        onehot = F.one_hot(sy, r.ways).to(fs.dtype)
        protos = onehot.T @ fs / onehot.sum(0)[:, None]
        out = -((fq[:, None] - protos[None]) ** 2).sum(-1)
        loss = F.cross_entropy(out, qy)
        for k, g in zip(keys, torch.autograd.grad(loss, [p[k] for k in keys])):
            sums[k] += g
        losses.append(float(loss))
        accs.append(float((out.argmax(-1) == qy).float().mean()))
    return {k: v / T for k, v in sums.items()}, sum(losses) / T, sum(accs) / T


def evaluate(p: dict, r: Recipe, batch, steps: int) -> Tensor:
    """Per-task query accuracy ``[T]`` after ``steps`` inner steps (no outer graph)."""
    detached = {k: v.detach().requires_grad_(not k.startswith("lslr.")) for k, v in p.items()}
    out = []
    for t in range(batch.num_tasks):
        sx, sy, qx, qy = batch.support_x[t], batch.support_y[t], batch.query_x[t], batch.query_y[t]
        with torch.enable_grad():
            fast, _ = adapt_with_recipe(detached, r, sx, sy, steps, True, False)
        with torch.no_grad():
            out.append((logits(fast, qx, r.channels_last_input).argmax(-1) == qy).float().mean())
    return torch.stack(out)


def test_accuracy(p: dict, r: Recipe, data, steps: int, tasks: int = 600) -> dict:
    """The library's test protocol: TEST_SEED tasks in SAMPLE_CHUNK chunks, maml split, test part."""
    from mllib.evaluate import SAMPLE_CHUNK, TEST_SEED, mean_ci95
    from mllib.tasks import OmniglotTasks
    sampler = OmniglotTasks(data, split="maml", part="test", ways=r.ways, shots=r.shots, query=r.test_query,
                            seed=TEST_SEED)
    t0 = time.perf_counter()
    accs = torch.cat([evaluate(p, r, sampler.sample(min(SAMPLE_CHUNK, tasks - s)), steps)
                      for s in range(0, tasks, SAMPLE_CHUNK)])
    mean, ci = mean_ci95(accs)
    return {"accuracy": round(mean, 5), "ci95": round(ci, 5), "tasks": tasks, "inner_steps": steps,
            "query": r.test_query, "bn": "batch (transductive)", "split": "maml test",
            "seconds_shared_machine": round(time.perf_counter() - t0, 1)}


def meta_lr_at(r: Recipe, step: int) -> float:
    if step < r.warmup_steps:
        return r.meta_lr * (step + 1) / r.warmup_steps
    if not r.cosine:
        return r.meta_lr
    frac = (step - r.warmup_steps) / max(1, r.steps - r.warmup_steps)
    return r.meta_lr * (r.lr_floor + (1 - r.lr_floor) * 0.5 * (1 + math.cos(math.pi * frac)))
