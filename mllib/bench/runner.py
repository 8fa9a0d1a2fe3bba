"""Stepping one implementation: in this process (``Runner``, ``time_config``) or in a fresh worker
subprocess of its own (``WorkerRunner``: peak resident memory only grows, so each gets its own)."""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict

import torch

from .spec import BenchSpec, make_step


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
        import resource  # Unix only: the fallback where /proc is absent
        kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1024.0 if sys.platform == "darwin" else 1.0)
    return kib / 1024.0


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


def time_config(spec: BenchSpec) -> dict:
    """Time ``spec`` in this process: ``{"times": [s...], "peak_rss_mb", "setup_rss_mb", "peak_mem_mb"}``.

    ``setup_rss_mb`` is the resident memory after imports, model and batch (before any step), so
    ``peak_rss_mb - setup_rss_mb`` is what the meta-steps added. On CUDA, ``peak_mem_mb`` is
    ``torch.cuda.max_memory_allocated`` during the timed steps.
    """
    runner = Runner(spec)
    for _ in range(spec.warmup):
        runner.warmup()
    times = [runner.step() for _ in range(spec.steps)]
    return {"times": times, **runner.finish()}


class WorkerRunner:
    """A ``Runner`` in its own subprocess (its peak RSS is its own), commanded line by line."""

    def __init__(self, spec: BenchSpec) -> None:
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


def serve(spec: BenchSpec) -> int:
    """The worker side of ``WorkerRunner``: answer ``warmup``/``step``/``finish`` lines on stdin."""
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


