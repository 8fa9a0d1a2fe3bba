"""``python -m mllib bench``: seconds per meta-step and peak memory, mllib against higher and learn2learn.

Examples::

    python -m mllib bench                                  # full CPU benchmark (minutes)
    python -m mllib bench --quick                          # a few seconds: tiny tasks, gradients checked
    python -m mllib bench --json --out benchmarks/results/cpu_2026-01-01.json
    python -m mllib bench --device cuda --ways 20 --meta-batch 16
    python -m mllib bench --readme                         # regenerate docs/results.md's results block

Every configuration runs in its own subprocess (peak RSS is per process). Each of ``--rounds``
rounds times one meta-step of every implementation back to back (the first one rotated), and the
verdict is mllib's time over the fastest reference *of that round*: median, quartiles and worst
round are reported, with the load average at the start and the end. The meta-gradients of all
implementations are compared in float64 on the same weights and tasks. The exit status is 1 when
gradients disagree.
"""
from __future__ import annotations

import argparse
import json
import sys

from mllib.algorithms import ALGORITHMS
from mllib.bench import REFERENCES, format_table, run_benchmark
from mllib.device import resolve_device
from mllib.files import atomic_write_text, check_output_file
from mllib import results

QUICK = dict(meta_batch=2, filters=8, query=2, rounds=2, warmup=1)
DEFAULT_SIZES = dict(meta_batch=32, filters=64, query=15, rounds=15, warmup=1)


def _csv(allowed: tuple[str, ...], name: str):
    def parse(text: str) -> list[str]:
        items = [t.strip() for t in text.split(",") if t.strip()]
        if items == ["all"]:
            return list(allowed)
        bad = [t for t in items if t not in allowed]
        if bad or not items:
            raise argparse.ArgumentTypeError(f"{name} must be a comma-separated list of {', '.join(allowed)} "
                                             f"(or 'all'); got {text!r}")
        return items
    return parse


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "bench", help="time meta-steps of mllib against higher and learn2learn",
        description="Seconds per meta-step (median and min after warm-up) and peak memory for mllib's loop "
                    "and vmap forms and the optional higher / learn2learn references, with a float64 check "
                    "that all of them compute the same meta-gradient.",
    )
    parser.add_argument("--algos", type=_csv(ALGORITHMS, "--algos"), default=["maml", "fomaml"],
                        help="comma-separated algorithms, or 'all' (default maml,fomaml; the references "
                             "implement only maml and fomaml)")
    parser.add_argument("--forms", type=_csv(("loop", "vmap"), "--forms"), default=["loop", "vmap"])
    parser.add_argument("--references", type=lambda t: [] if t.strip() in ("", "none") else
                        _csv(REFERENCES, "--references")(t), default=list(REFERENCES),
                        help="comma-separated references to compare against, or 'none' (default: both; "
                             "missing ones are reported, not fatal)")
    parser.add_argument("--meta-batch", type=int, default=None, help="default 32 (2 with --quick)")
    parser.add_argument("--ways", type=int, default=5)
    parser.add_argument("--shots", type=int, default=1)
    parser.add_argument("--query", type=int, default=None, help="query images per class (default 15; 2 with --quick)")
    parser.add_argument("--filters", type=int, default=None, help="default 64 (8 with --quick)")
    parser.add_argument("--rounds", type=int, default=None,
                        help="interleaved rounds, each one timed meta-step of every implementation (default 15)")
    parser.add_argument("--steps", type=int, default=None, help="older spelling: rounds = steps x repeats")
    parser.add_argument("--repeats", type=int, default=None, help="older spelling: rounds = steps x repeats")
    parser.add_argument("--warmup", type=int, default=None, help="untimed meta-steps before timing (default 1)")
    parser.add_argument("--check-tasks", type=int, default=4, help="tasks in the float64 gradient check")
    parser.add_argument("--threads", type=int, default=None, help="torch threads in each worker")
    parser.add_argument("--device", default="auto", help="auto|cpu|cuda|mps (default auto)")
    parser.add_argument("--no-isolate", dest="isolate", action="store_false",
                        help="time in this process (faster start; peak RSS then covers everything run)")
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes for a smoke test: meta-batch 2, filters 8, 2 queries, 2 rounds "
                             "(a size given explicitly is kept)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON (only JSON on stdout)")
    parser.add_argument("--out", default=None, metavar="PATH", help="also write the JSON result to PATH")
    parser.add_argument("--readme", action="store_true",
                        help="do not benchmark: regenerate the results block of docs/results.md from "
                             "mllib/checkpoints/*.json and benchmarks/results/*.json (needs a checkout)")
    parser.add_argument("--check", action="store_true",
                        help="with --readme: only check that the block is up to date (exit 1 if not)")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    if args.readme:
        changed = results.update_readme(check=args.check)   # looked up at call time
        if args.check:
            print("results block of docs/results.md is " + ("OUT OF DATE" if changed else "up to date"))
            return 1 if changed else 0
        print("results block of docs/results.md " + ("rewritten" if changed else "already up to date"))
        return 0
    device = str(resolve_device(args.device))
    for name in ("rounds", "steps", "repeats"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise ValueError(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.rounds is not None and (args.steps, args.repeats) != (None, None):
        raise ValueError("give --rounds, or the older --steps/--repeats (rounds = steps x repeats), not both")
    rounds = args.rounds if args.rounds is not None else (
        None if (args.steps, args.repeats) == (None, None) else (args.steps or 1) * (args.repeats or 1))
    given = dict(meta_batch=args.meta_batch, filters=args.filters, query=args.query, rounds=rounds,
                 warmup=args.warmup)
    base = QUICK if args.quick else DEFAULT_SIZES   # --quick fills in the sizes not given, never overrides one
    sizes = {name: base[name] if value is None else value for name, value in given.items()}
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads must be >= 1 (torch threads per worker), got {args.threads}")
    for name, low in (("meta_batch", 1), ("filters", 1), ("query", 1), ("warmup", 0)):
        if sizes[name] < low:
            raise ValueError(f"--{name.replace('_', '-')} must be >= {low}, got {sizes[name]}")
    if args.out is not None:
        check_output_file(args.out, "--out")  # before minutes of benchmarking
    log = (lambda m: print(m, file=sys.stderr)) if args.json else print
    result = run_benchmark(algos=args.algos, forms=args.forms, references=args.references, ways=args.ways,
                           shots=args.shots, device=device, isolate=args.isolate, check_tasks=args.check_tasks,
                           threads=args.threads, log=log, **sizes)
    result["command"] = "python -m mllib bench " + " ".join(sys.argv[2:] if sys.argv[1:2] == ["bench"] else [])
    text = json.dumps(result, indent=1)
    if args.out:
        atomic_write_text(args.out, text + "\n")
    print(text if args.json else format_table(result))
    if args.out and not args.json:
        print(f"wrote {args.out}")
    return 0 if result["gradients_agree"] else 1
