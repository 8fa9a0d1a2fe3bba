"""Running notebooks from a clean kernel with nbclient, with wall time, peak memory and check verdicts.

Peak memory is the kernel process's peak resident set size: ``VmHWM`` from
``/proc/<pid>/status`` (Linux), read after every cell. Elsewhere, when psutil happens to be
installed, the largest RSS seen after a cell is reported instead; otherwise ``None``.
Processes the kernel starts itself (e.g. data-loader workers) are not counted.

With ``check_figures=True`` (what ``python -m mllib course execute`` does) every figure a cell shows
goes through :mod:`mllib.course.figures`; the problems are attached to the cell, and
:func:`execute_notebooks` neither accepts nor writes a notebook with a bad figure. The executed
notebook's ``kernelspec`` is what the kernel that ran it reports (name, display name, language), so
that Jupyter does not mark a freshly opened notebook as modified.
"""
from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from nbformat import NotebookNode

from ..checks import RECORD_ENV, STRICT_ENV
from . import figures
from .nbio import is_check_cell, is_solution_cell, list_notebooks, nbgrader, read_notebook, write_notebook

DEFAULT_ENV = {"MLLIB_PROFILE": "quick", "MLLIB_DEVICE": "cpu"}
#: the environment the book is executed in by `course author` (and the translated books by their render)
BOOK_ENV = {"CI": "1", "MLLIB_PROFILE": "quick", "MLLIB_DEVICE": "cpu"}
DEFAULT_TIMEOUT = 900  # seconds per cell, as in the nbval run of `make test`


@contextlib.contextmanager
def environment(values: dict):
    """Set the variables ``values`` in ``os.environ`` for the ``with`` block; restore them after."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@dataclass
class CellOutcome:
    """What happened in one executed code cell."""

    index: int
    execution_count: int | None
    seconds: float
    grade_id: str | None = None
    is_check: bool = False
    is_solution: bool = False
    error: str | None = None            # "ename: evalue" when the cell raised
    verdicts: list[dict] = field(default_factory=list)   # mllib.checks results printed by the cell
    figure_problems: list[str] = field(default_factory=list)  # mllib.course.figures findings


@dataclass
class NotebookRun:
    path: str
    ok: bool                      # every cell ran (errors allowed or not)
    wall_s: float
    peak_rss_mb: float | None
    peak_rss_source: str | None   # "VmHWM" | "psutil-rss" | None
    error: str | None = None      # why the run stopped early
    cells: list[CellOutcome] = field(default_factory=list)

    @property
    def errors(self) -> list[CellOutcome]:
        return [c for c in self.cells if c.error]

    def summary(self) -> dict:
        """The run without per-cell details, plus the three slowest cells."""
        out = {k: v for k, v in asdict(self).items() if k != "cells"}
        slow = sorted(self.cells, key=lambda c: -c.seconds)[:3]
        out["slowest_cells"] = [{"index": c.index, "seconds": round(c.seconds, 2)} for c in slow]
        out["checks"] = [v for c in self.cells for v in c.verdicts]
        out["cell_errors"] = [{"index": c.index, "error": c.error} for c in self.errors]
        out["figure_problems"] = [{"index": c.index, "problems": c.figure_problems} for c in self.cells
                                  if c.figure_problems]
        return out


def _peak_rss_mb(pid: int) -> tuple[float | None, str | None]:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024, "VmHWM"
    except OSError:
        pass
    try:
        import psutil  # optional, not a dependency

        return psutil.Process(pid).memory_info().rss / 2**20, "psutil-rss"
    except Exception:  # noqa: BLE001 - no way to measure here
        return None, None


def kernel_env(overrides: dict | None = None, *, strict: bool | None = None) -> dict:
    """The kernel's environment: ours, ``MLLIB_PROFILE=quick MLLIB_DEVICE=cpu`` unless already set,
    then ``overrides``; ``strict`` sets ``MLLIB_CHECKS_STRICT`` to 1 (True) or 0 (False)."""
    env = dict(os.environ)
    for key, value in DEFAULT_ENV.items():
        env.setdefault(key, value)
    env.update(overrides or {})
    if strict is True:
        env[STRICT_ENV] = "1"
    elif strict is False:
        env[STRICT_ENV] = "0"   # explicitly lenient: unset, a pytest parent would make the checks strict
    return env


def run_notebook(nb: NotebookNode | str | Path, *, cwd: str | Path | None = None, env: dict | None = None,
                 allow_errors: bool = False, timeout: int = DEFAULT_TIMEOUT,
                 kernel_name: str = "python3", check_figures: bool = False) -> tuple[NotebookNode, NotebookRun]:
    """Execute every cell of ``nb`` in a fresh kernel; returns the executed notebook and its run.

    ``env`` is the kernel's whole environment (default :func:`kernel_env`). The verdicts of
    ``mllib.checks`` are collected through ``MLLIB_CHECKS_RECORD`` (read after every cell) and
    attached to the cell that printed them; with ``check_figures`` the figure problems too. With
    ``allow_errors=False`` the run stops at the first failing cell
    (``run.ok`` is False and ``run.error`` says why); with True every cell runs.
    """
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    path = None
    if not isinstance(nb, NotebookNode):
        path = Path(nb)
        nb = read_notebook(path)
    cwd = Path(cwd) if cwd is not None else (path.parent if path else Path.cwd())
    env = dict(env if env is not None else kernel_env())
    fd, record = tempfile.mkstemp(prefix="mllib-checks-", suffix=".jsonl")
    os.close(fd)
    env[RECORD_ENV] = record
    scratch = None
    if check_figures:
        scratch = Path(tempfile.mkdtemp(prefix="mllib-figures-"))
        env["IPYTHONDIR"] = str(figures.ipython_dir(scratch / "ipython"))
        env[figures.RECORD_ENV] = str(scratch / "figures.jsonl")
    figure_offset = {"pos": 0}

    client = NotebookClient(nb, timeout=timeout, kernel_name=kernel_name, allow_errors=allow_errors,
                            record_timing=False, resources={"metadata": {"path": str(cwd)}})
    peak = {"mb": None, "source": None}
    starts: dict[int, float] = {}
    offset = {"pos": 0}
    outcomes: dict[int, CellOutcome] = {}

    def kernel_pid() -> int | None:
        provisioner = getattr(client.km, "provisioner", None)
        return getattr(provisioner, "pid", None) or getattr(getattr(client.km, "kernel", None), "pid", None)

    kernel = {"spec": None}

    def on_cell_start(cell, cell_index, **_):
        starts[cell_index] = time.perf_counter()
        if kernel["spec"] is None and client.km is not None:
            kernel["spec"] = getattr(client.km, "kernel_spec", None)

    def on_cell_executed(cell, cell_index, **_):
        meta = nbgrader(cell)
        error = next((f"{o.get('ename')}: {o.get('evalue')}" for o in cell.get("outputs", [])
                      if o.get("output_type") == "error"), None)
        outcomes[cell_index] = CellOutcome(
            index=cell_index, execution_count=cell.get("execution_count"),
            seconds=time.perf_counter() - starts.get(cell_index, time.perf_counter()),
            grade_id=meta.get("grade_id"), is_check=is_check_cell(cell), is_solution=is_solution_cell(cell),
            error=error)
        with open(record, encoding="utf-8") as fh:  # verdicts this cell appended
            fh.seek(offset["pos"])
            text = fh.read()
            offset["pos"] = fh.tell()
        outcomes[cell_index].verdicts = [json.loads(line) for line in text.splitlines() if line.strip()]
        if scratch is not None:
            found, figure_offset["pos"] = figures.read_records(scratch / "figures.jsonl", figure_offset["pos"])
            outcomes[cell_index].figure_problems = [p for r in found for p in r["problems"]]
        pid = kernel_pid()
        if pid:
            mb, source = _peak_rss_mb(pid)
            if mb is not None and (peak["mb"] is None or mb > peak["mb"]):
                peak["mb"], peak["source"] = mb, source

    client.on_cell_start = on_cell_start
    client.on_cell_executed = on_cell_executed
    failure = None
    start = time.perf_counter()
    try:
        client.execute(env=env, cwd=str(cwd))
    except CellExecutionError as err:
        failure = (str(err).strip().splitlines() or ["a cell failed"])[-1]
    except (CellTimeoutError, DeadKernelError, RuntimeError) as err:
        failure = f"{type(err).__name__}: {err}"
    wall = time.perf_counter() - start
    _store_kernelspec(nb, kernel["spec"], kernel_name)

    os.unlink(record)
    if scratch is not None:
        shutil.rmtree(scratch, ignore_errors=True)
    cells = [outcomes[i] for i in sorted(outcomes)]
    first_error = next((f"cell {c.index}: {c.error}" for c in cells if c.error), None)
    if first_error and not allow_errors:
        failure = first_error
    run = NotebookRun(path=str(path) if path else "<notebook>", ok=failure is None, wall_s=round(wall, 2),
                      peak_rss_mb=None if peak["mb"] is None else round(peak["mb"], 1),
                      peak_rss_source=peak["source"], error=failure, cells=cells)
    return nb, run


def _store_kernelspec(nb: NotebookNode, spec, kernel_name: str) -> None:
    """Record the kernelspec of the kernel that ran ``nb`` (what Jupyter itself would store)."""
    if spec is None:
        from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

        try:
            spec = KernelSpecManager().get_kernel_spec(kernel_name)
        except NoSuchKernel:
            return
    nb.metadata["kernelspec"] = {"display_name": spec.display_name, "language": spec.language,
                                 "name": kernel_name}


def execute_notebooks(paths, *, report: str | Path | None = "build/notebook_report.json",
                      in_place: bool = True, timeout: int = DEFAULT_TIMEOUT, echo=None,
                      metadata: dict | None = None) -> dict:
    """Re-execute notebooks from a clean kernel (in place by default) and write a JSON report.

    ``metadata``: keys added to each notebook's metadata in the same write as its outputs (so no
    reader ever sees the new outputs without them).

    A notebook whose run fails, or whose checks do not all pass, is not overwritten. The report holds, per notebook, the wall
    time, the kernel's peak memory, the check verdicts and any error; ``report["ok"]`` is True
    only when every notebook ran and every check passed.
    """
    echo = echo or (lambda msg: print(msg, flush=True))
    env = kernel_env()
    runs = []
    for path in list_notebooks(paths):
        echo(f"executing {path} ...")
        nb, run = run_notebook(path, env=env, timeout=timeout, check_figures=True)
        failed_checks = [v for c in run.cells for v in c.verdicts if v.get("status") != "passed"]
        if failed_checks and run.ok:
            run.ok = False
            run.error = f"check {failed_checks[0]['exercise']!r} did not pass: {failed_checks[0]['status']}"
        bad_figures = [c for c in run.cells if c.figure_problems]
        if bad_figures and run.ok:
            run.ok = False
            run.error = f"figure check failed in cell {bad_figures[0].index}: {bad_figures[0].figure_problems[0]}"
        for cell in bad_figures:
            for problem in cell.figure_problems:
                echo(f"  cell {cell.index}: {problem}")
        if run.ok and in_place:
            nb.metadata.update(metadata or {})
            write_notebook(nb, path)
        mem = "n/a" if run.peak_rss_mb is None else f"{run.peak_rss_mb:.0f} MB"
        echo(f"  {'ok' if run.ok else 'FAILED'}  {run.wall_s:.1f} s  peak memory {mem}"
             + (f"  ({run.error})" if run.error else ""))
        runs.append(run)
    result = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "env": {k: env.get(k) for k in ("MLLIB_PROFILE", "MLLIB_DEVICE", "MLLIB_DATA", "CI")},
        "ok": all(r.ok for r in runs),
        "total_wall_s": round(sum(r.wall_s for r in runs), 2),
        "notebooks": [r.summary() for r in runs],
    }
    if report:
        report = Path(report)
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return result


def report_table(result: dict) -> str:
    """The Markdown run-time table of ``docs/instructors.md`` from an execute report."""
    lines = ["| notebook | wall time (s) | peak memory (MB) |", "| --- | ---: | ---: |"]
    for nb in result["notebooks"]:
        mem = "n/a" if nb["peak_rss_mb"] is None else f"{nb['peak_rss_mb']:.0f}"
        lines.append(f"| {Path(nb['path']).name} | {nb['wall_s']:.0f} | {mem} |")
    return "\n".join(lines)
