"""Tiered hints: the idea first, then the line of reasoning, code only when the instructor allows it.

Every exercise registers a :class:`Hints` pair. A failed check prints the first tier (the
concept: what is wrong, which idea to revisit) and ``More help: checks.hint('<exercise>')``.

* ``checks.hint(name)`` prints the second tier (the line of reasoning, still without code);
  asked again, it says that the next step is the code and how to get it.
* ``checks.show_solution(name)`` prints the instructor's solution cell, and only when the
  instructor-controlled switch ``MLLIB_SOLUTIONS_DIR`` names a folder of *instructor* notebooks
  (self-study: ``notebooks/`` of the course repository). Without it nothing is shown. The
  installed package holds no solution code at all: the solutions live in the instructor
  notebooks only.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from .i18n import exercise_text, message, register_texts
from .marks import plain_marks_wanted, with_marks

SOLUTIONS_ENV = "MLLIB_SOLUTIONS_DIR"


@dataclass(frozen=True)
class Hints:
    """The two written tiers of an exercise's help (neither holds code)."""

    concept: str     # tier 1: what is wrong, which idea to revisit
    reasoning: str   # tier 2: the line of reasoning that leads to the answer


# What a failed comparison says (mllib.checks.core.compare_values) -> the property of the result that failed.
_FALLBACKS = tuple((pattern, message(f"fallback.{key}", english)) for key, pattern, english in (
    ("shape", re.compile(r"has shape \(.*\), expected"),
     "the result has the wrong shape: follow the shapes the exercise's docstring states (which dimension each "
     "step keeps, which one it reduces)"),
    ("keys", re.compile(r"has keys \[|should be a dict"),
     "the result has the wrong keys: return a dict with one entry for every key the docstring names, no more"),
    ("parts", re.compile(r"has \d+ items, expected|should be a (list|tuple) of"),
     "the result has the wrong number of parts: return exactly the parts the docstring lists"),
    ("dtype", re.compile(r"dtype"),
     "the result has the wrong dtype: labels and indices are torch.long, floating results keep the inputs' dtype"),
    ("type", re.compile(r"should be a tensor|should be a single number"),
     "the result has the wrong type: return what the docstring says (a tensor, or a single number)"),
    ("values", re.compile(r"differs at \d+ of|\bis \S+, expected \S+$"),
     "the result has the right shape and type but wrong values; the idea behind them: {concept}"),
))
HINT_LINES = message("hints.both", "💡 {exercise}, hint 1 (the idea): {concept}\n"
                                   "💡 {exercise}, hint 2 (the line of reasoning): {reasoning}")
HINT_AGAIN = message("hints.again", "💡 {exercise}, hint 2 (the line of reasoning): {reasoning}\n"
                                    "   The next step is the code itself. {text}")
CODE_ALLOWED = message("hints.code_allowed", "Your course allows it: checks.show_solution({name}) prints the solution.")
CODE_OFF = message("hints.code_off", "Try once more from the two hints, or ask your instructor; solutions are "
                                     "switched off in this copy of the course.")
SOLUTIONS_OFF = message("hints.solutions_off", "🔒 {exercise}: solutions are switched off in this copy of the course "
                                               "(your instructor can switch them on with {variable}). "
                                               "checks.hint({name}) gives the next hint.")
NO_SOLUTION = message("hints.no_solution", "🔒 {exercise}: no instructor notebook with this exercise's solution in "
                                           "{folder}")


def fallback_hint(problem: str, concept: str) -> str:
    """The hint for a failed comparison that matches no known mistake: which property of the result
    failed (shape, keys, number of parts, dtype, type, values), with the concept only for values;
    ``concept`` alone when ``problem`` is none of these (a check's own message already names it)."""
    for pattern, text in _FALLBACKS:
        if pattern.search(problem):
            return text(concept=concept)
    return concept


_HINTS: dict[str, Hints] = {}
_ASKED: dict[str, int] = {}


def register_hints(exercise: str, hints: Hints) -> Hints:
    """Make ``hints`` the help of ``exercise`` (an exercise's check module calls this once)."""
    if not hints.concept or not hints.reasoning:
        raise ValueError(f"hints of {exercise!r} need both tiers (concept and reasoning)")
    _HINTS[exercise] = hints
    register_texts(exercise, {"concept": hints.concept, "reasoning": hints.reasoning})
    return hints


def hints_of(exercise: str) -> Hints:
    if exercise not in _HINTS:
        raise ValueError(f"no exercise called {exercise!r}; known: {sorted(_HINTS)}")
    return _HINTS[exercise]


def hint(exercise: str) -> str:
    """Print (and return) the next tier of help for ``exercise``: the line of reasoning, then how
    to see the code."""
    hints = hints_of(exercise)
    _ASKED[exercise] = _ASKED.get(exercise, 0) + 1
    concept = exercise_text(exercise, "concept", hints.concept)
    reasoning = exercise_text(exercise, "reasoning", hints.reasoning)
    if _ASKED[exercise] == 1:
        text = HINT_LINES.localized(exercise=exercise, concept=concept, reasoning=reasoning)
    else:
        text = HINT_AGAIN.localized(exercise=exercise, reasoning=reasoning, text=_code_tier_text(exercise))
    return _say(text)


def _say(text: str) -> str:
    """Print ``text`` with its marks in plain text where the verdicts use them (``MLLIB_PLAIN_MARKS``,
    or an output that cannot encode emoji: :func:`mllib.checks.marks.plain_marks_wanted`); return it."""
    text = with_marks(text, plain_marks_wanted())
    print(text)
    return text


def _code_tier_text(exercise: str) -> str:
    if solutions_dir() is not None:
        return CODE_ALLOWED.localized(name=repr(exercise))
    return CODE_OFF.localized()


def solutions_dir() -> Path | None:
    """The instructor notebooks' folder named by ``MLLIB_SOLUTIONS_DIR``, or None (switched off)."""
    value = os.environ.get(SOLUTIONS_ENV, "").strip()
    return Path(value) if value else None


def find_solution(exercise: str, folder: str | Path) -> str | None:
    """The source of the solution cell whose check cell (the next code cell) calls
    ``checks.check_<exercise>``, in the notebooks of ``folder`` (read as JSON, so the checks do
    not depend on the notebook tooling of ``mllib.course``)."""
    call = re.compile(rf"\bchecks\.check_{re.escape(exercise)}\(")
    for path in sorted(Path(folder).glob("*.ipynb")):
        try:
            cells = json.loads(path.read_text(encoding="utf-8")).get("cells", [])
        except (OSError, ValueError):
            continue
        code = ["".join(c["source"]) if isinstance(c.get("source"), list) else c.get("source", "")
                for c in cells if c.get("cell_type") == "code"]
        for text, following in zip(code, code[1:]):
            if "### BEGIN SOLUTION" in text and call.search(following):
                return text
    return None


def show_solution(exercise: str) -> str | None:
    """Print the instructor's solution of ``exercise`` when the instructor has switched solutions on.

    The switch is ``MLLIB_SOLUTIONS_DIR``: a folder of instructor notebooks (with their solution
    regions). Returns the printed source, or None when solutions are off or not found.
    """
    hints_of(exercise)
    folder = solutions_dir()
    if folder is None:
        _say(SOLUTIONS_OFF.localized(exercise=exercise, variable=SOLUTIONS_ENV, name=repr(exercise)))
        return None
    text = find_solution(exercise, folder) if folder.is_dir() else None
    if text is None or "### BEGIN SOLUTION" not in text:
        _say(NO_SOLUTION.localized(exercise=exercise, folder=folder))
        return None
    print(text)
    return text


__all__ = ["Hints", "SOLUTIONS_ENV", "fallback_hint", "hint", "hints_of", "register_hints", "show_solution", "solutions_dir"]
