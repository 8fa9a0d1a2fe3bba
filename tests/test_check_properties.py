"""The generic properties of ``mllib.checks.properties``, exercise by exercise.

Each planted wrong answer below is the instructor's solution (so its values are right) plus one
broken property: an input changed in place under ``torch.no_grad()``, a dict entry replaced, a
``.backward()`` that leaves ``.grad`` behind, a draw from a global generator, a list or another
dtype where a tensor is expected, a loss that has no gradient, an answer right only for the
check's special case. Every one passed the checks before the properties existed (the values are
right); now each fails the visible check, with a hint that names the property, and the hidden
tests. The solution itself still passes both.
"""
from __future__ import annotations

import math
import random
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from conftest import notebook_reference
from mllib import checks
from mllib.checks import properties as P
from mllib.checks.exercise import SPECS, hidden_tests, spec_of, visible_check
from mllib.checks.properties import Properties, PropertyViolation, Watched, type_violation
from mllib.course import find_exercises
from mllib.course.check_values import notebook_namespace
from mllib.course.nbio import list_notebooks, read_notebook, source

pytestmark = pytest.mark.usefixtures("lenient_checks")
ROOT = Path(__file__).resolve().parents[1]


_SOLUTIONS: dict = {}


def solution(name):
    """The instructor's solution of exercise ``name`` (its notebook's solution cell): it must not call the
    library function the exercise replaces, so the visible check accepts it (some references do call it)."""
    if not _SOLUTIONS:
        for path in list_notebooks(ROOT / "notebooks"):
            nb = read_notebook(path)
            for ex in find_exercises(nb):
                call = re.search(r"checks\.check_(\w+)\((\w+)", source(nb.cells[ex.check_index]))
                namespace = notebook_namespace(nb)
                exec(source(nb.cells[ex.cell_index]), namespace)  # noqa: S102 - our own notebooks
                _SOLUTIONS[call.group(1)] = namespace[call.group(2)]
    return _SOLUTIONS[name]


def reference(name):
    """The graded reference of the hidden tests (none for the property-checked split)."""
    return None if name == "support_query_split" else notebook_reference(name)


def _tensors(args):
    return [t for _, t in P._walk(args, "args", set()) if isinstance(t, torch.Tensor) and t.numel()]


# ---------------------------------------------------------------- planted wrong answers: reference + one broken property
def changes_input_in_place(ref):
    def fn(*args):
        out = ref(*args)
        with torch.no_grad():          # the classic: an update written into the caller's tensor
            _tensors(args)[0].add_(1)
        return out
    return fn


def replaces_a_dict_entry(ref):
    def fn(*args):
        out = ref(*args)
        given = next(a for a in args if isinstance(a, dict))
        key = next(iter(given))
        given[key] = given[key].detach().clone()
        return out
    return fn


def leaves_grad(ref):
    def fn(*args):
        out = ref(*args)
        leaves = [t for t in _tensors(args) if t.requires_grad]
        sum((t * 0).sum() for t in leaves).backward()
        return out
    return fn


def draws_from_global_rng(ref):
    def fn(*args):
        torch.rand(1)
        return ref(*args)
    return fn


def returns_a_list(ref):
    return lambda *args: ref(*args).tolist()


def returns_float32(ref):
    def fn(*args):
        out = ref(*args)
        if isinstance(out, dict):
            return {k: v.float() for k, v in out.items()}
        return out.int() if not out.is_floating_point() else out.float()
    return fn


def _frozen_exercises():
    return sorted(SPECS)


def _with(predicate):
    """The exercises whose first case's arguments satisfy ``predicate``."""
    return [name for name in sorted(SPECS) if predicate(name, spec_of(name).cases("visible")[0].args)]


# the exercise of each planted kind, with the words its verdict must show and the hint of the property
PLANTED = (
    [(name, changes_input_in_place, "in place", P.INPUT_CHANGED)
     for name in _with(lambda n, a: _tensors(a))]
    + [(name, replaces_a_dict_entry, "it was given", P.DICT_CHANGED)
       for name in _with(lambda n, a: n != "maml_meta_step" and any(isinstance(x, dict) for x in a))]
    + [(name, leaves_grad, ".grad", P.GRAD_LEFT)
       for name in _with(lambda n, a: n == "reinforce_loss" or any(t.requires_grad for t in _tensors(a)))]
    + [(name, draws_from_global_rng, "global generator", P.UNEXPECTED_RANDOM)
       for name in sorted(SPECS) if name != "support_query_split"]
    + [(name, returns_a_list, "expected a torch tensor", P.NOT_A_TENSOR)
       for name in ("label_remap", "prototypes", "learned_update", "support_attention")]
    + [(name, returns_float32, "dtype", P.WRONG_DTYPE)
       for name in ("label_remap", "sgd_step", "task_meta_gradient", "reptile_update", "prototypes",
                    "metasgd_rate_gradient", "anil_step", "learned_update", "support_attention", "adapted_policy")]
)


def _ids(rows):
    return [f"{name}-{mutant.__name__}" for name, mutant, *_ in rows]


@pytest.mark.parametrize("name", sorted(SPECS))
def test_the_solution_passes_both_layers_with_every_property(name, capsys):
    assert visible_check(SPECS[name], solution(name)), capsys.readouterr().out
    assert hidden_tests(name, solution(name), reference(name)), capsys.readouterr().out


@pytest.mark.parametrize("name, mutant, words, hint", PLANTED, ids=_ids(PLANTED))
def test_a_planted_property_mistake_fails_both_layers_with_the_property_hint(name, mutant, words, hint):
    wrong = mutant(solution(name))
    visible = visible_check(SPECS[name], wrong)
    assert visible.status == "failed", visible.message
    assert words in visible.message and f"Hint: {hint}" in visible.message, visible.message
    assert "Traceback" not in visible.message
    hidden = hidden_tests(name, wrong, reference(name))
    assert hidden.status == "failed" and hint in hidden.message, hidden.message


def test_every_exercise_declares_its_properties_and_is_covered_by_a_planted_mistake():
    assert {name for name in SPECS if P.properties_of(name) is None} == set()
    assert {name for name, *_ in PLANTED} | {"support_query_split"} == set(SPECS)


# ---------------------------------------------------------------- realistic ones, written as a learner would
def sgd_step_with_backward(model, params, x, y, lr):
    """Right values and even the right meta-gradient, but .grad is left on params: notebook 04's
    meta-steps then add every earlier inner gradient to the next."""
    loss = F.mse_loss(functional_call(model, params, (x,)), y)
    loss.backward(create_graph=True)
    return {k: p - lr * p.grad for k, p in params.items()}


def curve_updates_params_in_place(model, params, sx, sy, qx, qy, steps, lr):
    curve = []
    for k in range(steps + 1):
        with torch.no_grad():
            curve.append(F.mse_loss(functional_call(model, params, (qx,)), qy).item())
        if k < steps:
            loss = F.mse_loss(functional_call(model, params, (sx,)), sy)
            grads = torch.autograd.grad(loss, list(params.values()))
            with torch.no_grad():
                for p, g in zip(params.values(), grads):
                    p -= lr * g
    return curve


def ci_centres_in_place(values):
    mean = values.mean().item()
    values -= mean
    return mean, 1.96 * math.sqrt((values ** 2).sum().item() / (len(values) - 1)) / math.sqrt(len(values))


def split_copies_the_generator(num_examples, shots, query, generator):
    """Same split as the reference, but the caller's generator never moves: every task drawn with it
    afterwards gets the same split."""
    own = torch.Generator()
    own.set_state(generator.get_state())
    return solution("support_query_split")(num_examples, shots, query, own)


def split_python_random(num_examples, shots, query, generator):
    order = torch.tensor(random.sample(range(num_examples), num_examples))
    return order[:shots], order[shots:shots + query]


def prototypes_by_reshape(embeddings, labels, ways):
    """Right only when every class has the same number of examples."""
    return embeddings[labels.argsort()].reshape(ways, -1, embeddings.shape[1]).mean(1)


def anil_head_by_name(params, grads, lr, head):
    """Right only when head holds every 'head.' parameter."""
    return {k: p - lr * grads[k] if k.startswith("head") else p for k, p in params.items()}


def reinforce_loss_item(log_probs, rewards, baseline):
    to_go = rewards.flip(-1).cumsum(-1).flip(-1)
    return -(log_probs * (to_go - baseline)).sum(-1).mean().item()


def reinforce_loss_detached(log_probs, rewards, baseline):
    to_go = rewards.flip(-1).cumsum(-1).flip(-1)
    return -(log_probs.detach() * (to_go - baseline)).sum(-1).mean()


def reinforce_loss_no_grad(log_probs, rewards, baseline):
    with torch.no_grad():
        return reinforce_loss_detached(log_probs, rewards, baseline)


def reinforce_to_go_in_place(log_probs, rewards, baseline):
    for t in reversed(range(rewards.shape[1] - 1)):
        rewards[:, t] += rewards[:, t + 1]
    return -(log_probs * (rewards - baseline)).sum(-1).mean()


def policy_step_with_backward(params, loss_fn, episodes, lr):
    loss_fn(params, episodes).backward(create_graph=True)
    return {k: p - lr * p.grad for k, p in params.items()}


def label_remap_numpy(labels, classes=None):
    order = list(dict.fromkeys(labels.tolist())) if classes is None else classes.tolist()
    return np.array([order.index(c) for c in labels.tolist()])


REALISTIC = [
    ("sgd_step", sgd_step_with_backward, "left gradients in params", P.GRAD_LEFT),
    ("adaptation_curve", curve_updates_params_in_place, "changed its input params", P.INPUT_CHANGED),
    ("confidence_interval", ci_centres_in_place, "changed its input values in place", P.INPUT_CHANGED),
    ("support_query_split", split_copies_the_generator, "never drew from the generator", P.GENERATOR_UNUSED),
    ("support_query_split", split_python_random, "Python's global generator", P.GLOBAL_RANDOM),
    ("prototypes", prototypes_by_reshape, "classes of 1, 3, 2, 5 examples", "only for the special case"),
    ("anil_step", anil_head_by_name, "case 4 of 4", "only for the special case"),
    ("reinforce_loss", reinforce_loss_item, "the loss is a float", P.NO_GRADIENT),
    ("reinforce_loss", reinforce_loss_detached, "the loss has no gradient", P.NO_GRADIENT),
    ("reinforce_loss", reinforce_loss_no_grad, "the loss has no gradient", P.NO_GRADIENT),
    ("reinforce_loss", reinforce_to_go_in_place, "changed its input rewards in place", P.INPUT_CHANGED),
    ("adapted_policy", policy_step_with_backward, "left gradients in params", P.GRAD_LEFT),
    ("label_remap", label_remap_numpy, "is a ndarray, expected a torch tensor", P.NOT_A_TENSOR),
]


@pytest.mark.parametrize("name, wrong, words, hint", REALISTIC, ids=[f"{n}-{f.__name__}" for n, f, *_ in REALISTIC])
def test_a_realistic_property_mistake_fails_both_layers(name, wrong, words, hint):
    visible = visible_check(SPECS[name], wrong)
    assert visible.status in ("failed", "error"), visible.message      # the reshape raises on unequal classes
    assert words in visible.message and hint in visible.message, visible.message
    hidden = hidden_tests(name, wrong, reference(name))
    assert hidden.status in ("failed", "error"), hidden.message


# ---------------------------------------------------------------- the watcher itself
def test_watched_names_the_learners_own_argument_and_the_returned_input():
    def returns_it(settings):
        return settings

    watched = Watched(returns_it, Properties())
    with pytest.raises(PropertyViolation, match="returned its input settings itself") as err:
        watched({"w": torch.zeros(2)})
    assert err.value.hint == P.RETURNED_INPUT


def test_watched_reports_autograds_refusal_as_a_changed_input():
    def in_place_on_a_leaf(x):
        x.add_(1)
        return x

    with pytest.raises(PropertyViolation, match="tried to change an input in place"):
        Watched(in_place_on_a_leaf, Properties())(torch.zeros(2, requires_grad=True))


def test_watched_leaves_unfrozen_arguments_alone():
    def steps(model_like, params):
        params["w"] += 1
        return 0.0

    assert Watched(steps, Properties(frozen=(0,)))(torch.zeros(1), {"w": torch.zeros(1)}) == 0.0


def test_an_input_holding_nan_is_not_a_changed_input():
    assert Watched(lambda x: x.nansum(), Properties())(torch.tensor([1.0, math.nan])) == 1.0


def test_numpy_global_draw_is_seen():
    def draws(x):
        np.random.rand()
        return x + 1

    for _ in range(2):   # the first draw of a fresh state refills NumPy's key array, later ones only move in it
        with pytest.raises(PropertyViolation, match="NumPy's global generator"):
            Watched(draws, Properties())(torch.zeros(1))


@pytest.mark.parametrize("got, want, words", [
    ([1, 2], torch.tensor([1, 2]), "is a list"),
    (torch.tensor([1, 2], dtype=torch.int32), torch.tensor([1, 2]), "dtype torch.int32"),
    ({"w": torch.zeros(2)}, {"w": torch.zeros(2, dtype=torch.float64)}, "result['w'] has dtype torch.float32"),
    ((torch.zeros(1), 3.0), (torch.zeros(1), 3.0), None),
    (torch.zeros(2, dtype=torch.float64), torch.zeros(2, dtype=torch.float64), None),
])
def test_type_violation(got, want, words):
    problem = type_violation(got, want)
    assert (problem is None) if words is None else (words in problem.problem)


@pytest.mark.parametrize("problem, words", [
    ("result has shape (3,), expected (5,)", "wrong shape"),
    ("result has keys ['a']; missing ['b'], unexpected []", "wrong keys"),
    ("result has 1 items, expected 2", "number of parts"),
    ("result should be a tensor of shape (2,), got NoneType", "wrong type"),
    ("result differs at 3 of 3 positions; largest error at flat index 0: got 1, expected 2", "THE CONCEPT"),
    ("the adapted parameters are not connected to the starting parameters", "THE CONCEPT"),
])
def test_fallback_hint_names_the_failed_property_of_the_result(problem, words):
    assert words in checks.hints.fallback_hint(problem, "THE CONCEPT")
    if "wrong" in words or "parts" in words:
        assert "THE CONCEPT" not in checks.hints.fallback_hint(problem, "THE CONCEPT")


# ---------------------------------------------------------------- mutation testing (mllib.course.mutants)
def test_source_mutants_change_one_thing_at_a_time():
    from mllib.course.mutants import source_mutants

    text = ('def f(x, g):\n    """doc 1 + 2"""\n    y = x.mean(dim=-1) * 2\n'
            '    return -torch.randperm(3, generator=g).long() + y\n')
    found = {(kind, change) for kind, change, _ in source_mutants(text, "f")}
    assert {("arith", "line 4: + -> -"), ("arith", "line 3: * -> /"), ("name", "line 3: .mean -> .sum"),
            ("dim", "line 3: dim=-1 -> dim=0"), ("constant", "line 3: 2 -> 3"), ("name", "line 4: .long -> .int32"),
            ("generator", "line 4: generator=... -> the global generator")} <= found
    assert not any("doc" in change for _, change in found)          # the docstring is never mutated
    assert all(text != mutated for *_, mutated in source_mutants(text, "f"))


# the full run, its thresholds and its survivors: tests/test_mutants.py (once, every exercise)
