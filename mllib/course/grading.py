"""Grading a student notebook, and verifying that the student release behaves as it should."""
from __future__ import annotations

import copy
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from nbformat import NotebookNode

from ..checks import NOT_IMPLEMENTED, PASSED
from .exercises import find_exercises, has_hidden_region, lint_exercises, strip_solutions
from .execute import DEFAULT_TIMEOUT, CellOutcome, NotebookRun, kernel_env, run_notebook
from .nbio import list_notebooks, nbgrader, read_notebook, source
from .student import build_student


@dataclass
class ExerciseScore:
    grade_id: str            # the check cell's grade_id
    points: float
    max_points: float
    status: str              # passed | failed | not_implemented | error | missing
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


def restore_locked_cells(nb: NotebookNode, reference: NotebookNode) -> tuple[NotebookNode, list[str]]:
    """Put the instructor's source back into every locked nbgrader cell of a student's notebook.

    The reference's check cells hold the hidden tests, which the student version lacks: they are
    always restored, so grading runs them. A locked cell whose source differs from the student
    version of the reference cell was edited by the student; notes say so, and which locked cells
    are missing or duplicated.
    """
    nb = copy.deepcopy(nb)
    notes = []
    hidden = 0
    by_id: dict[str, list[int]] = {}
    for i, cell in enumerate(nb.cells):
        gid = nbgrader(cell).get("grade_id")
        if gid:
            by_id.setdefault(gid, []).append(i)
    for ref in reference.cells:
        meta = nbgrader(ref)
        gid = meta.get("grade_id")
        if not gid or not meta.get("locked"):
            continue
        where = by_id.get(gid, [])
        if not where:
            notes.append(f"locked cell {gid!r} is missing from the student's notebook")
            continue
        if len(where) > 1:
            notes.append(f"locked cell {gid!r} appears {len(where)} times; grading the first")
        cell = nb.cells[where[0]]
        handed_out = strip_solutions(source(ref), ref.cell_type, f"reference cell {gid!r}")
        if source(cell) not in (handed_out, source(ref)):
            notes.append(f"locked cell {gid!r} had been edited; restored from the reference")
        if has_hidden_region(source(ref)):
            hidden += 1
        cell.source = source(ref)
    if hidden:
        notes.append(f"hidden tests of {hidden} check cell(s) run from the reference")
    return nb, notes


def grade_run(nb: NotebookNode, run: NotebookRun, name: str) -> GradeReport:
    """Scores of an executed notebook: full points for a passed check cell, zero otherwise."""
    outcomes = {c.index: c for c in run.cells}
    scores = []
    for i, cell in enumerate(nb.cells):
        meta = nbgrader(cell)
        if cell.cell_type != "code" or not meta.get("grade"):
            continue
        points = float(meta.get("points", 0) or 0)
        outcome = outcomes.get(i)
        status, detail = check_verdict(outcome) if outcome else ("missing", "the cell did not run")
        scores.append(ExerciseScore(meta.get("grade_id", f"cell-{i}"), points if status == PASSED else 0.0,
                                    points, status, detail))
    errors = [f"cell {c.index}: {c.error}" for c in run.cells if c.error and not c.is_check]
    if run.error and not run.ok and not errors:
        errors.append(run.error)
    manual = [(nbgrader(c).get("grade_id", "?"), float(nbgrader(c).get("points", 0) or 0)) for c in nb.cells
              if c.cell_type == "markdown" and nbgrader(c).get("grade")]
    return GradeReport(name, scores, errors, manual=manual, wall_s=run.wall_s)


def grade_notebook(path: str | Path, *, reference: str | Path | None = None,
                   timeout: int = DEFAULT_TIMEOUT) -> GradeReport:
    """Execute a (student's) notebook with strict checks off and score every check cell.

    Every cell runs even after an error. ``reference`` is the instructor's notebook, or a folder
    holding it under the same name: its locked cells are put back first, which restores edited
    check cells and adds the hidden tests. Without it only the visible checks run (a note says so).
    """
    path = Path(path)
    nb = read_notebook(path)
    notes: list[str] = []
    if reference is not None:
        reference = Path(reference)
        if reference.is_dir():
            reference = reference / path.name
        nb, notes = restore_locked_cells(nb, read_notebook(reference))
    else:
        notes.append("no --reference given: only the visible checks ran (the hidden tests live in the "
                     "instructor's notebook)")
    nb, run = run_notebook(nb, cwd=path.parent, env=kernel_env(strict=False), allow_errors=True, timeout=timeout)
    report = grade_run(nb, run, path.name)
    report.notes = notes
    return report


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
    the student release."""
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
            problems.append(f"{name}: cell {i}: the badges do not open the student release "
                            f"({cfg.student_ref!r})")
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
                         echo=None) -> VerifyReport:
    """Build the student release into a temporary folder, run it, and check it behaves.

    For each notebook: the exercise convention holds (:func:`lint_exercises`); the student
    version holds no hidden test, solution, quiz answer or reference and its badges open the
    student release (:func:`judge_release`); in the student version every check cell reports "not implemented" for its own exercise and every other cell
    runs; with ``solutions=True`` the solution notebook also runs with every check passing
    (skip it when nbval already runs the solutions with ``MLLIB_CHECKS_STRICT=1``).
    Checks run with ``MLLIB_CHECKS_STRICT`` unset.
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
