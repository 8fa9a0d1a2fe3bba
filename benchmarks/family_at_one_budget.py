"""The MAML family on Omniglot at one budget, a sweep of the inner loop, and MAML++'s tricks (issue 25).

Four parts, each a subcommand; every number lands in ``benchmarks/results/family_at_one_budget.json``
(notebook 06, section 2b, loads it):

* ``cost``: seconds per meta-step of every variant RELATIVE to the quick MAML step, timed
  interleaved in one process (each round times every variant back to back, first one rotated, and
  the ratio is taken within the round): a loaded, shared machine slows a round's variants alike, so
  the ratios survive it while the seconds do not. The idle budget of the quick recipe (229 s of
  training, 2,500 meta-steps: ``mllib/checkpoints/maml_omniglot_5w1s_zerohead_quick.json``) becomes
  a step budget per variant: ``2500 / ratio`` (validations scale alike).
* ``train``: trains the variants (``python -m mllib train``, one thread, ``nice``), one at a time,
  into ``--runs`` (default ``/tmp/family_runs``; nothing is shipped but the JSON).
* ``eval``: scores every run (its ``best.pt``, best validation accuracy, as the shipped card) on the same 600 test tasks as
  ``python -m mllib eval`` (5-way 1-shot, maml split, ``TEST_SEED``, 5 queries per class, batch
  norm with batch statistics: transductive, test characters as drawn, no rotations), with 95%
  intervals and the paired difference against MAML on the same tasks (``mllib.compare``).
* ``report``: writes the JSON.

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/family_at_one_budget.py cost --rounds 10
    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/family_at_one_budget.py train --group family
    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/family_at_one_budget.py eval
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
OUT_JSON = RESULTS / "family_at_one_budget.json"
CARD = ROOT / "mllib" / "checkpoints" / "maml_omniglot_5w1s_zerohead_quick.json"
IDLE_BUDGET_S = 229.0        # the quick MAML card's training seconds (228.6 s, idle 2-core CPU)
QUICK_STEPS = 2500
SWEEP_STEPS = 100            # the sweep's and the tricks' shorter budget (meta-steps, cosine over them)

# name: (algo, profile overrides). The quick profile supplies everything else (zero head where the
# algorithm adapts the head, cosine meta-lr, meta-batch 8, 5 queries, 32 filters, inner 1 x 0.4).
FAMILY = {
    "maml": ("maml", {}),
    "fomaml": ("fomaml", {}),
    "reptile": ("reptile", {}),
    "metasgd": ("metasgd", {}),
    "anil": ("anil", {}),
    "anil_learned_head": ("anil", {"head_init": "learned"}),
    "reptile_5_steps": ("reptile", {"inner_steps": 5, "inner_steps_test": 5, "inner_lr": 0.1}),
}
SWEEP_LRS = (0.1, 0.4, 1.6)
SWEEP_INNER_STEPS = (1, 2)
SWEEP = {f"sweep_lr{lr:g}_k{k}": ("maml", {"inner_lr": lr, "inner_steps": k, "inner_steps_test": k})
         for k in SWEEP_INNER_STEPS for lr in SWEEP_LRS}
# MAML++ (Antoniou et al. 2019): each trick alone on top of plain 2-step MAML (the sweep's lr 0.4, k 2 run)
TRICK_BASE = {"inner_lr": 0.4, "inner_steps": 2, "inner_steps_test": 2}
TRICKS = {
    "trick_msl": ("maml", {**TRICK_BASE, "multi_step_loss": True}),
    "trick_lslr": ("maml", {**TRICK_BASE, "per_step_lr": True}),
    "trick_bnrs": ("maml", {**TRICK_BASE, "per_step_bn": True}),
}
GROUPS = {"family": FAMILY, "sweep": SWEEP, "tricks": TRICKS}
VARIANTS = {**FAMILY, **SWEEP, **TRICKS}
COST_VARIANTS = ("maml", "fomaml", "reptile", "metasgd", "anil", "anil_learned_head", "reptile_5_steps",
                 "sweep_lr0.4_k2", "trick_msl", "trick_lslr", "trick_bnrs")


def _setup(name: str, data, seed: int = 0):
    """``(one_step() -> seconds, profile)`` for variant ``name``: what ``mllib train`` does per meta-step."""
    import torch

    from mllib.algorithms import MetaConfig, init_meta_params, meta_step
    from mllib.learners import build_learner
    from mllib.tasks import OmniglotTasks
    from mllib.train import TrainConfig

    algo, overrides = VARIANTS[name]
    profile = TrainConfig(algo=algo, profile="quick", overrides=overrides).resolved_profile()
    cfg = MetaConfig.from_profile(algo, profile, form="loop")
    torch.manual_seed(seed)
    model = build_learner(algo, 5, profile.filters, 4)
    params = {k: v.detach().clone().requires_grad_(True) for k, v in init_meta_params(model, cfg).items()}
    optimizer = torch.optim.Adam(list(params.values()), lr=profile.meta_lr)
    tasks = OmniglotTasks(data, split="maml", part="train", ways=5, shots=1, query=profile.query, seed=seed)

    def step() -> float:
        start = time.perf_counter()
        meta_step(model, params, tasks.sample(profile.meta_batch), cfg, optimizer)
        return time.perf_counter() - start

    return step, profile


def measure_cost(names, rounds: int, steps_per_round: int, warmup: int = 2) -> dict:
    """Per-round ratios of each variant's seconds per meta-step to MAML's (``maml`` first in ``names``)."""
    import torch

    from mllib.data import load_omniglot

    torch.set_num_threads(1)
    data = load_omniglot(progress=False)
    steps = {n: _setup(n, data)[0] for n in names}
    for n in names:
        for _ in range(warmup):
            steps[n]()
    times = {n: [] for n in names}
    load_start = open("/proc/loadavg").read().split()[:3]
    for i in range(rounds):
        for k in range(len(names)):
            n = names[(i + k) % len(names)]
            times[n].append(sum(steps[n]() for _ in range(steps_per_round)) / steps_per_round)
        print(f"round {i + 1}/{rounds}: " + ", ".join(f"{n} {times[n][-1]:.3f}" for n in names), flush=True)
    rows = {}
    for n in names:
        ratios = sorted(t / b for t, b in zip(times[n], times["maml"]))
        q = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
        median = statistics.median(ratios)
        rows[n] = {"ratio_median": round(median, 3), "ratio_q25": round(q[0], 3), "ratio_q75": round(q[2], 3),
                   "median_s_shared": round(statistics.median(times[n]), 4),
                   "step_budget": int(round(QUICK_STEPS / median, -1))}
        print(f"{n:20s} ratio {median:.3f} [{q[0]:.3f}, {q[2]:.3f}] -> {rows[n]['step_budget']} steps", flush=True)
    return {"rounds": rounds, "steps_per_round": steps_per_round, "threads": 1,
            "loadavg_start": load_start, "loadavg_end": open("/proc/loadavg").read().split()[:3],
            "torch": torch.__version__, "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "variants": rows}


def train_command(name: str, steps: int, runs: Path) -> str:
    """The ``python -m mllib train`` command of variant ``name`` (seed 0); MAML++'s flags have no
    command-line switch: those runs are ``train-one`` of this script (``TrainConfig.overrides``)."""
    algo, overrides = VARIANTS[name]
    flags = {"inner_lr": "--inner-lr", "inner_steps": "--inner-steps", "inner_steps_test": "--inner-steps-test",
             "head_init": "--head-init"}
    if any(key not in flags for key in overrides):
        return f"python benchmarks/family_at_one_budget.py train-one {name} --steps {steps} --runs {runs}"
    command = ["python", "-m", "mllib", "train", "--algo", algo, "--ways", "5", "--shots", "1", "--profile",
               "quick", "--device", "cpu", "--steps", str(steps), "--out", str(runs / name)]
    for key, value in overrides.items():
        command += [flags[key], str(value)]
    return " ".join(command)


def train_one(name: str, steps: int, runs: Path) -> None:
    """Train variant ``name`` for ``steps`` meta-steps into ``runs/name`` (one thread; resumes)."""
    import torch

    from mllib.train import TrainConfig, meta_train

    torch.set_num_threads(1)
    algo, overrides = VARIANTS[name]
    config = TrainConfig(algo=algo, ways=5, shots=1, profile="quick", overrides=dict(overrides), steps=steps,
                         device="cpu", seed=0, out=str(runs / name), progress=False, resume=True)
    start = time.time()
    result = meta_train(config, log=lambda message: print(f"{name}: {message}", flush=True))
    record = {"command": train_command(name, steps, runs), "steps": result.step,
              "train_seconds_shared": result.seconds, "wall_s": round(time.time() - start, 1),
              "loadavg_end": open("/proc/loadavg").read().split()[:3]}
    budget = budgets(runs).get(name)
    if name in FAMILY and budget != steps:  # a shorter run than the budget: say so wherever it is used
        record.update(budget_steps=budget, budget_fraction=round(steps / budget, 3))
    (runs / name / "done.json").write_text(json.dumps(record))


def run_training(names, budgets: dict, runs: Path) -> None:
    """Train, then score, each variant in turn in its own process (one thread, ``nice``), one at a time;
    finished runs are skipped (and unscored ones scored)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    nice = ["nice", "-n", str(max(0, 10 - os.nice(0)))]  # nice 10 in all, whether this process is niced or not
    for name in names:
        if not (runs / name / "done.json").is_file():
            subprocess.run([*nice, sys.executable, __file__, "train-one", name, "--steps", str(budgets[name]),
                            "--runs", str(runs)], env=env, cwd=ROOT, check=True)
        subprocess.run([*nice, sys.executable, __file__, "eval", name, "--runs", str(runs)], env=env, cwd=ROOT,
                       check=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=("cost", "train", "train-one", "eval", "report"))
    parser.add_argument("names", nargs="*", help="variants (train, train-one, cost)")
    parser.add_argument("--steps", type=int, default=None, help="train-one: meta-steps")
    parser.add_argument("--runs", type=Path, default=Path("/tmp/family_runs"))
    parser.add_argument("--rounds", type=int, default=14)
    parser.add_argument("--steps-per-round", type=int, default=3)
    args = parser.parse_args(argv)
    args.runs.mkdir(parents=True, exist_ok=True)
    if args.what == "cost":
        result = measure_cost(args.names or list(COST_VARIANTS), args.rounds, args.steps_per_round)
        (args.runs / "cost.json").write_text(json.dumps(result, indent=1))
    elif args.what == "train-one":
        train_one(args.names[0], args.steps, args.runs)
    elif args.what == "train":
        run_training(args.names, budgets(args.runs), args.runs)
    elif args.what == "eval":
        evaluate_runs(args.names or None, args.runs)
    else:
        write_report(args.runs)
    return 0


def budgets(runs: Path) -> dict:
    """Meta-steps per variant: the family's from the measured cost ratios, the sweep's and tricks' fixed."""
    cost = json.loads((runs / "cost.json").read_text())["variants"]
    steps = {name: SWEEP_STEPS for name in {**SWEEP, **TRICKS}}
    steps.update({name: row["step_budget"] for name, row in cost.items() if name in FAMILY})
    return steps


SHIPPED_MAML = "maml_omniglot_5w1s_zerohead_quick"


def per_task_scores(source, algo: str | None = None) -> dict:
    """``{"scores": [600 accuracies], "step": ...}`` of a checkpoint on the course's 600 test tasks
    (``mllib eval``'s tasks and protocol); ``algo`` scores the same meta-parameters as another algorithm."""
    import dataclasses

    import torch

    from mllib.data import load_omniglot
    from mllib.evaluate import load_run, task_accuracies, test_task_chunks

    torch.set_num_threads(1)
    run = load_run(source, "cpu")
    protocol = run.protocol
    if algo is not None:
        protocol = dataclasses.replace(protocol, meta_config=dataclasses.replace(protocol.meta_config, algo=algo))
    data = load_omniglot(progress=False)
    scores = torch.cat([task_accuracies(run.model, run.params, protocol, chunk)
                        for chunk in test_task_chunks(data, protocol, 600, "test")])
    return {"scores": [round(float(x), 4) for x in scores], "step": run.step,
            "inner_steps_test": protocol.inner_steps, "bn": protocol.meta_config.bn, "query": protocol.query}


def evaluate_runs(names, runs: Path) -> None:
    """Score the shipped MAML card (and it read as ANIL) and every finished run in ``runs``; skip scored ones."""
    jobs = {"maml": (SHIPPED_MAML, None), "anil": (SHIPPED_MAML, "anil")}
    jobs.update({path.parent.name: (str(path.parent / "best.pt"), None)
                 for path in sorted(runs.glob("*/done.json"))})
    for name, (source, algo) in jobs.items():
        target = runs / f"scores_{name}.json"
        if (names and name not in names) or target.is_file():
            continue
        start = time.time()
        result = per_task_scores(source, algo)
        result["eval_seconds_shared"] = round(time.time() - start, 1)
        target.write_text(json.dumps(result))
        print(f"{name}: {sum(result['scores']) / 600:.4f} at step {result['step']}", flush=True)


def _entry(runs: Path, name: str, against: list | None) -> dict | None:
    """One scored run: accuracy, 95% interval, per-task scores, the paired difference against ``against``."""
    from mllib.compare import paired_verdict
    from mllib.evaluate import mean_ci95

    path = runs / f"scores_{name}.json"
    if not path.is_file():
        return None
    scored = json.loads(path.read_text())
    accuracy, ci95 = mean_ci95(scored["scores"])
    entry = {"accuracy": round(accuracy, 4), "ci95": round(ci95, 4), "best_step": scored["step"],
             "inner_steps_test": scored["inner_steps_test"], "scores": scored["scores"]}
    done = runs / name / "done.json"
    if done.is_file():
        record = json.loads(done.read_text())
        entry.update({k: v for k, v in record.items() if k != "steps"}, meta_steps=record["steps"])
    if against is not None:
        difference, half = mean_ci95([a - b for a, b in zip(scored["scores"], against)])
        entry["paired"] = {"difference": round(difference, 4), "ci95": round(half, 4),
                           "verdict": str(paired_verdict(scored["scores"], against))}
    return entry


def _scores(runs: Path, name: str) -> list | None:
    path = runs / f"scores_{name}.json"
    return json.loads(path.read_text())["scores"] if path.is_file() else None


def _family(runs: Path, card: dict) -> dict:
    maml = _scores(runs, "maml")
    family = {name: _entry(runs, name, None if name == "maml" else maml) for name in ("maml", "anil", *FAMILY)}
    family["maml"].update(meta_steps=card["meta_steps"], command=card["command"],
                          train_seconds_idle_2_threads=card["train_seconds"], checkpoint=SHIPPED_MAML)
    family["anil"].update(meta_steps=card["meta_steps"], checkpoint=SHIPPED_MAML, note=(
        "ANIL with the quick recipe (zero head, one inner step) is MAML: from a zero head the first inner step "
        "moves the head alone, so both compute the same meta-gradient, exactly (tests/test_family_budget.py); "
        "its training run is the shipped MAML run, scored here as ANIL (head-only adaptation)"))
    return {k: v for k, v in family.items() if v is not None}


def write_report(runs: Path) -> None:
    """Collect the cost ratios, budgets, scores and paired differences into ``OUT_JSON``."""
    card = json.loads(CARD.read_text())
    cost = json.loads((runs / "cost.json").read_text())
    base = _scores(runs, "sweep_lr0.4_k2")
    result = {
        "kind": "family-at-one-budget", "issue": 25, "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": ("shared machine: a 2-core CPU shared with other engineers' jobs (load averages in cost and "
                    "below); one torch thread, nice 10, one training job at a time. Every seconds figure from it "
                    "is a shared-machine figure; the step budgets come from ratios, which a load slows alike"),
        "loadavg_report": open("/proc/loadavg").read().split()[:3],
        "protocol": ("600 test tasks of the maml split (mllib eval: TEST_SEED, chunks of 100), 5-way 1-shot, 5 query "
                     "images per class, batch norm with batch statistics (bn=batch, transductive), test characters "
                     "as drawn (no rotations); each run's best.pt (best validation accuracy, as the shipped card); "
                     "95% interval 1.96 sd / sqrt(600); paired differences on the same 600 tasks"),
        "recipe": {"command": card["command"], "card": CARD.name, "idle_budget_s": IDLE_BUDGET_S,
                   "meta_steps": QUICK_STEPS, "settings": (
                       "zero head where the algorithm adapts the head (not Reptile), cosine meta-lr 0.003, meta-batch "
                       "8, 5 query images per class, 32 filters, inner 1 step x 0.4, 1 test step, seed 0")},
        "cost": {**cost, "command": ("OMP_NUM_THREADS=1 nice -n 10 python benchmarks/family_at_one_budget.py cost "
                                     "maml fomaml reptile metasgd anil anil_learned_head --rounds 14 "
                                     "--steps-per-round 3"),
                 "budget_rule": f"steps = {QUICK_STEPS} / ratio, rounded to 10: the idle {IDLE_BUDGET_S:g} s of "
                                "the quick MAML run, in each algorithm's meta-steps"},
        "family": _family(runs, card),
        "sweep": {"meta_steps": SWEEP_STEPS, "inner_lrs": list(SWEEP_LRS), "inner_steps": list(SWEEP_INNER_STEPS),
                  "note": "plain MAML, the quick recipe otherwise (zero head, cosine meta-lr over the shorter budget); "
                          "tested with as many inner steps as trained",
                  "runs": {k: v for k in SWEEP if (v := _entry(runs, k, None)) is not None}},
        "tricks": {"meta_steps": SWEEP_STEPS, "base": "sweep_lr0.4_k2",
                   "note": "each of MAML++'s tricks alone on plain 2-step MAML (inner lr 0.4, zero head, cosine), "
                           "equal meta-steps and seed; paired against the base run on the same 600 tasks",
                   "runs": {k: v for k in TRICKS if (v := _entry(runs, k, base)) is not None}},
        "commands": {"cost": "OMP_NUM_THREADS=1 nice -n 10 python benchmarks/family_at_one_budget.py cost",
                     "train": "OMP_NUM_THREADS=1 nice -n 10 python benchmarks/family_at_one_budget.py train NAME...",
                     "eval": "OMP_NUM_THREADS=1 nice -n 10 python benchmarks/family_at_one_budget.py eval",
                     "report": "python benchmarks/family_at_one_budget.py report"},
    }
    text = json.dumps(result, indent=1)  # per-task scores on one line each
    text = re.sub(r'"scores": \[[^\]]*\]', lambda m: '"scores": ' + json.dumps(json.loads(m.group(0)[10:])), text)
    OUT_JSON.write_text(text + "\n")
    print(f"wrote {OUT_JSON}")


if __name__ == "__main__":
    sys.exit(main())
