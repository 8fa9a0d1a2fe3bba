"""The shape of the code: one import direction (no cycles, function-local imports included), a taught
core whose functions fit on a screen, and docstring examples that run."""
from __future__ import annotations

import ast
import doctest
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "mllib"
TAUGHT_CORE = ["inner.py", "update_rules.py", "models.py", "algorithms.py", "tasks", "train.py", "evaluate.py"]
MAX_FUNCTION_LINES = 60
# Modules whose docstring examples are run here (the taught core and the helpers notebooks call).
DOCTEST_MODULES = [
    "mllib.inner", "mllib.update_rules", "mllib.models", "mllib.algorithms", "mllib.tasks.batch", "mllib.tasks.sinusoid",
    "mllib.tasks.omniglot", "mllib.train", "mllib.evaluate", "mllib.arguments", "mllib.progress",
    "mllib.device", "mllib.plots", "mllib.diagnostics", "mllib.timing",
]


# ----------------------------------------------------------------------------- import cycles

def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(source: str, name: str, is_package: bool, known: set[str]) -> set[str]:
    """Every module of ``known`` that ``source`` (module ``name``) imports, anywhere in the file
    (inside functions too), with the packages whose ``__init__`` such an import runs first."""
    package = name if is_package else name.rpartition(".")[0]
    targets = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            base = (base + "." + node.module if node.module else base) if node.level else node.module
            targets.add(base)
            targets.update(f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in known)
    edges = set()
    for target in targets:
        parts = target.split(".")
        for i in range(1, len(parts) + 1):  # importing a.b.c runs a, a.b, a.b.c (ancestors of `name` are running)
            module = ".".join(parts[:i])
            if module in known and module != name and not name.startswith(module + "."):
                edges.add(module)
    return edges


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    files = {module_name(p): p for p in package.rglob("*.py")}
    known = set(files)
    return {name: imported_modules(path.read_text(), name, path.name == "__init__.py", known)
            for name, path in files.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_cycle_finder_finds_a_cycle_through_a_function_local_import():
    known = {"p", "p.a", "p.b", "p.c"}
    a = "from p.b import f\n"
    b = "def g():\n    from . import c\n    return c\n"      # a lazy import still ties b to c
    c = "import p.a\n"
    graph = {"p": set(), "p.a": imported_modules(a, "p.a", False, known),
             "p.b": imported_modules(b, "p.b", False, known), "p.c": imported_modules(c, "p.c", False, known)}
    assert graph["p.b"] == {"p.c"}
    assert cycles(graph) == [["p.a", "p.b", "p.c"]]
    graph["p.c"] = set()
    assert cycles(graph) == []


def test_importing_a_submodule_runs_its_package_first():
    known = {"p", "p.x", "p.x.y", "p.z"}
    assert imported_modules("from p.x.y import f", "p.z", False, known) == {"p.x", "p.x.y"}
    assert imported_modules("from .y import f", "p.x.w", False, known | {"p.x.w"}) == {"p.x.y"}


def test_mllib_imports_have_no_cycle():
    graph = import_graph()
    assert "mllib.evaluate" in graph["mllib.train"]          # the graph is read (train uses evaluate) ...
    assert "mllib.train" not in graph["mllib.evaluate"]      # ... and points one way
    assert cycles(graph) == []


# ----------------------------------------------------------------------------- function length

def code_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines from ``def`` to the end of the function, not counting its docstring (examples are welcome)."""
    lines = node.end_lineno - node.lineno + 1
    first = node.body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        lines -= first.end_lineno - first.lineno + 1
    return lines


def long_functions(source: str, limit: int = MAX_FUNCTION_LINES) -> list[tuple[str, int]]:
    return [(node.name, code_lines(node)) for node in ast.walk(ast.parse(source))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and code_lines(node) > limit]


def test_function_length_counts_code_not_docstring():
    body = "\n".join(f"    x{i} = {i}" for i in range(3))
    source = f'def f():\n    """Doc\n    string."""\n{body}\n'
    assert [code_lines(n) for n in ast.walk(ast.parse(source)) if isinstance(n, ast.FunctionDef)] == [4]
    assert long_functions(source, limit=3) == [("f", 4)] and long_functions(source, limit=4) == []


@pytest.mark.parametrize("where", TAUGHT_CORE)
def test_taught_core_functions_fit_on_a_screen(where):
    path = PACKAGE / where
    files = sorted(path.rglob("*.py")) if path.is_dir() else [path]
    too_long = {f"{p.relative_to(ROOT)}:{name}": n for p in files for name, n in long_functions(p.read_text())}
    assert not too_long, f"functions over {MAX_FUNCTION_LINES} lines of code: {too_long}"


# ----------------------------------------------------------------------------- docstring examples

@pytest.mark.parametrize("name", DOCTEST_MODULES)
def test_docstring_examples_run(name, capsys):
    module = importlib.import_module(name)
    tests = [t for t in doctest.DocTestFinder().find(module) if t.examples]
    assert tests, f"{name} has no docstring example"
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in tests:
        runner.run(test)
    report = capsys.readouterr().out
    assert runner.summarize(verbose=False).failed == 0, report
