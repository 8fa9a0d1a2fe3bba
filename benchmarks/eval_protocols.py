"""The shipped Omniglot checkpoints under the course's test protocol and under the papers'.

The course tests on the test characters as drawn (``mllib.evaluate.EvalProtocol``'s default). The MAML
and Prototypical Networks papers test with rotations: every test character rotated by 0, 90, 180
and 270 degrees is a class of its own. Two samplers give that protocol:

* ``rotated``: tasks draw ``ways`` distinct classes from the four-fold class set (423 x 4 = 1,692
  on the ``maml`` split), as Prototypical Networks describe it; what ``python -m mllib eval
  --test-rotations`` and ``EvalProtocol(test_rotations=True)`` do. A task may hold two rotations of
  one character under two labels (the JSON counts such tasks: ``tasks_sharing_a_character``).
* ``rotated-distinct``: ``ways`` distinct characters, then a random rotation for each, as the MAML
  reference code's data generator draws them (``OmniglotTasks(one_rotation_per_character=True)``).

Each checkpoint is scored on the same 600 seeded test tasks per protocol (``TEST_SEED``, drawn
``SAMPLE_CHUNK`` at a time), with the batch-norm mode and test steps its card gives (the defaults
of ``load_run``), mean and 95% CI (1.96 sd / sqrt(n)). The ``as-drawn`` numbers must equal the
model cards' (the same tasks): the script says so per row. Paper numbers are compared only under
the rotated protocols, by interval overlap (``verdict``): overlapping 95% intervals are a tie.

    nice -n 10 python benchmarks/eval_protocols.py                     # all five, about 10 min on 2 cores
    python benchmarks/eval_protocols.py --checkpoints maml_omniglot_5w1s --out /tmp/p.json

Writes ``benchmarks/results/protocols.json`` (``kind: "eval-protocols"``) and prints a table.
``--docs`` writes no JSON: it rewrites the table in ``docs/results.md`` (between
``<!-- protocols:start -->`` and ``<!-- protocols:end -->``) from the JSON already there.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

from mllib.checkpoint import find_checkpoint
from mllib.data import load_omniglot
from mllib.evaluate import (SAMPLE_CHUNK, TEST_SEED, evaluate, has_inner_loop, load_run, mean_ci95, task_accuracies,
                            test_sampler)
from mllib.results import write_block
from mllib.tasks import OmniglotTasks

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "results" / "protocols.json"
CHECKPOINTS = ("maml_omniglot_5w1s", "maml_omniglot_5w1s_zerohead_quick", "maml_omniglot_20w1s",
               "protonet_omniglot_5w1s_quick", "incontext_omniglot_5w1s")
PROTOCOLS = {  # in the order they are measured: the papers' first
    "rotated": "each test character x {0, 90, 180, 270} degrees = 4 classes; ways distinct classes per task "
               "(Prototypical Networks; eval --test-rotations)",
    "rotated-distinct": "ways distinct test characters per task, each at a random multiple of 90 degrees "
                        "(the MAML reference code's sampler)",
    "as-drawn": "test characters as drawn, one class each (the course's default)",
}
PAPER_PROTOCOLS = ("rotated", "rotated-distinct")
# (reference, accuracy, ci95 or None, bn mode, test steps, training budget), fractions
PAPERS = {  # the settings as FIELD_NOTES gives them; "not checked" where it does not
    ("maml", 5): ("MAML (Finn et al. 2017), 5-way 1-shot", 0.987, 0.004, "batch (transductive)",
                  "10 (reference code)", "60,000 meta-steps x 32 tasks"),
    ("maml", 20): ("MAML (Finn et al. 2017), 20-way 1-shot", 0.958, 0.003, "batch (transductive)",
                   "not checked (5 in training)", "meta-batch 16 (steps not checked)"),
    ("protonet", 5): ("Prototypical Networks (Snell et al. 2017), 5-way 1-shot", 0.988, None,
                      "not checked", "none (no inner loop)", "not checked"),
}


def verdict(ours: float, ours_ci: float, paper: float, paper_ci: float | None) -> str:
    """``"tie"`` when the 95% intervals overlap (a missing paper interval counts as 0), else ``"above"``
    or ``"below"``: our accuracy against the paper's (fractions).

        >>> verdict(0.989, 0.002, 0.987, 0.004), verdict(0.940, 0.003, 0.958, 0.003), verdict(0.99, 0.001, 0.98, None)
        ('tie', 'below', 'above')
    """
    if abs(ours - paper) <= ours_ci + (paper_ci or 0.0):
        return "tie"
    return "above" if ours > paper else "below"


def sampler_for(run, data, protocol: str) -> OmniglotTasks:
    """The test-task sampler of ``protocol`` for ``run`` (seeded with ``TEST_SEED``, like ``evaluate``'s)."""
    p = run.protocol
    if protocol != "rotated-distinct":
        return test_sampler(data, p.with_changes(test_rotations=protocol == "rotated"))
    return OmniglotTasks(data, split=p.split, part="test", ways=p.ways, shots=p.shots, query=p.query,
                         rotations=True, one_rotation_per_character=True, seed=TEST_SEED)


def shared_character_fraction(sampler: OmniglotTasks, tasks: int) -> float:
    """Fraction of the ``tasks`` tasks (drawn as the evaluation draws them) with two classes of one character."""
    rows = torch.cat([sampler.sample_indices(min(SAMPLE_CHUNK, tasks - first))["characters"]
                      for first in range(0, tasks, SAMPLE_CHUNK)])
    return sum(len(set(r.tolist())) < r.numel() for r in rows) / tasks


def score(name: str, protocol: str, data, tasks: int, device: str) -> dict:
    """One checkpoint under one protocol: ``evaluate``'s result (its loop, by hand for ``rotated-distinct``)."""
    if protocol != "rotated-distinct":
        return evaluate(name, data=data, tasks=tasks, device=device, progress=False,
                        test_rotations=protocol == "rotated")
    run = load_run(name, device)
    p, meta = run.protocol, run.protocol.meta_config
    sampler = sampler_for(run, data, protocol)
    start, scores = time.perf_counter(), []
    for first in range(0, tasks, SAMPLE_CHUNK):  # the same chunks as evaluate
        scores.append(task_accuracies(run.model, run.params, p, sampler.sample(min(SAMPLE_CHUNK, tasks - first))))
    accuracy, ci95 = mean_ci95(torch.cat(scores))
    inner = has_inner_loop(meta.algo)
    return {"accuracy": accuracy, "ci95": ci95, "algo": meta.algo, "ways": p.ways, "shots": p.shots,
            "query": p.query, "tasks": tasks, "inner_steps": p.inner_steps if inner else 0,
            "inner_lr": float(meta.inner_lr) if inner else None, "bn": meta.bn, "transductive": meta.bn == "batch",
            "classes": sampler.num_classes, "seconds": time.perf_counter() - start}


def row(name: str, protocol: str, result: dict, card: dict, shared: float) -> dict:
    """The JSON row: what was measured, how (bn mode, test steps, tasks, classes), and the training budget."""
    same_tasks_as_card = protocol == "as-drawn" and card.get("tasks") == result["tasks"]
    return {
        "checkpoint": name, "algo": result["algo"], "ways": result["ways"], "shots": result["shots"],
        "protocol": protocol, "protocol_description": PROTOCOLS[protocol], "test_classes": result["classes"],
        "tasks_sharing_a_character": round(shared, 4),
        "bn": result["bn"], "transductive": result["transductive"], "test_steps": result["inner_steps"],
        "inner_lr": result["inner_lr"], "query": result["query"], "tasks": result["tasks"], "seed": TEST_SEED,
        "accuracy": round(result["accuracy"], 4), "ci95": round(result["ci95"], 4),
        "seconds": round(result["seconds"], 1),
        "training_budget": f"{card.get('meta_steps')} meta-steps x {card.get('meta_batch')} tasks "
                           f"({card.get('profile')})",
        "card_accuracy": card.get("accuracy") if same_tasks_as_card else None,
        "matches_card": (abs(round(result["accuracy"], 4) - card["accuracy"]) < 5e-5) if same_tasks_as_card else None,
    }


def paper_comparisons(rows: list[dict]) -> list[dict]:
    """Each row under a papers' protocol against its paper's number, with the verdict by interval overlap."""
    out = []
    for r in rows:
        paper = PAPERS.get((r["algo"], r["ways"]))
        if paper is None or r["protocol"] not in PAPER_PROTOCOLS or r["shots"] != 1:
            continue
        reference, accuracy, ci95, bn, steps, budget = paper
        out.append({"checkpoint": r["checkpoint"], "protocol": r["protocol"], "ours": r["accuracy"],
                    "ours_ci95": r["ci95"], "ours_bn": r["bn"], "ours_test_steps": r["test_steps"],
                    "ours_training_budget": r["training_budget"], "paper": reference, "paper_accuracy": accuracy,
                    "paper_ci95": ci95, "paper_bn": bn, "paper_test_steps": steps, "paper_training_budget": budget,
                    "verdict": verdict(r["accuracy"], r["ci95"], accuracy, ci95)})
    return out


def table(rows: list[dict], comparisons: list[dict]) -> str:
    """Markdown tables of the rows and the paper comparisons (percent)."""
    lines = ["| checkpoint | protocol | classes | shared char. | bn | test steps | tasks | accuracy (%) | training |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['checkpoint']} | {r['protocol']} | {r['test_classes']} "
                     f"| {100 * r['tasks_sharing_a_character']:.1f}% | {r['bn']} | {r['test_steps']} "
                     f"| {r['tasks']} | {100 * r['accuracy']:.2f} ± {100 * r['ci95']:.2f} | {r['training_budget']} |")
    lines += ["", "| checkpoint | protocol | ours (%) | paper (%) | verdict |", "|---|---|---|---|---|"]
    for c in comparisons:
        paper_ci = f" ± {100 * c['paper_ci95']:.1f}" if c["paper_ci95"] is not None else " (no interval given)"
        lines.append(f"| {c['checkpoint']} | {c['protocol']} | {100 * c['ours']:.2f} ± {100 * c['ours_ci95']:.2f} "
                     f"| {c['paper']}: {100 * c['paper_accuracy']:.1f}{paper_ci} | {c['verdict']} |")
    return "\n".join(lines)


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (Linux), or None."""
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except (OSError, ValueError):
        return None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoints", default=",".join(CHECKPOINTS), help="comma-separated shipped checkpoints")
    parser.add_argument("--protocols", default=",".join(PROTOCOLS), help=f"comma-separated, of {', '.join(PROTOCOLS)}")
    parser.add_argument("--tasks", type=int, default=600, help="test tasks per checkpoint and protocol")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1: faster for these small nets on a shared CPU)")
    parser.add_argument("--out", default=str(OUT), help="where the JSON goes")
    parser.add_argument("--docs", action="store_true",
                        help="only rewrite the table of docs/results.md from the JSON (no evaluation)")
    args = parser.parse_args(argv)
    if args.threads < 1 or args.tasks < 2:
        parser.error(f"--threads must be >= 1 and --tasks >= 2, got {args.threads} and {args.tasks}")
    args.checkpoints = [c for c in args.checkpoints.split(",") if c]
    args.protocols = [p for p in args.protocols.split(",") if p]
    unknown = [p for p in args.protocols if p not in PROTOCOLS]
    if unknown:
        parser.error(f"unknown protocol {unknown[0]!r}: choose from {', '.join(PROTOCOLS)}")
    for name in args.checkpoints:
        try:
            find_checkpoint(name)
        except (FileNotFoundError, ValueError) as error:
            parser.error(f"--checkpoints: {error}")
    return args


DOCS = Path(__file__).resolve().parents[1] / "docs" / "results.md"
DOCS_START, DOCS_END = "<!-- protocols:start -->", "<!-- protocols:end -->"
PROTOCOL_NAMES = {"as-drawn": "as drawn (the course's default)", "rotated": "rotated classes (ProtoNets)",
                  "rotated-distinct": "rotated, distinct characters (MAML code)"}


def docs_section(report: dict) -> str:
    """The Markdown table of ``docs/results.md``: one row per checkpoint, one column per protocol,
    then the paper comparisons (rotated protocols only)."""
    by_checkpoint: dict[str, dict[str, dict]] = {}
    for r in report["results"]:
        by_checkpoint.setdefault(r["checkpoint"], {})[r["protocol"]] = r
    protocols = [p for p in PROTOCOL_NAMES if any(p in rows for rows in by_checkpoint.values())]
    lines = [f"Generated by `python benchmarks/eval_protocols.py --docs` from `{OUT.relative_to(DOCS.parents[1])}` "
             f"(measured with `{report['command']}`); do not edit by hand. 600 seeded test tasks per cell, "
             "accuracy % with its 95% interval.", "",
             "| checkpoint | batch norm | test steps | training budget | "
             + " | ".join(PROTOCOL_NAMES[p] for p in protocols) + " |",
             "| --- | --- | --- | --- | " + " | ".join("---" for _ in protocols) + " |"]
    for name, rows in by_checkpoint.items():
        first = next(iter(rows.values()))
        cells = [f"{100 * rows[p]['accuracy']:.2f} ± {100 * rows[p]['ci95']:.2f}" if p in rows else "-"
                 for p in protocols]
        lines.append(f"| `{name}` | {first['bn']} | {first['test_steps']} | {first['training_budget']} | "
                     + " | ".join(cells) + " |")
    lines += ["", "Against the papers, under their protocol only (a tie: the 95% intervals overlap; a paper "
              "without an interval counts as exact):", "",
              "| checkpoint | protocol | ours | paper | verdict |", "| --- | --- | --- | --- | --- |"]
    for c in report["paper_comparisons"]:
        paper = f"{100 * c['paper_accuracy']:.1f}" + (f" ± {100 * c['paper_ci95']:.1f}" if c["paper_ci95"] else "")
        lines.append(f"| `{c['checkpoint']}` | {PROTOCOL_NAMES[c['protocol']]} | {100 * c['ours']:.2f} ± "
                     f"{100 * c['ours_ci95']:.2f} | {c['paper']}: {paper} | {c['verdict']} |")
    return "\n".join(lines)


def write_docs(report: dict, path: Path = DOCS) -> None:
    """Replace the text between the protocol markers of ``path`` with :func:`docs_section`."""
    write_block(path, DOCS_START, DOCS_END, docs_section(report))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.docs:
        write_docs(json.loads(Path(args.out).read_text()))
        print(f"rewrote the protocol table of {DOCS}", file=sys.stderr)
        return 0
    torch.set_num_threads(args.threads)
    data = load_omniglot(progress=False)
    rows = []
    for protocol in args.protocols:  # protocol by protocol: the JSON is rewritten after every row
        for name in args.checkpoints:
            card = json.loads(find_checkpoint(name).with_suffix(".json").read_text())
            result = score(name, protocol, data, args.tasks, args.device)
            shared = shared_character_fraction(sampler_for(load_run(name, "cpu"), data, protocol), args.tasks)
            rows.append(row(name, protocol, result, card, shared))
            r = rows[-1]
            print(f"{name:36} {protocol:17} {100 * r['accuracy']:6.2f} ± {100 * r['ci95']:.2f}  "
                  f"({r['seconds']:.0f} s)", file=sys.stderr, flush=True)
            write_report(args, rows, argv)
    print(table(rows, paper_comparisons(rows)))
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


def write_report(args: argparse.Namespace, rows: list[dict], argv: list[str] | None) -> None:
    """Write the JSON of the rows measured so far (with their paper comparisons) to ``args.out``."""
    comparisons = paper_comparisons(rows)
    report = {
        "kind": "eval-protocols",
        "command": " ".join(["nice -n 10 python benchmarks/eval_protocols.py",
                             *(argv if argv is not None else sys.argv[1:])]),
        "seconds_note": "the rows' seconds are wall times on whatever else the CPU was running: not timings",
        "load_average": load_average(),
        "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "host": {"cpu": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                 "torch_threads": torch.get_num_threads(), "torch": torch.__version__, "device": args.device},
        "protocols": PROTOCOLS,
        "rule": "tie when the 95% intervals overlap (|ours - paper| <= ci_ours + ci_paper; a missing paper "
                "interval counts as 0); papers compared only under the rotated protocols",
        "results": rows,
        "paper_comparisons": comparisons,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
