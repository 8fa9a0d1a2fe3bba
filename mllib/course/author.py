"""``python -m mllib course author``: an author's round in one command, after changing a notebook.

It regenerates everything that is generated from the book, in the order in which one output feeds
the next, then runs every course check, and prints one summary (what changed, what failed); the exit
status is 1 when any step failed. Each step is an existing function (the command it stands for is in
brackets):

1. ``sync``: badges, Colab install cells, GPU metadata, README badges (``course sync``);
2. ``execute``: the given notebooks (default: all of ``notebooks/``) re-executed in place from a clean
   kernel with the settings of ``make notebooks`` (``CI=1 MLLIB_PROFILE=quick MLLIB_DEVICE=cpu``);
   every figure is checked as it is drawn, and a notebook whose cell fails, whose check does not pass
   or whose figure is bad is not written (``course execute``);
3. ``times``: only with ``times=True`` (``--times``), since a run time is only worth writing from an
   idle machine, and only when every notebook was executed: the headers, the README course map and
   the table of ``docs/instructors.md`` (``course times``);
4. ``exercises``: each exercise's effort into the headers and the exercise table (``course exercises``);
5. ``fixed values``: the visible checks' stored values, ``mllib/checks/fixed_values.json``, from the
   notebooks' hidden references and ``instructor/known_mistakes.py`` (``course check-values --write``);
6. ``practice``: the practice edition ``practice/`` (``course practice``), and the translated books
   with theirs (``zh/notebooks``, ``zh/practice``: ``course build --lang zh``);
7. ``results``: the results block of ``docs/results.md``, which lists the checkpoints the notebooks
   use (``make results``);
8. ``lint``: every notebook's text and outputs (``course lint``);
9. ``check``: badges, install cells, the exercise convention, checked measurements (``course check``);
10. ``course tests``: the tests that check the course's content against the library (the exercises'
    solutions and known mistakes, the practice edition, links, the notebooks' live-training budgets:
    :data:`COURSE_TESTS`, with pytest; only in a checkout that has ``tests/``);
11. ``student release``: the student version of every notebook runs and each check fails only for its
    own exercise (``course verify-student --skip-solutions``; the execute step ran the solutions);
    left out with ``student=False`` (``--skip-student``).

A step that raises is reported as failed with its message, and the rest still run (so one round
shows every problem); ``times`` is skipped when ``execute`` failed. ``dry_run`` prints the plan and
runs nothing.
"""
from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

#: What ``make notebooks`` runs the book with (CI=1: no progress bars in the stored outputs).
from .execute import BOOK_ENV, environment

#: The test files that check the course's content (not only the library): run by the ``course tests`` step.
COURSE_TESTS = ("tests/test_exercises.py", "tests/test_check_properties.py", "tests/test_practice_edition.py",
                "tests/test_links.py", "tests/test_budget.py")


@dataclass
class AuthorOptions:
    """What ``python -m mllib course author`` was asked to do."""

    root: Path = Path(".")
    paths: list[str] = field(default_factory=list)   # notebooks or folders to execute; empty: ROOT/notebooks
    times: bool = False                              # write run times (an idle machine only)
    machine: str = "an idle 2-core CPU"              # the machine the times were measured on
    report: str = "build/notebook_report.json"      # the execute report (times read it)
    timeout: int = 900                               # seconds per cell
    student: bool = True                             # run the student release (minutes)


@dataclass
class StepResult:
    """One step's outcome: the files it changed, the problems it found, or why it was skipped."""

    changed: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    skipped: str = ""


@dataclass(frozen=True)
class Step:
    name: str
    command: str                                     # the separate command it stands for
    run: Callable[[AuthorOptions, dict], StepResult]  # (options, results of the earlier steps)


# ----------------------------------------------------------------------------- the checks as lists

def lint_problems(root: str | Path = ".", paths=None) -> list[str]:
    """What ``course lint`` reports: every notebook's text checks, claims and comparisons; with no
    ``paths`` (the whole course) also the exemptions of ``docs/instructors.md`` that went stale."""
    from .claims import claim_problems, comparison_problems, exemptions, stale_exemptions
    from .lint import lint_notebook
    from .nbio import list_notebooks, read_notebook

    root = Path(root)
    exempt = exemptions(root / "docs" / "instructors.md")
    found = list_notebooks(paths or [root / "notebooks"])
    notebooks = {p.name: read_notebook(p) for p in found}
    problems = []
    for path in found:
        problems += lint_notebook(path, notebooks[path.name])
        problems += claim_problems(notebooks[path.name], path.name, exempt)
        problems += comparison_problems(notebooks[path.name], path.name, exempt)
    if not paths:
        problems += stale_exemptions(notebooks, exempt)
    return problems


def check_problems(root: str | Path = ".", cfg=None, readme: bool = True) -> list[str]:
    """What ``course check`` reports: configuration, exercise convention and checked measurements."""
    from .claims import measurement_problems
    from .colab import check_course

    from .translation import LANGUAGES, stale_translations

    problems = check_course(root, cfg, readme=readme)
    problems += [line for lang in LANGUAGES for line in stale_translations(root, lang, cfg)]
    return problems + measurement_problems(root, [Path(root) / (cfg.notebooks_dir if cfg else "notebooks")])


# ----------------------------------------------------------------------------- the steps

def _config(opts: AuthorOptions):
    from .config import config_path, load_config

    return load_config(config_path(opts.root))


def _names(paths) -> list[str]:
    return [str(p) for p in paths]


def _book(opts: AuthorOptions) -> list[Path]:
    from .nbio import list_notebooks

    return list_notebooks(opts.paths or [opts.root / "notebooks"])


def _sync(opts, done):
    from .colab import sync_course

    return StepResult(changed=_names(sync_course(opts.root, _config(opts))))


def _execute(opts, done):
    from .execute import execute_notebooks

    paths = _book(opts)
    before = {p: p.read_bytes() for p in paths}
    with environment(BOOK_ENV):
        result = execute_notebooks(paths, report=opts.root / opts.report, in_place=True, timeout=opts.timeout)
    problems = [f"{nb['path']}: {nb.get('error') or 'did not run'}" for nb in result["notebooks"] if not nb["ok"]]
    return StepResult(changed=[str(p) for p in paths if p.read_bytes() != before[p]], problems=problems)


def _times(opts, done):
    from .times import apply_times

    if not opts.times:
        return StepResult(skipped="not asked (--times): run times are written from an idle machine only")
    if done["execute"].problems or done["execute"].skipped:
        return StepResult(skipped="execute failed: no run times from an incomplete run")
    return StepResult(changed=_names(apply_times(opts.root / opts.report, opts.root, machine=opts.machine)))


def _exercises(opts, done):
    from .effort import apply_effort

    problems, changed = apply_effort(opts.root, write=True)
    return StepResult(changed=[] if problems else _names(changed), problems=problems)


def _fixed_values(opts, done):
    from .check_values import VALUES_PATH, check_values

    return StepResult(changed=[] if check_values(opts.root, write=True) else [str(VALUES_PATH)])


def _practice(opts, done):
    from .student import build_practice
    from .translation import LANGUAGES, build_edition

    changed = build_practice(opts.root, _config(opts))
    for lang in LANGUAGES:   # the translated books and their practice editions follow the book
        changed += build_edition(opts.root, lang, _config(opts))
    return StepResult(changed=_names(changed))


def _results(opts, done):
    from mllib.results import RESULTS_PAGE, update_readme

    return StepResult(changed=[str(opts.root / RESULTS_PAGE)] if update_readme(root=opts.root) else [])


def _lint(opts, done):
    return StepResult(problems=lint_problems(opts.root))


def _check(opts, done):
    return StepResult(problems=check_problems(opts.root, _config(opts)))


def run_pytest(root: Path, files: list[str]) -> int:
    """``python -m pytest -q files`` in ``root`` (its exit status); the output goes to the terminal."""
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *files],
                          cwd=root, check=False).returncode


def _course_tests(opts, done):
    files = [name for name in COURSE_TESTS if (opts.root / name).is_file()]
    if not files:
        return StepResult(skipped="no tests/ here (an installed package, not a checkout)")
    code = run_pytest(opts.root, files)
    return StepResult(problems=[] if code == 0 else [f"pytest {' '.join(files)}: exit status {code} "
                                                     f"(its failures are printed above)"])


def _student(opts, done):
    from .grading import verify_student_build

    if not opts.student:
        return StepResult(skipped="--skip-student")
    report = verify_student_build(opts.root / "notebooks", solutions=False, timeout=opts.timeout,
                                  echo=lambda msg: print(msg, flush=True))
    return StepResult(problems=list(report.problems))


STEPS = (
    Step("sync", "python -m mllib course sync", _sync),
    Step("execute", "python -m mllib course execute NOTEBOOKS  (CI=1 MLLIB_PROFILE=quick MLLIB_DEVICE=cpu)",
         _execute),
    Step("times", "python -m mllib course times --machine MACHINE  (--times only: an idle machine)", _times),
    Step("exercises", "python -m mllib course exercises", _exercises),
    Step("fixed values", "python -m mllib course check-values --write", _fixed_values),
    Step("practice", "python -m mllib course practice", _practice),
    Step("results", "python -m mllib bench --readme  (make results)", _results),
    Step("lint", "python -m mllib course lint", _lint),
    Step("check", "python -m mllib course check", _check),
    Step("course tests", "python -m pytest " + " ".join(COURSE_TESTS), _course_tests),
    Step("student release", "python -m mllib course verify-student --skip-solutions", _student),
)


# ----------------------------------------------------------------------------- the round

def command(step: Step, opts: AuthorOptions) -> str:
    """The separate command ``step`` stands for, with these options' notebooks and machine."""
    return step.command.replace("NOTEBOOKS", " ".join(opts.paths) or "notebooks/").replace("MACHINE",
                                                                                          repr(opts.machine))


def plan(opts: AuthorOptions) -> list[str]:
    """The numbered steps, as the separate commands they stand for (what ``--dry-run`` prints)."""
    lines = []
    for i, step in enumerate(STEPS, 1):
        left_out = ((step.name == "times" and not opts.times and "not asked (--times)")
                    or (step.name == "student release" and not opts.student and "--skip-student"))
        lines.append(f"{i:2d}. {step.name:<16} {command(step, opts)}" + (f"   [skipped: {left_out}]" if left_out else ""))
    return lines


def run_author(opts: AuthorOptions, echo=print) -> dict[str, StepResult]:
    """Run every step in order; returns ``{step name: StepResult}`` (a step that raised: its problem)."""
    done: dict[str, StepResult] = {}
    for i, step in enumerate(STEPS, 1):
        echo(f"== {i}/{len(STEPS)} {step.name}: {command(step, opts)}")
        try:
            done[step.name] = step.run(opts, done)
        except Exception as err:   # noqa: BLE001 -- one step's failure is reported, the others still run
            done[step.name] = StepResult(problems=[f"{type(err).__name__}: {err}"])
    return done


def summary(done: dict[str, StepResult]) -> tuple[str, bool]:
    """The summary printed at the end, and whether every step passed."""
    lines, changed, failed = ["course author: summary"], [], []
    for name, result in done.items():
        if result.skipped:
            state = f"skipped ({result.skipped})"
        elif result.problems:
            state = f"FAILED: {len(result.problems)} problem(s)"
        else:
            state = "ok" + (f", {len(result.changed)} file(s) changed" if result.changed else "")
        lines.append(f"  {name:<16} {state}")
        changed += [path for path in result.changed if path not in changed]
        failed += [f"{name}: {problem}" for problem in result.problems]
    lines += ["changed (review and commit):"] + [f"  {path}" for path in changed] if changed else ["changed: nothing"]
    if failed:
        lines += ["failed:"] + [f"  {problem}" for problem in failed]
    steps = sum(bool(r.problems) for r in done.values())
    lines.append("course author: every step passed" if not failed else
                 f"course author: {len(failed)} problem(s) in {steps} step(s); fix them and run it again")
    return "\n".join(lines), not failed


def check_options(opts: AuthorOptions) -> None:
    """One clear line (ValueError) for options that cannot work together."""
    from .nbio import list_notebooks

    if opts.times and opts.paths and ({p.resolve() for p in list_notebooks(opts.paths)}
                                      != {p.resolve() for p in list_notebooks(opts.root / "notebooks")}):
        raise ValueError("--times needs every notebook of notebooks/ executed (the run-time table lists them "
                         "all): leave the notebooks out, or run without --times")


__all__ = ["AuthorOptions", "StepResult", "Step", "STEPS", "BOOK_ENV", "COURSE_TESTS", "lint_problems",
           "check_problems", "command", "plan", "run_author", "summary", "check_options", "run_pytest"]
