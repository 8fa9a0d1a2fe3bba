"""Checks of notebook 04, outer loop: ``check_task_meta_gradient``, ``check_reptile_update``,
``check_maml_meta_step`` (write MAML yourself)."""
from __future__ import annotations

from typing import Any, Callable

import torch

from mllib.models import SineMLP
from mllib.tasks import SinusoidTasks, TaskBatch

from .core import Case, CheckResult, _to_tensor, compare_values, make_cases, random_tensor
from .exercise import VISIBLE, ExerciseSpec, register, visible_check
from .hints import Hints
from .i18n import message
from .properties import Properties, declare
from .sine_inputs import _sine_task

# what this module's checks say (English; other languages: mllib/checks/i18n/, MLLIB_LANG)
SAY = {key: message(f"nb04.{key}", english) for key, english in {
    "mg_dict": "return a dict {{name: gradient}} with the keys of params",
    "reptile_dict": "return a dict with the keys of params",
    "not_run": "the check could not run your meta-steps",
    "samples": "your function sampled {samples} meta-batches in {steps} meta-steps, expected one per meta-step",
    "after_step": "after meta-step {step}, {problem}",
    "loss_type": "meta-step {step} returned {kind}, expected the meta-loss as a number",
    "loss_value": "after meta-step {step} the parameters are right but the returned meta-loss is {got}, "
                  "expected {want} (the mean query MSE after adaptation)",
    "backward": "the parameters' .grad received {n:g} gradients per meta-step, not one: something inside the "
                "meta-step called .backward() besides the meta-loss (an inner step written with .backward(), "
                "such as an sgd_step from notebook 03 that reads p.grad, adds the support gradient to .grad);"
                " take inner gradients with torch.autograd.grad, which check_sgd_step of notebook 03 now "
                "demands too",
    "never_moved": "the parameters never moved: once the meta-gradient is in place the optimiser must take its step",
    "mg_case": "SineMLP(hidden={hidden}), support/query [10, 1], inner_lr={lr}, first_order={first_order}",
    "reptile_case": "params {{'w': [4, 3], 'b': [4]}}, a list of {tasks} adapted dict(s), epsilon={epsilon}",
    "maml_case": "{steps} meta-steps from fixed parameters: SineMLP(hidden={hidden}), float64, SGD(lr={lr}), meta_batch={meta_batch}, K={k}, inner_lr={inner_lr}",
}.items()}

META_FUNCTIONS = ("mllib.inner.adapt", "mllib.inner.inner_gradients", "mllib.algorithms.meta_gradient",
                  "mllib.algorithms.meta_step", "mllib.algorithms.query_loss_and_metric")


# ---------------------------------------------------------------- one task's meta-gradient
def _mg_cases(kind: str) -> list[Case]:
    settings = [(0.1, False), (0.1, True), (0.5, False)] if kind == VISIBLE else \
        [(0.03, True), (0.3, False), (0.3, True), (0.01, False), (1.0, False), (1.0, True)]
    hidden = 4 if kind == VISIBLE else 8

    def case(gen: torch.Generator, i: int) -> Case:
        model, params, sx, sy, qx, qy = _sine_task(gen, 10, 10, hidden)
        lr, first_order = settings[i]
        return Case((model, params, sx, sy, qx, qy, lr, first_order),
                    label=SAY["mg_case"](hidden=hidden, lr=lr, first_order=first_order))

    return make_cases(40 if kind == VISIBLE else 140, len(settings), case)


def _mg_structure(case: Case, got: Any, want: Any) -> str | None:
    if not isinstance(got, dict) or set(got) != set(want):
        return SAY["mg_dict"]()
    return None


TASK_META_GRADIENT = register(ExerciseSpec(
    name="task_meta_gradient",
    cases=_mg_cases,
    hints=Hints(
        concept="the meta-gradient is the gradient of the query loss *after* adaptation with respect to the "
                "*start*; first and second order differ only in whether the inner gradient counts as a "
                "function of the start; revisit notebook 04, section 1",
        reasoning="take the inner step as in notebook 03 (keeping its graph for second order, treating the "
                  "inner gradient as a constant for first order), compute the query MSE of the adapted "
                  "parameters, and differentiate that with respect to the original parameters"),
    mistakes={
        "always_first_order": "with first_order=False the inner gradient must stay in the graph: this is "
                              "the first-order answer",
        "always_second_order": "first_order=True must treat the inner gradient as a constant",
        "no_adaptation": "adapt first: the query loss is the adapted parameters' loss, not the start's",
        "step_up": "the inner step goes *against* the support gradient",
    },
    forbidden=META_FUNCTIONS, diagnose=_mg_structure, rtol=1e-6, atol=1e-9,
))
declare(TASK_META_GRADIENT.name, Properties(typed=True))


def check_task_meta_gradient(fn: Callable) -> CheckResult:
    """Check ``fn(model, params, support_x, support_y, query_x, query_y, inner_lr, first_order) -> grads``.

    One task of MAML with ONE inner step: ``adapted = params - inner_lr * grad(support MSE)``,
    then ``grads[k] = d (query MSE of adapted) / d params[k]`` (a dict with the keys of ``params``).
    ``first_order=False``: second-order MAML, the gradient flows through the inner gradient
    (``create_graph=True``). ``first_order=True``: first-order MAML, the inner gradient is a
    constant (detached), so ``grads`` is the query gradient evaluated at ``adapted``.
    ``model`` is a float64 ``SineMLP``, ``params`` a dict of leaf tensors requiring grad,
    ``support_x, support_y [K, 1]``, ``query_x, query_y [Q, 1]``; tolerance 1e-6 relative.
    """
    return visible_check(TASK_META_GRADIENT, fn)


# ---------------------------------------------------------------- Reptile
def _reptile_cases(kind: str) -> list[Case]:
    tasks, rates = ([1, 3, 4], [0.1, 0.5, 1.0]) if kind == VISIBLE else ([2, 5, 1, 8], [0.25, 0.05, 0.7, 0.3])

    def case(gen: torch.Generator, i: int) -> Case:
        params = {"w": random_tensor(gen, 4, 3), "b": random_tensor(gen, 4)}
        adapted = [{k: p + 0.3 * random_tensor(gen, *p.shape) for k, p in params.items()} for _ in range(tasks[i])]
        return Case((params, adapted, rates[i]),
                    label=SAY["reptile_case"](tasks=tasks[i], epsilon=rates[i]))

    return make_cases(41 if kind == VISIBLE else 141, len(tasks), case)


def _reptile_structure(case: Case, got: Any, want: Any) -> str | None:
    if not isinstance(got, dict) or set(got) != set(case.args[0]):
        return SAY["reptile_dict"]()
    return None


REPTILE_UPDATE = register(ExerciseSpec(
    name="reptile_update",
    cases=_reptile_cases,
    hints=Hints(
        concept="Reptile moves the start part of the way towards where the tasks' inner loops ended up; "
                "revisit notebook 04, section 3",
        reasoning="for each parameter, find the point the meta-batch's adapted values agree on (their average), "
                  "then move the current value a fraction epsilon of the distance towards it"),
    mistakes={
        "away": "move TOWARDS the adapted parameters, not away from them",
        "sum": "average the tasks' adapted parameters; the sum grows with the number of tasks",
        "last_task": "use every task of the meta-batch, not only the last one",
    },
    forbidden=META_FUNCTIONS, diagnose=_reptile_structure,
))
declare(REPTILE_UPDATE.name, Properties(typed=True))


def check_reptile_update(fn: Callable) -> CheckResult:
    """Check ``fn(params, adapted, epsilon) -> new_params``: Reptile's meta-update of a meta-batch.

    ``params``: a dict of tensors (the current start); ``adapted``: a list of dicts with the same
    keys and shapes, one per task (the parameters after the task's inner SGD); ``epsilon``: the
    outer step size. ``new_params[k] = params[k] + epsilon * (mean over tasks of adapted[i][k] - params[k])``.
    Tolerance 1e-6 relative.
    """
    return visible_check(REPTILE_UPDATE, fn)


# ---------------------------------------------------------------- write MAML yourself
META_STEPS = 3


class Float64Tasks:
    """``SinusoidTasks`` in float64 that counts its ``sample`` calls (the check's task sampler)."""

    def __init__(self, shots: int, query: int, seed: int) -> None:
        self.tasks = SinusoidTasks(shots=shots, query=query, seed=seed)
        self.calls = 0

    def sample(self, num_tasks: int) -> TaskBatch:
        self.calls += 1
        return TaskBatch(*(t.double() for t in self.tasks.sample(num_tasks).tensors()))


class MetaTraining:
    """Runs ``META_STEPS`` calls of a meta-step function from fixed parameters and records the result.

    ``MetaTraining(fn)(model_seed, task_seed, hidden, meta_batch, shots, inner_lr, meta_lr)`` builds a
    float64 ``SineMLP(hidden)`` with seeded parameters, plain SGD on them (rate ``meta_lr``; with SGD
    a sum over tasks is not the same step as a mean) and a seeded float64 sinusoid sampler, calls
    ``fn(model, params, optimizer, tasks, meta_batch, inner_lr)`` ``META_STEPS`` times and returns
    ``{"losses": [...], "params": [dict after step 1, ...], "samples": number of sample calls}``.
    """

    def __init__(self, fn: Callable) -> None:
        self.fn = fn
        self.__code__ = getattr(fn, "__code__", None)

    def __call__(self, model_seed, task_seed, hidden, meta_batch, shots, inner_lr, meta_lr):
        gen = torch.Generator().manual_seed(model_seed)
        model = SineMLP(hidden=hidden).double()
        params = {k: (0.5 * random_tensor(gen, *p.shape)).requires_grad_(True) for k, p in model.named_parameters()}
        optimizer = torch.optim.SGD(params.values(), lr=meta_lr)
        tasks = Float64Tasks(shots, shots, task_seed)
        losses, snapshots = [], []
        accumulated = {"now": 0, "most": 0}          # gradients written into one .grad within one meta-step
        hooks = [p.register_post_accumulate_grad_hook(lambda p: accumulated.__setitem__("now", accumulated["now"] + 1))
                 for p in params.values()]
        try:
            for _ in range(META_STEPS):
                accumulated["now"] = 0
                loss = self.fn(model, params, optimizer, tasks, meta_batch, inner_lr)
                accumulated["most"] = max(accumulated["most"], accumulated["now"] / len(params))
                t = _to_tensor(loss)
                losses.append(float(t.reshape(-1)[0]) if t is not None and t.numel() == 1 else loss)
                snapshots.append({k: p.detach().clone() for k, p in params.items()})
        finally:
            for hook in hooks:
                hook.remove()
        result = {"losses": losses, "params": snapshots, "samples": tasks.calls}
        if accumulated["most"] > 1:                 # only then: the stored expected values hold no such key
            result["backward_calls"] = accumulated["most"]
        return result


def _maml_cases(kind: str) -> list[Case]:
    # (model_seed, task_seed, hidden, meta_batch, shots, inner_lr, meta_lr)
    rows = [(0, 10, 4, 4, 5, 0.05, 0.05), (1, 11, 4, 3, 10, 0.01, 0.1)] if kind == VISIBLE else \
        [(2, 12, 8, 5, 5, 0.03, 0.05), (3, 13, 8, 2, 10, 0.1, 0.02)]
    return [Case(row, label=SAY["maml_case"](steps=META_STEPS, hidden=row[2], lr=row[6], meta_batch=row[3], k=row[4],
                                            inner_lr=row[5]))
            for row in rows]


def _maml_compare(got: Any, want: Any) -> str | None:
    if not isinstance(got, dict) or "params" not in got:
        return SAY["not_run"]()
    if got["samples"] != want["samples"]:
        return SAY["samples"](samples=got["samples"], steps=META_STEPS)
    for step in range(META_STEPS):
        problem = compare_values(got["params"][step], want["params"][step], 1e-6, 1e-9, path="params")
        if problem:
            return SAY["after_step"](step=step + 1, problem=problem)
        loss = got["losses"][step]
        if not isinstance(loss, float):
            return SAY["loss_type"](step=step + 1, kind=type(loss).__name__)
        if compare_values(loss, want["losses"][step], 1e-6, 1e-9) is not None:
            return SAY["loss_value"](step=step + 1, got=f"{loss:.6g}", want=f"{want['losses'][step]:.6g}")
    return None


BACKWARD_IN_INNER_STEP = SAY["backward"].english


def _maml_structure(case: Case, got: Any, want: Any) -> str | None:
    if not isinstance(got, dict) or "params" not in got:
        return None
    if got.get("backward_calls", 1) > 1:
        return SAY["backward"](n=got["backward_calls"])
    start = MetaTraining(lambda *args: 0.0)(*case.args)["params"][0]
    if compare_values(got["params"][0], start, 1e-12, 0.0) is None:
        return SAY["never_moved"]()
    return None


MAML_META_STEP = register(ExerciseSpec(
    name="maml_meta_step",
    cases=_maml_cases,
    hints=Hints(
        concept="one MAML meta-step samples a meta-batch, adapts to each task's support set with a step that "
                "stays differentiable, scores each adapted model on that task's query set, and moves the "
                "start against the gradient of the average query loss; revisit notebook 04, sections 1 and 2",
        reasoning="clear the gradients the optimiser holds, draw one meta-batch, and for every task take one "
                  "differentiable SGD step on its support MSE (as in notebook 03) and compute the query MSE of "
                  "the result; average those query losses over the tasks, back-propagate the average into the "
                  "start, let the optimiser step, and return the average as a number"),
    mistakes={
        "no_create_graph": "the inner gradient is treated as a constant (first-order MAML): keep the graph "
                           "of the inner gradient so the meta-gradient contains the second-order term",
        "no_zero_grad": "meta-step 1 is right and later ones are not: the gradients of earlier meta-steps "
                        "are still in the parameters' .grad and add up; clear them at every meta-step",
        "support_query_swapped": "adapt on the support set and score on the query set, not the other way round",
        "sum_over_tasks": "the meta-loss is the *mean* of the tasks' query losses; a sum makes the step grow "
                          "with the meta-batch size",
    },
    forbidden=(*META_FUNCTIONS, "mllib.sine_experiments.meta_train_sinusoid"),
    wrap=MetaTraining, compare=_maml_compare, diagnose=_maml_structure,
))
declare(MAML_META_STEP.name, Properties(frozen=(0,)))  # only the model: params, optimizer, tasks change by design


def check_maml_meta_step(fn: Callable) -> CheckResult:
    """Check ``fn(model, params, optimizer, tasks, meta_batch, inner_lr) -> meta_loss``: a MAML meta-step.

    The check runs ``fn`` for 3 meta-steps from fixed, seeded parameters of a float64
    ``SineMLP`` (``params``: a dict of leaf tensors; ``optimizer``: plain SGD over them;
    ``tasks.sample(meta_batch)``: a float64 ``TaskBatch`` of sinusoid tasks, ``[meta_batch, K, 1]``
    each). One meta-step samples ONE meta-batch, takes one differentiable SGD step (rate
    ``inner_lr``) on each task's support MSE, averages the tasks' query MSEs after adaptation,
    back-propagates that mean into ``params`` (second order) and steps the optimiser; it returns
    the mean as a float. Parameters after every step must equal ``mllib``'s ``meta_step``
    (``MetaConfig(algo="maml", inner_steps=1)``) to 1e-6 relative.
    """
    return visible_check(MAML_META_STEP, fn)


__all__ = ["check_task_meta_gradient", "check_reptile_update", "check_maml_meta_step"]
