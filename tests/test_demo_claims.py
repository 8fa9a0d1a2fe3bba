"""What the README and docs say of ``make demo`` is the measured run of the recipe the Makefile runs.

``benchmarks/demo_workers.py`` trains and scores recipes and records each in
``benchmarks/results/demo_workers.json``; the record named by its ``make_demo`` key is the demo. The
Makefile's ``mllib train`` line must run that recipe, and the sentences of README.md and
docs/install.md must state its training seconds and its test accuracy with interval.
"""
from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REPORT = ROOT / "benchmarks" / "results" / "demo_workers.json"
# flags that do not change what is trained: where it goes, resuming, how many processes share the work
# (the same meta-gradient: tests/test_distributed.py), the defaults the benchmark spells out
NEUTRAL = {"--out": 1, "--resume": 0, "--workers": 1, "--seed": 1, "--device": 1}


def recipe(argv: list[str]) -> list[str]:
    """The training flags of a ``mllib train`` command line, neutral ones left out, in order."""
    out, i = [], 0
    start = argv.index("train") + 1
    argv = argv[start:]
    while i < len(argv):
        if argv[i] in NEUTRAL:
            i += 1 + NEUTRAL[argv[i]]
            continue
        out.append(argv[i])
        i += 1
    return out


def makefile_demo_train() -> list[str]:
    """The ``mllib train`` command of the Makefile's ``demo`` target, split into words."""
    text = (ROOT / "Makefile").read_text()
    body = text.split("\ndemo:", 1)[1].split("\n\n", 1)[0].replace("\\\n", " ")   # join continued lines
    line = next(line for line in body.splitlines() if " mllib train " in line)
    return shlex.split(line.strip().replace("$(PY)", "python").replace("$(RUN)", "runs/demo"))


def demo_record() -> dict:
    report = json.loads(REPORT.read_text())
    return next(run for run in report["runs"] if run["name"] == report["make_demo"])


def test_the_makefile_runs_the_measured_recipe():
    measured = demo_record()
    assert recipe(makefile_demo_train()) == recipe(shlex.split(measured["command"]))
    assert measured["workers"] == 2 and "--workers" in makefile_demo_train()


def missing_claims(text: str, run: dict) -> list[str]:
    """The demo's numbers, as the pages write them, that ``text`` does not contain."""
    text = " ".join(text.split())
    claims = [f"{run['train_seconds']:.0f} s of training", f"{100 * run['accuracy']:.1f}% ± {100 * run['ci95']:.1f}%"]
    return [claim for claim in claims if claim not in text]


@pytest.mark.parametrize("page", ["README.md", "docs/install.md"])
def test_the_pages_state_the_measured_numbers(page):
    missing = missing_claims((ROOT / page).read_text(), demo_record())
    assert not missing, f"{page} does not say {missing} (benchmarks/results/demo_workers.json)"


def test_the_checks_fail_on_a_planted_difference():
    """The checks above are not vacuous: another recipe or another number is caught."""
    argv = makefile_demo_train()
    steps = argv.index("--steps") + 1
    planted = argv[:steps] + [str(int(argv[steps]) + 1)] + argv[steps + 1:]
    assert recipe(planted) != recipe(shlex.split(demo_record()["command"]))
    assert recipe(argv + ["--workers", "auto", "--resume"]) == recipe(argv)    # neutral flags are ignored
    run = demo_record()
    readme = (ROOT / "README.md").read_text()
    wrong = {**run, "accuracy": run["accuracy"] + 0.002, "train_seconds": run["train_seconds"] + 7}
    assert len(missing_claims(readme, wrong)) == 2
