"""Properties every answer must have, checked on every call of the learner's function.

The value comparison catches wrong numbers; these checks catch the wrong answers whose numbers
are right in the check but break the learner's code later. They come in kinds, and each exercise
declares the kinds that apply to it (:func:`declare`, called next to its ``ExerciseSpec``):

* **side effects** (``frozen``): the function changes an argument (in place, ``torch.no_grad()``
  included: ``p -= lr * g``, ``x.sub_(m)``, ``params[k] = ...``), leaves ``.grad`` on a tensor
  it was given (``loss.backward()``), or returns the caller's own dict or list;
* **randomness** (``random``): a ``torch.Generator`` argument that is never advanced, or draws
  from torch's, NumPy's or Python's global generator; without ``random`` any global draw fails;
* **types** (``typed``): a result whose tensors are lists, NumPy arrays or Python numbers, or
  have another dtype than expected (int32 labels, float32 from float64 inputs);
* **differentiability** (``loss_of``): a loss returned as a Python number, detached, or with no
  gradient with respect to the argument it is a function of.

The fifth kind, **generality** (a solution right only for the check's special case: balanced
classes, one shot, one step), is covered by the cases themselves: each exercise's visible and
hidden cases include a less special input (see its module).

A broken property ends the case with :class:`PropertyViolation`, whose ``problem`` says what
happened and whose ``hint`` names the property ("your function changed its input", "the loss has
no gradient"): :func:`mllib.checks.core.run_check` prints both. The checks run around the
learner's function only, never around the instructor's reference.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np
import torch

from .i18n import message

# --------------------------------------------------------------------------- the hints, one per property
def _hint(key: str, english: str) -> str:
    """The hint of one property, in English (a :class:`~mllib.checks.i18n.Text`; other languages: ``i18n``)."""
    return message(f"properties.{key}", english)()


INPUT_CHANGED = _hint("input_changed", (
    "your function changed its input: compute new tensors (x - y, not x -= y, x.sub_(y) or x.data = ..., "
    "also not under torch.no_grad()) and leave every argument as it was given; the caller still needs it"))
DICT_CHANGED = _hint("dict_changed", (
    "your function changed its input: it put other tensors into a dict (or list) it was given; build a "
    "new dict and return that, the caller's own must keep its tensors"))
RETURNED_INPUT = _hint("returned_input", (
    "your function returned its input: build and return a new dict (or list), since the caller keeps "
    "using the one it passed in"))
GRAD_LEFT = _hint("grad_left", (
    "your function left gradients in .grad of its inputs (a .backward() call does that, and later calls "
    "add to them); take gradients with torch.autograd.grad, which returns them and leaves the inputs "
    "clean"))
GENERATOR_UNUSED = _hint("generator_unused", (
    "your function never drew from the generator it was given: draw every random number with "
    "generator=<that generator>, so the same seed gives the same result"))
GLOBAL_RANDOM = _hint("global_random", (
    "your function drew from a global random generator: draw only with the generator it was given "
    "(generator=...), never with torch's, NumPy's or Python's global one"))
UNEXPECTED_RANDOM = _hint("unexpected_random", (
    "your function drew random numbers, but this exercise has one right answer and needs no randomness: "
    "compute it from the inputs alone"))
NOT_A_TENSOR = _hint("not_a_tensor", (
    "the result has the wrong type: return torch tensors where the exercise asks for them (no Python "
    "lists or numbers, no NumPy arrays), so the code that uses the result can compute with it"))
WRONG_DTYPE = _hint("wrong_dtype", (
    "the result has the wrong dtype: labels and indices are torch.long (what indexing and cross_entropy "
    "expect), and floating results keep the dtype of the inputs"))
NO_GRADIENT = _hint("no_gradient", (
    "the loss has no gradient: keep it a tensor computed from its inputs inside the autograd graph (no "
    ".item(), float(), .detach() or torch.no_grad()), since training calls .backward() on it"))
_PROBLEM = {key: message(f"properties.problem.{key}", english) for key, english in {
    "changed": "your function changed its input {path} in place",
    "grad_left": "your function left gradients in {path}.grad",
    "container": "your function changed the {kind} {path} it was given (its entries are not the tensors it held)",
    "returned": "your function returned its input {path} itself, not a new {kind}",
    "in_place": "your function tried to change an input in place ({error})",
    "global": "your function drew from {detail}",
    "unused": "your function never drew from the generator it was given",
    "loss_type": "the loss is a {kind}, not a tensor with a gradient",
    "detached": "the loss has no gradient with respect to {name} (it is detached from the graph)",
    "no_gradient": "the loss has no gradient with respect to {name}",
    "not_tensor": "{path} is a {kind}, expected a torch tensor",
    "dtype": "{path} has dtype {got}, expected {want}",
}.items()}
_GLOBAL = {key: message(f"properties.global.{key}", english) for key, english in {
    "torch": "torch's global generator (torch.rand..., torch.randperm... without generator=)",
    "numpy": "NumPy's global generator (np.random...)",
    "python": "Python's global generator (the random module)",
}.items()}


class PropertyViolation(Exception):
    """A learner's function broke a property: ``problem`` (what happened) and ``hint`` (the property)."""

    def __init__(self, problem: str, hint: str) -> None:
        super().__init__(problem)
        self.problem, self.hint = problem, hint


@dataclass(frozen=True)
class Properties:
    """The properties one exercise's answers must have (see the module docstring).

    frozen: positions of the arguments the function must leave as they are (values, dict and list
        contents, ``.grad``; an ``nn.Module``'s parameters and buffers), and must not return;
        ``None`` means all of them.
    random: the function is meant to draw random numbers from its ``torch.Generator`` arguments:
        each must be advanced. Either way, a draw from a global generator fails.
    typed: every tensor of the expected result must come back as a tensor of the same dtype.
    loss_of: position of the tensor argument the result is a differentiable function of; the
        learner's call gets it as a leaf requiring grad and the result must carry a gradient to it.
    """

    frozen: tuple[int, ...] | None = None
    random: bool = False
    typed: bool = False
    loss_of: int | None = None


_DECLARED: dict[str, Properties] = {}


def declare(exercise: str, properties: Properties) -> Properties:
    """Make ``properties`` the ones of ``exercise`` (its check module calls this once)."""
    if exercise in _DECLARED:
        raise ValueError(f"properties of exercise {exercise!r} are declared twice")
    _DECLARED[exercise] = properties
    return properties


def properties_of(exercise: str) -> Properties | None:
    """The declared properties of ``exercise`` (``"name"`` or ``"name (hidden tests)"``), or None."""
    return _DECLARED.get(exercise.split(" ")[0])


# --------------------------------------------------------------------------- what the arguments hold
def _walk(value: Any, path: str, seen: set[int]) -> Iterator[tuple[str, Any]]:
    """``(path, object)`` for ``value`` and everything it holds: tensors, dicts, lists, tuples,
    generators, a module's parameters and buffers (each object once)."""
    if id(value) in seen:
        return
    seen.add(id(value))
    yield path, value
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _walk(item, f"{path}[{key!r}]", seen)
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from _walk(item, f"{path}[{i}]", seen)
    elif isinstance(value, torch.nn.Module):
        for name, item in [*value.named_parameters(), *value.named_buffers()]:
            yield from _walk(item, f"{path}.{name}", seen)


class _Snapshot:
    """What the frozen arguments held before the call, to compare with after it."""

    def __init__(self, args: tuple, names: list[str], positions: tuple[int, ...] | None) -> None:
        chosen = range(len(args)) if positions is None else [p for p in positions if p < len(args)]
        seen: set[int] = set()
        self.items = [(path, obj) for i in chosen for path, obj in _walk(args[i], names[i], seen)]
        self.tensors = [(path, t, t.detach().clone(), t.grad is None)
                        for path, t in self.items if isinstance(t, torch.Tensor)]
        self.containers = [(path, c, _contents(c)) for path, c in self.items if isinstance(c, (dict, list))]

    def violation(self, result: Any) -> PropertyViolation | None:
        for path, tensor, before, had_no_grad in self.tensors:
            now = tensor.detach()
            if now.shape != before.shape or now.dtype != before.dtype or not _same_values(now, before):
                return PropertyViolation(_PROBLEM["changed"](path=path), INPUT_CHANGED)
            if had_no_grad and tensor.grad is not None:
                return PropertyViolation(_PROBLEM["grad_left"](path=path), GRAD_LEFT)
        for path, container, before in self.containers:
            if _contents(container) != before:
                return PropertyViolation(_PROBLEM["container"](kind=type(container).__name__, path=path),
                                         DICT_CHANGED)
        for path, container, _ in self.containers:
            if result is container:
                return PropertyViolation(_PROBLEM["returned"](path=path, kind=type(container).__name__),
                                         RETURNED_INPUT)
        return None


def _same_values(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal entries, a NaN equal to a NaN (an input holding NaN has not changed by holding it)."""
    if a.is_floating_point() or a.is_complex():
        return bool(((a == b) | (a.isnan() & b.isnan())).all())
    return torch.equal(a, b)


def _contents(container: dict | list) -> list:
    """The identity of what a dict or list holds (which object under which key)."""
    pairs = container.items() if isinstance(container, dict) else enumerate(container)
    return [(key, id(value)) for key, value in pairs]


def _numpy_state() -> tuple:
    """NumPy's global state: the key array and the position in it (a draw may change only the position)."""
    name, keys, position, has_gauss, gauss = np.random.get_state()
    return keys.copy(), position, has_gauss, gauss


def _global_states() -> tuple:
    return torch.get_rng_state(), _numpy_state(), random.getstate()


def _global_draw(before: tuple) -> str | None:
    """The name of the global generator that drew since ``before``, or None."""
    torch_state, numpy_state, python_state = before
    if not torch.equal(torch.get_rng_state(), torch_state):
        return _GLOBAL["torch"]()
    keys, *rest = _numpy_state()
    if not np.array_equal(keys, numpy_state[0]) or tuple(rest) != tuple(numpy_state[1:]):
        return _GLOBAL["numpy"]()
    if random.getstate() != python_state:
        return _GLOBAL["python"]()
    return None


# --------------------------------------------------------------------------- the watched call
class Watched:
    """Calls ``fn`` and raises :class:`PropertyViolation` when the call breaks one of ``properties``.

    Carries ``fn``'s ``__code__`` so an error is still reported at the learner's own line.
    """

    def __init__(self, fn: Callable, properties: Properties) -> None:
        self.fn, self.properties = fn, properties
        self.__code__ = getattr(fn, "__code__", None)

    def __call__(self, *args, **kwargs):
        props = self.properties
        if props.loss_of is not None and props.loss_of < len(args) and isinstance(args[props.loss_of], torch.Tensor):
            args = list(args)
            args[props.loss_of] = args[props.loss_of].detach().clone().requires_grad_(True)
            args = tuple(args)
        names = [f"argument {i + 1}" for i in range(len(args))]
        names = _argument_names(self.fn, len(args)) or names
        snapshot = _Snapshot(args, names, props.frozen)
        generators = [(path, g, g.get_state()) for path, g in _walk(args, "args", set())
                      if isinstance(g, torch.Generator)]
        globals_before = _global_states()
        try:
            result = self.fn(*args, **kwargs)
        except RuntimeError as err:
            if "in-place operation" in str(err):   # autograd refused to change an input in place
                raise PropertyViolation(_PROBLEM["in_place"](error=err), INPUT_CHANGED) \
                    from err
            raise
        problem = snapshot.violation(result)
        if problem is None:
            problem = _random_violation(props, generators, globals_before)
        if problem is None and props.loss_of is not None:
            problem = _loss_violation(result, args[props.loss_of], names[props.loss_of])
        if problem is not None:
            raise problem
        return result


def _argument_names(fn: Callable, count: int) -> list[str] | None:
    """The learner's own names of the first ``count`` positional parameters (``params``, ``x``...)."""
    code = getattr(fn, "__code__", None)
    inner = getattr(fn, "fn", None)
    while code is None and inner is not None:   # a wrapper such as CallGuard
        code, inner = getattr(inner, "__code__", None), getattr(inner, "fn", None)
    if code is None or code.co_argcount < count:
        return None
    return list(code.co_varnames[:count])


def _random_violation(props: Properties, generators: list, globals_before: tuple) -> PropertyViolation | None:
    drawn = _global_draw(globals_before)
    if drawn is not None:
        return PropertyViolation(_PROBLEM["global"](detail=drawn),
                                 GLOBAL_RANDOM if props.random else UNEXPECTED_RANDOM)
    if props.random:
        for _, generator, before in generators:
            if torch.equal(generator.get_state(), before):
                return PropertyViolation(_PROBLEM["unused"](),
                                         GENERATOR_UNUSED)
    return None


def _loss_violation(result: Any, leaf: torch.Tensor, name: str) -> PropertyViolation | None:
    if not isinstance(result, torch.Tensor):
        return PropertyViolation(_PROBLEM["loss_type"](kind=type(result).__name__), NO_GRADIENT)
    if not result.requires_grad:
        return PropertyViolation(_PROBLEM["detached"](name=name), NO_GRADIENT)
    if result.numel() == 1:
        (grad,) = torch.autograd.grad(result.sum(), [leaf], allow_unused=True, retain_graph=True)
        if grad is None:
            return PropertyViolation(_PROBLEM["no_gradient"](name=name), NO_GRADIENT)
    return None


# --------------------------------------------------------------------------- the result's types
def type_violation(got: Any, want: Any, path: str = "result") -> PropertyViolation | None:
    """A :class:`PropertyViolation` when a tensor of ``want`` comes back as something else or with
    another dtype in ``got`` (dicts, lists and tuples compared item by item), else None."""
    if isinstance(want, torch.Tensor):
        if not isinstance(got, torch.Tensor):
            return PropertyViolation(_PROBLEM["not_tensor"](path=path, kind=type(got).__name__), NOT_A_TENSOR)
        if got.dtype != want.dtype:
            return PropertyViolation(_PROBLEM["dtype"](path=path, got=got.dtype, want=want.dtype), WRONG_DTYPE)
        return None
    if isinstance(want, dict) and isinstance(got, dict):
        for key in want:
            if key in got:
                problem = type_violation(got[key], want[key], f"{path}[{key!r}]")
                if problem:
                    return problem
    if isinstance(want, (list, tuple)) and isinstance(got, (list, tuple)) and len(got) == len(want):
        for i, (g, w) in enumerate(zip(got, want)):
            problem = type_violation(g, w, f"{path}[{i}]")
            if problem:
                return problem
    return None


def watch(fn: Callable, properties: Properties | None) -> Callable:
    """``fn`` itself when no properties are declared, else a :class:`Watched` call of it."""
    return fn if properties is None else Watched(fn, properties)


__all__ = ["Properties", "PropertyViolation", "Watched", "declare", "properties_of", "type_violation", "watch",
           "INPUT_CHANGED", "DICT_CHANGED", "RETURNED_INPUT", "GRAD_LEFT", "GENERATOR_UNUSED", "GLOBAL_RANDOM",
           "UNEXPECTED_RANDOM", "NOT_A_TENSOR", "WRONG_DTYPE", "NO_GRADIENT"]
