"""``python -m mllib course``: build the student release, sync Colab/Binder badges, run and grade notebooks.

It needs the ``course`` extra (``pip install 'learning-to-learn-course[course]'``: nbformat,
nbclient, ipykernel); without it every action stops with one line naming the extra.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path

from mllib.files import atomic_write_text, check_output_file
from mllib.provenance import DISTRIBUTION

# mllib.course is imported inside each command: it needs nbformat (the `course` extra), and
# `python -m mllib` must start without it.

COURSE_MODULES = ("nbformat", "nbclient", "ipykernel", "jupyter_client", "jupyter_core")


def _needs_course_extra(func):
    """Turn a missing notebook package into one line that names the extra to install."""
    @functools.wraps(func)
    def wrapper(args):
        try:
            return func(args)
        except ModuleNotFoundError as err:
            if (err.name or "").split(".")[0] not in COURSE_MODULES:
                raise
            raise RuntimeError(f"`python -m mllib course` needs the course extra (module {err.name} is "
                               f"missing): pip install '{DISTRIBUTION}[course]'") from err
    return wrapper


def _config(args):
    from mllib.course.config import config_path, load_config

    return load_config(args.config or config_path(args.root))


def _build(args) -> int:
    if args.render is not None and args.lang is None:
        print("--render draws a translated book's figures: add --lang zh")
        return 2
    if args.lang is not None:
        return _build_edition(args)
    from mllib.course import build_student

    written = build_student(args.src, args.out)
    print(f"wrote {len(written)} student notebook(s) to {args.out}")
    return 0


def _build_edition(args) -> int:
    from mllib.course.translation import Edition, build_edition, coverage, render_edition

    try:
        if args.render is not None:
            changed = render_edition(args.root, args.lang, args.render or None)
        else:
            changed = build_edition(args.root, args.lang)
    except ValueError as err:
        print(err)
        return 1
    for path in changed:
        print(f"updated {path}")
    done, todo = coverage(args.root, args.lang)
    print(f"{args.lang} edition ({Edition(Path(args.root), args.lang).book.parent}): {len(changed)} file(s) changed; "
          f"{len(done)} notebook(s) translated" + (f", not yet: {', '.join(todo)}" if todo else ""))
    return 0


def _translation(args) -> int:
    import json

    from mllib.course.nbio import read_notebook
    from mllib.course.translation import Edition, coverage, skeleton, stale_translations

    if args.action == "new":
        path = Path(args.root) / "notebooks" / args.notebook
        target = Edition(Path(args.root), args.lang).text_file(args.notebook)
        if target.exists():
            print(f"{target} exists already; edit it (its stale cells: `course translation status`)")
            return 1
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(skeleton(read_notebook(path), path.name, args.lang), ensure_ascii=False,
                                     indent=1) + "\n", encoding="utf-8")
        print(f"wrote {target}: translate each cell's \"text\"; keep \"en\" (the English text's fingerprint)")
        return 0
    problems = stale_translations(args.root, args.lang)
    for line in problems:
        print(line)
    if not problems:
        from mllib.course.translation import english_figures

        for line in english_figures(args.root, args.lang):
            print(f"note: {line}")
    done, todo = coverage(args.root, args.lang)
    print(f"{args.lang} edition: {len(done)} notebook(s) translated, {len(problems)} problem(s)"
          + (f"; not yet translated: {', '.join(todo)}" if todo else ""))
    return 1 if problems else 0


def _practice(args) -> int:
    from mllib.course.student import PRACTICE_COMMAND, build_practice, stale_practice

    cfg = _config(args)
    if args.check:
        stale = stale_practice(args.root, cfg)
        for line in stale:
            print(line)
        print("practice edition: current" if not stale else
              f"practice edition: {len(stale)} file(s) out of date with the book; run `{PRACTICE_COMMAND}`")
        return 1 if stale else 0
    changed = build_practice(args.root, cfg)
    for path in changed:
        print(f"updated {path}")
    print(f"practice edition ({Path(args.root) / cfg.practice_dir}): {len(changed)} file(s) changed")
    return 0


def _sync(args) -> int:
    from mllib.course import sync_course
    from mllib.course.student import build_practice

    cfg = _config(args)
    changed = sync_course(args.root, cfg, readme=not args.no_readme)
    if (Path(args.root) / cfg.notebooks_dir).is_dir():
        changed += build_practice(args.root, cfg)   # its badges and install cells follow the book's
    for path in changed:
        print(f"updated {path}")
    print(f"{len(changed)} file(s) changed")
    return 0


def _check(args) -> int:
    from mllib.course.author import check_problems

    problems = check_problems(args.root, _config(args), readme=not args.no_readme)
    for problem in problems:
        print(problem)
    print("course check: ok" if not problems else f"course check: {len(problems)} problem(s)")
    return 1 if problems else 0


def _set_repository(args) -> int:
    from mllib.course import sync_course
    from mllib.course.config import set_repository
    from mllib.course.student import build_practice

    cfg = set_repository(args.root, args.url, args.ref)
    changed = sync_course(args.root, cfg)
    changed += build_practice(args.root, cfg)   # the practice edition's badges open it on the new ref
    print(f"repository {cfg.repository} at {cfg.ref}: wrote {Path(args.root) / 'mllib' / 'course_config.json'}")
    for path in changed:
        print(f"updated {path}")
    print("commit these files and push; the badges and Colab install cells now point at that repository")
    return 0


def _lint(args) -> int:
    from mllib.course.author import lint_problems

    problems = lint_problems(args.root, args.paths)   # no paths: the whole course, stale exemptions too
    for problem in problems:
        print(problem)
    print("course lint: ok" if not problems else f"course lint: {len(problems)} problem(s)")
    return 1 if problems else 0


def _times(args) -> int:
    from mllib.course.times import apply_times

    changed = apply_times(args.report, args.root, machine=args.machine)
    for path in changed:
        print(f"updated {path}")
    print(f"{len(changed)} file(s) changed")
    return 0


def _execute(args) -> int:
    from mllib.course.execute import execute_notebooks, report_table

    check_output_file(args.report, "--report")  # before the notebooks run
    result = execute_notebooks(args.paths, report=args.report, in_place=not args.no_write, timeout=args.timeout)
    print(report_table(result))
    print(f"report: {args.report}")
    return 0 if result["ok"] else 1


def _grade(args) -> int:
    from mllib.arguments import check_int
    from mllib.course import format_grade_table, grade_notebook

    check_int("--timeout", args.timeout, 1)
    report = grade_notebook(args.notebook, reference=args.reference, timeout=args.timeout)
    print(json.dumps(report.to_dict(), indent=2, ensure_ascii=False) if args.json else format_grade_table(report))
    return 0


def _verify(args) -> int:
    from mllib.course import verify_student_build

    if args.json:
        check_output_file(args.json, "--json")  # before the notebooks run
    report = verify_student_build(args.src, solutions=not args.skip_solutions, timeout=args.timeout,
                                  echo=lambda msg: print(msg, flush=True),
                                  only=tuple(args.only) if args.only else None)
    if args.json:
        atomic_write_text(args.json, json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n")
    for problem in report.problems:
        print(problem)
    print("student build verified" if report.ok else f"student build: {len(report.problems)} problem(s)")
    return 0 if report.ok else 1


def _exercises(args) -> int:
    from mllib.course.effort import apply_effort

    problems, changed = apply_effort(args.root, write=True)
    for problem in problems:
        print(problem)
    if problems:
        print(f"nothing written: fix the {len(problems)} problem(s) above and run it again")
        return 1
    for path in changed:
        print(f"updated {path}")
    print(f"{len(changed)} file(s) changed")
    return 0


def _check_values(args) -> int:
    from mllib.course.check_values import VALUES_PATH, check_values

    current = check_values(args.root, write=args.write)
    if current:
        print(f"{VALUES_PATH.name}: current")
        return 0
    print(f"{VALUES_PATH.name}: " + ("regenerated" if args.write else
                                     "out of date (run `python -m mllib course check-values --write`)"))
    return 0 if args.write else 1


def _author(args) -> int:
    from mllib.course.author import AuthorOptions, check_options, plan, run_author, summary

    opts = AuthorOptions(root=Path(args.root), paths=args.paths, times=args.times, machine=args.machine,
                         report=args.report, timeout=args.timeout, student=not args.skip_student)
    check_options(opts)
    if args.dry_run:
        print("course author would run, in this order (nothing is run with --dry-run):")
        print("\n".join(plan(opts)))
        return 0
    text, ok = summary(run_author(opts, echo=lambda line: print(line, flush=True)))
    print(text)
    return 0 if ok else 1


def _mutants(args) -> int:
    from mllib.course.mutants import report

    return report(args)


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("course", help="student release, Colab/Binder badges, notebook runs and grading",
                                   description="Build the student release, keep the Colab/Binder badges and "
                                               "install cells in sync with mllib/course_config.json, run, "
                                               "grade and verify notebooks.")
    sub = parser.add_subparsers(dest="course_command", metavar="ACTION", required=True)

    p = sub.add_parser("build", help="write the student notebooks (solutions replaced, outputs cleared)")
    p.add_argument("--src", default="notebooks", help="solution notebooks (default: notebooks)")
    p.add_argument("--out", default="build/student", help="output folder (default: build/student)")
    p.add_argument("--lang", choices=("zh",), default=None,
                   help="instead: write the book in this language (zh/notebooks) and its practice edition "
                        "(zh/practice) from the English book and the translations in zh/text")
    p.add_argument("--render", nargs="*", metavar="NOTEBOOK", default=None,
                   help="with --lang: also execute the built book (or these notebooks of it) in that language "
                        "and keep its outputs, so its figures are drawn in it (needs a font for it)")
    p.add_argument("--root", default=".", help="repository root, with --lang (default: .)")
    p.set_defaults(func=_needs_course_extra(_build))

    p = sub.add_parser("translation", help="the translated editions: status (what is out of step), new (start a "
                                            "notebook's translation file)",
                       description="status: every translated cell whose English text changed since, every "
                                   "untranslated cell of a translated notebook, and stale built files (exit 1 "
                                   "if any). new NOTEBOOK: write zh/text/<notebook>.json with the English text to "
                                   "translate, keyed by cell id, each with the English text's fingerprint.")
    p.add_argument("action", choices=("status", "new"))
    p.add_argument("notebook", nargs="?", help="with new: the notebook's file name (01_learning_bias.ipynb)")
    p.add_argument("--lang", choices=("zh",), default="zh")
    p.add_argument("--root", default=".", help="repository root (default: .)")
    p.set_defaults(func=_needs_course_extra(_translation))

    p = sub.add_parser("practice", help="write the practice edition (practice/) from the book (notebooks/)",
                       description="Write the practice edition beside the book: the student version of every "
                                   "notebook (exercises open, quiz answers and hidden tests removed, outputs "
                                   "cleared except figures, links that resolve from practice/, badges that "
                                   "open it). Commit what it changed. --check only says what is out of date.")
    p.add_argument("--root", default=".", help="repository root (default: .)")
    p.add_argument("--config", default=None, help="configuration file (default: ROOT/mllib/course_config.json)")
    p.add_argument("--check", action="store_true", help="write nothing; list the stale files and exit 1 if any")
    p.set_defaults(func=_needs_course_extra(_practice))

    p = sub.add_parser("set-repository", help="publish your copy: set the repository (and ref) of every "
                                              "badge and Colab install cell, in one step",
                       description="Write the repository URL (and the ref) into mllib/course_config.json "
                                   "and regenerate every notebook's badges and Colab install cell and the "
                                   "README's badges. Run it from the repository root.")
    p.add_argument("url", help="https://github.com/<owner>/<repo>")
    p.add_argument("--ref", default=None, help="branch or tag the badges and install cells pin "
                                               "(default: keep the configured one)")
    p.add_argument("--root", default=".", help="repository root (default: .)")
    p.set_defaults(func=_needs_course_extra(_set_repository))

    for name, func, text in (("sync", _sync, "regenerate Colab badges, install cells, GPU metadata, README badges"),
                             ("check", _check, "verify badges and install cells match course_config.json, "
                                               "the exercise convention, and that comparisons, outputs and "
                                               "tables of accuracies are checked measurements")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--root", default=".", help="repository root (default: .)")
        p.add_argument("--config", default=None, help="configuration file (default: ROOT/mllib/course_config.json, "
                                                      "else the installed package's)")
        p.add_argument("--no-readme", action="store_true", help="leave README.md out")
        p.set_defaults(func=_needs_course_extra(func))

    p = sub.add_parser("execute", help="re-execute notebooks in place from a clean kernel; report time and memory")
    p.add_argument("paths", nargs="*", default=["notebooks"], help="notebooks or folders (default: notebooks)")
    p.add_argument("--report", default="build/notebook_report.json", help="JSON report path")
    p.add_argument("--no-write", action="store_true", help="run only; leave the notebooks unchanged")
    p.add_argument("--timeout", type=int, default=900, help="seconds per cell (default: 900)")
    p.set_defaults(func=_needs_course_extra(_execute))

    p = sub.add_parser("lint", help="maths, images, cross-references, code width, stored outputs, kernelspec, "
                                    "an assert near every quantitative claim and an assert_claim near every "
                                    "comparison")
    p.add_argument("paths", nargs="*", help="notebooks or folders (default: ROOT/notebooks)")
    p.add_argument("--root", default=".", help="repository root (default: .; docs/instructors.md lists "
                                               "the claims that cannot be asserted)")
    p.set_defaults(func=_needs_course_extra(_lint))

    p = sub.add_parser("times", help="write measured run times into the notebook headers, the README course "
                                     "map and docs/instructors.md")
    p.add_argument("--report", default="build/notebook_report.json", help="the report of `course execute`")
    p.add_argument("--root", default=".", help="repository root (default: .)")
    p.add_argument("--machine", default="an idle 2-core CPU", help="the machine the report was measured on")
    p.set_defaults(func=_needs_course_extra(_times))

    p = sub.add_parser("grade", help="run a student's notebook and print a score per exercise",
                       description="Run a student's notebook in a fresh kernel, in a temporary folder holding only "
                                   "a copy of it, with a clean environment, and print a score per graded cell. "
                                   "docs/instructors.md says what this guards against and what it cannot.")
    p.add_argument("notebook")
    p.add_argument("--reference", default=None,
                   help="the instructor's notebook (or its folder): only its graded cells count, each once; "
                        "edited or deleted check cells are put back, with the hidden tests")
    p.add_argument("--json", action="store_true", help="print the scores as JSON")
    p.add_argument("--timeout", type=int, default=900, help="seconds per cell (default: 900)")
    p.set_defaults(func=_needs_course_extra(_grade))

    p = sub.add_parser("exercises", help="write each exercise's effort (cell metadata) into the notebook "
                                         "headers and the exercise table of docs/instructors.md")
    p.add_argument("--root", default=".", help="repository root (default: .)")
    p.set_defaults(func=_needs_course_extra(_exercises))

    p = sub.add_parser("check-values", help="whether the visible checks' stored values match the instructor "
                                            "notebooks' hidden references and instructor/known_mistakes.py")
    p.add_argument("--root", default=".", help="repository root (default: .)")
    p.add_argument("--write", action="store_true", help="regenerate mllib/checks/fixed_values.py")
    p.set_defaults(func=_needs_course_extra(_check_values))

    p = sub.add_parser("verify-student", help="build and run the student release; every check must fail "
                                              "only for its own exercise and every other cell must run")
    p.add_argument("--src", default="notebooks")
    p.add_argument("--skip-solutions", action="store_true",
                   help="do not also run the solution notebooks (nbval already does)")
    p.add_argument("--json", default=None, help="also write the report to this JSON file")
    p.add_argument("--timeout", type=int, default=900, help="seconds per cell (default: 900)")
    p.add_argument("--only", nargs="+", default=None, metavar="NN",
                   help="only the notebooks whose names start with these prefixes (e.g. --only 01 02)")
    p.set_defaults(func=_needs_course_extra(_verify))

    p = sub.add_parser("author", help="an author's round in one command: re-execute the book, regenerate "
                                      "what is generated from it, run every course check, print a summary",
                       description="After changing a notebook: re-execute the given notebooks (default: all of "
                                   "notebooks/) in place, regenerate what is generated from the book (badges, "
                                   "exercise effort, the checks' fixed values, the practice edition, the "
                                   "results page; the run times only with --times), then run every course "
                                   "check (lint, check, the course's tests, the student release) and print "
                                   "one summary of what changed and what failed; exit 1 if anything failed. "
                                   "Run times are not written unless --times is given: they must come from "
                                   "an idle machine (nothing else running), and need every notebook executed.")
    p.add_argument("paths", nargs="*", help="notebooks or folders to re-execute (default: ROOT/notebooks)")
    p.add_argument("--times", action="store_true",
                   help="also write the measured run times (headers, README map, docs/instructors.md); only "
                        "on an idle machine, with every notebook executed")
    p.add_argument("--machine", default="an idle 2-core CPU", help="with --times: the machine measured on")
    p.add_argument("--skip-student", action="store_true",
                   help="leave out the student release run (verify-student, a few minutes)")
    p.add_argument("--dry-run", action="store_true", help="print the steps in order and run nothing")
    p.add_argument("--root", default=".", help="repository root (default: .)")
    p.add_argument("--report", default="build/notebook_report.json", help="the execute report, under ROOT")
    p.add_argument("--timeout", type=int, default=900, help="seconds per cell (default: 900)")
    p.set_defaults(func=_needs_course_extra(_author))

    p = sub.add_parser("mutants", help="mutation testing: wrong variants of every solution, and how many each "
                                       "layer of the checks rejects",
                       description="Derive wrong variants (mutants) of every exercise's solution and run the "
                                   "visible check and the hidden tests on each. Exit 1 when a layer rejects "
                                   "less than its threshold of the non-equivalent mutants (MIN_REJECTED in "
                                   "mllib/course/mutants.py, printed with the score) or when the survivors are "
                                   "not those listed in docs/instructors.md.")
    p.add_argument("exercises", nargs="*", help="exercise names (default: all)")
    p.add_argument("--notebooks", default="notebooks", help="the instructor notebooks (default: notebooks)")
    p.add_argument("--json", default=None, help="also write every mutant and its verdicts to this file")
    p.set_defaults(func=_needs_course_extra(_mutants))
