"""The meta-step benchmark: seconds per meta-step and peak memory, mllib against higher and learn2learn.

What is timed is one meta-gradient: the inner loop on every task's support set and the backward
pass of the query losses to the meta-parameters (no optimiser step), on synthetic Omniglot-shaped
tasks (``[T, ways*shots, 1, 28, 28]`` binary images, query ``[T, ways*query, 1, 28, 28]``).

Implementations (``IMPLEMENTATIONS``):

* ``mllib-loop`` / ``mllib-vmap``: ``mllib.algorithms.meta_gradient`` with ``form="loop"`` / ``"vmap"``.
* ``higher``: the standard ``higher.innerloop_ctx`` loop over tasks, ``.backward()`` per task.
* ``learn2learn``: the standard ``l2l.algorithms.MAML(model, lr).clone().adapt(loss)`` loop.

The references are optional (never dependencies of mllib); ``reference_status()`` says which could
be imported. They run on ``RefConvNet``: the same conv4 learner written as a plain ``nn.Module``
with ``nn.BatchNorm2d(track_running_stats=False)`` (batch statistics, as mllib's ``bn="batch"``)
and the same parameter names, loaded with the same initial weights.

Honesty rules built in:

* every implementation runs in its own fresh subprocess (peak RSS of a process only grows); the
  implementations of one algorithm are set up side by side and stepped in turn, one meta-step at a
  time, so a load change on a busy shared CPU hurts all alike; times are summarised by median and min;
* ``check_gradients`` computes the meta-gradient of every implementation on the same initial
  weights and the same tasks in float64 and reports the relative error against ``mllib-loop``:
  a fast wrong gradient counts for nothing.
"""
from __future__ import annotations

import importlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, replace
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mllib.tasks.batch import TaskBatch

MLLIB_IMPLS = ("mllib-loop", "mllib-vmap")
REFERENCES = ("higher", "learn2learn")
IMPLEMENTATIONS = MLLIB_IMPLS + REFERENCES
REFERENCE_ALGOS = ("maml", "fomaml")      # what the references implement (second / first order)
GRAD_TOLERANCE = 1e-8                     # relative error allowed between implementations in float64
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
        from mllib.algorithms import ALGORITHMS
        if self.algo not in ALGORITHMS:
            raise ValueError(f"algo must be one of {', '.join(ALGORITHMS)}; got {self.algo!r}")
        if self.impl not in IMPLEMENTATIONS:
            raise ValueError(f"impl must be one of {', '.join(IMPLEMENTATIONS)}; got {self.impl!r}")
        if self.impl in REFERENCES and self.algo not in REFERENCE_ALGOS:
            raise ValueError(f"the {self.impl} reference implements only {', '.join(REFERENCE_ALGOS)}; "
                             f"got algo={self.algo!r}")
        for name, low in (("ways", 2), ("shots", 1), ("query", 1), ("filters", 1), ("meta_batch", 1),
                          ("inner_steps", 1), ("steps", 1), ("warmup", 0)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")

    @property
    def order(self) -> str:
        return "first" if self.algo in ("fomaml", "reptile") else ("none" if self.algo == "protonet" else "second")


# ---------------------------------------------------------------------------- references

def reference_status() -> dict[str, dict]:
    """``{name: {"loaded": bool, "version" or "reason": str}}`` for each optional reference."""
    status = {}
    for name in REFERENCES:
        try:
            module = importlib.import_module(name)
            version = getattr(module, "__version__", None)
            if version is None:
                from importlib.metadata import PackageNotFoundError, version as dist_version
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


def _tasks(batch: TaskBatch):
    return [(batch.support_x[t], batch.support_y[t], batch.query_x[t], batch.query_y[t])
            for t in range(batch.num_tasks)]


def higher_step(ref: nn.Module, batch: TaskBatch, lr: float, first_order: bool) -> list[Tensor]:
    """The usual ``higher`` MAML loop; returns the meta-gradient (list, in ``ref.parameters()`` order).

    First order: ``grad_callback`` detaches the inner gradients (higher's way; its inner
    ``autograd.grad`` still runs with ``create_graph=True``).
    """
    import higher
    params = list(ref.parameters())
    for p in params:
        p.grad = None
    inner_opt = torch.optim.SGD(params, lr=lr)
    tasks = _tasks(batch)
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
    tasks = _tasks(batch)
    for sx, sy, qx, qy in tasks:
        learner = maml.clone()
        learner.adapt(F.cross_entropy(learner(sx), sy))
        (F.cross_entropy(learner(qx), qy) / len(tasks)).backward()
    return [p.grad for p in params]


# ---------------------------------------------------------------------------- one configuration

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
    from mllib.algorithms import MetaConfig, init_meta_params, meta_gradient
    from mllib.models import ConvLearner

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
    import learn2learn as l2l
    maml = l2l.algorithms.MAML(ref, lr=spec.inner_lr, first_order=first_order)
    return (lambda: dict(zip(names, learn2learn_step(maml, batch)))), batch


def _proc_kib(field_name: str) -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field_name + ":"):
                    return float(line.split()[1])
    except OSError:
        return None
    return None


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, MB (``VmHWM``; ``ru_maxrss`` where /proc is absent)."""
    kib = _proc_kib("VmHWM")
    if kib is None:
        import resource
        kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1024.0 if sys.platform == "darwin" else 1.0)
    return kib / 1024.0


def time_config(spec: BenchSpec) -> dict:
    """Time ``spec`` in this process: ``{"times": [s...], "peak_rss_mb", "setup_rss_mb", "peak_mem_mb"}``.

    ``setup_rss_mb`` is the resident memory after imports, model and batch (before any step), so
    ``peak_rss_mb - setup_rss_mb`` is what the meta-steps added. On CUDA, ``peak_mem_mb`` is
    ``torch.cuda.max_memory_allocated`` during the timed steps.
    """
    if spec.threads:
        torch.set_num_threads(spec.threads)
    step, _ = make_step(spec)
    cuda = torch.device(spec.device).type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    setup = (_proc_kib("VmRSS") or 0.0) / 1024.0
    for _ in range(spec.warmup):
        step()
    sync()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(spec.steps):
        start = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - start)
    return {"times": times, "setup_rss_mb": round(setup, 1), "peak_rss_mb": round(peak_rss_mb(), 1),
            "peak_mem_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1) if cuda else None}


class Runner:
    """One implementation ready to step in this process: ``warmup()``, ``step() -> seconds``, ``finish()``."""

    def __init__(self, spec: BenchSpec) -> None:
        if spec.threads:
            torch.set_num_threads(spec.threads)
        self.cuda = torch.device(spec.device).type == "cuda"
        self._step = make_step(spec)[0]
        self.setup_rss_mb = round((_proc_kib("VmRSS") or 0.0) / 1024.0, 1)

    def _sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def warmup(self) -> None:
        self._step()
        self._sync()
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()

    def step(self) -> float:
        start = time.perf_counter()
        self._step()
        self._sync()
        return time.perf_counter() - start

    def finish(self) -> dict:
        return {"setup_rss_mb": self.setup_rss_mb, "peak_rss_mb": round(peak_rss_mb(), 1),
                "peak_mem_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1) if self.cuda else None}


class WorkerRunner:
    """A ``Runner`` in its own subprocess (its peak RSS is its own), commanded line by line."""

    def __init__(self, spec: BenchSpec) -> None:
        import tempfile
        self._err = tempfile.TemporaryFile(mode="w+")
        self.name = f"{spec.impl}/{spec.algo}"
        self.proc = subprocess.Popen([sys.executable, "-m", "mllib.bench", "--serve", json.dumps(asdict(spec))],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._err, text=True)
        self.setup_rss_mb = self._ask(None)["setup_rss_mb"]

    def _ask(self, command: str | None) -> dict:
        if command is not None:
            self.proc.stdin.write(command + "\n")
            self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait()
            self._err.seek(0)
            raise RuntimeError(f"benchmark worker {self.name} failed:\n{self._err.read()[-3000:]}")
        return json.loads(line)

    def warmup(self) -> None:
        self._ask("warmup")

    def step(self) -> float:
        return self._ask("step")["time"]

    def finish(self) -> dict:
        out = self._ask("finish")
        self.proc.stdin.close()
        self.proc.wait(timeout=60)
        self._err.close()
        return out


def _serve(spec: BenchSpec) -> int:
    runner = Runner(spec)
    print(json.dumps({"setup_rss_mb": runner.setup_rss_mb}), flush=True)
    for line in sys.stdin:
        command = line.strip()
        if command == "warmup":
            runner.warmup()
            print("{}", flush=True)
        elif command == "step":
            print(json.dumps({"time": runner.step()}), flush=True)
        elif command == "finish":
            print(json.dumps(runner.finish()), flush=True)
            return 0
    return 0


# ---------------------------------------------------------------------------- gradient agreement

def rel_error(a: dict[str, Tensor], b: dict[str, Tensor]) -> float:
    """``||a - b|| / ||b||`` over all entries of the dicts (keys of ``b``)."""
    num = sum(float(((a[k].double() - b[k].double()) ** 2).sum()) for k in b) ** 0.5
    den = sum(float((b[k].double() ** 2).sum()) for k in b) ** 0.5
    return num / max(den, 1e-300)


def check_gradients(spec: BenchSpec, impls, tasks: int = 4, dtype: torch.dtype = torch.float64) -> list[dict]:
    """Meta-gradients of ``impls`` on the same weights and tasks (``tasks`` of them, ``dtype``).

    Returns ``[{"algo", "impl", "against", "rel_err", "ok", "dtype", "tasks"}]`` against ``mllib-loop``.
    float64 because float32 conv nets with ReLU and max-pool have inputs at kinks that different
    summation orders resolve differently (see FIELD_NOTES).
    """
    base = replace(spec, meta_batch=min(tasks, spec.meta_batch), impl="mllib-loop")
    reference = make_step(base, dtype)[0]()
    rows = []
    for impl in impls:
        if impl == "mllib-loop":
            continue
        grads = make_step(replace(base, impl=impl), dtype)[0]()
        err = rel_error({k: grads[k] for k in reference}, reference)
        rows.append({"algo": spec.algo, "impl": impl, "against": "mllib-loop", "rel_err": err,
                     "ok": bool(err < GRAD_TOLERANCE), "dtype": str(dtype).replace("torch.", ""),
                     "tasks": base.meta_batch})
    return rows


# ---------------------------------------------------------------------------- the whole benchmark

def summarise(times: list[float]) -> dict:
    return {"median_s": round(statistics.median(times), 5), "min_s": round(min(times), 5), "n": len(times)}


def host_info(device: str) -> dict:
    from mllib.device import describe_device
    info = {"device": describe_device(torch.device(device)), "torch": torch.__version__,
            "python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
            "threads": torch.get_num_threads()}
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu"] = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), None)
    except OSError:
        info["cpu"] = platform.processor() or None
    try:
        with open("/proc/loadavg") as f:
            info["loadavg_start"] = f.read().split()[:3]
    except OSError:
        pass
    return info


def run_benchmark(algos=("maml", "fomaml"), forms=("loop", "vmap"), references=REFERENCES, ways: int = 5,
                  shots: int = 1, query: int = 15, filters: int = 64, meta_batch: int = 32, steps: int = 5,
                  warmup: int = 1, repeats: int = 2, device: str = "cpu", isolate: bool = True,
                  check_tasks: int = 4, threads: int | None = None,
                  log: Callable[[str], None] | None = None) -> dict:
    """Time every (algo, implementation), interleaved over ``repeats`` rounds; check gradients.

    Returns the JSON-ready result (``kind="mllib-bench"``): ``results`` (per algo and impl: median
    and min seconds per meta-step, peak memory), ``ratios`` (mllib's default form over the fastest
    loaded reference), ``gradient_check`` and ``references`` (which could be loaded, or why not).
    """
    from mllib.algorithms import pick_form
    log = log or (lambda message: None)
    status = reference_status()
    wanted_refs = [r for r in references if r not in status or status[r]["loaded"]]
    for r in references:
        if r not in REFERENCES:
            raise ValueError(f"references must be among {', '.join(REFERENCES)}; got {r!r}")
    for form in forms:
        if form not in ("loop", "vmap"):
            raise ValueError(f"forms must be among loop, vmap; got {form!r}")
    log("references: " + ", ".join(f"{n} {'loaded ' + s['version'] if s['loaded'] else 'NOT loaded (' + s['reason'] + ')'}"
                                   for n, s in status.items() if n in references))
    plan = []
    for algo in algos:
        impls = ["mllib-" + f for f in forms] + ([r for r in wanted_refs] if algo in REFERENCE_ALGOS else [])
        plan += [BenchSpec(algo=algo, impl=i, ways=ways, shots=shots, query=query, filters=filters,
                           meta_batch=meta_batch, steps=steps, warmup=warmup, device=device, threads=threads)
                 for i in impls]
    for spec in plan:
        spec.validate()
    samples: dict[tuple, dict] = {}
    for algo in algos:
        # all implementations of one algorithm are set up side by side and stepped in turn, one
        # meta-step at a time (starting implementation rotated), so a load change on a shared
        # machine hits all of them alike
        specs = [s for s in plan if s.algo == algo]
        runners = [(WorkerRunner if isolate else Runner)(spec) for spec in specs]
        try:
            for runner in runners:
                for _ in range(warmup):
                    runner.warmup()
            times = [[] for _ in runners]
            for i in range(steps * repeats):
                for j in [(i + k) % len(runners) for k in range(len(runners))]:
                    times[j].append(runners[j].step())
                log(f"step {i + 1}/{steps * repeats} {algo}: " + ", ".join(
                    f"{spec.impl} {t[-1]:.3f} s" for spec, t in zip(specs, times)))
            for spec, runner, t in zip(specs, runners, times):
                samples[(algo, spec.impl)] = {"times": t, **runner.finish()}
        finally:
            for runner in runners:
                if isinstance(runner, WorkerRunner) and runner.proc.poll() is None:
                    runner.proc.kill()
    results = []
    for (algo, impl), entry in samples.items():
        spec = next(s for s in plan if s.algo == algo and s.impl == impl)
        results.append({"algo": algo, "impl": impl, "order": spec.order, **summarise(entry["times"]),
                        "times": [round(t, 5) for t in entry["times"]], "peak_rss_mb": entry["peak_rss_mb"],
                        "setup_rss_mb": entry["setup_rss_mb"], "peak_mem_mb": entry["peak_mem_mb"]})
    default_impl = "mllib-" + pick_form(device)
    ratios = []
    for algo in algos:
        mine = next((x for x in results if x["algo"] == algo and x["impl"] == default_impl), None)
        refs = [x for x in results if x["algo"] == algo and x["impl"] in REFERENCES]
        if mine and refs:
            fastest = min(refs, key=lambda x: x["median_s"])
            ratios.append({"algo": algo, "mllib": default_impl, "reference": fastest["impl"],
                           "ratio_median": round(mine["median_s"] / fastest["median_s"], 3),
                           "ratio_min": round(mine["min_s"] / fastest["min_s"], 3)})
    checks = []
    for algo in algos:
        impls = [i for s in plan if s.algo == algo for i in [s.impl]]
        if len(impls) > 1 or "mllib-loop" not in impls:
            base = BenchSpec(algo=algo, ways=ways, shots=shots, query=query, filters=filters,
                             meta_batch=meta_batch, device=device)
            checks += check_gradients(base, impls, tasks=check_tasks)
    for row in checks:
        log(f"gradient {row['algo']:8s} {row['impl']:12s} vs mllib-loop: rel err {row['rel_err']:.1e} "
            f"({row['dtype']}, {row['tasks']} tasks) {'OK' if row['ok'] else 'DISAGREES'}")
    for row in ratios:
        log(f"ratio {row['algo']}: {row['mllib']} / {row['reference']} = {row['ratio_median']} (median), "
            f"{row['ratio_min']} (min)")
    return {
        "kind": BENCH_KIND, "version": 1, "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host": host_info(device),
        "config": {"ways": ways, "shots": shots, "query": query, "filters": filters, "meta_batch": meta_batch,
                   "inner_steps": 1, "inner_lr": 0.4, "bn": "batch", "steps": steps, "warmup": warmup,
                   "repeats": repeats, "threads": threads or torch.get_num_threads(), "isolated": isolate,
                   "interleaved": "per meta-step", "device": device,
                   "data": "synthetic Omniglot-shaped binary images"},
        "references": {n: s for n, s in status.items() if n in references},
        "results": sorted(results, key=lambda x: (x["algo"], x["impl"])),
        "ratios": ratios, "gradient_check": checks,
        "gradients_agree": all(row["ok"] for row in checks),
    }


def format_table(result: dict) -> str:
    """A plain-text table of a ``run_benchmark`` result."""
    lines = [f"{'algo':8s} {'impl':12s} {'median s':>9s} {'min s':>8s} {'peak RSS MB':>12s} {'GPU MB':>8s}"]
    for row in result["results"]:
        gpu = "-" if row["peak_mem_mb"] is None else f"{row['peak_mem_mb']:.0f}"
        lines.append(f"{row['algo']:8s} {row['impl']:12s} {row['median_s']:9.3f} {row['min_s']:8.3f} "
                     f"{row['peak_rss_mb']:12.0f} {gpu:>8s}")
    for row in result["ratios"]:
        lines.append(f"ratio {row['algo']}: {row['mllib']} / fastest reference ({row['reference']}) = "
                     f"{row['ratio_median']:.3f} (median), {row['ratio_min']:.3f} (min)")
    refs = result["references"]
    lines.append("references: " + (", ".join(f"{n}: {'loaded ' + s['version'] if s['loaded'] else 'not loaded'}"
                                             for n, s in refs.items()) or "none requested"))
    lines.append("gradients: " + ("all agree" if result["gradients_agree"] else "DISAGREE (see gradient_check)"))
    return "\n".join(lines)


if __name__ == "__main__":   # the worker of WorkerRunner: python -m mllib.bench --serve SPEC_JSON
    sys.exit(_serve(BenchSpec(**json.loads(sys.argv[sys.argv.index("--serve") + 1]))))
