"""Mutation testing of the exercise checks: wrong variants of every solution, and which layer rejects each.

Each exercise's solution (the instructor notebook's solution cell) is changed in one place at a
time, giving a *mutant*: an operator swapped (``+``/``-``, ``*``/``/``, a comparison, ``in``), a
minus sign dropped, a number changed, ``mean`` and ``sum`` swapped, a ``dim`` changed,
``create_graph`` flipped, a dtype changed (``long`` to ``int32``, ``float64`` to ``float32``), the
given generator replaced by the global one, and, around the whole function, the result detached,
converted to float32 or a list, an input changed in place, a dict entry replaced, ``.grad`` left
on an input, or a global random draw. Every mutant then runs through the visible check and
the hidden tests (lenient, output captured); a mutant *survives* a layer that passes it.

Some survivors are *equivalent* (the change cannot alter any result: a constant in a message,
``dim=-1`` on a 1-D tensor); the others are holes in the checks. :func:`run` returns every
mutant with its verdicts; ``python -m mllib course mutants`` (or ``python -m mllib.course.mutants``)
prints the score and the survivors, and exits 1 when a layer rejects less than its threshold of
the non-equivalent mutants (:data:`MIN_REJECTED`) or the survivors are not the documented ones
(:data:`SURVIVORS`, the table in docs/instructors.md)::

    python -m mllib course mutants                    # every exercise
    python -m mllib course mutants prototypes anil_step --json build/mutants.json
"""
from __future__ import annotations

import argparse
import ast
import contextlib
import copy
import io
import json
import os
import re
import signal
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator

import torch

SECONDS_PER_MUTANT = 30
# the least fraction of the non-equivalent mutants each layer must reject (issue 23)
MIN_REJECTED = {"hidden": 0.95, "visible": 0.90}
# every mutant that survives a layer, as (exercise, kind, change, why): "equivalent" (no result can
# change) or "acceptable" (a result changes within what the exercise allows). A change listed n times
# is n mutants. docs/instructors.md, "Mutation testing", explains each.
SURVIVORS = (
    ("adaptation_curve", "compare", "line 8: < -> <=", "equivalent"),
    ("polynomial_fit", "float32_result", "the result's tensors in float32 (int32 for integers)", "acceptable"),
    ("polynomial_fit", "list_result", "the result's tensors as Python lists and numbers", "acceptable"),
    *[("reinforce_loss", "sign", "line 5: unary minus dropped", "equivalent")] * 3,
    ("reinforce_loss", "sign", "line 6: unary minus dropped", "equivalent"),
    *[("support_attention", "sign", "line 5: unary minus dropped", "equivalent")] * 2,
)


@dataclass
class Mutant:
    exercise: str
    kind: str          # the operator, e.g. "arith", "detach_result"
    change: str        # what changed, e.g. "line 3: + -> -"
    visible: str = ""  # the visible check's status ("passed" means the mutant survived it)
    hidden: str = ""   # the hidden tests' status

    @property
    def survived_visible(self) -> bool:
        return self.visible == "passed"

    @property
    def survived_hidden(self) -> bool:
        return self.hidden == "passed"


# --------------------------------------------------------------------------- changes in the source
_ARITH = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult}
_COMPARE = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq,
            ast.NotEq: ast.Eq, ast.In: ast.NotIn, ast.NotIn: ast.In}
_SWAP_NAMES = {"mean": "sum", "sum": "mean", "long": "int32", "float64": "float32", "double": "float"}
_OP_TEXT = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">",
            ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!=", ast.In: "in", ast.NotIn: "not in"}


def _body_nodes(fn: ast.FunctionDef) -> list[ast.AST]:
    """Every node of ``fn``'s body after its docstring, in a fixed order."""
    body = fn.body[1:] if fn.body and isinstance(fn.body[0], ast.Expr) and \
        isinstance(getattr(fn.body[0], "value", None), ast.Constant) else fn.body
    return [node for stmt in body for node in ast.walk(stmt)]


def _changes(node: ast.AST) -> Iterator[tuple[str, str, Callable[[ast.AST], None]]]:
    """``(kind, description, apply)`` for every single change of ``node`` (``apply`` edits it in place)."""
    if isinstance(node, ast.BinOp) and type(node.op) in _ARITH:
        new = _ARITH[type(node.op)]
        yield "arith", f"{_OP_TEXT[type(node.op)]} -> {_OP_TEXT[new]}", lambda n, new=new: setattr(n, "op", new())
    if isinstance(node, ast.Compare):
        for i, op in enumerate(node.ops):
            if type(op) in _COMPARE:
                new = _COMPARE[type(op)]

                def flip(n, i=i, new=new):
                    n.ops[i] = new()
                yield "compare", f"{_OP_TEXT[type(op)]} -> {_OP_TEXT[new]}", flip
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        yield "sign", "unary minus dropped", lambda n: setattr(n, "op", ast.UAdd())
    if isinstance(node, ast.Constant) and type(node.value) in (int, float) and not isinstance(node.value, bool):
        new = node.value + 1 if isinstance(node.value, int) else (node.value * 2 if node.value else 1.0)
        yield "constant", f"{node.value!r} -> {new!r}", lambda n, new=new: setattr(n, "value", new)
    if isinstance(node, ast.Constant) and isinstance(node.value, bool):
        yield "constant", f"{node.value} -> {not node.value}", lambda n: setattr(n, "value", not n.value)
    if isinstance(node, ast.Attribute) and node.attr in _SWAP_NAMES:
        new = _SWAP_NAMES[node.attr]
        yield "name", f".{node.attr} -> .{new}", lambda n, new=new: setattr(n, "attr", new)
    if isinstance(node, ast.keyword) and node.arg == "dim" and isinstance(_literal(node.value), int):
        old, new = _literal(node.value), 0 if _literal(node.value) != 0 else -1
        yield "dim", f"dim={old} -> dim={new}", lambda n, new=new: setattr(n, "value", ast.Constant(new))
    if isinstance(node, ast.keyword) and node.arg == "generator":
        yield "generator", "generator=... -> the global generator", lambda n: setattr(n, "value", ast.Constant(None))


def _literal(node: ast.AST):
    try:
        return ast.literal_eval(node)
    except ValueError:
        return None


def source_mutants(source: str, function: str) -> Iterator[tuple[str, str, str]]:
    """``(kind, change, mutated source)`` for every single change inside ``function`` of ``source``."""
    tree = ast.parse(source)
    fn_index = next(i for i, node in enumerate(tree.body) if isinstance(node, ast.FunctionDef) and node.name == function)
    count = len(_body_nodes(tree.body[fn_index]))
    for position in range(count):
        for k, (kind, change, _) in enumerate(_changes(_body_nodes(tree.body[fn_index])[position])):
            mutated = copy.deepcopy(tree)
            node = _body_nodes(mutated.body[fn_index])[position]
            list(_changes(node))[k][2](node)
            line = getattr(node, "lineno", None) or getattr(_parent_line(mutated.body[fn_index], node), "lineno", "?")
            yield kind, f"line {line}: {change}", ast.unparse(ast.fix_missing_locations(mutated))


def _parent_line(fn: ast.FunctionDef, target: ast.AST) -> ast.AST | None:
    for node in ast.walk(fn):
        if hasattr(node, "lineno") and any(child is target for child in ast.iter_child_nodes(node)):
            return node
    return None


# --------------------------------------------------------------------------- changes around the whole function
def _tensors(value) -> list[torch.Tensor]:
    from mllib.checks.properties import _walk
    return [t for _, t in _walk(value, "args", set()) if isinstance(t, torch.Tensor) and t.numel()]


def _map_result(value, fn, hit: dict, when: Callable[[torch.Tensor], bool] = lambda t: True):
    """``value`` with ``fn`` applied to each of its tensors for which ``when`` holds (noted in ``hit``)."""
    if isinstance(value, torch.Tensor):
        if when(value):
            hit["applied"] = True
            return fn(value)
        return value
    if isinstance(value, dict):
        return {k: _map_result(v, fn, hit, when) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_map_result(v, fn, hit, when) for v in value)
    return value


def _detach(fn, hit):
    return lambda *a: _map_result(fn(*a), torch.Tensor.detach, hit, lambda t: t.requires_grad)


def _to_float32(fn, hit):
    return lambda *a: _map_result(fn(*a), lambda t: t.float() if t.is_floating_point() else t.int(), hit,
                                  lambda t: t.dtype not in (torch.float32, torch.int32, torch.bool))


def _to_list(fn, hit):
    return lambda *a: _map_result(fn(*a), torch.Tensor.tolist, hit)


def _in_place(fn, hit):
    def mutant(*args):
        out = fn(*args)
        tensors = _tensors(args)
        if tensors:
            hit["applied"] = True
            with torch.no_grad():
                tensors[0].add_(1)
        return out
    return mutant


def _replace_entry(fn, hit):
    def mutant(*args):
        out = fn(*args)
        for arg in args:
            if isinstance(arg, dict) and arg:
                key = next(iter(arg))
                if isinstance(arg[key], torch.Tensor):
                    hit["applied"] = True
                    arg[key] = arg[key].detach().clone()
                break
        return out
    return mutant


def _leave_grad(fn, hit):
    def mutant(*args):
        out = fn(*args)
        leaves = [t for t in _tensors(args) if t.requires_grad and t.is_leaf]
        if leaves:
            hit["applied"] = True
            sum((t * 0).sum() for t in leaves).backward()
        return out
    return mutant


def _global_draw(fn, hit):
    def mutant(*args):
        hit["applied"] = True
        torch.rand(1)
        return fn(*args)
    return mutant


# each makes ``fn`` wrong around the outside and notes in ``hit`` whether it changed anything at all
WRAPPERS: dict[str, tuple[str, Callable]] = {
    "detach_result": ("the result detached from the graph", _detach),
    "float32_result": ("the result's tensors in float32 (int32 for integers)", _to_float32),
    "list_result": ("the result's tensors as Python lists and numbers", _to_list),
    "input_in_place": ("an input changed in place under no_grad", _in_place),
    "dict_entry_replaced": ("an entry of an input dict replaced", _replace_entry),
    "grad_left": (".grad left on the inputs by a .backward()", _leave_grad),
    "global_draw": ("a draw from torch's global generator", _global_draw),
}


# --------------------------------------------------------------------------- running them
def solutions(notebooks: str | Path) -> dict[str, tuple[object, str, str]]:
    """``{exercise: (notebook, solution cell source, function name)}`` of the instructor notebooks."""
    from .exercises import find_exercises
    from .nbio import list_notebooks, read_notebook, source

    found = {}
    for path in list_notebooks(notebooks):
        nb = read_notebook(path)
        for ex in find_exercises(nb):
            call = re.search(r"checks\.check_(\w+)\((\w+)", source(nb.cells[ex.check_index]))
            if call:
                found[call.group(1)] = (nb, source(nb.cells[ex.cell_index]), call.group(2))
    return found


class _Timeout(Exception):
    pass


@contextlib.contextmanager
def _time_limit(seconds: int):
    def stop(signum, frame):
        raise _Timeout()
    previous = signal.signal(signal.SIGALRM, stop)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _judge(exercise: str, fn: Callable, reference: Callable | None) -> tuple[str, str]:
    from mllib.checks.exercise import SPECS, hidden_tests, visible_check

    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out), _time_limit(SECONDS_PER_MUTANT):
            visible = visible_check(SPECS[exercise], fn).status
            hidden = hidden_tests(exercise, fn, reference).status
    except _Timeout:
        return "timeout", "timeout"
    except Exception as err:  # noqa: BLE001 - a mutant that breaks the check itself counts as rejected
        return f"crash: {type(err).__name__}", f"crash: {type(err).__name__}"
    return visible, hidden


def run(notebooks: str | Path = "notebooks", exercises: list[str] | None = None, echo=None) -> list[Mutant]:
    """Every mutant of every (chosen) exercise with the verdicts of both layers."""
    from mllib.checks.core import STRICT_ENV

    before = os.environ.get(STRICT_ENV)
    os.environ[STRICT_ENV] = "0"            # a mutant's failed check prints (captured) instead of raising
    try:
        return _run(notebooks, exercises, echo)
    finally:
        if before is None:
            os.environ.pop(STRICT_ENV, None)
        else:
            os.environ[STRICT_ENV] = before


def _run(notebooks: str | Path, exercises: list[str] | None, echo) -> list[Mutant]:
    from .check_values import hidden_references, notebook_namespace
    from .nbio import list_notebooks, read_notebook

    references = {}
    for path in list_notebooks(notebooks):
        references.update(hidden_references(read_notebook(path), path.name))
    found = solutions(notebooks)
    results = []
    for exercise in exercises or sorted(found):
        if exercise not in found:
            raise ValueError(f"no exercise called {exercise!r}; known: {', '.join(sorted(found))}")
        nb, cell, name = found[exercise]
        variants = []
        for kind, change, text in source_mutants(cell, name):
            namespace = notebook_namespace(nb)
            exec(compile(text, f"<mutant of {exercise}>", "exec"), namespace)  # noqa: S102 - our own notebooks
            variants.append((kind, change, namespace[name], {"applied": True}))
        namespace = notebook_namespace(nb)
        exec(cell, namespace)  # noqa: S102
        for kind, (change, wrapper) in WRAPPERS.items():
            hit = {"applied": False}
            variants.append((kind, change, wrapper(namespace[name], hit), hit))
        started = time.perf_counter()
        for kind, change, fn, hit in variants:
            visible, hidden = _judge(exercise, fn, references.get(exercise))
            if hit["applied"]:      # a wrapper with nothing to change here (no dict, no tensor) is no mutant
                results.append(Mutant(exercise, kind, change, visible, hidden))
        if echo:
            mine = [m for m in results if m.exercise == exercise]
            echo(f"{exercise}: {len(mine)} mutants, {sum(not m.survived_visible for m in mine)} rejected by the "
                 f"visible check, {sum(not m.survived_hidden for m in mine)} by the hidden tests "
                 f"({time.perf_counter() - started:.1f} s)")
    return results


@dataclass
class Score:
    """How many mutants each layer rejects, of those that are not equivalent."""
    mutants: int
    equivalent: int
    rejected_visible: int   # of the non-equivalent ones
    rejected_hidden: int

    @property
    def non_equivalent(self) -> int:
        return self.mutants - self.equivalent

    def fraction(self, layer: str) -> float:
        """The share of the non-equivalent mutants that ``layer`` ("visible" or "hidden") rejects."""
        rejected = self.rejected_visible if layer == "visible" else self.rejected_hidden
        return rejected / self.non_equivalent if self.non_equivalent else 1.0


def _key(m: Mutant) -> tuple[str, str, str]:
    return m.exercise, m.kind, m.change


def _documented(exercises: set[str] | None) -> list[tuple[str, str, str, str]]:
    return [s for s in SURVIVORS if exercises is None or s[0] in exercises]


def score(mutants: list[Mutant], exercises: set[str] | None = None) -> Score:
    """The score of ``mutants``; a mutant that survives and is documented as equivalent does not count."""
    equivalent = [s[:3] for s in _documented(exercises) if s[3] == "equivalent"]
    counted = []
    for m in mutants:
        if (m.survived_visible or m.survived_hidden) and _key(m) in equivalent:
            equivalent.remove(_key(m))
        else:
            counted.append(m)
    return Score(len(mutants), len(mutants) - len(counted), sum(not m.survived_visible for m in counted),
                 sum(not m.survived_hidden for m in counted))


def problems(mutants: list[Mutant], exercises: set[str] | None = None) -> list[str]:
    """One line per broken promise: a layer below its threshold, a survivor not documented in
    :data:`SURVIVORS`, a documented survivor now rejected (``exercises``: those that ran; None: all)."""
    found = score(mutants, exercises)
    lines = [f"the {layer} {'checks' if layer == 'visible' else 'tests'} reject {found.fraction(layer):.1%} of the "
             f"{found.non_equivalent} non-equivalent mutants, below the {least:.0%} required"
             for layer, least in MIN_REJECTED.items() if found.fraction(layer) < least]
    documented = sorted(s[:3] for s in _documented(exercises))
    survived = sorted(_key(m) for m in mutants if m.survived_visible or m.survived_hidden)
    for key in sorted(set(survived) | set(documented)):
        if survived.count(key) > documented.count(key):
            lines.append(f"undocumented survivor: {': '.join(key)} (reject it with a check, or add it to "
                         f"SURVIVORS in mllib/course/mutants.py and docs/instructors.md with why)")
        elif survived.count(key) < documented.count(key):
            lines.append(f"documented survivor no longer survives: {': '.join(key)} (remove it from SURVIVORS "
                         f"and docs/instructors.md)")
    return lines


def summary(mutants: list[Mutant]) -> str:
    total = len(mutants)
    visible = sum(not m.survived_visible for m in mutants)
    hidden = sum(not m.survived_hidden for m in mutants)
    lines = [f"{total} mutants: {visible} ({100 * visible / max(total, 1):.1f}%) rejected by the visible checks, "
             f"{hidden} ({100 * hidden / max(total, 1):.1f}%) by the hidden tests"]
    for m in mutants:
        if m.survived_visible or m.survived_hidden:
            layers = " and ".join(x for x, s in (("visible", m.survived_visible), ("hidden", m.survived_hidden)) if s)
            lines.append(f"  survives {layers}: {m.exercise}: {m.kind}, {m.change}")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("exercises", nargs="*", help="exercise names (default: all)")
    parser.add_argument("--notebooks", default="notebooks", help="the instructor notebooks (default: notebooks)")
    parser.add_argument("--json", default=None, help="also write every mutant and its verdicts to this file")


def report(args) -> int:
    """Run, print the summary, the score against :data:`MIN_REJECTED` and every problem; 1 if any."""
    torch.set_num_threads(1)
    mutants = run(args.notebooks, args.exercises or None, echo=lambda msg: print(msg, flush=True))
    print(summary(mutants))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps([asdict(m) for m in mutants], indent=1), encoding="utf-8")
    found = score(mutants, set(args.exercises) if args.exercises else None)
    print(f"of the {found.non_equivalent} non-equivalent mutants: "
          + ", ".join(f"{found.fraction(layer):.1%} rejected by the {layer} layer (at least {least:.0%})"
                      for layer, least in MIN_REJECTED.items()))
    lines = problems(mutants, set(args.exercises) if args.exercises else None)
    for line in lines:
        print(line)
    print("mutation testing: ok" if not lines else f"mutation testing: {len(lines)} problem(s)")
    return 1 if lines else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mllib.course.mutants", description=__doc__.split("\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return report(args)
    except ValueError as err:
        parser.error(str(err))


if __name__ == "__main__":
    sys.exit(main())
