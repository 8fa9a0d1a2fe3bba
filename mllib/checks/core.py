"""Exercise checks: the learner's function against a reference, with a clear verdict.

Every exercise of the course ends with a check cell such as::

    checks.check_confidence_interval(confidence_interval)

which calls the learner's function on a few deterministic random inputs, compares the
results with fixed expected values (or, in the hidden tests, the instructor's reference) and
prints one verdict block:

* ``✅ <exercise>: passed N/N cases``
* ``❌ <exercise>: <what failed>`` followed by ``   Hint: ...``
* ``⏳ <exercise>: not implemented yet — write your code where it says YOUR CODE HERE``
  (the learner's function still raises ``NotImplementedError``)

Any other exception in the learner's code is reported with its type, message and line,
never as a bare traceback. The check returns a :class:`CheckResult` (truthy on pass).

Environment variables:

* strict mode: a failed or unimplemented check also raises ``AssertionError`` with the same
  message, so nbgrader's autograder, nbval and pytest count it as a failed test. It is on
  whenever a grader runs the notebook, and off only in an interactive session
  (:func:`strict_reason` says why):

  1. ``NBGRADER_EXECUTION`` set (nbgrader sets it while it autogrades and validates): strict,
     whatever else is set, so nbgrader never gives points to an unanswered exercise;
  2. ``MLLIB_CHECKS_STRICT=1`` (or true/yes/on): strict; ``=0`` (or false/no/off): lenient
     (``course grade`` runs so, since it scores from the record file, and so do tests of what a
     learner sees); any other non-empty value: strict, the safe side;
  3. ``MLLIB_GRADER`` set (a grader or CI saying so), or ``PYTEST_CURRENT_TEST`` (pytest, nbval):
     strict;
  4. otherwise lenient: the learner's notebook runs to the end.
* ``MLLIB_CHECKS_RECORD=<file>``: every check appends one JSON line with its result
  (``python -m mllib course grade`` uses this to build its score table).
* ``MLLIB_PLAIN_MARKS=1``: plain-text marks ``[PASS]``, ``[FAIL]``, ``[TODO]`` (and ``[HINT]``,
  ``[LOCKED]`` for ``checks.hint`` and ``checks.show_solution``) instead of the emoji (for a font
  without them); chosen automatically when the output cannot encode them (``mllib/checks/marks.py``).

This module is the framework: verdicts, inputs, comparison and :func:`run_check`. The checks
themselves live in one module per notebook, ``nbNN_<notebook>.py`` (see the package docstring).

The course's exercises do not call :func:`run_check` with a reference directly: each is an
:class:`~mllib.checks.exercise.ExerciseSpec` whose visible check compares with stored values and
whose hidden tests take the instructor's reference (``mllib/checks/exercise.py`` explains the
pattern; the package ships no reference solution). :func:`run_check` with a ``reference`` stays
available for one's own quick checks::

    run_check("square", my_square, lambda x: x * x, [Case((i,)) for i in range(4)], hint="multiply")

Inputs are generated from fixed seeds (``make_cases``), so a check gives the same verdict
every time; each check runs in well under a second.
"""
from __future__ import annotations

import copy
import json
import math
import os
import traceback
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable

import numpy as np
import torch

from .hints import Hints, fallback_hint
from .i18n import message, translate
from .library_calls import LIBRARY_CALL_HINT, CallGuard, library_call_message
from .marks import PLAIN_MARK, PLAIN_MARKS_ENV, plain_marks_wanted, with_marks  # noqa: F401 (also core's names)
from .properties import Properties, PropertyViolation, properties_of, type_violation, watch

STRICT_ENV = "MLLIB_CHECKS_STRICT"
RECORD_ENV = "MLLIB_CHECKS_RECORD"
GRADER_ENV = "MLLIB_GRADER"                 # any non-empty value: a grader runs this notebook
NBGRADER_ENV = "NBGRADER_EXECUTION"         # set by nbgrader while it autogrades or validates
PYTEST_ENV = "PYTEST_CURRENT_TEST"          # set by pytest (and so nbval) while a test runs
_ON, _OFF = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}

PASSED, FAILED, NOT_IMPLEMENTED, ERROR = "passed", "failed", "not_implemented", "error"
STATUS_MARK = {PASSED: "✅", FAILED: "❌", NOT_IMPLEMENTED: "⏳", ERROR: "❌"}
NOT_IMPLEMENTED_TEXT = "not implemented yet — write your code where it says YOUR CODE HERE"
# what a verdict says (English here; other languages: mllib/checks/i18n/, MLLIB_LANG)
PASSED_LINE = message("core.passed", "✅ {exercise}: passed {passed}/{total} cases")
TODO_LINE = message("core.not_implemented", "⏳ {exercise}: " + NOT_IMPLEMENTED_TEXT)
FAILED_LINES = message("core.failed", "❌ {exercise}: {problem} on {where}\n   Hint: {hint}{more}")
RAISED_LINES = message("core.raised", "❌ {exercise}: your function raised {error}{line} on {where}\n"
                                      "   Hint: {hint}{more}")
NOT_CALLABLE = message("core.not_callable", "❌ {exercise}: expected a function, got {type}\n"
                                            "   Hint: pass the function itself, without calling it")
WHERE = message("core.where", "case {index} of {total} (input: {input})")
AT_LINE = message("core.at_line", " (line {lineno})")
AT_LINE_CODE = message("core.at_line_code", " (line {lineno}: `{code}`)")
MORE_HELP = message("core.more_help", "\n   More help: checks.hint({name})")
NOT_COMPARED = message("core.not_compared", "the result could not be compared ({error})")
_COMPARE = {key: message(f"compare.{key}", english) for key, english in {
    "not_dict": "{path} should be a dict, got {type}",
    "keys": "{path} has keys {keys}; missing {missing}, unexpected {extra}",
    "not_sequence": "{path} should be a {kind} of {n} items, got {type}",
    "items": "{path} has {got} items, expected {want}",
    "not_tensor": "{path} should be a tensor of shape {shape}, got {type}",
    "shape": "{path} has shape {got}, expected {want}",
    "integer_dtype": "{path} has dtype {got}, expected an integer dtype ({want})",
    "differs_integer": "{path} differs at {count} of {total} positions; first at flat index {index}: got {got}, "
                       "expected {want}",
    "differs": "{path} differs at {count} of {total} positions; largest error at flat index {index}: got {got}, "
               "expected {want}",
    "value": "{path} is {got}, expected {want}",
    "not_number": "{path} should be a single number, got {type}",
    "not_number_shape": "{path} should be a single number, got {type} of shape {shape}",
}.items()}
_CHECKS_DIR = os.path.dirname(__file__)  # frames in here are never the learner's


@dataclass
class Case:
    """One call of the learner's function: ``fn(*args, **kwargs)``; ``label`` describes it.

    ``hint``: for a case that departs from the usual special case (classes of different sizes, a
    head that is not every "head." name), the hint shown when the learner fails it and no known
    mistake explains why: what is less special here, which the answer must handle too.
    """

    args: tuple
    kwargs: dict = field(default_factory=dict)
    label: str = ""
    hint: str = ""


@dataclass
class CheckResult:
    """The verdict of one check. ``bool(result)`` is True only when every case passed."""

    exercise: str
    status: str          # "passed" | "failed" | "not_implemented" | "error"
    passed: int          # cases passed
    total: int           # cases tried
    message: str         # the verdict block that was printed

    def __bool__(self) -> bool:
        return self.status == PASSED

    def to_dict(self) -> dict:
        return asdict(self)

    def _ipython_display_(self) -> None:
        """The verdict is already printed: show nothing more when a cell ends with a check."""


def strict_reason() -> str | None:
    """Why a failed check raises (the variable that says a grader runs), or None when it only prints.

    The order of precedence is the module docstring's: ``NBGRADER_EXECUTION``, then an explicit
    ``MLLIB_CHECKS_STRICT``, then ``MLLIB_GRADER`` or ``PYTEST_CURRENT_TEST``; nothing set means
    an interactive session, lenient.
    """
    if os.environ.get(NBGRADER_ENV, "").strip():
        return f"{NBGRADER_ENV}={os.environ[NBGRADER_ENV].strip()} (nbgrader is grading)"
    explicit = os.environ.get(STRICT_ENV, "").strip().lower()
    if explicit in _OFF:
        return None
    if explicit:
        suffix = "" if explicit in _ON else " (not one of 0/1/true/false: strict, the safe side)"
        return f"{STRICT_ENV}={explicit}{suffix}"
    for name in (GRADER_ENV, PYTEST_ENV):
        if os.environ.get(name, "").strip():
            return f"{name} is set (a grader is running)"
    return None


def strict_mode() -> bool:
    """True when a failed check must raise: a grader runs the notebook (see :func:`strict_reason`)."""
    return strict_reason() is not None


# ----------------------------------------------------------------------------- inputs
def make_cases(seed: int, count: int, factory: Callable[[torch.Generator, int], Case | tuple]) -> list[Case]:
    """``count`` cases from ``factory(gen, i)``, with ``gen`` a ``torch.Generator`` seeded by ``seed``.

    ``factory`` returns a :class:`Case` or a plain tuple of positional arguments.
    """
    gen = torch.Generator().manual_seed(seed)
    return [_as_case(factory(gen, i)) for i in range(count)]


def random_tensor(gen: torch.Generator, *shape: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Standard-normal tensor of ``shape`` drawn from ``gen`` (float64 unless ``dtype`` says otherwise)."""
    return torch.randn(*shape, generator=gen, dtype=torch.float64).to(dtype)


def _as_case(case: Case | tuple) -> Case:
    if isinstance(case, Case):
        return case
    if isinstance(case, tuple):
        return Case(case)
    raise TypeError(f"a check case must be a Case or a tuple of arguments, got {type(case).__name__}")


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        shape = "x".join(str(s) for s in value.shape) or "scalar"
        return f"tensor[{shape}] {str(value.dtype).replace('torch.', '')}"
    if isinstance(value, np.ndarray):
        return f"array[{'x'.join(str(s) for s in value.shape) or 'scalar'}] {value.dtype}"
    if isinstance(value, dict):
        return "dict(" + ", ".join(f"{k}: {_describe(v)}" for k, v in value.items()) + ")"
    if isinstance(value, (list, tuple)) and len(value) > 4:
        return f"{type(value).__name__} of {len(value)}"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def describe_case(case: Case) -> str:
    """Short human description of a case's inputs, e.g. ``values=tensor[30] float64``."""
    if case.label:
        return case.label
    parts = [_describe(a) for a in case.args] + [f"{k}={_describe(v)}" for k, v in case.kwargs.items()]
    return ", ".join(parts)


# ----------------------------------------------------------------------------- comparison
def _fmt(x: float) -> str:
    return f"{x:.6g}"


def _to_tensor(value: Any) -> torch.Tensor | None:
    if isinstance(value, torch.Tensor):  # a plain tensor: a subclass's __torch_function__ could say "equal" to all
        return torch.Tensor.as_subclass(value, torch.Tensor).detach().cpu()
    if isinstance(value, np.ndarray) or isinstance(value, (int, float, bool, np.generic)):
        return torch.as_tensor(np.asarray(value))
    if isinstance(value, (list, tuple)):
        try:
            return torch.as_tensor(np.asarray(value))
        except (TypeError, ValueError):
            return None
    return None


def compare_values(got: Any, want: Any, rtol: float = 1e-6, atol: float = 1e-8,
                   path: str = "result") -> str | None:
    """``None`` when ``got`` matches ``want``, else one sentence saying what differs.

    Tensors and arrays: same shape; integer (and bool) results must have an integer dtype and
    equal values; floating results must agree within ``|got - want| <= atol + rtol * |want|``.
    Numbers: ``got`` may be a Python number, a NumPy scalar or a one-element tensor.
    Tuples, lists and dicts are compared item by item.
    """
    if isinstance(want, dict):
        if not isinstance(got, dict):
            return _COMPARE["not_dict"](path=path, type=type(got).__name__)
        if set(got) != set(want):
            missing, extra = sorted(set(want) - set(got), key=str), sorted(set(got) - set(want), key=str)
            return _COMPARE["keys"](path=path, keys=sorted(got, key=str), missing=missing, extra=extra)
        for key in want:
            problem = compare_values(got[key], want[key], rtol, atol, f"{path}[{key!r}]")
            if problem:
                return problem
        return None
    if isinstance(want, (tuple, list)):
        if not isinstance(got, (tuple, list)):
            return _COMPARE["not_sequence"](path=path, kind=type(want).__name__, n=len(want), type=type(got).__name__)
        if len(got) != len(want):
            return _COMPARE["items"](path=path, got=len(got), want=len(want))
        for i, (g, w) in enumerate(zip(got, want)):
            problem = compare_values(g, w, rtol, atol, f"{path}[{i}]")
            if problem:
                return problem
        return None
    if isinstance(want, (torch.Tensor, np.ndarray)):
        want_t = _to_tensor(want)
        got_t = _to_tensor(got)
        if got_t is None:
            return _COMPARE["not_tensor"](path=path, shape=tuple(want_t.shape), type=type(got).__name__)
        if tuple(got_t.shape) != tuple(want_t.shape):
            return _COMPARE["shape"](path=path, got=tuple(got_t.shape), want=tuple(want_t.shape))
        if not want_t.is_floating_point():
            if got_t.is_floating_point() or got_t.is_complex():
                return _COMPARE["integer_dtype"](path=path, got=got_t.dtype, want=want_t.dtype)
            diff = (got_t.long() != want_t.long()).flatten().nonzero()
            if len(diff):
                i = int(diff[0])
                return _COMPARE["differs_integer"](path=path, count=len(diff), total=want_t.numel(), index=i,
                                                   got=got_t.flatten()[i].item(), want=want_t.flatten()[i].item())
            return None
        g, w = got_t.double(), want_t.double()
        if w.numel() == 0:
            return None
        bad = ~torch.isclose(g, w, rtol=rtol, atol=atol, equal_nan=True)
        if bad.any():
            err = (g - w).abs().nan_to_num(nan=math.inf).flatten()
            i = int(err.argmax())
            return _COMPARE["differs"](path=path, count=int(bad.sum()), total=w.numel(), index=i,
                                       got=_fmt(g.flatten()[i].item()), want=_fmt(w.flatten()[i].item()))
        return None
    if isinstance(want, (bool, np.bool_)) or want is None or isinstance(want, str):
        return None if got == want else _COMPARE["value"](path=path, got=repr(got), want=repr(want))
    if isinstance(want, (int, float, np.number)):
        t = _to_tensor(got)
        if t is None or t.numel() != 1:
            if t is None:
                return _COMPARE["not_number"](path=path, type=type(got).__name__)
            return _COMPARE["not_number_shape"](path=path, type=type(got).__name__, shape=tuple(t.shape))
        g, w = float(t.item()), float(want)
        if math.isnan(w) and math.isnan(g):
            return None
        if not abs(g - w) <= atol + rtol * abs(w):
            return _COMPARE["value"](path=path, got=_fmt(g), want=_fmt(w))
        return None
    return None if got == want else _COMPARE["value"](path=path, got=repr(got), want=repr(want))


# ----------------------------------------------------------------------------- running
def _where(err: BaseException, learner_fn: Callable) -> str:
    """`` (line N: `code`)``: the deepest line of the learner's own code that the error passed through.

    Frames in the checks package itself (this module, the notebooks' check modules) never count.
    """
    code = getattr(learner_fn, "__code__", None)
    frames = [f for f in traceback.extract_tb(err.__traceback__)
              if os.path.dirname(f.filename) != _CHECKS_DIR]
    if code is not None:
        frames = [f for f in frames if f.filename == code.co_filename]
    if not frames:
        return ""
    last = frames[-1]
    if last.line:
        return AT_LINE_CODE(lineno=last.lineno, code=last.line.strip())
    return AT_LINE(lineno=last.lineno)


def _record(result: CheckResult) -> None:
    path = os.environ.get(RECORD_ENV)
    if not path:
        return
    row = result.to_dict()
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def _finish(result: CheckResult) -> CheckResult:
    result.message = with_marks(str(translate(result.message)), plain_marks_wanted())
    print(result.message, flush=True)
    _record(result)
    if not result and strict_mode():
        raise AssertionError(result.message)
    return result


def run_check(
    exercise: str,
    learner_fn: Callable,
    reference_fn: Callable | None,
    cases: Iterable[Case | tuple],
    *,
    hint: str | Hints,
    rtol: float = 1e-6,
    atol: float = 1e-8,
    compare: Callable[[Any, Any], str | None] | None = None,
    diagnose: Callable[[Case, Any, Any], str | None] | None = None,
    expected: list | None = None,
    wrap: Callable[[Callable], Callable] | None = None,
    forbidden: Iterable[str] = (),
    properties: Properties | None = None,
) -> CheckResult:
    """Run ``learner_fn`` on every case, compare with the expected result, print the verdict, return it.

    Args:
        exercise: the name shown in the verdict (e.g. ``"confidence_interval"``).
        learner_fn: the learner's function.
        reference_fn: the reference implementation, called with the same arguments (the hidden
            tests pass the instructor's reference); ``None`` when ``expected`` gives every result.
        cases: :class:`Case` objects or tuples of positional arguments (see :func:`make_cases`).
            Each function gets its own deep copy, so a learner who modifies inputs in place
            cannot change the reference's answer.
        hint: shown under a failure: a :class:`~mllib.checks.hints.Hints` (its conceptual tier,
            plus a pointer to ``checks.hint(exercise)`` for the next one) or a plain sentence.
        rtol, atol: tolerances of the default comparison (:func:`compare_values`).
        compare: ``compare(got, want) -> None | "what differs"`` replacing the default.
        diagnose: ``diagnose(case, got, want) -> None | "a more specific hint"`` for known mistakes.
        expected: fixed expected results, one per case (the visible checks: no reference runs).
        wrap: ``wrap(fn) -> fn`` applied to the learner and the reference alike, e.g. to measure the
            gradient *through* the function's result.
        forbidden: dotted names of library functions the learner must not call (the exercise asks
            for them to be written); a call fails the case (:mod:`mllib.checks.library_calls`).
        properties: what every call of the learner's function must respect (inputs left as they
            were, generators used, result types, a differentiable loss; :mod:`mllib.checks.properties`);
            default: the properties declared for ``exercise``. A broken property fails the case with
            a hint that names it. They are never applied to ``reference_fn``.

    When a result differs and ``diagnose`` names no known mistake, the hint says which property of
    the result failed (its shape, keys, type or values; :func:`mllib.checks.hints.fallback_hint`).
    Stops at the first failing case. Returns a :class:`CheckResult`.
    """
    cases = [_as_case(c) for c in cases]
    total = len(cases)
    if total == 0:
        raise ValueError("cases must hold at least one case")
    if expected is not None and len(expected) != total:
        raise ValueError(f"expected must hold one result per case ({total}), got {len(expected)}")
    if expected is None and reference_fn is None:
        raise ValueError("give reference_fn or expected")
    concept, more = _hint_lines(exercise, hint)
    if not callable(learner_fn):
        return _finish(CheckResult(exercise, ERROR, 0, total,
                                   NOT_CALLABLE(exercise=exercise, type=type(learner_fn).__name__)))
    compare = compare or (lambda got, want: compare_values(got, want, rtol, atol))
    guard = CallGuard(learner_fn, forbidden)
    properties = properties if properties is not None else properties_of(exercise)
    watched = watch(guard, properties)
    call_learner = wrap(watched) if wrap else watched
    call_reference = (wrap(reference_fn) if wrap else reference_fn) if reference_fn is not None else None
    for index, case in enumerate(cases, start=1):
        if expected is not None:
            want = expected[index - 1]
        else:
            want = call_reference(*copy.deepcopy(case.args), **copy.deepcopy(case.kwargs))
        where = WHERE(index=index, total=total, input=describe_case(case))
        violation = None
        try:
            got = call_learner(*copy.deepcopy(case.args), **copy.deepcopy(case.kwargs))
        except NotImplementedError:
            return _finish(CheckResult(exercise, NOT_IMPLEMENTED, index - 1, total,
                                       TODO_LINE(exercise=exercise)))
        except PropertyViolation as broken:
            violation = broken
        except Exception as err:  # noqa: BLE001 - every learner error becomes a verdict
            text = f"{type(err).__name__}: {err}".strip().rstrip(":")
            return _finish(CheckResult(exercise, ERROR, index - 1, total,
                                       RAISED_LINES(exercise=exercise, error=text, line=_where(err, learner_fn),
                                                    where=where, hint=case.hint or concept, more=more)))
        if guard.calls:
            return _finish(CheckResult(exercise, FAILED, index - 1, total,
                                       FAILED_LINES(exercise=exercise, problem=library_call_message(guard.calls),
                                                    where=where, hint=LIBRARY_CALL_HINT, more="")))
        if violation is None and properties is not None and properties.typed:
            violation = type_violation(got, want)
        if violation is not None:
            return _finish(CheckResult(exercise, FAILED, index - 1, total,
                                       FAILED_LINES(exercise=exercise, problem=violation.problem, where=where,
                                                    hint=violation.hint, more=more)))
        try:
            problem = compare(got, want)
        except Exception as err:  # noqa: BLE001 - a result the comparison cannot read
            problem = NOT_COMPARED(error=f"{type(err).__name__}: {err}")
        if problem:
            specific = diagnose(case, got, want) if diagnose else None
            return _finish(CheckResult(exercise, FAILED, index - 1, total,
                                       FAILED_LINES(exercise=exercise, problem=problem, where=where, more=more,
                                                    hint=specific or case.hint or fallback_hint(problem, concept))))
    return _finish(CheckResult(exercise, PASSED, total, total, PASSED_LINE(exercise=exercise, passed=total,
                                                                           total=total)))


def _hint_lines(exercise: str, hint: str | Hints) -> tuple[str, str]:
    """The first tier of ``hint`` and the "More help" line that points at the next tier."""
    if isinstance(hint, Hints):
        name = exercise.split(" ")[0]
        return hint.concept, MORE_HELP(name=repr(name))
    return hint, ""


__all__ = [
    "Case", "CheckResult", "run_check", "make_cases", "random_tensor", "compare_values", "describe_case",
    "strict_mode", "strict_reason", "STRICT_ENV", "RECORD_ENV", "GRADER_ENV", "NBGRADER_ENV",
]
