"""Exercise checks: the learner's function against a reference, with a clear verdict.

Every exercise of the course ends with a check cell such as::

    checks.check_confidence_interval(confidence_interval)

which calls the learner's function on a few deterministic random inputs, compares the
results with a reference implementation and prints one verdict block:

* ``✅ <exercise>: passed N/N cases``
* ``❌ <exercise>: <what failed>`` followed by ``   Hint: ...``
* ``⏳ <exercise>: not implemented yet — write your code where it says YOUR CODE HERE``
  (the learner's function still raises ``NotImplementedError``)

Any other exception in the learner's code is reported with its type, message and line,
never as a bare traceback. The check returns a :class:`CheckResult` (truthy on pass).

Environment variables:

* ``MLLIB_CHECKS_STRICT=1``: a failed or unimplemented check also raises
  ``AssertionError`` with the same message, so nbgrader's autograder, nbval and pytest
  see the failure. Leave it unset for learners (the notebook then runs to the end).
* ``MLLIB_CHECKS_RECORD=<file>``: every check appends one JSON line with its result
  (``python -m mllib course grade`` uses this to build its score table).

Adding a check for a new exercise (about ten lines)::

    def _reptile_reference(params, adapted, epsilon):
        return {k: p + epsilon * (adapted[k] - p) for k, p in params.items()}

    def check_reptile_update(fn):
        \"\"\"fn(params, adapted, epsilon) -> dict: the Reptile meta-update of one task.\"\"\"
        def case(gen, i):
            params = {"w": random_tensor(gen, 3, 2), "b": random_tensor(gen, 3)}
            adapted = {k: p + random_tensor(gen, *p.shape) for k, p in params.items()}
            return Case((params, adapted, [0.1, 0.5, 1.0][i % 3]))
        return run_check("reptile_update", fn, _reptile_reference, make_cases(0, 4, case),
                         hint="move each parameter a fraction epsilon towards its adapted value")

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

STRICT_ENV = "MLLIB_CHECKS_STRICT"
RECORD_ENV = "MLLIB_CHECKS_RECORD"

PASSED, FAILED, NOT_IMPLEMENTED, ERROR = "passed", "failed", "not_implemented", "error"
STATUS_MARK = {PASSED: "✅", FAILED: "❌", NOT_IMPLEMENTED: "⏳", ERROR: "❌"}
NOT_IMPLEMENTED_TEXT = "not implemented yet — write your code where it says YOUR CODE HERE"


@dataclass
class Case:
    """One call of the learner's function: ``fn(*args, **kwargs)``; ``label`` describes it."""

    args: tuple
    kwargs: dict = field(default_factory=dict)
    label: str = ""


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


def strict_mode() -> bool:
    """True when ``MLLIB_CHECKS_STRICT`` is set to 1/true/yes."""
    return os.environ.get(STRICT_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


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
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
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
            return f"{path} should be a dict, got {type(got).__name__}"
        if set(got) != set(want):
            missing, extra = sorted(set(want) - set(got), key=str), sorted(set(got) - set(want), key=str)
            return f"{path} has keys {sorted(got, key=str)}; missing {missing}, unexpected {extra}"
        for key in want:
            problem = compare_values(got[key], want[key], rtol, atol, f"{path}[{key!r}]")
            if problem:
                return problem
        return None
    if isinstance(want, (tuple, list)):
        if not isinstance(got, (tuple, list)):
            return f"{path} should be a {type(want).__name__} of {len(want)} items, got {type(got).__name__}"
        if len(got) != len(want):
            return f"{path} has {len(got)} items, expected {len(want)}"
        for i, (g, w) in enumerate(zip(got, want)):
            problem = compare_values(g, w, rtol, atol, f"{path}[{i}]")
            if problem:
                return problem
        return None
    if isinstance(want, (torch.Tensor, np.ndarray)):
        want_t = _to_tensor(want)
        got_t = _to_tensor(got)
        if got_t is None:
            return f"{path} should be a tensor of shape {tuple(want_t.shape)}, got {type(got).__name__}"
        if tuple(got_t.shape) != tuple(want_t.shape):
            return f"{path} has shape {tuple(got_t.shape)}, expected {tuple(want_t.shape)}"
        if not want_t.is_floating_point():
            if got_t.is_floating_point() or got_t.is_complex():
                return (f"{path} has dtype {got_t.dtype}, expected an integer dtype "
                        f"({want_t.dtype})")
            diff = (got_t.long() != want_t.long()).flatten().nonzero()
            if len(diff):
                i = int(diff[0])
                return (f"{path} differs at {len(diff)} of {want_t.numel()} positions; first at flat "
                        f"index {i}: got {got_t.flatten()[i].item()}, expected {want_t.flatten()[i].item()}")
            return None
        g, w = got_t.double(), want_t.double()
        if w.numel() == 0:
            return None
        bad = ~torch.isclose(g, w, rtol=rtol, atol=atol, equal_nan=True)
        if bad.any():
            err = (g - w).abs().nan_to_num(nan=math.inf).flatten()
            i = int(err.argmax())
            return (f"{path} differs at {int(bad.sum())} of {w.numel()} positions; largest error at "
                    f"flat index {i}: got {_fmt(g.flatten()[i].item())}, expected {_fmt(w.flatten()[i].item())}")
        return None
    if isinstance(want, (bool, np.bool_)) or want is None or isinstance(want, str):
        return None if got == want else f"{path} is {got!r}, expected {want!r}"
    if isinstance(want, (int, float, np.number)):
        t = _to_tensor(got)
        if t is None or t.numel() != 1:
            shape = f" of shape {tuple(t.shape)}" if t is not None else ""
            return f"{path} should be a single number, got {type(got).__name__}{shape}"
        g, w = float(t.item()), float(want)
        if math.isnan(w) and math.isnan(g):
            return None
        if not abs(g - w) <= atol + rtol * abs(w):
            return f"{path} is {_fmt(g)}, expected {_fmt(w)}"
        return None
    return None if got == want else f"{path} is {got!r}, expected {want!r}"


# ----------------------------------------------------------------------------- running
def _where(err: BaseException, learner_fn: Callable) -> str:
    """`` (line N: `code`)``: the deepest line of the learner's own code that the error passed through."""
    code = getattr(learner_fn, "__code__", None)
    frames = [f for f in traceback.extract_tb(err.__traceback__) if f.filename != __file__]
    if code is not None:
        frames = [f for f in frames if f.filename == code.co_filename]
    if not frames:
        return ""
    last = frames[-1]
    code = f": `{last.line.strip()}`" if last.line else ""
    return f" (line {last.lineno}{code})"


def _record(result: CheckResult) -> None:
    path = os.environ.get(RECORD_ENV)
    if not path:
        return
    row = result.to_dict()
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def _finish(result: CheckResult) -> CheckResult:
    print(result.message, flush=True)
    _record(result)
    if not result and strict_mode():
        raise AssertionError(result.message)
    return result


def run_check(
    exercise: str,
    learner_fn: Callable,
    reference_fn: Callable,
    cases: Iterable[Case | tuple],
    *,
    hint: str,
    rtol: float = 1e-6,
    atol: float = 1e-8,
    compare: Callable[[Any, Any], str | None] | None = None,
    diagnose: Callable[[Case, Any, Any], str | None] | None = None,
) -> CheckResult:
    """Run ``learner_fn`` and ``reference_fn`` on every case, compare, print the verdict, return it.

    Args:
        exercise: the name shown in the verdict (e.g. ``"confidence_interval"``).
        learner_fn: the learner's function.
        reference_fn: the reference implementation, called with the same arguments.
        cases: :class:`Case` objects or tuples of positional arguments (see :func:`make_cases`).
            Each function gets its own deep copy, so a learner who modifies inputs in place
            cannot change the reference's answer.
        hint: shown under a failure.
        rtol, atol: tolerances of the default comparison (:func:`compare_values`).
        compare: ``compare(got, want) -> None | "what differs"`` replacing the default.
        diagnose: ``diagnose(case, got, want) -> None | "a more specific hint"`` for known mistakes.

    Stops at the first failing case. Returns a :class:`CheckResult`.
    """
    cases = [_as_case(c) for c in cases]
    total = len(cases)
    if total == 0:
        raise ValueError("cases must hold at least one case")
    if not callable(learner_fn):
        return _finish(CheckResult(exercise, ERROR, 0, total,
                                   f"❌ {exercise}: expected a function, got {type(learner_fn).__name__}\n"
                                   f"   Hint: pass the function itself, without calling it"))
    compare = compare or (lambda got, want: compare_values(got, want, rtol, atol))
    for index, case in enumerate(cases, start=1):
        want = reference_fn(*copy.deepcopy(case.args), **copy.deepcopy(case.kwargs))
        where = f"case {index} of {total} (input: {describe_case(case)})"
        try:
            got = learner_fn(*copy.deepcopy(case.args), **copy.deepcopy(case.kwargs))
        except NotImplementedError:
            return _finish(CheckResult(exercise, NOT_IMPLEMENTED, index - 1, total,
                                       f"⏳ {exercise}: {NOT_IMPLEMENTED_TEXT}"))
        except Exception as err:  # noqa: BLE001 - every learner error becomes a verdict
            text = f"{type(err).__name__}: {err}".strip().rstrip(":")
            return _finish(CheckResult(exercise, ERROR, index - 1, total,
                                       f"❌ {exercise}: your function raised {text}{_where(err, learner_fn)} on {where}\n"
                                       f"   Hint: {hint}"))
        try:
            problem = compare(got, want)
        except Exception as err:  # noqa: BLE001 - a result the comparison cannot read
            problem = f"the result could not be compared ({type(err).__name__}: {err})"
        if problem:
            specific = diagnose(case, got, want) if diagnose else None
            return _finish(CheckResult(exercise, FAILED, index - 1, total,
                                       f"❌ {exercise}: {problem} on {where}\n"
                                       f"   Hint: {specific or hint}"))
    return _finish(CheckResult(exercise, PASSED, total, total, f"✅ {exercise}: passed {total}/{total} cases"))


# ============================================================================= the checks
# Exercise-specific checks follow: a reference implementation, a case factory and run_check.
# Notebook authors append theirs below (see the module docstring for the ten-line pattern).


def _ci95_reference(values: torch.Tensor) -> tuple[float, float]:
    v = values.double()
    n = v.numel()
    mean = v.mean().item()
    sd = math.sqrt(((v - mean) ** 2).sum().item() / (n - 1))
    return mean, 1.96 * sd / math.sqrt(n)


def check_confidence_interval(fn: Callable) -> CheckResult:
    """Check ``fn(values) -> (mean, half_width)``: the mean and the 95% confidence interval.

    ``values`` is a 1-D float tensor ``[n]`` (n >= 2) of per-task scores, e.g. the query
    accuracies of 600 test tasks. ``half_width = 1.96 * sd / sqrt(n)`` where ``sd`` is the
    *sample* standard deviation (divisor ``n - 1``, i.e. ``torch.std`` with its default
    ``correction=1``, or ``numpy.std(..., ddof=1)``). Both results may be Python floats or
    one-element tensors; tolerance 1e-6 relative.
    """
    sizes = [2, 5, 30, 600, 7]

    def case(gen: torch.Generator, i: int) -> Case:
        n = sizes[i]
        if i == 4:  # every task scored the same: the interval has zero width
            return Case((torch.full((n,), 0.8, dtype=torch.float64),), label="7 equal values")
        return Case((torch.rand(n, generator=gen, dtype=torch.float64),))

    def diagnose(case: Case, got: Any, want: Any) -> str | None:
        try:
            _, half = got
            half = float(half)
        except (TypeError, ValueError):
            return "return a pair (mean, half_width), e.g. `return mean, half_width`"
        v = case.args[0].double()
        n = v.numel()
        sd0 = v.std(correction=0).item()
        if math.isclose(half, 1.96 * sd0 / math.sqrt(n), rel_tol=1e-6):
            return "you used the population standard deviation (divide by n); use the sample one (divide by n - 1)"
        if math.isclose(half, 1.96 * v.std().item(), rel_tol=1e-6):
            return "divide the standard deviation by sqrt(n): the interval is about the mean, not one task"
        return None

    return run_check("confidence_interval", fn, _ci95_reference, make_cases(95, len(sizes), case),
                     hint="mean = values.mean(); half_width = 1.96 * sd / sqrt(n) with the sample sd (n - 1)",
                     diagnose=diagnose)


def _label_remap_reference(labels: torch.Tensor, classes: torch.Tensor | None = None) -> torch.Tensor:
    if classes is None:
        seen: list[int] = []
        for label in labels.tolist():
            if label not in seen:
                seen.append(label)
        order = seen
    else:
        order = classes.tolist()
    position = {c: i for i, c in enumerate(order)}
    return torch.tensor([position[label] for label in labels.tolist()], dtype=torch.long)


def check_label_remap(fn: Callable) -> CheckResult:
    """Check ``fn(labels, classes=None) -> new_labels``: N-way relabelling of one task.

    ``labels`` is a 1-D ``torch.long`` tensor ``[M]`` of arbitrary class ids (e.g. Omniglot
    character indices such as ``[812, 45, 812, 1203]``) holding N distinct values.
    ``classes`` is a 1-D ``torch.long`` tensor ``[N]`` of those N distinct ids in the task's
    order (e.g. a random permutation of the sampled classes), or ``None``, meaning the order
    in which the ids first appear in ``labels``. The result is a ``torch.long`` tensor ``[M]``
    with ``new_labels[j] = i`` exactly when ``labels[j] == classes[i]``, so the labels are
    ``0..N-1``. Example: ``fn(tensor([812, 45, 812, 1203]))`` gives ``tensor([0, 1, 0, 2])``;
    ``fn(tensor([812, 45, 812, 1203]), tensor([1203, 812, 45]))`` gives ``tensor([1, 2, 1, 0])``.
    """
    def case(gen: torch.Generator, i: int) -> Case:
        ways, shots = [(5, 1), (5, 3), (20, 1), (3, 5), (2, 2), (5, 5)][i]
        ids = torch.randperm(1623, generator=gen)[:ways]
        labels = ids.repeat_interleave(shots)
        labels = labels[torch.randperm(len(labels), generator=gen)]
        if i % 2 == 0:
            return Case((labels,))
        return Case((labels, ids[torch.randperm(ways, generator=gen)]))

    def diagnose(case: Case, got: Any, want: Any) -> str | None:
        if isinstance(got, torch.Tensor) and got.is_floating_point():
            return "return a torch.long tensor: cross_entropy needs integer class labels"
        if len(case.args) == 1 and isinstance(got, torch.Tensor) and got.shape == want.shape:
            if torch.equal(got.long(), torch.unique(case.args[0], return_inverse=True)[1]):
                return "number the classes in order of first appearance, not in sorted order"
        return None

    return run_check("label_remap", fn, _label_remap_reference, make_cases(7, 6, case),
                     hint="build a dict {class id: position in classes} (first-appearance order when "
                          "classes is None) and look every label up; return a torch.long tensor",
                     diagnose=diagnose)


__all__ = [
    "Case", "CheckResult", "run_check", "make_cases", "random_tensor", "compare_values", "describe_case",
    "strict_mode", "check_confidence_interval", "check_label_remap", "STRICT_ENV", "RECORD_ENV",
]


# ---- notebook 02: task sampling
def _support_query_reference(num_examples: int, shots: int, query: int,
                             generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    order = torch.randperm(num_examples, generator=generator)
    return order[:shots], order[shots:shots + query]


def check_support_query_split(fn: Callable) -> CheckResult:
    """Check ``fn(num_examples, shots, query, generator) -> (support_idx, query_idx)``.

    One class of an N-way K-shot task has ``num_examples`` images (Omniglot: 20 drawers).
    ``fn`` picks ``shots`` of them for the support set and ``query`` others for the query set:
    two 1-D integer tensors ``[shots]`` and ``[query]`` with values in ``0..num_examples-1``,
    all ``shots + query`` values distinct (no image in both sets, none twice), drawn at random
    with ``generator`` (a seeded ``torch.Generator``) only, so the same seed gives the same split.
    Any such split passes: the check tests these properties, not one particular draw.
    """
    specs = [(20, 1, 15, 0), (20, 1, 15, 0)] + [(20, 1, 15, s) for s in range(1, 9)] + [
        (20, 5, 15, 9), (10, 3, 7, 10), (20, 10, 10, 11), (5, 2, 2, 12), (20, 1, 19, 13)]
    cases = [Case((n, s, q, torch.Generator().manual_seed(1000 + seed)),
                  label=f"num_examples={n}, shots={s}, query={q}, generator seeded {1000 + seed}")
             for n, s, q, seed in specs]
    seen: dict[tuple, tuple] = {}
    first_supports: list[tuple] = []
    index = iter(specs)

    def compare(got: Any, want: Any) -> str | None:
        n, s, q, seed = next(index)
        if not isinstance(got, (tuple, list)) or len(got) != 2:
            return "the result should be a pair (support_idx, query_idx)"
        parts = []
        for name, value, size in (("support_idx", got[0], s), ("query_idx", got[1], q)):
            t = _to_tensor(value)
            if t is None or t.dim() != 1:
                return f"{name} should be a 1-D tensor of {size} indices, got {_describe(value)}"
            if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
                return f"{name} has dtype {t.dtype}; indices must be integers (torch.long)"
            if len(t) != size:
                return f"{name} has {len(t)} indices, expected {size}"
            if len(t) and (int(t.min()) < 0 or int(t.max()) >= n):
                return f"{name} holds {int(t.min())}..{int(t.max())}, outside 0..{n - 1}"
            parts.append(t.long())
        support, query_idx = parts
        both = torch.cat(parts)
        if len(set(support.tolist()) & set(query_idx.tolist())):
            return f"support and query share index(es) {sorted(set(support.tolist()) & set(query_idx.tolist()))}"
        if len(set(both.tolist())) != len(both):
            return "an index appears twice within the support or the query set"
        key = (n, s, q, seed)
        result = (tuple(support.tolist()), tuple(query_idx.tolist()))
        if key in seen and seen[key] != result:
            return "two calls with identically seeded generators gave different splits"
        seen[key] = result
        if (n, s, q) == (20, 1, 15):
            first_supports.append(result[0])
            if len(first_supports) == 10 and len(set(first_supports)) < 3:
                return (f"calls with 9 differently seeded generators chose only {len(set(first_supports))} "
                        "distinct support set(s): the split is not random")
        return None

    def diagnose(case: Case, got: Any, want: Any) -> str | None:
        try:
            support, query_idx = (_to_tensor(v).long() for v in got)
        except Exception:  # noqa: BLE001
            return None
        if set(support.tolist()) & set(query_idx.tolist()):
            return ("draw ONE random permutation of the indices and slice it: the first `shots` "
                    "for the support set, the next `query` for the query set")
        return None

    return run_check("support_query_split", fn, _support_query_reference, cases,
                     hint="order = torch.randperm(num_examples, generator=generator), then slice it; "
                          "use the generator argument for every random draw",
                     compare=compare, diagnose=diagnose)


__all__ += ["check_support_query_split"]


# ---- notebook 01: learning bias
def _polynomial_fit_reference(x: torch.Tensor, y: torch.Tensor, degree: int) -> torch.Tensor:
    from mllib.sinusoid import fit_polynomial
    return fit_polynomial(x, y, degree)


def check_polynomial_fit(fn: Callable) -> CheckResult:
    """Check ``fn(x, y, degree) -> coefficients``: the least-squares polynomial of a given degree.

    ``x`` and ``y`` are 1-D float64 tensors ``[K]`` (K > degree, the points of one task);
    the result is a 1-D tensor (or array) ``[degree + 1]`` with the *constant term first*:
    ``y_hat = c[0] + c[1] x + ... + c[degree] x^degree`` minimising ``sum (y_hat_i - y_i)^2``.
    Tolerance 1e-5 relative (normal equations, ``lstsq`` and ``pinv`` all pass).
    """
    settings = [(10, 1), (10, 3), (5, 2), (20, 5), (4, 0), (8, 4)]

    def case(gen: torch.Generator, i: int) -> Case:
        k, degree = settings[i]
        x = torch.rand(k, generator=gen, dtype=torch.float64) * 10 - 5
        amplitude = 0.1 + 4.9 * torch.rand(1, generator=gen, dtype=torch.float64)
        phase = math.pi * torch.rand(1, generator=gen, dtype=torch.float64)
        return Case((x, amplitude * torch.sin(x - phase), degree))

    def diagnose(case: Case, got: Any, want: Any) -> str | None:
        t = _to_tensor(got)
        if t is None:
            return None
        if t.numel() == want.numel() and t.dim() != 1:
            return "return a 1-D tensor of degree + 1 coefficients (e.g. `solution[:, 0]` or `.reshape(-1)`)"
        if t.numel() == want.numel() and compare_values(t.flip(0), want, 1e-5, 1e-6) is None:
            return ("your coefficients are in reverse order (highest power first, like numpy.polyfit); "
                    "put the constant term first")
        if t.numel() != want.numel():
            return "a polynomial of degree d has d + 1 coefficients: columns x**0, x**1, ..., x**d"
        return None

    return run_check("polynomial_fit", fn, _polynomial_fit_reference, make_cases(1, len(settings), case),
                     hint="build the design matrix X[i, d] = x[i] ** d for d = 0..degree, then solve the "
                          "least-squares problem X c ~ y (torch.linalg.lstsq(X, y[:, None]).solution[:, 0])",
                     rtol=1e-5, atol=1e-6, diagnose=diagnose)


__all__ += ["check_polynomial_fit"]


# ---- notebook 03: inner loop
def _tiny_sine_model(gen: torch.Generator, hidden: int = 8):
    """A float64 ``SineMLP(hidden)`` and a params dict of random leaves (drawn from ``gen``)."""
    from mllib.models import SineMLP
    model = SineMLP(hidden=hidden).double()
    params = {name: (0.5 * random_tensor(gen, *p.shape)).requires_grad_(True) for name, p in model.named_parameters()}
    return model, params


def _sine_points(gen: torch.Generator, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.rand(count, 1, generator=gen, dtype=torch.float64) * 10 - 5
    amplitude = 0.1 + 4.9 * torch.rand(1, generator=gen, dtype=torch.float64)
    phase = math.pi * torch.rand(1, generator=gen, dtype=torch.float64)
    return x, amplitude * torch.sin(x - phase)


def _sgd_step_reference(model, params, x, y, lr):
    from torch.func import functional_call
    loss = torch.nn.functional.mse_loss(functional_call(model, params, (x,)), y)
    grads = torch.autograd.grad(loss, list(params.values()), create_graph=True)
    return {name: p - lr * g for (name, p), g in zip(params.items(), grads)}


class _ThroughStep:
    """Call an ``sgd_step`` function, then report its adapted values and the meta-gradient through it.

    Carries the wrapped function's ``__code__`` so a verdict names the learner's line.
    """

    def __init__(self, fn: Callable) -> None:
        self.fn = fn
        self.__code__ = getattr(fn, "__code__", None)

    def __call__(self, model, params, x, y, lr, query_x, query_y):
        from torch.func import functional_call
        adapted = self.fn(model, params, x, y, lr)
        if not isinstance(adapted, dict):
            return adapted
        values = {k: (v.detach() if isinstance(v, torch.Tensor) else v) for k, v in adapted.items()}
        if set(adapted) != set(params):
            return {"adapted": values, "meta_gradient": None}
        loss = torch.nn.functional.mse_loss(functional_call(model, adapted, (query_x,)), query_y)
        if not loss.requires_grad:
            return {"adapted": values, "meta_gradient": None}
        grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
        return {"adapted": values,
                "meta_gradient": {k: (torch.zeros_like(p) if g is None else g) for (k, p), g in zip(params.items(), grads)}}


def check_sgd_step(fn: Callable) -> CheckResult:
    """Check ``fn(model, params, x, y, lr) -> adapted``: one differentiable inner-loop SGD step.

    ``model`` is a ``SineMLP`` (float64), ``params`` a dict of its parameters (leaf tensors
    requiring grad), ``x, y [K, 1]`` one task's support set, ``lr`` a float. ``adapted`` is a
    new dict with the same keys: ``params[k] - lr * d MSE(f_params(x), y) / d params[k]``.
    The step must keep the autograd graph (``create_graph=True``), so that a query loss of the
    adapted parameters can be differentiated with respect to the *start* ``params`` (the
    second-order meta-gradient of MAML); the check compares both the values and that
    meta-gradient with the reference.
    """
    rates = [0.01, 0.1, 0.5, 0.03]

    def case(gen: torch.Generator, i: int) -> Case:
        model, params = _tiny_sine_model(gen)
        x, y = _sine_points(gen, [10, 5, 10, 3][i])
        qx, qy = _sine_points(gen, 10)
        return Case((model, params, x, y, rates[i], qx, qy),
                    label=f"SineMLP(hidden=8) params, x/y [{len(x)}, 1], lr={rates[i]}")

    def compare(got: Any, want: Any) -> str | None:
        if not isinstance(got, dict) or "adapted" not in got:
            return f"the result should be a dict of adapted parameters, got {type(got).__name__}"
        problem = compare_values(got["adapted"], want["adapted"], 1e-6, 1e-9, path="adapted")
        if problem:
            return problem
        if got["meta_gradient"] is None:
            return ("the adapted parameters are not connected to the starting parameters in the autograd "
                    "graph, so the outer loop cannot differentiate through your step")
        if compare_values(got["meta_gradient"], want["meta_gradient"], 1e-5, 1e-9) is not None:
            return ("the values are right, but the gradient of a query loss through your step with respect "
                    "to the start differs from second-order MAML's: the inner gradient was treated as a constant")
        return None

    def diagnose(case: Case, got: Any, want: Any) -> str | None:
        if not isinstance(got, dict) or "adapted" not in got:
            return None
        if compare_values(got["adapted"], want["adapted"], 1e-6, 1e-9) is not None:
            return None
        if got["meta_gradient"] is None:
            return ("compute the new values from params themselves (no .detach(), no torch.no_grad(), "
                    "no in-place update), with create_graph=True in torch.autograd.grad")
        return "pass create_graph=True to torch.autograd.grad so the step itself can be differentiated"


    return run_check("sgd_step", _ThroughStep(fn), _ThroughStep(_sgd_step_reference),
                     make_cases(3, len(rates), case), compare=compare, diagnose=diagnose,
                     hint="new value = params[k] - lr * (gradient of the support MSE, F.mse_loss of "
                          "functional_call(model, params, (x,)) and y, with respect to params[k]); "
                          "a step *down* the gradient, one entry per key")


def _adaptation_curve_reference(model, params, support_x, support_y, query_x, query_y, steps, lr):
    from mllib.sinusoid import adaptation_curve
    from mllib.tasks.batch import TaskBatch
    batch = TaskBatch(support_x[None], support_y[None], query_x[None], query_y[None])
    return adaptation_curve(model, params, batch, steps, lr)


def check_adaptation_curve(fn: Callable) -> CheckResult:
    """Check ``fn(model, params, support_x, support_y, query_x, query_y, steps, lr) -> curve``.

    One task's adaptation curve: ``curve[k]`` is the query MSE after ``k`` plain SGD steps (rate
    ``lr``) on the support MSE, starting from ``params``, for ``k = 0, 1, ..., steps``; so the
    result has ``steps + 1`` numbers (a 1-D tensor, a list or an array) and ``curve[0]`` is the
    query MSE of the start itself. ``model`` is a float64 ``SineMLP``, ``params`` a dict of leaf
    tensors, ``support_x, support_y [K, 1]``, ``query_x, query_y [Q, 1]``. Tolerance 1e-5 relative.
    """
    settings = [(3, 0.01), (1, 0.1), (0, 0.05), (5, 0.02)]

    def case(gen: torch.Generator, i: int) -> Case:
        model, params = _tiny_sine_model(gen)
        sx, sy = _sine_points(gen, 10)
        qx, qy = _sine_points(gen, 20)
        steps, lr = settings[i]
        return Case((model, params, sx, sy, qx, qy, steps, lr),
                    label=f"SineMLP(hidden=8), support [10, 1], query [20, 1], steps={steps}, lr={lr}")

    def diagnose(case: Case, got: Any, want: Any) -> str | None:
        t = _to_tensor(got)
        if t is None:
            return None
        steps = case.args[6]
        if t.numel() == steps:
            return "return steps + 1 numbers: the query MSE before any step, then after each of the steps"
        if t.numel() == steps + 1:
            model, params, sx, sy = case.args[:4]
            on_support = _adaptation_curve_reference(model, params, sx, sy, sx, sy, steps, case.args[7])
            if compare_values(t, on_support, 1e-5, 1e-8) is None:
                return "train on the support set but measure the curve on the query set"
        return None

    return run_check("adaptation_curve", fn, _adaptation_curve_reference, make_cases(4, len(settings), case),
                     rtol=1e-5, atol=1e-8, diagnose=diagnose,
                     hint="keep a dict `current` = params; for k in 0..steps: record the query MSE of `current` "
                          "(under torch.no_grad()), then, if k < steps, replace `current` by one SGD step on the "
                          "support MSE (torch.autograd.grad, then p - lr * g, detached)")


__all__ += ["check_sgd_step", "check_adaptation_curve"]


# ---- notebook 04: outer loop
def _task_meta_gradient_reference(model, params, support_x, support_y, query_x, query_y, inner_lr, first_order):
    from mllib.algorithms import forward, support_loss_fn
    from mllib.inner import adapt
    adapted = adapt(params, support_loss_fn(model), (support_x, support_y), 1, inner_lr, first_order=first_order)
    loss = torch.nn.functional.mse_loss(forward(model, adapted, query_x), query_y)
    return dict(zip(params, torch.autograd.grad(loss, list(params.values()))))


def check_task_meta_gradient(fn: Callable) -> CheckResult:
    """Check ``fn(model, params, support_x, support_y, query_x, query_y, inner_lr, first_order) -> grads``.

    One task of MAML with ONE inner step: ``adapted = params - inner_lr * grad(support MSE)``,
    then ``grads[k] = d (query MSE of adapted) / d params[k]`` (a dict with the keys of ``params``).
    ``first_order=False``: second-order MAML, the gradient flows through the inner gradient
    (``create_graph=True``). ``first_order=True``: first-order MAML, the inner gradient is a
    constant (detached), so ``grads`` is the query gradient evaluated at ``adapted``.
    ``model`` is a float64 ``SineMLP(hidden=8)``, ``params`` a dict of leaf tensors requiring grad,
    ``support_x, support_y [K, 1]``, ``query_x, query_y [Q, 1]``; tolerance 1e-6 relative.
    """
    settings = [(0.1, False), (0.1, True), (0.5, False), (0.03, True), (0.3, False), (0.3, True)]

    def case(gen: torch.Generator, i: int) -> Case:
        model, params = _tiny_sine_model(gen)
        sx, sy = _sine_points(gen, 10)
        qx, qy = _sine_points(gen, 10)
        lr, first_order = settings[i]
        return Case((model, params, sx, sy, qx, qy, lr, first_order),
                    label=f"SineMLP(hidden=8), support/query [10, 1], inner_lr={lr}, first_order={first_order}")

    def diagnose(case: Case, got: Any, want: Any) -> str | None:
        if not isinstance(got, dict) or set(got) != set(want):
            return "return a dict {name: gradient} with the keys of params (e.g. dict(zip(params, grads)))"
        *args, lr, first_order = case.args
        other = _task_meta_gradient_reference(*copy.deepcopy(args), lr, not first_order)
        if compare_values(got, other, 1e-6, 1e-9) is None:
            if first_order:
                return "first_order=True must treat the inner gradient as a constant: detach it (or no create_graph)"
            return ("this is the first-order answer: with first_order=False pass create_graph=True to the inner "
                    "torch.autograd.grad so the outer gradient flows through it")
        model, params, sx, sy, qx, qy = copy.deepcopy(args)
        from torch.func import functional_call
        loss = torch.nn.functional.mse_loss(functional_call(model, params, (qx,)), qy)
        plain = dict(zip(params, torch.autograd.grad(loss, list(params.values()))))
        if compare_values(got, plain, 1e-6, 1e-9) is None:
            return "adapt first: take the inner SGD step on the support set, then the query loss of the adapted params"
        return None

    return run_check("task_meta_gradient", fn, _task_meta_gradient_reference, make_cases(40, len(settings), case),
                     rtol=1e-6, atol=1e-9, diagnose=diagnose,
                     hint="inner: g = torch.autograd.grad(support MSE, params, create_graph=not first_order); "
                          "adapted = p - inner_lr * g (detach g when first_order); outer: "
                          "torch.autograd.grad(query MSE of adapted, params)")


def _reptile_update_reference(params, adapted, epsilon):
    return {k: p.detach() + epsilon * (sum(a[k].detach() for a in adapted) / len(adapted) - p.detach())
            for k, p in params.items()}


def check_reptile_update(fn: Callable) -> CheckResult:
    """Check ``fn(params, adapted, epsilon) -> new_params``: Reptile's meta-update of a meta-batch.

    ``params``: a dict of tensors (the current start); ``adapted``: a list of dicts with the same
    keys and shapes, one per task (the parameters after the task's inner SGD); ``epsilon``: the
    outer step size. ``new_params[k] = params[k] + epsilon * (mean over tasks of adapted[i][k] - params[k])``.
    Tolerance 1e-6 relative.
    """
    def case(gen: torch.Generator, i: int) -> Case:
        tasks = [1, 3, 4, 2, 5][i]
        params = {"w": random_tensor(gen, 4, 3), "b": random_tensor(gen, 4)}
        adapted = [{k: p + 0.3 * random_tensor(gen, *p.shape) for k, p in params.items()} for _ in range(tasks)]
        eps = [0.1, 0.5, 1.0, 0.25, 0.05][i]
        return Case((params, adapted, eps),
                    label=f"params {{'w': [4, 3], 'b': [4]}}, a list of {tasks} adapted dict(s), epsilon={eps}")

    def diagnose(case: Case, got: Any, want: Any) -> str | None:
        params, adapted, eps = case.args
        if not isinstance(got, dict) or set(got) != set(params):
            return "return a dict with the keys of params"
        guesses = {
            "move TOWARDS the adapted parameters: params + epsilon * (adapted - params), not minus":
                {k: p - eps * (sum(a[k] for a in adapted) / len(adapted) - p) for k, p in params.items()},
            "average the tasks' adapted parameters (divide the sum by the number of tasks)":
                {k: p + eps * (sum(a[k] for a in adapted) - p) for k, p in params.items()},
            "use every task of the meta-batch, not only the last one":
                {k: p + eps * (adapted[-1][k] - p) for k, p in params.items()},
        }
        for text, guess in guesses.items():
            if len(adapted) > 1 or "TOWARDS" in text:
                if compare_values(got, guess, 1e-6, 1e-9) is None:
                    return text
        return None

    return run_check("reptile_update", fn, _reptile_update_reference, make_cases(41, 5, case),
                     diagnose=diagnose,
                     hint="for each key: mean of the tasks' adapted values, then params + epsilon * (mean - params)")


__all__ += ["check_task_meta_gradient", "check_reptile_update"]


# ---- notebook 05: MAML on Omniglot
# (the confidence-interval exercise of notebook 05 uses check_confidence_interval above)
def _prototypes_reference(embeddings: torch.Tensor, labels: torch.Tensor, ways: int) -> torch.Tensor:
    return torch.stack([embeddings[labels == c].mean(0) for c in range(ways)])


def check_prototypes(fn: Callable) -> CheckResult:
    """Check ``fn(embeddings, labels, ways) -> prototypes``: the class means of prototypical networks.

    ``embeddings`` ``[S, D]`` float (the support set's embeddings), ``labels`` ``[S]`` long in
    ``0..ways-1`` (every class present, in any order); the result is ``[ways, D]`` with row ``c``
    the mean embedding of the support examples labelled ``c``.
    """
    shapes = [(5, 1, 8), (5, 5, 16), (20, 1, 4), (3, 4, 6)]

    def case(gen: torch.Generator, i: int) -> Case:
        ways, shots, dim = shapes[i]
        labels = torch.arange(ways).repeat_interleave(shots)
        labels = labels[torch.randperm(len(labels), generator=gen)]
        return Case((random_tensor(gen, ways * shots, dim), labels, ways))

    def diagnose(case: Case, got: Any, want: Any) -> str | None:
        emb, labels, ways = case.args
        if isinstance(got, torch.Tensor) and got.shape == want.shape:
            sums = torch.stack([emb[labels == c].sum(0) for c in range(ways)])
            if torch.allclose(got.double(), sums, atol=1e-6) and not torch.allclose(sums, want):
                return "you summed the embeddings of each class: divide by the number of shots (take the mean)"
            if torch.allclose(got.double(), emb.mean(0).expand_as(want), atol=1e-6):
                return "that is the mean over the whole support set: average each class separately"
        if isinstance(got, torch.Tensor) and got.shape == want.shape[::-1]:
            return "return [ways, D] (one row per class), not [D, ways]"
        return None

    return run_check("prototypes", fn, _prototypes_reference, make_cases(5, len(shapes), case),
                     hint="for each class c in range(ways): embeddings[labels == c].mean(0); stack the rows",
                     diagnose=diagnose)


__all__ += ["check_prototypes"]


# ---- notebook 06: learning the learning algorithm
def _metasgd_step_reference(params: dict, grads: dict, rates: dict) -> dict:
    return {k: p - rates[k] * grads[k] for k, p in params.items()}


def check_metasgd_step(fn: Callable) -> CheckResult:
    """Check ``fn(params, grads, rates) -> dict``: one Meta-SGD inner step.

    ``params``, ``grads`` and ``rates`` are dicts with the same keys and tensors of the same
    shape; the result has those keys with ``params[k] - rates[k] * grads[k]`` (an elementwise
    product: every single weight has its own learned rate).
    """
    def case(gen: torch.Generator, i: int) -> Case:
        shapes = {"body.0.weight": (4, 1), "body.0.bias": (4,), "head.weight": (1, 4), "head.bias": (1,)}
        params = {k: random_tensor(gen, *s) for k, s in shapes.items()}
        grads = {k: random_tensor(gen, *s) for k, s in shapes.items()}
        rates = {k: 0.01 * random_tensor(gen, *s).abs() for k, s in shapes.items()}
        return Case((params, grads, rates))

    def diagnose(case: Case, got: Any, want: Any) -> str | None:
        params, grads, rates = case.args
        if not isinstance(got, dict) or set(got) != set(want):
            return "return a dict with the same keys as params"
        if all(torch.allclose(torch.as_tensor(got[k]).double(), params[k] + rates[k] * grads[k]) for k in params):
            return "step *against* the gradient: params - rates * grads"
        if all(torch.allclose(torch.as_tensor(got[k]).double(), params[k] - rates[k].mean() * grads[k]) for k in params):
            return "use each weight's own rate (elementwise), not the mean rate of the tensor"
        return None

    return run_check("metasgd_step", fn, _metasgd_step_reference, make_cases(6, 3, case),
                     hint="{k: params[k] - rates[k] * grads[k] for k in params}", diagnose=diagnose)


def _anil_step_reference(params: dict, grads: dict, lr: float, head: list) -> dict:
    return {k: (p - lr * grads[k]) if k in head else p for k, p in params.items()}


def check_anil_step(fn: Callable) -> CheckResult:
    """Check ``fn(params, grads, lr, head) -> dict``: one ANIL inner step.

    ``params`` and ``grads``: dicts of tensors with the same keys; ``lr`` a float; ``head`` the
    list of the head's parameter names. The head takes an SGD step ``params[k] - lr * grads[k]``;
    every other (body) parameter is returned unchanged. The result has all keys of ``params``.
    """
    def case(gen: torch.Generator, i: int) -> Case:
        shapes = {"blocks.0.conv.weight": (3, 1, 3, 3), "blocks.0.norm.weight": (3,), "head.weight": (5, 3),
                  "head.bias": (5,)}
        params = {k: random_tensor(gen, *s) for k, s in shapes.items()}
        grads = {k: random_tensor(gen, *s) for k, s in shapes.items()}
        return Case((params, grads, [0.4, 0.1, 0.01][i], ["head.weight", "head.bias"]))

    def diagnose(case: Case, got: Any, want: Any) -> str | None:
        params, grads, lr, head = case.args
        if not isinstance(got, dict):
            return "return a dict with every key of params"
        if set(got) == set(head):
            return "keep the body's parameters in the result too (unchanged): the model needs all of them"
        if set(got) == set(params) and all(
                torch.allclose(torch.as_tensor(got[k]).double(), params[k] - lr * grads[k]) for k in params):
            return "that updated every parameter (MAML's inner step); ANIL updates only the names in head"
        return None

    return run_check("anil_step", fn, _anil_step_reference, make_cases(7, 3, case),
                     hint="{k: p - lr * grads[k] if k in head else p for k, p in params.items()}", diagnose=diagnose)


__all__ += ["check_metasgd_step", "check_anil_step"]
