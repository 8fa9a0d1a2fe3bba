"""The whole benchmark: every (algorithm, implementation) stepped in turn, summarised, gradients checked."""
from __future__ import annotations

import os
import platform
import statistics
import time
from typing import Callable

import torch

from mllib.algorithms import pick_form
from mllib.arguments import check_int
from mllib.device import describe_device

from .gradients import check_gradients
from .references import REFERENCES, reference_status
from .runner import Runner, WorkerRunner
from .spec import BENCH_KIND, REFERENCE_ALGOS, BenchSpec


def summarise(times: list[float]) -> dict:
    return {"median_s": round(statistics.median(times), 5), "min_s": round(min(times), 5), "n": len(times)}


def quartiles(values: list[float]) -> tuple[float, float, float]:
    """``(q25, median, q75)`` of ``values`` (linear interpolation between order statistics).

        >>> quartiles([4.0, 1.0, 3.0, 2.0, 5.0])
        (2.0, 3.0, 4.0)
    """
    if not values:
        raise ValueError("values must hold at least one number")
    ordered = sorted(values)

    def at(q: float) -> float:
        pos = q * (len(ordered) - 1)
        low = int(pos)
        high = min(low + 1, len(ordered) - 1)
        return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)

    return at(0.25), at(0.5), at(0.75)


def round_ratios(mine: list[float], references: list[list[float]]) -> dict:
    """mllib's time over the fastest reference *of the same round*, summarised over the rounds.

    ``mine[i]`` and ``references[j][i]`` are the seconds of round ``i`` (one meta-step each,
    taken back to back). A load change on a shared machine hits the steps of one round alike,
    so the per-round ratio is steadier than a ratio of medians. Returns ``ratio_median``,
    ``ratio_q25``, ``ratio_q75``, ``ratio_worst`` (the largest: mllib's worst round),
    ``ratio_best``, ``ratio_of_medians`` and ``rounds``.

        >>> r = round_ratios([1.0, 2.0, 1.0], [[2.0, 2.0, 1.0], [4.0, 4.0, 4.0]])
        >>> r["ratio_median"], r["ratio_worst"], r["ratio_best"], r["rounds"]
        (1.0, 1.0, 0.5, 3)
    """
    if not references or any(len(ref) != len(mine) for ref in references) or not mine:
        raise ValueError("references must be a non-empty list of time lists, each as long as mine (one per round)")
    ratios = [m / min(ref[i] for ref in references) for i, m in enumerate(mine)]
    q25, median, q75 = quartiles(ratios)
    fastest_median = min(statistics.median(ref) for ref in references)
    return {"ratio_median": round(median, 3), "ratio_q25": round(q25, 3), "ratio_q75": round(q75, 3),
            "ratio_worst": round(max(ratios), 3), "ratio_best": round(min(ratios), 3),
            "ratio_of_medians": round(statistics.median(mine) / fastest_median, 3), "rounds": len(ratios),
            "per_round": [round(r, 4) for r in ratios]}


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (``/proc/loadavg``), or None where there is none."""
    try:
        with open("/proc/loadavg") as f:
            return [float(x) for x in f.read().split()[:3]]
    except (OSError, ValueError):
        return None


def host_info(device: str) -> dict:
    info = {"device": describe_device(torch.device(device)), "torch": torch.__version__,
            "python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
            "threads": torch.get_num_threads()}
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu"] = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), None)
    except OSError:
        info["cpu"] = platform.processor() or None
    info["loadavg_start"] = load_average()
    return info


def run_benchmark(algos=("maml", "fomaml"), forms=("loop", "vmap"), references=REFERENCES, ways: int = 5,
                  shots: int = 1, query: int = 15, filters: int = 64, meta_batch: int = 32, rounds: int = 15,
                  warmup: int = 1, device: str = "cpu", isolate: bool = True,
                  check_tasks: int = 4, threads: int | None = None,
                  log: Callable[[str], None] | None = None) -> dict:
    """Time every (algo, implementation) over ``rounds`` interleaved rounds; check gradients.

    A round times one meta-step of every implementation of an algorithm, back to back, the
    starting implementation rotated from round to round. Returns the JSON-ready result
    (``kind="mllib-bench"``): ``results`` (per algo and impl: median and min seconds per
    meta-step, peak memory), ``ratios`` (mllib's default form over the fastest loaded reference,
    computed within each round: median, quartiles, worst and best round, see ``round_ratios``),
    ``gradient_check``, ``references`` (which could be loaded, or why not) and the load average
    at the start and the end (``host.loadavg_start``, ``host.loadavg_end``).
    """
    check_int("rounds", rounds, 1)
    check_int("warmup", warmup, 0)
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
                           meta_batch=meta_batch, steps=rounds, warmup=warmup, device=device, threads=threads)
                 for i in impls]
    for spec in plan:
        spec.validate()
    host = host_info(device)
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
            for i in range(rounds):
                for j in [(i + k) % len(runners) for k in range(len(runners))]:
                    times[j].append(runners[j].step())
                log(f"round {i + 1}/{rounds} {algo}: " + ", ".join(
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
                           "references": [x["impl"] for x in refs],
                           **round_ratios(mine["times"], [x["times"] for x in refs]),
                           "ratio_min": round(mine["min_s"] / min(x["min_s"] for x in refs), 3)})
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
        log(f"ratio {row['algo']}: {row['mllib']} / fastest reference of each round = {row['ratio_median']} "
            f"(median of {row['rounds']} rounds; quartiles {row['ratio_q25']}-{row['ratio_q75']}, "
            f"worst {row['ratio_worst']})")
    host["loadavg_end"] = load_average()
    return {
        "kind": BENCH_KIND, "version": 2, "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host": host,
        "config": {"ways": ways, "shots": shots, "query": query, "filters": filters, "meta_batch": meta_batch,
                   "inner_steps": 1, "inner_lr": 0.4, "bn": "batch", "rounds": rounds, "warmup": warmup,
                   "threads": threads or torch.get_num_threads(), "isolated": isolate,
                   "interleaved": "one meta-step per implementation per round, start rotated", "device": device,
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
        lines.append(f"ratio {row['algo']}: {row['mllib']} / fastest reference of each round = "
                     f"{row['ratio_median']:.3f} (median of {row['rounds']} rounds), quartiles "
                     f"[{row['ratio_q25']:.3f}, {row['ratio_q75']:.3f}], worst {row['ratio_worst']:.3f}")
    refs = result["references"]
    lines.append("references: " + (", ".join(f"{n}: {'loaded ' + s['version'] if s['loaded'] else 'not loaded'}"
                                             for n, s in refs.items()) or "none requested"))
    lines.append("gradients: " + ("all agree" if result["gradients_agree"] else "DISAGREE (see gradient_check)"))
    return "\n".join(lines)
