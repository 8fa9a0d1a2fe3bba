"""One exercise's checking, in two layers: the visible check and the hidden tests.

An :class:`ExerciseSpec` says everything the checks need about one exercise, and holds no
solution:

* ``cases(kind)``: seeded inputs, ``kind`` = ``"visible"`` (a few, fed back to the learner) or
  ``"hidden"`` (more, other seeds, edge cases; only the instructor version runs them);
* ``hints``: the two written tiers (:mod:`mllib.checks.hints`);
* ``mistakes``: the known wrong answers, each with a conceptual hint; their results on the
  visible cases are stored, not computed (``mllib/checks/fixed_values.json``);
* ``forbidden``: the library functions that compute the answer (calling one fails the check);
* ``wrap``, ``compare``, ``diagnose``, ``rtol``, ``atol``: how a result is measured and compared.

``visible_check(spec, fn)`` compares the learner's results on the visible cases with **fixed
expected values** stored in ``mllib/checks/fixed_values.json`` (package data generated from the instructor's
references by ``python -m mllib course check-values --write``), so no reference implementation
ships with the package. ``hidden_tests(name, fn, reference)`` runs the hidden cases against a
reference that the caller passes in: the instructor's notebook defines it inside nbgrader's
``### BEGIN HIDDEN TESTS`` region of the check cell, which the student release removes.
"""
from __future__ import annotations

import copy
import functools
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch

from . import core
from .core import RECORD_ENV, Case, CheckResult, compare_values, run_check
from .hints import Hints, register_hints
from .i18n import message, register_texts

VISIBLE, HIDDEN = "visible", "hidden"
VALUES_PATH = Path(__file__).resolve().with_name("fixed_values.json")
HIDDEN_NAME = message("exercise.hidden", "{name} (hidden tests)")   # the name in the hidden tests' verdict


@dataclass(frozen=True)
class ExerciseSpec:
    name: str
    cases: Callable[[str], list[Case]]
    hints: Hints
    mistakes: Mapping[str, str] = field(default_factory=dict)
    forbidden: tuple[str, ...] = ()
    wrap: Callable[[Callable], Callable] | None = None
    compare: Callable[[Any, Any], str | None] | None = None
    diagnose: Callable[[Case, Any, Any], str | None] | None = None
    rtol: float = 1e-6
    atol: float = 1e-8
    fixed: bool = True   # False: a property check (any valid answer passes), nothing stored
    fresh_compare: Callable[[], Callable[[Any, Any], str | None]] | None = None  # a comparison with state
    expect: Callable | None = None   # property checks: what ``compare`` needs to know about a case

    def comparison(self) -> Callable[[Any, Any], str | None]:
        """The comparison of one run (a new one each call when it keeps state across cases)."""
        if self.fresh_compare is not None:
            return self.fresh_compare()
        return self.compare or (lambda got, want: compare_values(got, want, self.rtol, self.atol))


SPECS: dict[str, ExerciseSpec] = {}


def register(spec: ExerciseSpec) -> ExerciseSpec:
    """Add an exercise (its check module calls this at import time)."""
    if spec.name in SPECS:
        raise ValueError(f"exercise {spec.name!r} is registered twice")
    register_hints(spec.name, spec.hints)
    register_texts(spec.name, {f"mistakes.{mid}": text for mid, text in spec.mistakes.items()})
    SPECS[spec.name] = spec
    return spec


def spec_of(name: str) -> ExerciseSpec:
    if name not in SPECS:
        raise ValueError(f"no exercise called {name!r}; known: {sorted(SPECS)}")
    return SPECS[name]


# ----------------------------------------------------------------------------- stored values
def encode(value: Any) -> Any:
    """A Python literal (dicts, lists, numbers) holding ``value`` exactly (tensors keep their dtype)."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        return {"tensor": value.tolist(), "dtype": str(value.dtype).replace("torch.", "")}
    if isinstance(value, np.ndarray):
        return encode(torch.as_tensor(value))
    if isinstance(value, dict):
        return {"dict": [[key, encode(v)] for key, v in value.items()]}
    if isinstance(value, (list, tuple)):
        return {type(value).__name__: [encode(v) for v in value]}
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot store a {type(value).__name__}")


def decode(value: Any) -> Any:
    if isinstance(value, dict):
        if "tensor" in value:
            return torch.tensor(value["tensor"], dtype=getattr(torch, value["dtype"]))
        if "dict" in value:
            return {key: decode(v) for key, v in value["dict"]}
        if "tuple" in value:
            return tuple(decode(v) for v in value["tuple"])
        if "list" in value:
            return [decode(v) for v in value["list"]]
    return value


@functools.lru_cache(maxsize=1)
def all_stored_values() -> dict:
    """``{exercise: {"expected": [...], "mistakes": {id: [...]}}}`` as stored (encoded), read once."""
    return json.loads(VALUES_PATH.read_text(encoding="utf-8"))


def stored_values(name: str) -> dict:
    """``{"expected": [...], "mistakes": {id: [...]}}`` of exercise ``name``, decoded."""
    VALUES = all_stored_values()
    if name not in VALUES:
        raise RuntimeError(f"no stored values for exercise {name!r}: run `python -m mllib course check-values "
                           f"--write` from the repository root")
    raw = VALUES[name]
    return {"expected": [decode(v) for v in raw["expected"]],
            "mistakes": {mid: [decode(v) for v in outs] for mid, outs in raw["mistakes"].items()}}


def _call(fn: Callable, spec: ExerciseSpec, case: Case) -> Any:
    call = spec.wrap(fn) if spec.wrap else fn
    return call(*copy.deepcopy(case.args), **copy.deepcopy(case.kwargs))


def compute_values(spec: ExerciseSpec, reference: Callable, mistakes: Mapping[str, Callable]) -> dict:
    """The stored entry of ``spec``: the reference's results on the visible cases and each known
    mistake's (encoded). Raises ValueError when a mistake is missing, unknown, or indistinguishable
    from the reference on every visible case."""
    if set(mistakes) != set(spec.mistakes):
        raise ValueError(f"{spec.name}: mistakes implemented {sorted(mistakes)} but described {sorted(spec.mistakes)}")
    cases = spec.cases(VISIBLE)
    compare = spec.comparison()
    expected = [_call(reference, spec, case) for case in cases]
    out = {"expected": [encode(v) for v in expected], "mistakes": {}}
    for mid, fn in mistakes.items():
        results = []
        for case in cases:
            try:
                results.append(_call(fn, spec, case))
            except Exception:  # noqa: BLE001 - a mistake that crashes is recognised by its crash, not stored
                results.append(None)
        first = next((i for i, (r, w) in enumerate(zip(results, expected)) if r is not None and compare(r, w)), None)
        if first is None:
            raise ValueError(f"{spec.name}: mistake {mid!r} gives the expected result on every visible case")
        # a learner who makes exactly this mistake fails first at case `first`: only that result is kept
        out["mistakes"][mid] = [encode(r) if i == first else None for i, r in enumerate(results)]
    return out


# ----------------------------------------------------------------------------- the two layers
def _known_mistake(spec: ExerciseSpec, stored: dict, cases: list[Case]) -> Callable:
    compare = spec.comparison()

    def diagnose(case: Case, got: Any, want: Any) -> str | None:
        if spec.diagnose:
            structural = spec.diagnose(case, got, want)
            if structural:
                return structural
        index = next(i for i, c in enumerate(cases) if c is case)
        for mid, outs in stored["mistakes"].items():
            wrong = outs[index]
            if wrong is None:
                continue
            try:
                if compare(got, wrong) is None:
                    return spec.mistakes[mid]
            except Exception:  # noqa: BLE001 - an unreadable result matches no mistake
                continue
        return None

    return diagnose


def visible_check(spec: ExerciseSpec, fn: Callable, expected: list | None = None) -> CheckResult:
    """The check a learner runs: the visible cases against stored values, with hints.

    ``expected``: the stored values of a fixed spec that keeps them outside ``fixed_values.json``
    (the assignments, ``mllib.checks.assignments.STORED``); by default they come from that file,
    whose stored known mistakes then name the learner's mistake too."""
    cases = spec.cases(VISIBLE)
    if not spec.fixed:
        return run_check(spec.name, fn, spec.expect, cases, hint=spec.hints, compare=spec.comparison(),
                         diagnose=spec.diagnose, wrap=spec.wrap, forbidden=spec.forbidden)
    diagnose = spec.diagnose
    if expected is None:
        stored = stored_values(spec.name)
        expected, diagnose = stored["expected"], _known_mistake(spec, stored, cases)
    return run_check(spec.name, fn, None, cases, hint=spec.hints, compare=spec.comparison(), diagnose=diagnose,
                     expected=expected, wrap=spec.wrap, forbidden=spec.forbidden)


def hidden_tests(name: str, fn: Callable, reference: Callable | None = None) -> CheckResult:
    """The hidden tests of exercise ``name``: more cases, compared with ``reference`` (the
    instructor's, defined in the hidden region of the check cell). Prints one verdict named
    ``<name> (hidden tests)``; strict mode raises on a failure, as for the visible check."""
    return hidden_check(spec_of(name), fn, reference)


def hidden_check(spec: ExerciseSpec, fn: Callable, reference: Callable | None = None) -> CheckResult:
    """The hidden tests of ``spec`` (:func:`hidden_tests` looks the spec up by name; the assignments
    keep their own registry): its hidden cases against ``reference``, or its properties."""
    if not spec.fixed:    # a property check: any valid answer passes, no reference is needed
        reference = spec.expect
    elif reference is None:
        raise ValueError(f"the hidden tests of {spec.name!r} need the instructor's reference function")
    return run_check(HIDDEN_NAME(name=spec.name), fn, reference, spec.cases(HIDDEN), hint=spec.hints,
                     compare=spec.comparison(), diagnose=spec.diagnose, wrap=spec.wrap,
                     forbidden=spec.forbidden)


# ----------------------------------------------------------------------------- grading
def sign_records(token: str) -> None:
    """From now on every verdict this copy of the checks records carries ``token``.

    ``python -m mllib course grade`` imports a fresh copy of ``mllib.checks`` just before each
    graded cell and calls this with a random token that only the grader knows; it then counts only
    the record lines with that token, so a line that a submission writes into the record file (or
    a verdict of a copy of the checks the submission has patched) scores nothing.
    """
    if not token:
        raise ValueError("the grader's token must not be empty")

    def record(result: CheckResult) -> None:
        path = os.environ.get(RECORD_ENV)
        if not path:
            return
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({**result.to_dict(), "token": token}, ensure_ascii=False) + "\n")

    core._record = record  # `_finish` looks `_record` up when it runs, so every check uses this one


__all__ = ["ExerciseSpec", "SPECS", "VISIBLE", "HIDDEN", "register", "spec_of", "visible_check", "hidden_tests",
           "hidden_check",
           "compute_values", "stored_values", "encode", "decode", "sign_records"]
