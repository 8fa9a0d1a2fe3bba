"""Grading a student notebook, and verifying that the student release behaves as it should."""
from __future__ import annotations

import ast
import contextlib
import copy
import os
import sys
import secrets
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from nbformat import NotebookNode

from ..checks import NOT_IMPLEMENTED, PASSED, STRICT_ENV
from .exercises import find_exercises, has_hidden_region, lint_exercises, strip_solutions
from .execute import DEFAULT_ENV, DEFAULT_TIMEOUT, CellOutcome, NotebookRun, kernel_env, run_notebook
from .nbio import list_notebooks, nbgrader, read_notebook, source
from .student import build_student


@dataclass
class ExerciseScore:
    grade_id: str            # the check cell's grade_id
    points: float
    max_points: float
    status: str              # passed | failed | not_implemented | error | missing | timeout | not_run
    detail: str


@dataclass
class GradeReport:
    notebook: str
    scores: list[ExerciseScore]
    cell_errors: list[str] = field(default_factory=list)   # errors outside check cells
    notes: list[str] = field(default_factory=list)          # restored or missing locked cells, hidden tests
    manual: list[tuple[str, float]] = field(default_factory=list)  # (grade_id, points) graded by hand
    wall_s: float = 0.0

    @property
    def total(self) -> float:
        return sum(s.points for s in self.scores)

    @property
    def max_total(self) -> float:
        return sum(s.max_points for s in self.scores)

    def to_dict(self) -> dict:
        out = asdict(self)
        out.update(total=self.total, max_total=self.max_total)
        return out


def check_verdict(cell: CellOutcome) -> tuple[str, str]:
    """(status, detail) of one check cell from its recorded verdicts or its error."""
    if cell.verdicts:
        bad = [v for v in cell.verdicts if v.get("status") != PASSED]
        worst = bad[0] if bad else cell.verdicts[0]
        return worst["status"], worst["message"].splitlines()[0]
    if cell.error:
        return "error", f"the check cell raised {cell.error}"
    return "missing", "the check cell printed no verdict"


# ----------------------------------------------------------------------------- the graded copy
# What `course grade` runs: the submission, with the reference's graded cells (by grade_id) put
# back, each once, and every other cell's grading metadata removed; each graded cell first
# imports a fresh mllib.checks and signs its verdicts with a token only the grader knows.
GRADER_PRELUDE = ('import sys as _grader_sys; [_grader_sys.modules.pop(_m) for _m in list(_grader_sys.modules) '
                  'if _m.split(".")[:2] == ["mllib", "checks"]]; import mllib.checks as checks; '
                  'checks.exercise.sign_records({token!r}); import math, torch; del _grader_sys\n')
NOT_RUN, TIMED_OUT = "not_run", "timeout"


@dataclass
class GradedCell:
    """One graded code cell of the copy that runs: where it is, its points and its token."""

    grade_id: str
    index: int               # position in the graded copy
    max_points: float        # from the reference (the submission's metadata is not trusted)
    token: str               # the verdicts of this cell carry it
    expected: int            # how many checks the cell calls (each must record a verdict)


def _graded(cell: NotebookNode) -> bool:
    return bool(nbgrader(cell).get("grade"))


def _ids(nb: NotebookNode) -> list[str]:
    return [g for g in (nbgrader(c).get("grade_id") for c in nb.cells) if g]


def _first_line(cell: NotebookNode) -> str:
    line = next((ln.strip() for ln in source(cell).splitlines() if ln.strip()), "(empty)")
    return line if len(line) <= 60 else line[:57] + "..."


def check_reference(nb: NotebookNode, reference: NotebookNode, name: str, reference_name: str) -> list[str]:
    """Notes on whether ``reference`` is the instructor's version of ``nb``; raises ValueError
    (one line) when it cannot be: it grades nothing, or it shares no grade_id with the submission."""
    graded = [nbgrader(c).get("grade_id") for c in reference.cells if _graded(c) and nbgrader(c).get("grade_id")]
    if not graded:
        raise ValueError(f"the reference {reference_name} has no graded cell (nbgrader grade: true): "
                         f"pass the instructor's notebook")
    ours, theirs = set(_ids(nb)), set(_ids(reference))
    if ours and not ours & theirs:
        raise ValueError(f"the reference {reference_name} shares no exercise with {name} (reference: "
                         f"{', '.join(sorted(theirs)[:4])}; submission: {', '.join(sorted(ours)[:4])}): "
                         f"pass the instructor's version of the same notebook")
    if Path(reference_name).name != Path(name).name:
        return [f"the reference is {Path(reference_name).name}, the submission {Path(name).name}"]
    return []


def _drop_foreign_grading(nb: NotebookNode, counted: set[str]) -> list[str]:
    """Remove the grading metadata of every cell whose grade_id the reference does not grade."""
    notes = []
    for i, cell in enumerate(nb.cells):
        meta = nbgrader(cell)
        if meta.get("grade") and meta.get("grade_id") not in counted:
            notes.append(f"cell {i} ({_first_line(cell)}) claims grade_id {meta.get('grade_id')!r} with "
                         f"{meta.get('points', 0)} point(s); the reference grades no such cell: not counted")
            cell.metadata["nbgrader"] = {**meta, "grade": False, "points": 0}
    return notes


def _drop_copies(nb: NotebookNode, ids: set[str]) -> list[str]:
    """Keep the last cell of each grade_id in ``ids`` (as nbgrader's autograde does); remove the copies."""
    seen: dict[str, int] = {}
    keep = []
    for cell in reversed(nb.cells):
        gid = nbgrader(cell).get("grade_id")
        if gid in ids:
            seen[gid] = seen.get(gid, 0) + 1
            if seen[gid] > 1:
                continue
        keep.append(cell)
    nb.cells = keep[::-1]
    return [f"cell {gid!r} appears {n} times; the last is graded, once, the copies removed"
            for gid, n in seen.items() if n > 1][::-1]


def _reference_copy(ref: NotebookNode) -> NotebookNode:
    """A cell as the reference holds it (a locked cell) or as it was handed out (an answer)."""
    cell = copy.deepcopy(ref)
    if not nbgrader(ref).get("locked"):
        cell.source = strip_solutions(source(ref), ref.cell_type, f"reference cell {nbgrader(ref).get('grade_id')!r}")
    if cell.cell_type == "code":
        cell.outputs, cell.execution_count = [], None
    return cell


def restore_locked_cells(nb: NotebookNode, reference: NotebookNode) -> tuple[NotebookNode, list[str]]:
    """The copy of a student's notebook that grading runs, and notes on what was changed.

    * Only the reference's graded cells count, by grade_id: another cell's grading metadata is
      removed (a note names it).
    * Each locked or graded grade_id of the reference appears once: the last copy is kept (as
      nbgrader keeps it), the others are removed.
    * Every locked cell is replaced by the reference's cell (source, type and metadata, so points
      come from the reference); the reference's check cells hold the hidden tests, which the
      student version lacks. An edited cell is noted. A graded answer that is not locked (a quiz
      answer, graded by hand) keeps the student's text and takes the reference's metadata.
    * A graded or locked cell missing from the submission is put back from the reference (an
      answer as handed out), after the cell that precedes it there (its exercise), so it scores
      zero rather than leaving the total.
    """
    nb = copy.deepcopy(nb)
    restored = {nbgrader(c)["grade_id"]: c for c in reference.cells
                if nbgrader(c).get("grade_id") and (nbgrader(c).get("locked") or _graded(c))}
    counted = {gid for gid, c in restored.items() if _graded(c)}
    notes = _drop_foreign_grading(nb, counted) + _drop_copies(nb, set(restored))
    hidden = 0
    for i, cell in enumerate(nb.cells):
        gid = nbgrader(cell).get("grade_id")
        ref = restored.get(gid)
        if ref is None:
            continue
        if not nbgrader(ref).get("locked"):   # a graded answer (a quiz) stays the student's; its points do not
            cell.metadata["nbgrader"] = copy.deepcopy(ref.metadata["nbgrader"])
            continue
        handed_out = strip_solutions(source(ref), ref.cell_type, f"reference cell {gid!r}")
        if source(cell) not in (handed_out, source(ref)) or cell.cell_type != ref.cell_type:
            notes.append(f"locked cell {gid!r} had been edited; restored from the reference")
        if has_hidden_region(source(ref)):
            hidden += 1
        nb.cells[i] = _reference_copy(ref)
    notes += _put_back_missing(nb, reference, restored)
    if hidden:
        notes.append(f"hidden tests of {hidden} check cell(s) run from the reference")
    return nb, notes


def _put_back_missing(nb: NotebookNode, reference: NotebookNode, restored: dict) -> list[str]:
    """Insert every graded or locked reference cell the submission lacks, after the submission's
    copy of the reference cell before it (the start of the notebook when there is none)."""
    notes = []
    where = {gid: i for i, gid in enumerate(nbgrader(c).get("grade_id") for c in nb.cells) if gid}
    cursor = -1
    for ref in reference.cells:
        gid = nbgrader(ref).get("grade_id")
        if not gid:
            continue
        if gid in where:
            cursor = where[gid]
            continue
        if gid not in restored:
            continue
        cursor += 1
        nb.cells.insert(cursor, _reference_copy(ref))
        where = {g: i for i, g in enumerate(nbgrader(c).get("grade_id") for c in nb.cells) if g}
        kind = "graded" if _graded(ref) else "locked"
        notes.append(f"{kind} cell {gid!r} is missing from the student's notebook; put back from the reference")
    return notes


def check_calls(text: str) -> int:
    """How many top-level statements of a check cell call a function of ``checks`` (each records
    one verdict); 0 when the cell does not parse."""
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return 0
    return sum(1 for node in tree.body if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)
               and isinstance(node.value.func, ast.Attribute) and isinstance(node.value.func.value, ast.Name)
               and node.value.func.value.id == "checks")


def arm_graded_cells(nb: NotebookNode) -> tuple[NotebookNode, list[GradedCell]]:
    """Prefix every graded code cell with :data:`GRADER_PRELUDE` and a fresh random token."""
    nb = copy.deepcopy(nb)
    armed = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or not _graded(cell):
            continue
        meta = nbgrader(cell)
        token = secrets.token_hex(16)
        armed.append(GradedCell(meta.get("grade_id", f"cell-{i}"), i, float(meta.get("points", 0) or 0), token,
                                check_calls(source(cell))))
        cell.source = GRADER_PRELUDE.format(token=token) + source(cell)
    return nb, armed


# ----------------------------------------------------------------------------- scoring
def stopped_at(nb: NotebookNode, run: NotebookRun, timeout: int | None = None) -> tuple[int | None, str]:
    """(index of the code cell where the run stopped, one line saying why), or (None, "").

    The cell is the first code cell without an outcome (with errors allowed, only a timeout or a
    dead kernel stops a run); ``timeout`` is the per-cell limit the run had, for the message."""
    if run.ok or not run.error:
        return None, ""
    ran = {c.index for c in run.cells}
    index = next((i for i, c in enumerate(nb.cells) if c.cell_type == "code" and i not in ran), None)
    if index is None:
        return None, ""
    what = f"cell {index} ({_first_line(nb.cells[index])})"
    if "CellTimeoutError" in run.error:
        limit = f" after {timeout} s (--timeout)" if timeout is not None else ""
        return index, f"{what} timed out{limit}"
    if "DeadKernelError" in run.error:
        return index, f"the kernel died in {what}"
    return index, f"the run stopped in {what}: {run.error.strip().splitlines()[-1]}"


def _armed_verdict(cell: GradedCell, outcome: CellOutcome) -> tuple[str, str, int]:
    """(status, detail, forged) of an armed graded cell: only verdicts with its token count."""
    signed = [v for v in outcome.verdicts if v.get("token") == cell.token]
    forged = len(outcome.verdicts) - len(signed)
    status, detail = check_verdict(CellOutcome(outcome.index, outcome.execution_count, outcome.seconds,
                                               error=outcome.error, verdicts=signed))
    if status == PASSED and len(signed) < cell.expected:
        status, detail = "error", (f"the check cell recorded {len(signed)} of its {cell.expected} verdicts "
                                   f"(something stopped the checks)")
    return status, detail, forged


def grade_run(nb: NotebookNode, run: NotebookRun, name: str, armed: list[GradedCell] | None = None,
              timeout: int | None = None) -> GradeReport:
    """Scores of an executed notebook: full points for a passed check cell, zero otherwise.

    With ``armed`` (what :func:`arm_graded_cells` returned) exactly those cells are scored, and
    only the verdicts carrying each one's token count; without it every graded code cell is."""
    outcomes = {c.index: c for c in run.cells}
    if armed is None:
        armed = [GradedCell(nbgrader(c).get("grade_id", f"cell-{i}"), i, float(nbgrader(c).get("points", 0) or 0),
                            "", 0) for i, c in enumerate(nb.cells) if c.cell_type == "code" and _graded(c)]
    stop, why = stopped_at(nb, run, timeout)
    scores, notes = [], []
    for cell in armed:
        outcome = outcomes.get(cell.index)
        if outcome is None and stop is not None and cell.index >= stop:
            status = TIMED_OUT if cell.index == stop and "timed out" in why else NOT_RUN
            detail = why if cell.index == stop else f"not run: {why}"
        elif outcome is None:
            status, detail = "missing", "the cell did not run"
        elif cell.token:
            status, detail, forged = _armed_verdict(cell, outcome)
            if forged:
                notes.append(f"{cell.grade_id}: {forged} check record(s) without the grader's token ignored "
                             f"(written by the submission's code)")
        else:
            status, detail = check_verdict(outcome)
        scores.append(ExerciseScore(cell.grade_id, cell.max_points if status == PASSED else 0.0,
                                    cell.max_points, status, detail))
    graded = {c.index for c in armed}
    errors = [f"cell {c.index}: {c.error}" for c in run.cells if c.error and c.index not in graded and not c.is_check]
    if why:
        errors.append(why + ("; the cells after it did not run" if stop is not None else ""))
    elif run.error and not run.ok and not errors:
        errors.append(run.error.strip().splitlines()[-1])
    manual = [(nbgrader(c).get("grade_id", "?"), float(nbgrader(c).get("points", 0) or 0)) for c in nb.cells
              if c.cell_type == "markdown" and _graded(c)]
    return GradeReport(name, scores, errors, notes=notes, manual=manual, wall_s=run.wall_s)


# ----------------------------------------------------------------------------- isolation
# The variables a graded kernel gets from the grader's environment (and any LC_*): what Python,
# torch and the course need to run and find their data. Nothing else passes: not
# MLLIB_SOLUTIONS_DIR, not the grader's tokens, keys or paths.
GRADING_ENV_PASSED = ("PATH", "HOME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "SYSTEMROOT", "PYTHONPATH",
                      "VIRTUAL_ENV", "MPLCONFIGDIR", "MLLIB_PROFILE", "MLLIB_DEVICE", "MLLIB_DATA", "MLLIB_CACHE",
                      "MLLIB_THREADS", "MLLIB_DATA_CUSTOM", "MLLIB_ALLOW_PARTIAL_DATA", "OMP_NUM_THREADS",
                      "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE",
                      "CUDA_VISIBLE_DEVICES")


def grading_env(environ: dict | None = None) -> dict:
    """The graded kernel's whole environment: the allow-listed variables of ``environ`` (default
    ours), ``MLLIB_PROFILE=quick MLLIB_DEVICE=cpu`` unless set, and lenient checks (the grade is
    read from the record file, so a failed check must not stop the notebook)."""
    environ = dict(os.environ if environ is None else environ)
    env = {k: v for k, v in environ.items() if k in GRADING_ENV_PASSED or k.startswith("LC_")}
    for key, value in DEFAULT_ENV.items():
        env.setdefault(key, value)
    env[STRICT_ENV] = "0"
    return env


@contextlib.contextmanager
def stderr_to(path: Path):
    """Send file descriptor 2 (the kernel inherits it: its log lines, the traceback of a kernel
    shut down in the middle of a cell) to ``path`` for the duration, so a grade prints only its
    table and one line per problem."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(path, "wb") as fh:
            os.dup2(fh.fileno(), 2)
            try:
                yield
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
    finally:
        os.close(saved)


def _last_line(path: Path) -> str:
    lines = [ln.strip() for ln in path.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
    return lines[-1] if lines else "empty"


def grade_notebook(path: str | Path, *, reference: str | Path | None = None,
                   timeout: int = DEFAULT_TIMEOUT, work_dir: str | Path | None = None) -> GradeReport:
    """Execute a (student's) notebook with strict checks off and score every graded cell.

    Every cell runs even after an error. ``reference`` is the instructor's notebook, or a folder
    holding it under the same name: only its graded cells count, by grade_id, each once; its
    locked cells are put back (restoring edited or deleted check cells and adding the hidden
    tests). Without it only the visible checks run (a note says so). The kernel runs in a new
    temporary folder (under ``work_dir``) holding only a copy of the submission, with the
    environment of :func:`grading_env`; before each graded cell it imports a fresh
    ``mllib.checks``. ``docs/instructors.md`` ("Grading guarantees and their limits") says what
    this protects against and what it cannot.
    """
    path = Path(path)
    nb = read_notebook(path)
    if reference is not None:
        reference = Path(reference)
        if reference.is_dir():
            reference = reference / path.name
        ref = read_notebook(reference)
        notes = check_reference(nb, ref, str(path), str(reference))
        nb, restored = restore_locked_cells(nb, ref)
        notes += restored
    else:
        notes = ["no --reference given: only the visible checks ran (the hidden tests live in the "
                 "instructor's notebook)"]
        nb = copy.deepcopy(nb)
        notes += _drop_copies(nb, {nbgrader(c).get("grade_id") for c in nb.cells if _graded(c)} - {None})
    nb, armed = arm_graded_cells(nb)
    with tempfile.TemporaryDirectory(prefix="mllib-grade-", dir=work_dir) as tmp, \
            tempfile.TemporaryDirectory(prefix="mllib-grade-log-") as logs:
        shutil.copyfile(path, Path(tmp) / path.name)
        log = Path(logs) / "kernel.log"
        try:
            with stderr_to(log):
                nb, run = run_notebook(nb, cwd=tmp, env=grading_env(), allow_errors=True, timeout=timeout)
        except FileNotFoundError as err:      # the kernel knows the record file's name, and can delete it
            return _unreadable_record(path.name, armed, notes, err)
        if not run.cells and run.error:       # the kernel never ran a cell: its log says why
            run.error += f" (kernel log: {_last_line(log)})"
    report = grade_run(nb, run, path.name, armed, timeout=timeout)
    report.notes = notes + report.notes
    return report


def _unreadable_record(name: str, armed: list[GradedCell], notes: list[str], err: OSError) -> GradeReport:
    """The report of a run whose record file vanished: every graded cell scores zero, and why."""
    why = f"the run stopped: the grader's record file {err.filename} was removed (by the submission's code?)"
    return GradeReport(name, [ExerciseScore(c.grade_id, 0.0, c.max_points, "error", why) for c in armed], [why],
                       notes=notes)


def format_grade_table(report: GradeReport) -> str:
    """A plain-text score table, one line per check cell, then the total."""
    width = max([len(s.grade_id) for s in report.scores] + [len(g) for g, _ in report.manual] + [8])
    lines = [f"{report.notebook}", f"{'exercise':<{width}}  {'points':>9}  {'status':<15}  detail"]
    for s in report.scores:
        lines.append(f"{s.grade_id:<{width}}  {s.points:>4g}/{s.max_points:<4g}  {s.status:<15}  {s.detail}")
    lines.append(f"{'total':<{width}}  {report.total:>4g}/{report.max_total:<4g}")
    lines += [f"{gid:<{width}}  {'?':>4}/{points:<4g}  {'graded by hand':<15}  a written answer (not in the total)"
              for gid, points in report.manual]
    lines += [f"note: {n}" for n in report.notes]
    lines += [f"error outside the checks: {e}" for e in report.cell_errors]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- verification
def judge_student(nb: NotebookNode, run: NotebookRun, name: str) -> list[str]:
    """Problems of an executed *student* notebook: each exercise's check must report
    "not implemented" (its own exercise only: one verdict), and no other cell may fail."""
    problems = []
    outcomes = {c.index: c for c in run.cells}
    if not run.ok:
        problems.append(f"{name}: the run stopped: {run.error}")
    check_cells = {ex.check_index for ex in find_exercises(nb) if ex.check_index is not None}
    for ex in find_exercises(nb):
        if ex.check_index is None:
            problems.append(f"{name}: exercise {ex.grade_id!r} has no check cell")
            continue
        cell = outcomes.get(ex.check_index)
        if cell is None:
            problems.append(f"{name}: the check of {ex.grade_id!r} did not run")
            continue
        if len(cell.verdicts) != 1:
            problems.append(f"{name}: the check of {ex.grade_id!r} printed {len(cell.verdicts)} verdicts, expected 1")
        status, detail = check_verdict(cell)
        if status != NOT_IMPLEMENTED:
            problems.append(f"{name}: the check of {ex.grade_id!r} reports {status!r} in the student version, "
                            f"expected 'not_implemented' ({detail})")
    for cell in run.cells:
        if cell.error and cell.index not in check_cells:
            problems.append(f"{name}: cell {cell.index} fails in the student version: {cell.error}")
        if cell.verdicts and cell.index not in check_cells:
            problems.append(f"{name}: cell {cell.index} runs a check but is not an exercise's check cell")
    return problems


def judge_solution(nb: NotebookNode, run: NotebookRun, name: str) -> list[str]:
    """Problems of an executed *solution* notebook: every cell runs and every check passes."""
    problems = [f"{name}: cell {c.index} fails: {c.error}" for c in run.errors]
    if not run.ok and not problems:
        problems.append(f"{name}: the run stopped: {run.error}")
    outcomes = {c.index: c for c in run.cells}
    for ex in find_exercises(nb):
        cell = outcomes.get(ex.check_index) if ex.check_index is not None else None
        if cell is None:
            problems.append(f"{name}: the check of {ex.grade_id!r} did not run")
            continue
        status, detail = check_verdict(cell)
        if status != PASSED:
            problems.append(f"{name}: the check of {ex.grade_id!r} fails on the solution: {detail}")
    return problems


def judge_release(nb: NotebookNode, name: str, cfg=None) -> list[str]:
    """Problems of a *student* notebook's text (before it runs): it must hold no hidden tests, no
    solution or quiz-answer region, no graded reference, and (with ``cfg``) its badges must open
    the practice edition."""
    from .colab import BADGE_TAG, badge_markdown
    from .exercises import BEGIN_HIDDEN, BEGIN_SOLUTION, MARKER_WORDS
    from .nbio import tags

    problems = []
    for i, cell in enumerate(nb.cells):
        text = source(cell)
        for marker in (BEGIN_HIDDEN, BEGIN_SOLUTION):
            if MARKER_WORDS[marker] in text:
                problems.append(f"{name}: cell {i} still holds {marker!r} (hidden tests, solution or quiz answer)")
        if cell.cell_type == "code" and "_reference(" in text:
            problems.append(f"{name}: cell {i} still names a graded reference")
        if cfg is not None and BADGE_TAG in tags(cell) and text != badge_markdown(cfg, name, student=True):
            problems.append(f"{name}: cell {i}: the badges do not open the practice edition "
                            f"({cfg.practice_dir}/ on {cfg.ref!r})")
    return problems


@dataclass
class VerifyReport:
    ok: bool
    problems: list[str]
    runs: dict[str, dict]          # "<notebook> (student|solution)" -> run summary

    def to_dict(self) -> dict:
        return asdict(self)


def verify_student_build(notebooks_dir: str | Path = "notebooks", *, solutions: bool = True,
                         work_dir: str | Path | None = None, timeout: int = DEFAULT_TIMEOUT,
                         echo=None, only: tuple[str, ...] | None = None) -> VerifyReport:
    """Build the student release into a temporary folder, run it, and check it behaves.

    For each notebook: the exercise convention holds (:func:`lint_exercises`); the student
    version holds no hidden test, solution, quiz answer or reference and its badges open the
    student release (:func:`judge_release`); in the student version every check cell reports "not implemented" for its own exercise and every other cell
    runs; with ``solutions=True`` the solution notebook also runs with every check passing
    (skip it when nbval already runs the solutions with ``MLLIB_CHECKS_STRICT=1``).
    Checks run with ``MLLIB_CHECKS_STRICT`` unset. ``only``: the notebooks whose names start with one of
    these prefixes (``("01", "02")``), so that two processes can share the release; default all.
    """
    notebooks_dir = Path(notebooks_dir)
    problems: list[str] = []
    runs: dict[str, dict] = {}
    env = kernel_env(strict=False)
    from .config import config_path, load_config

    cfg = load_config(config_path(notebooks_dir.resolve().parent))
    with tempfile.TemporaryDirectory(prefix="mllib-student-", dir=work_dir) as tmp:
        build_student(notebooks_dir, tmp, cfg)
        for path in list_notebooks(notebooks_dir):
            if only is not None and not path.name.startswith(tuple(only)):
                continue
            solution_nb = read_notebook(path)
            problems += lint_exercises(solution_nb, path.name)
            student_path = Path(tmp) / path.name
            problems += judge_release(read_notebook(student_path), path.name, cfg)
            if echo:
                echo(f"running the student version of {path.name} ...")
            nb, run = run_notebook(student_path, env=env, allow_errors=True, timeout=timeout)
            problems += judge_student(nb, run, f"{path.name} (student)")
            runs[f"{path.name} (student)"] = run.summary()
            if solutions:
                if echo:
                    echo(f"running the solution version of {path.name} ...")
                nb, run = run_notebook(path, env=env, allow_errors=True, timeout=timeout)
                problems += judge_solution(nb, run, f"{path.name} (solution)")
                runs[f"{path.name} (solution)"] = run.summary()
    return VerifyReport(ok=not problems, problems=problems, runs=runs)
