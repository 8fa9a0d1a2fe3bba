"""Every figure text of a translated notebook has its translation in ``mllib.figure_text.LABELS``.

A static scan (``ast``, nothing is run): the code cells of every notebook that has a ``zh/text/``
translation file, and ``mllib/plots.py`` (the drawing functions those notebooks call). It collects
each string literal and f-string passed as figure text: the text argument of ``set_title``,
``suptitle``, ``set_xlabel``/``xlabel``, ``supxlabel``, ``text``, ``annotate``, tick labels,
``legend`` labels, and every ``label=`` keyword. An f-string stands for all its texts: each
``{...}`` part becomes a number (``{'s' * (n != 1)}`` both "" and "s", an ``a if c else b`` part
both branches), and each such text must have an entry: an exact key, or a ``{}`` pattern that
matches it (an entry may translate to the same text: maths, names).

What the scan follows besides literals: a name bound to a string in the same notebook (``X = "..."``,
``for a, b in (("...", v), ...)``, ``for ax, a in zip(axes, ("...", ...))``, ``x += "..."``; in its
own cell the binding before the use), and a parameter of a function that passes it on to figure text
(its default, and the argument of every call of that function in the notebook, e.g.
``show_task(task, "A 5-way 1-shot task ...")``, ``plot_meta_training(..., ylabel="...")``). Texts it
cannot see (built by a helper's return value, or from a list unpacked in a loop over non-literals)
are listed in ``UNSEEN``: their translations are in the dictionary by hand, and a new one fails here
until it is looked at and listed.
"""
from __future__ import annotations

import ast
import functools
import itertools
import json
import re
from pathlib import Path

from mllib.figure_text import LABELS, _pattern, translate

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = ("mllib/plots.py",)     # the drawing code the translated notebooks call
LANG = "zh"
BOOK = ROOT / "notebooks"          # the English book: translated where zh/text/<its stem>.json exists

#: call name -> (positions, keywords) of its figure-text arguments; ``label=`` counts for every call
FIRST = ((0,), ("label", "t", "xlabel", "ylabel"))
TEXT_ARGS = {
    **dict.fromkeys(("set_xlabel", "set_ylabel", "set_title", "suptitle", "supxlabel", "supylabel",
                     "xlabel", "ylabel", "title", "set_label"), FIRST),
    **dict.fromkeys(("text", "figtext"), ((2,), ("s",))),
    "annotate": ((0,), ("text",)),
    **dict.fromkeys(("set_xticklabels", "set_yticklabels"), ((0,), ("labels",))),
    **dict.fromkeys(("set_xticks", "set_yticks", "xticks", "yticks"), ((1,), ("labels",))),
    "legend": (None, ("labels",)),      # legend(labels) or legend(handles, labels)
}

#: figure texts the scan cannot see, by notebook: {the expression: (why, the texts it gives)}; the
#: texts are written out by hand and checked like the scanned ones
UNSEEN = {
    "01_learning_bias.ipynb": {
        "title": ("the panel titles of the list `panels`, unpacked in a loop over zip(axes.flat, panels)",
                  ["polynomial, degree 5", "random start", "pre-trained start", "meta-learned start"]),
        "label": ("the curve labels of `panels`: steps_label(s) for s in 0, 1, 10 and FT_STEPS = 50, names",
                  ["least squares", "0 steps", "1 step", "10 steps", "50 steps", "mean task -1.62 cos x"]),
    },
    "04_outer_loop.ipynb": {
        "[str(k) for k in STEPS_SWEEP]": ("tick labels: numbers", []),
        "name": ("the keys of `curves` (cell 37's dict `per_task`)",
                 ["MAML start", "pre-trained start", "random start"]),
        "handles.keys()": ("the legend labels of both panels, each scanned where it is drawn", []),
    },
    "05_maml_omniglot.ipynb": {
        "[f'{name} ({trained})' for name, *_rest, trained in rows]": (
            "the bar labels: each method of `rows` with its training budget (steps_of(card), "
            "live_budget_text)",
            ["train from scratch on the support set (none)", "pre-train + fine-tune head (weak) (400 minibatches)",
             "prototypical network (1,000 meta-steps x 8)", "MAML, live run (100 meta-steps x 8)",
             "MAML, learned head, quick (1,000 meta-steps x 8)", "MAML, zero head, quick (1,000 meta-steps x 8)",
             "MAML, learned head, long (10,000 meta-steps x 8)",
             "MAML, zero head, laptop (10,000 meta-steps x 16)"]),
    },
    "06_learning_the_learning_algorithm.ipynb": {
        "algo": ("the curve labels: the keys of `runs` (the algorithms of cell 10, code names)",
                 ["maml", "metasgd", "anil"]),
        "name[3:]": ("the panel titles: the learner's tensor names (body.0.weight, ..., head.bias), code", []),
        "sorted({k.rsplit('.', 1)[0] for k in maml_start})": ("tick labels: the layer names body.0, body.2 "
                                                              "(code) and head (as in the legend)", ["head"]),
        "list(FAMILY['family'])": ("tick labels: the algorithms of benchmarks/results/family_at_one_budget.json "
                                   "(code names; reptile if the benchmark adds it)",
                                   ["maml", "anil", "fomaml", "metasgd", "reptile"]),
        "[f'{lr:g}' for lr in sweep['inner_lrs']]": ("tick labels: numbers", []),
        "sweep['inner_steps']": ("tick labels: numbers", []),
        "[labels[k] for k in shown]": ("tick labels: the values of the dict `labels` (cell 32)",
                                       ["plain\n2-step", "+ multi-\nstep loss", "+ per-step\nrates",
                                        "+ per-step\nbatch norm"]),
    },
    "07_learning_the_update_rule.ipynb": {
        "name": ("the curve labels of cells 19 and 22: the keys of `methods` (cell 18; rates as printed: "
                 "best_sgd 0.01, best_adam 0.003, LR 0.01)",
                 ["SGD (tuned rate 0.01)", "Adam (tuned rate 0.003)", "learned optimizer, random start",
                  "MAML start + SGD (0.01)", "Meta-SGD (start + learned rates)", "learned optimizer, MAML start"]),
        "[str(k) for k in ic_by_size]": ("tick labels: numbers", []),
    },
    "08_meta_reinforcement_learning.ipynb": {
        "name": ("the curve labels: the keys of `ci` (the starts of cell 20)",
                 ["random init", "pre-trained + fine-tuning", "MAML"]),
    },
    "09_meta_learning_today.ipynb": {
        "f'{tasks} classes' + labelling": ("the panel titles: tasks in ('training', 'new'), each with its labelling",
                                           ["training classes (their own labelling)", "new classes (permuted labels)"]),
        "label.get(name, name)": ("the curve labels: the keys of `errors`, three renamed by the dict `label` "
                                  "(rates as printed: RATES = {1: 0.3, 2: 0.2}, eta = 0.47)",
                                  ["least squares", "ridge", "1 GD step (rate 0.3, tuned)", "2 GD steps (rate 0.2, tuned)",
                                   "1 GD step at eta = 0.47 (read from the weights)", "1-layer transformer",
                                   "2-layer transformer"]),
        "name + rough": ("the panel titles: the keys of `FAMILIES`, the rough one with its lengthscale",
                         ["in the prior", "rougher functions (lengthscale 0.1)", "inputs outside [-1, 1]"]),
        "labels": ("the figure legend: the labels of the third panel, each scanned where it is drawn", []),
        "label": ("the legend labels of `DOMAIN_STYLE`, unpacked in a loop",
                  ["Omniglot test characters (in domain)", "printed glyphs (domain shift)"]),
        "[tick(n) for n in names]": ("the tick labels: tick(name) for each learner of `LEARNERS` (method, variant, budget)",
                                     ["pretrain +\nnearest centroid\n5,500 steps", "pretrain +\nlinear probe\n5,500 steps",
                                      "MAML\n(quick)\n1,000 meta-steps", "ProtoNet\n(quick)\n1,000 meta-steps",
                                      "MAML\n(laptop, 64 filters)\n10,000 meta-steps"]),
    },
}


def _call_name(call: ast.Call) -> str | None:
    return call.func.attr if isinstance(call.func, ast.Attribute) else getattr(call.func, "id", None)


def _text_args(call: ast.Call) -> list[ast.expr]:
    """The argument expressions of ``call`` that are figure text."""
    name = _call_name(call)
    found = [kw.value for kw in call.keywords if kw.arg == "label"]
    if name not in TEXT_ARGS:
        return found
    positions, keywords = TEXT_ARGS[name]
    args = [a for a in call.args if not isinstance(a, ast.Starred)]
    if positions is None:                                       # legend
        positions = (1,) if len(args) >= 2 else (0,) if len(call.args) == 1 and args else ()
    found += [args[i] for i in positions if i < len(args)]
    return found + [kw.value for kw in call.keywords if kw.arg in keywords and kw.arg != "label"]


def _variants(node: ast.expr, names=lambda name: None) -> list[str]:
    """The texts a ``{...}`` part of an f-string may give: its literal choices (a name bound only to
    strings gives those), else a number."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult):   # 's' * (n != 1)
        for side in (node.left, node.right):
            if isinstance(side, ast.Constant) and isinstance(side.value, str):
                return ["", side.value]
    if isinstance(node, ast.IfExp):
        return [v for branch in (node.body, node.orelse) for v in _variants(branch, names)]
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.Name) and (values := names(node.id)):
        if all(isinstance(v, ast.Constant) and isinstance(v.value, str) for v in values):
            return [v.value for v in values]
    return ["7"]


def _fstring_texts(node: ast.JoinedStr, names=lambda name: None) -> list[str]:
    parts = [[p.value] if isinstance(p, ast.Constant) else _variants(p.value, names) for p in node.values]
    return ["".join(choice) for choice in itertools.product(*parts)]


class Scan:
    """The figure texts of one unit (a notebook's code cells, or a module): ``texts`` as
    ``{text: where}``, ``unseen`` the names it could not resolve."""

    def __init__(self, trees: list[tuple[str, ast.AST]], flows: dict[str, dict[str, int]] | None = None):
        self.trees = trees
        self.texts: dict[str, str] = {}
        self.unseen: dict[str, str] = {}
        self.bound: dict[tuple[str, str], list[tuple[int, ast.expr]]] = {}   # (line, literal) bindings
        self.dynamic: dict[tuple[str, str], list[int]] = {}   # lines binding a name to a non-literal
        self.appended: dict[tuple[str, str], list[ast.expr]] = {}   # name += value
        self.flows = dict(flows or {})   # function -> {parameter: position} that becomes figure text
        self.calls: list[tuple[str, ast.Call]] = []
        for where, tree in trees:
            self._index(where, tree)
        for where, tree in trees:
            for node in ast.walk(tree):
                if isinstance(node, ast.Call):
                    for arg in _text_args(node):
                        self._collect(arg, where, node.lineno, self._function_of(tree, node))
        for where, call in self.calls:                # arguments of calls that pass on to figure text
            params = self.flows.get(_call_name(call), {})
            for param, pos in params.items():
                args = [a for a in call.args if not isinstance(a, ast.Starred)]
                arg = args[pos] if pos < len(args) else next(
                    (kw.value for kw in call.keywords if kw.arg == param), None)
                if arg is not None:
                    self._collect(arg, where, call.lineno, None)

    def _index(self, where: str, tree: ast.AST) -> None:
        """Names bound to literals (``bound``) or to anything else (``dynamic``) in the cell ``where``."""
        def bind(target, value, line):
            if isinstance(target, ast.Name):
                self.bound.setdefault((where, target.id), []).append((line, value))
            elif isinstance(target, ast.Tuple) and isinstance(value, ast.Tuple) \
                    and len(value.elts) == len(target.elts):
                for t, v in zip(target.elts, value.elts):
                    bind(t, v, line)
            else:
                unbound(target, line)

        def unbound(target, line):
            for n in ast.walk(target):
                if isinstance(n, ast.Name):
                    self.dynamic.setdefault((where, n.id), []).append(line)

        for node in ast.walk(tree):
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    bind(target, node.value, node.lineno)
            elif isinstance(node, ast.AugAssign) and isinstance(node.op, ast.Add) \
                    and isinstance(node.target, ast.Name):
                self.appended.setdefault((where, node.target.id), []).append(node.value)
            elif isinstance(node, (ast.AugAssign, ast.AnnAssign, ast.NamedExpr)):
                unbound(node.target, node.lineno)
            elif isinstance(node, (ast.For, ast.comprehension)):
                if isinstance(node.iter, (ast.Tuple, ast.List)):
                    for item in node.iter.elts:
                        bind(node.target, item, node.iter.lineno)
                elif (_call_name(node.iter) if isinstance(node.iter, ast.Call) else None) == "zip" and \
                        isinstance(node.target, ast.Tuple) and len(node.target.elts) == len(node.iter.args):
                    for target, arg in zip(node.target.elts, node.iter.args):   # zip(axes, ("a", "b"))
                        if isinstance(arg, (ast.Tuple, ast.List)):
                            for item in arg.elts:
                                bind(target, item, node.iter.lineno)
                        else:
                            unbound(target, node.iter.lineno)
                else:
                    unbound(node.target, node.iter.lineno)
            elif isinstance(node, ast.Call):
                self.calls.append((where, node))

    def _resolve(self, cell: str, name: str, line: int) -> list[ast.expr] | None:
        """What ``name`` is bound to at ``line`` of ``cell``: the cell's last binding statement before
        that line (else the cell's bindings, else the other cells'); None when it is not a literal."""
        events = [(n, v) for n, v in self.bound.get((cell, name), [])] + \
            [(n, None) for n in self.dynamic.get((cell, name), [])]
        if events:
            before = [n for n, _ in events if n <= line]
            group = [v for n, v in events if not before or n == max(before)]
            return None if any(v is None for v in group) else group
        found = [v for (c, n), values in self.bound.items() if n == name for _, v in values]
        return found or None

    @staticmethod
    def _function_of(tree: ast.AST, target: ast.AST) -> ast.FunctionDef | None:
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and any(n is target for n in ast.walk(node)):
                inner = [f for f in ast.walk(node) if isinstance(f, ast.FunctionDef) and f is not node
                         and any(n is target for n in ast.walk(f))]
                return inner[-1] if inner else node
        return None

    def _collect(self, node: ast.expr, cell: str, line: int, function: ast.FunctionDef | None) -> None:
        where = f"{cell}, line {line}"
        for text in self._strings(node, cell, line, function, ()):
            self.texts.setdefault(text, where)

    def _strings(self, node: ast.expr, cell: str, line: int, function, seen) -> list[str]:
        """The texts ``node`` (at ``line`` of ``cell``) may be; what it cannot follow goes to ``unseen``."""
        where = f"{cell}, line {line}"
        if isinstance(node, ast.Constant):
            return [node.value] if isinstance(node.value, str) else []
        if isinstance(node, ast.JoinedStr):
            return _fstring_texts(node, lambda name: self._resolve(cell, name, line))
        if isinstance(node, ast.IfExp):
            return [*self._strings(node.body, cell, line, function, seen),
                    *self._strings(node.orelse, cell, line, function, seen)]
        if isinstance(node, (ast.List, ast.Tuple)):
            return [t for elt in node.elts for t in self._strings(elt, cell, line, function, seen)]
        if isinstance(node, ast.Name) and node.id in seen:
            return []
        if isinstance(node, ast.Name):
            params = [a.arg for a in function.args.args] if function else []
            if node.id in params:                            # a parameter: its default and its callers
                self.flows.setdefault(function.name, {})[node.id] = params.index(node.id)
                defaults = function.args.defaults
                offset = len(params) - len(defaults)
                if params.index(node.id) >= offset:
                    return self._strings(defaults[params.index(node.id) - offset], cell, line, None, seen)
                return []
            values = self._resolve(cell, node.id, line)
            if values is None:
                self.unseen.setdefault(node.id, where)
                return []
            base = [t for v in values for t in self._strings(v, cell, line, None, (*seen, node.id))]
            for tail in self.appended.get((cell, node.id), []):          # name += "..." (maybe)
                base += [b + t for b in base for t in self._strings(tail, cell, line, None, (*seen, node.id))]
            return base
        self.unseen.setdefault(ast.unparse(node), where)
        return []


def translated_notebooks() -> list[Path]:
    """The English notebooks with a translation file (as ``mllib.course.translation`` finds them;
    read here without importing the course tools, which take seconds)."""
    return [BOOK / (text.stem + ".ipynb") for text in sorted((ROOT / LANG / "text").glob("*.json"))
            if (BOOK / (text.stem + ".ipynb")).is_file()]


def _cells(path: Path) -> list[tuple[str, ast.AST]]:
    trees = []
    for i, cell in enumerate(json.loads(path.read_text(encoding="utf-8"))["cells"]):
        if cell["cell_type"] == "code":
            text = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
            code = "\n".join("" if line.lstrip().startswith(("%", "!")) else line
                             for line in text.splitlines())
            trees.append((f"{path.name} cell {i}", ast.parse(code)))
    return trees


@functools.lru_cache(maxsize=1)
def _scans() -> dict[str, Scan]:
    library = Scan([(name, ast.parse((ROOT / name).read_text(encoding="utf-8"))) for name in LIBRARY])
    scans = {name: library for name in LIBRARY}
    for path in translated_notebooks():
        scans[path.name] = Scan(_cells(path), library.flows)
    return scans


def has_entry(text: str, table: dict[str, str]) -> bool:
    """An exact key, or a ``{}`` pattern that matches all of ``text``."""
    return text in table or any("{}" in key and _pattern(key).match(text) for key in table)


def test_the_scan_sees_the_figure_texts_of_the_translated_notebooks():
    scans = _scans()
    assert {"01_learning_bias.ipynb", "02_task_sampling.ipynb", "03_inner_loop.ipynb",
            "05_maml_omniglot.ipynb"} <= set(scans)
    seen = scans["mllib/plots.py"].texts
    assert {"meta-step", "query loss after adaptation", "meta-training (moving average of 7)"} <= set(seen)
    nb = scans["05_maml_omniglot.ipynb"].texts
    assert {"validation: 7 inner step", "validation: 7 inner steps", "bn=batch (transductive)"} <= set(nb)
    assert "A 5-way 1-shot task: one support image per class (left), query images (right)" in \
        scans["02_task_sampling.ipynb"].texts                    # through show_task's parameter
    assert "query MSE after 1 step" in scans["01_learning_bias.ipynb"].texts   # plot_meta_training(ylabel=)


def test_every_figure_text_has_a_translation():
    table = LABELS[LANG]
    texts = [(text, where) for scan in _scans().values() for text, where in scan.texts.items()]
    texts += [(text, f"{name}, by hand: {expr}") for name, unseen in UNSEEN.items()
              for expr, (_why, listed) in unseen.items() for text in listed]
    missing = [f"{text!r} ({where})" for text, where in texts if text.strip() and not has_entry(text, table)]
    assert not missing, (f"{len(missing)} figure text(s) without a LABELS[{LANG!r}] entry in "
                         "mllib/figure_text.py (an f-string's {...} parts shown as 7):\n  "
                         + "\n  ".join(sorted(set(missing))))


def test_texts_the_scan_cannot_see_are_listed():
    new = [f"{name}: {expr} ({where})" for name, scan in _scans().items()
           for expr, where in scan.unseen.items() if expr not in UNSEEN.get(name, {})]
    assert not new, ("figure text the scan cannot follow: translate its texts in LABELS by hand and "
                     "list it in UNSEEN:\n  " + "\n  ".join(new))


def test_keys_are_written_once():
    """A key written twice in the dictionary's source would silently keep only its last value."""
    tree = ast.parse((ROOT / "mllib/figure_text.py").read_text(encoding="utf-8"))
    table = next(node.value for node in ast.walk(tree) if isinstance(node, ast.AnnAssign)
                 and getattr(node.target, "id", None) == "LABELS")
    keys = [ast.literal_eval(k) for k in table.values[list(map(ast.literal_eval, table.keys)).index(LANG)].keys]
    assert len(keys) == len(set(keys)), sorted({k for k in keys if keys.count(k) > 1})


def test_patterns_keep_their_parts_and_are_not_shadowed():
    table = LABELS[LANG]
    for key, value in table.items():
        assert value.strip(), key
        assert key.count("{}") == value.count("{}"), f"{key!r} -> {value!r}: the {{}} parts differ"
        if "{}" in key:      # an earlier pattern that also matches would take this one's texts
            parts = [f"{9 + i}" for i in range(key.count("{}"))]
            assert translate(key.format(*parts), LANG) == value.format(*parts), f"{key!r} is shadowed"


def test_chinese_style_no_space_between_chinese_and_latin():
    cjk = r"[\u3400-\u9fff\uff00-\uffef\u3000-\u303f]"
    bad = [v for v in LABELS[LANG].values()
           if re.search(rf"{cjk} +[A-Za-z0-9{{$]|[A-Za-z0-9}}$] +{cjk}", v)]
    assert not bad, "a space between Chinese and Latin letters or numbers: " + ", ".join(bad)
