"""Checks of the three graded assignments (``notebooks/assignments/``), in the course's two layers.

The assignments ask for whole functions and classes (an embedding network, a black-box learner, an
ablation driver), so the checks are of two kinds:

* **values**, for the functions with one right answer (``proto_logits``, ``episode_loss``,
  ``label_attention``): seeded cases compared with fixed expected values stored below (the
  visible check) and, in the hidden tests, with the instructor's reference defined in the check
  cell's ``### BEGIN HIDDEN TESTS`` region; with the generic properties of
  :mod:`mllib.checks.properties` (inputs left unchanged, no ``.grad`` left, result dtypes, a loss
  that carries its gradient);
* **properties**, for the classes and drivers, where any correct design passes: the embedding's
  output shape and parameter count, the black-box learner's use of the support labels, the
  ablation's results and the written answers read against them.

Each assignment ends with a graded training run: :func:`check_accuracy_band` reads the per-task
test accuracies and passes when their mean lies in the band the notebook states.

These exercises live in their own registry (:data:`ASSIGNMENTS`), not in the course's
:data:`mllib.checks.exercise.SPECS`: the course tooling that walks every notebook exercise
(stored values, known mistakes, mutants) covers notebooks 01-08. Hints work as everywhere
(``checks.hint('<name>')``). Notebooks import this module as
``from mllib.checks import assignments as checks`` (the name the check cells use everywhere), so
``checks.hint(...)`` and ``checks.show_solution(...)`` are here too.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import torch
from torch import nn

from .core import (ERROR, FAILED, NOT_IMPLEMENTED, PASSED, TODO_LINE, Case, CheckResult, _finish, _where,
                   make_cases, random_tensor)
from .exercise import HIDDEN, HIDDEN_NAME, VISIBLE, ExerciseSpec, decode, hidden_check, visible_check
from .hints import Hints, hint, register_hints, show_solution
from .i18n import message
from .properties import Properties, declare

# what the assignments' checks say (English; other languages: mllib/checks/i18n/, MLLIB_LANG)
SAY = {key: message(f"assignments.{key}", english) for key, english in {
    "verdict": "❌ {exercise}: {problem}\n   Hint: {hint}",
    "done": "✅ {exercise}: {text}",
    "unbalanced": "your answer works only when every class has the same number of support examples: here they"
                  " differ, and each prototype is still the mean of its own class's embeddings",
    "unbalanced_attention": "your answer works only when every class has the same number of support examples: here they"
                            " differ, and each class's probability is the attention mass on its own examples",
    "minus": "the logits are MINUS the squared distances: the nearest prototype must get the largest "
             "logit",
    "squared": "use the squared Euclidean distance (no square root)",
    "rows": "one row per query: the result is [Q, ways], not [ways, Q]",
    "not_module": "ConvEmbedding({filters}) should build an nn.Module, got {kind}",
    "count": "ConvEmbedding({filters}) has {count} parameters; 4 blocks of [3x3 conv ({filters} filters,"
             " padding 1), batch norm, ReLU, 2x2 max-pool] have {expected}",
    "norms": "ConvEmbedding({filters}) holds {norms} BatchNorm2d layers, expected one per block (4)",
    "forward_type": "the forward pass returned a {kind}, expected a tensor",
    "embedding_shape": "images [6, 1, 28, 28] give embeddings of shape {shape}, expected (6, {filters})",
    "images_in_place": "the forward pass changed its input images in place",
    "embedding_dtype": "the embeddings should be finite float32, got {dtype}",
    "no_gradient": "some parameters get no gradient from the embeddings: every block must be used in forward",
    "sum_to_one": "your probabilities sum to 1 but differ: scale the scores by 1/sqrt(d) and give class c the"
                  " attention mass of the support examples labelled c (the log of it, plus 1e-6)",
    "not_log": "return the log of the class probabilities (plus 1e-6), not the probabilities themselves",
    "class_not_module": "the class should build an nn.Module, got {kind}",
    "logits_type": "the forward pass returned a {kind}, expected a tensor of logits",
    "logits_shape": "a {ways}-way {shots}-shot task with {queries} queries gives logits of shape {shape}, "
                    "expected ({queries}, {ways})",
    "inputs_in_place": "the forward pass changed its inputs in place",
    "logits_dtype": "the logits should be finite float32, got {dtype}",
    "weights_changed": "the forward pass changed the parameter {name}: a black-box learner learns in its "
                       "activations, with no update of its weights at test time",
    "labels_ignored": "the logits do not change when the support labels change: the learner must read the support"
                      " labels as inputs (that is all it knows of this task)",
    "logits_no_gradient": "the logits have no gradient with respect to the parameters: keep them in the autograd "
                          "graph",
    "band_type": "expected a 1-D tensor of per-task accuracies, got {kind}",
    "band_type_hint": "evaluate every test task and return their accuracies as one tensor",
    "band_tasks": "{n} test tasks scored, the assignment fixes {tasks}",
    "band_tasks_hint": "score the notebook's fixed test tasks, all of them",
    "band_fractions": "accuracies must be fractions in [0, 1]",
    "band_fractions_hint": "the accuracy of a task is the fraction of its queries labelled right",
    "band_inside": "{mean}% ± {half} on {n} test tasks, inside the band [{low}%, {high}%]",
    "band_outside": "{mean}% ± {half} on {n} test tasks, outside the band [{low}%, {high}%]",
    "band_outside_hint": "check each part with its own check first; then the training loop (optimizer step, zeroed "
                         "gradients, train/eval mode of batch norm)",
    "run_raised": "the training run raised {error}{line}",
    "run_raised_hint": "run each part's own check first",
    "ablation_type": "run_ablation should return a dict, got {kind}",
    "ablation_keys": "the results have keys {keys}, expected one per variant: {variants}",
    "ablation_row": "results[{name}] should be a dict with accuracy, ci95, per_task, cpu_seconds and run, got "
                    "{got}",
    "ablation_per_task": "results[{name}]['per_task'] should be a tensor [{tasks}] (one accuracy per test task)",
    "ablation_accuracy": "results[{name}]['accuracy'] is {got}, but its per-task mean is {mean}",
    "ablation_ci": "results[{name}]['ci95'] is {got}, but 1.96 sd / sqrt(n) of its per-task accuracies is "
                   "{half}",
    "ablation_cpu": "results[{name}]['cpu_seconds'] should be the positive CPU time of the training run",
    "ablation_steps": "results[{name}]['run'] trained {trained} meta-steps, expected {steps}",
    "ablation_raised": "run_ablation raised {error}{line}",
    "ablation_raised_hint": "run one variant alone first and read its message",
    "ablation_hint": "every number you report must come from the run it names; compute accuracy and interval "
                     "from the per-task accuracies",
    "ablation_done": "{runs} runs of {steps} meta-steps, each scored on {tasks} test tasks",
    "rescore_none": "no results to re-score",
    "rescore_differs": "re-scoring the model of {variant} on the test tasks gives a mean of {got}, not the "
                       "reported {reported}",
    "rescore_hint": "score each trained model on the fixed test tasks with its own inner steps",
    "rescore_done": "{runs} runs re-scored, the same per-task accuracies",
    "answers_no_runs": "there are no runs to read the answers from",
    "answers_no_runs_hint": "finish run_ablation first (its check must pass)",
    "answers_raised": "fill_answers raised {error}",
    "answers_raised_hint": "return a dict of plain numbers and one word",
    "answers_keys": "the answers should be a dict with keys {keys}, got {got}",
    "answers_keys_hint": "fill every key, nothing else",
    "answers_number": "{key} should be a number, got {got}",
    "answers_number_hint": "type the number your runs gave (a fraction, not a percentage)",
    "answers_mismatch": "{key} = {got} does not match your runs",
    "answers_mismatch_hint": "read it again from the results table (accuracies as fractions, within {accuracy}; the time"
                             " ratio within {ratio}%; the verdict from paired_verdict)",
    "answers_done": "all {n} answers match the runs",
    "counts_case": "classes of {counts} support examples",
    "episode_case": "{ways}-way {shots}-shot, {per_class} queries per class, images 1x{side}x{side}",
    "learner_case": "{ways}-way {shots}-shot, {queries} queries, {filters} filters",
    "score_case": "{tasks} 5-way {shots}-shot tasks, a fixed model",
}.items()}
VERDICT, DONE = SAY["verdict"], SAY["done"]
NO_HINT = message("assignments.verdict_no_hint", "❌ {exercise}: {problem}")

ASSIGNMENTS: dict[str, ExerciseSpec] = {}


def _register(spec: ExerciseSpec, properties: Properties | None = None) -> ExerciseSpec:
    if spec.name in ASSIGNMENTS:
        raise ValueError(f"assignment exercise {spec.name!r} is registered twice")
    register_hints(spec.name, spec.hints)
    if properties is not None:
        declare(spec.name, properties)
    ASSIGNMENTS[spec.name] = spec
    return spec


def _visible(spec: ExerciseSpec, fn: Callable) -> CheckResult:
    """The visible check of an assignment exercise, against its values stored below (:data:`STORED`)."""
    return visible_check(spec, fn, [decode(v) for v in STORED[spec.name]] if spec.fixed else None)


def hidden_tests(name: str, fn: Callable, reference: Callable | None = None) -> CheckResult:
    """The hidden tests of assignment exercise ``name``: more cases against ``reference`` (the
    instructor's, defined in the hidden region of the check cell); a property check needs none."""
    if name not in ASSIGNMENTS:
        raise ValueError(f"no assignment exercise called {name!r}; known: {sorted(ASSIGNMENTS)}")
    return hidden_check(ASSIGNMENTS[name], fn, reference)


# ============================================================================= A2: prototypical networks
def _labels(gen: torch.Generator, counts: tuple[int, ...]) -> torch.Tensor:
    """Labels ``[sum(counts)]`` long: class ``c`` ``counts[c]`` times, in a random order."""
    labels = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts))
    return labels[torch.randperm(len(labels), generator=gen)]


def _counts_label(counts: tuple[int, ...]) -> str:
    return SAY["counts_case"](counts=", ".join(map(str, counts))) if len(set(counts)) > 1 else ""


UNBALANCED = SAY["unbalanced"]()

# (class counts, queries, feature dim, dtype)
_LOGIT_SHAPES = {
    VISIBLE: [((1, 1, 1, 1, 1), 10, 4, torch.float64), ((1, 3, 2), 4, 3, torch.float64),
              ((2, 2), 3, 5, torch.float32)],
    HIDDEN: [((5, 5, 5), 6, 8, torch.float64), ((1, 4, 2, 1), 5, 2, torch.float64), ((3,), 2, 3, torch.float64),
             ((2, 1, 1, 1, 1), 7, 6, torch.float32), ((1, 1), 1, 1, torch.float64)],
}


def _proto_logit_cases(kind: str) -> list[Case]:
    shapes = _LOGIT_SHAPES[kind]

    def case(gen: torch.Generator, i: int) -> Case:
        counts, queries, dim, dtype = shapes[i]
        labels = _labels(gen, counts)
        support = random_tensor(gen, len(labels), dim, dtype=dtype)
        query = random_tensor(gen, queries, dim, dtype=dtype)
        unbalanced = len(set(counts)) > 1
        return Case((support, labels, query, len(counts)), label=_counts_label(counts),
                    hint=UNBALANCED if unbalanced else "")

    return make_cases(2301 if kind == VISIBLE else 2391, len(shapes), case)


def _logit_structure(case: Case, got: Any, want: Any) -> str | None:
    if isinstance(got, torch.Tensor) and isinstance(want, torch.Tensor) and got.shape == want.shape:
        if torch.allclose(got.double(), -want.double(), rtol=1e-4, atol=1e-6):
            return SAY["minus"]()
        if torch.allclose(got.double() ** 2, want.double(), rtol=1e-4, atol=1e-6):
            return SAY["squared"]()
    if isinstance(got, torch.Tensor) and got.shape == want.shape[::-1] and got.shape != want.shape:
        return SAY["rows"]()
    return None


PROTO_LOGITS = _register(ExerciseSpec(
    name="proto_logits",
    cases=_proto_logit_cases,
    hints=Hints(
        concept="a prototypical network classifies a query by its distance to each class's prototype (the "
                "mean support embedding of that class); nearer means more likely",
        reasoning="first summarise each class by the average of its own support embeddings (the classes need "
                  "not be equally large), then measure how far every query lies from every class summary; a "
                  "logit should grow as that distance shrinks"),
    forbidden=("mllib.algorithms.proto_logits",),
    diagnose=_logit_structure, rtol=1e-5, atol=1e-6,
), Properties(typed=True))


def check_proto_logits(fn: Callable) -> CheckResult:
    """Check ``fn(support, support_y, query, ways) -> logits``.

    ``support`` ``[S, D]`` float (support embeddings), ``support_y`` ``[S]`` long in ``0..ways-1``
    (every class present, not necessarily equally often), ``query`` ``[Q, D]`` (query embeddings);
    the result is ``[Q, ways]`` of the inputs' dtype: minus the squared Euclidean distance from each
    query to each class's prototype, the mean of that class's support embeddings. Calling
    ``mllib.algorithms.proto_logits`` fails.
    """
    return _visible(PROTO_LOGITS, fn)


class _FlatEmbedding(nn.Module):
    """A deterministic stand-in for the learner's embedding: flatten, then one linear map (float64)."""

    def __init__(self, pixels: int, dim: int, gen: torch.Generator) -> None:
        super().__init__()
        self.linear = nn.Linear(pixels, dim).double()
        with torch.no_grad():
            self.linear.weight.copy_(random_tensor(gen, dim, pixels) / math.sqrt(pixels))
            self.linear.bias.copy_(random_tensor(gen, dim) * 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1))


# (class counts, queries per class, image side)
_EPISODE_SHAPES = {
    VISIBLE: [((1, 1, 1, 1, 1), 3, 4), ((2, 1, 3), 2, 3)],
    HIDDEN: [((1, 1, 1), 5, 4), ((3, 3), 1, 2), ((1, 2, 1, 4), 2, 3)],
}


def _episode_cases(kind: str) -> list[Case]:
    shapes = _EPISODE_SHAPES[kind]

    def case(gen: torch.Generator, i: int) -> Case:
        counts, per_class, side = shapes[i]
        ways = len(counts)
        support_y = _labels(gen, counts)
        query_y = _labels(gen, (per_class,) * ways)
        support_x = random_tensor(gen, len(support_y), 1, side, side)
        query_x = random_tensor(gen, len(query_y), 1, side, side)
        embed = _FlatEmbedding(side * side, 4, gen)
        return Case((embed, support_x, support_y, query_x, query_y, ways), label=_counts_label(counts) or
                    SAY["episode_case"](ways=ways, shots=counts[0], per_class=per_class, side=side),
                    hint=UNBALANCED if len(set(counts)) > 1 else "")

    return make_cases(2302 if kind == VISIBLE else 2392, len(shapes), case)


EPISODE_LOSS = _register(ExerciseSpec(
    name="episode_loss",
    cases=_episode_cases,
    hints=Hints(
        concept="one episode of prototypical-network training: embed the task's images, build the prototypes "
                "from the support set only, and score the query labels with cross-entropy on the distance "
                "logits; the loss must stay a tensor in the graph, since training differentiates it",
        reasoning="embed support and query images with the network you are given, turn the query embeddings "
                  "into logits against the support prototypes (your proto_logits), and average the "
                  "cross-entropy over the queries"),
    forbidden=("mllib.algorithms.proto_logits",), rtol=1e-6, atol=1e-9,
), Properties(typed=True, loss_of=1))


def check_episode_loss(fn: Callable) -> CheckResult:
    """Check ``fn(embed, support_x, support_y, query_x, query_y, ways) -> loss``.

    ``embed`` maps images ``[N, 1, H, W]`` to embeddings ``[N, D]``; ``support_y`` and ``query_y``
    are long labels in ``0..ways-1`` (support classes of any sizes). The loss is a 0-dim tensor with
    its gradient: the mean cross-entropy of the queries under the prototype logits of
    :func:`check_proto_logits`. It must leave ``embed``'s parameters without ``.grad`` (no
    ``.backward()`` inside).
    """
    return _visible(EPISODE_LOSS, fn)


def _embedding_count(filters: int, depth: int = 4, channels: int = 1) -> int:
    """Parameters of ``depth`` blocks [3x3 conv with bias, batch norm (scale, shift)] of ``filters``."""
    total, c = 0, channels
    for _ in range(depth):
        total += filters * c * 9 + filters + 2 * filters
        c = filters
    return total


def _embedding_expect(filters: int) -> dict:
    return {"filters": filters}


def _embedding_compare(got: Any, want: dict) -> str | None:
    """A module of 4 conv blocks whose output is ``[N, filters]``, with a gradient to every parameter."""
    filters = want["filters"]
    if not isinstance(got, nn.Module):
        return SAY["not_module"](filters=filters, kind=type(got).__name__)
    count = sum(p.numel() for p in got.parameters())
    expected = _embedding_count(filters)
    if count != expected:
        return SAY["count"](filters=filters, count=count, expected=expected)
    norms = sum(isinstance(m, nn.BatchNorm2d) for m in got.modules())
    if norms != 4:
        return SAY["norms"](filters=filters, norms=norms)
    gen = torch.Generator().manual_seed(filters)
    images = torch.rand(6, 1, 28, 28, generator=gen)
    before = images.clone()
    got.train()
    out = got(images)
    if not isinstance(out, torch.Tensor):
        return SAY["forward_type"](kind=type(out).__name__)
    if tuple(out.shape) != (6, filters):
        return SAY["embedding_shape"](shape=tuple(out.shape), filters=filters)
    if not torch.equal(images, before):
        return SAY["images_in_place"]()
    if out.dtype != torch.float32 or not torch.isfinite(out).all():
        return SAY["embedding_dtype"](dtype=out.dtype)
    params = [p for p in got.parameters()]
    grads = torch.autograd.grad(out.square().sum(), params, allow_unused=True)
    if any(g is None for g in grads):
        return SAY["no_gradient"]()
    return None


EMBEDDING = _register(ExerciseSpec(
    name="conv_embedding",
    cases=lambda kind: [Case((f,), label=f"ConvEmbedding({f})") for f in ((8, 16) if kind == VISIBLE else (4, 32, 3))],
    hints=Hints(
        concept="the embedding is the course's conv learner without its head: four blocks that each halve the "
                "image (28, 14, 7, 3, 1 pixel), so the flattened output has one feature per filter",
        reasoning="stack four identical blocks (convolution with padding so the size is kept, normalisation, "
                  "non-linearity, pooling that halves), the first reading one channel; then flatten"),
    fixed=False, compare=_embedding_compare, expect=_embedding_expect,
))


def check_conv_embedding(cls: Callable) -> CheckResult:
    """Check ``cls(filters) -> nn.Module`` mapping images ``[N, 1, 28, 28]`` to ``[N, filters]``.

    Four blocks of [3x3 convolution with ``filters`` channels and padding 1, ``BatchNorm2d``, ReLU,
    2x2 max-pool], then flattened: the parameter count must be the one of that design, the output
    finite float32, the input unchanged, and every parameter must get a gradient.
    """
    return _visible(EMBEDDING, cls)


# ============================================================================= A1: black-box learner
_ATTENTION_SHAPES = {
    VISIBLE: [((1, 1, 1, 1, 1), 4, 8), ((2, 1, 3), 3, 4), ((1, 1), 2, 6)],
    HIDDEN: [((3, 3, 3), 5, 4), ((1, 2, 1, 2), 1, 3), ((4,), 2, 2), ((1, 1, 1, 1, 1), 6, 16)],
}


def _attention_cases(kind: str) -> list[Case]:
    shapes = _ATTENTION_SHAPES[kind]

    def case(gen: torch.Generator, i: int) -> Case:
        counts, queries, dim = shapes[i]
        labels = _labels(gen, counts)
        keys = random_tensor(gen, len(labels), dim)
        query = random_tensor(gen, queries, dim)
        return Case((query, keys, labels, len(counts)), label=_counts_label(counts),
                    hint=SAY["unbalanced_attention"]() if len(set(counts)) > 1 else "")

    return make_cases(2101 if kind == VISIBLE else 2191, len(shapes), case)


def _attention_structure(case: Case, got: Any, want: Any) -> str | None:
    if isinstance(got, torch.Tensor) and got.shape == want.shape:
        probs = got.double().exp()
        if torch.allclose(probs.sum(-1), torch.ones_like(probs.sum(-1)), atol=1e-4):
            return SAY["sum_to_one"]()
        if torch.allclose(got.double().softmax(-1).sum(-1), torch.ones_like(probs.sum(-1))) and \
                torch.allclose(got.double().sum(-1), torch.ones_like(probs.sum(-1)), atol=1e-4):
            return SAY["not_log"]()
    return None


LABEL_ATTENTION = _register(ExerciseSpec(
    name="label_attention",
    cases=_attention_cases,
    hints=Hints(
        concept="the readout of a black-box learner: the query attends over the support tokens and copies "
                "their labels, so a class's probability is the attention mass on the support examples of "
                "that class",
        reasoning="score every support token against every query token with a scaled dot product, turn each "
                  "query's scores into weights that sum to one over the support set, then add up the weights "
                  "class by class (whatever the number of examples per class) and take the log"),
    rtol=1e-6, atol=1e-9, diagnose=_attention_structure,
), Properties(typed=True))


def check_label_attention(fn: Callable) -> CheckResult:
    """Check ``fn(query, keys, support_y, ways) -> log_probs``.

    ``query`` ``[Q, d]``, ``keys`` ``[S, d]`` (the support tokens), ``support_y`` ``[S]`` long in
    ``0..ways-1`` (any class sizes). ``log_probs[i, c] = log(sum_j a_ij [y_j = c] + 1e-6)`` with
    ``a_i = softmax_j(query_i . keys_j / sqrt(d))``; ``[Q, ways]``, the inputs' dtype.
    """
    return _visible(LABEL_ATTENTION, fn)


def _learner_expect(ways: int, filters: int) -> dict:
    return {"ways": ways, "filters": filters}


def _build_learner(cls: Callable) -> Callable:
    """A case ``(ways, filters, shots, queries)`` builds ``cls(ways, filters)``; the task's sizes ride along."""
    def build(ways: int, filters: int, shots: int, queries: int) -> tuple:
        return cls(ways, filters), {"ways": ways, "shots": shots, "queries": queries}

    return build


def _episode(ways: int, shots: int, queries: int, seed: int) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(seed)
    support_y = torch.arange(ways).repeat_interleave(shots)
    support_x = torch.rand(ways * shots, 1, 28, 28, generator=gen)
    query_x = torch.rand(queries, 1, 28, 28, generator=gen)
    return support_x, support_y, query_x


def _learner_compare(got: Any, want: dict) -> str | None:
    """One forward pass, ``[Q, ways]`` logits that depend on the support labels, and a gradient."""
    got, _ = got
    _, task = want
    ways, shots, queries = task["ways"], task["shots"], task["queries"]
    if not isinstance(got, nn.Module):
        return SAY["class_not_module"](kind=type(got).__name__)
    support_x, support_y, query_x = _episode(ways, shots, queries, seed=ways * 100 + shots)
    inputs = [t.clone() for t in (support_x, support_y, query_x)]
    state = {k: v.detach().clone() for k, v in got.state_dict().items() if v.is_floating_point()}
    got.train()
    out = got(support_x, support_y, query_x)
    if not isinstance(out, torch.Tensor):
        return SAY["logits_type"](kind=type(out).__name__)
    if tuple(out.shape) != (queries, ways):
        return SAY["logits_shape"](ways=ways, shots=shots, queries=queries, shape=tuple(out.shape))
    if not all(torch.equal(a, b) for a, b in zip(inputs, (support_x, support_y, query_x))):
        return SAY["inputs_in_place"]()
    if out.dtype != torch.float32 or not torch.isfinite(out).all():
        return SAY["logits_dtype"](dtype=out.dtype)
    changed = [k for k, v in got.state_dict().items() if k in state and "running" not in k and not torch.equal(v, state[k])]
    if changed:
        return SAY["weights_changed"](name=changed[0])
    shift = torch.roll(torch.arange(ways), 1)            # relabel every class c as c + 1 (mod ways)
    relabelled = got(support_x, shift[support_y], query_x)
    if torch.allclose(relabelled, out, atol=1e-6):
        return SAY["labels_ignored"]()
    grads = torch.autograd.grad(out.log_softmax(-1)[:, 0].sum(), [p for p in got.parameters()], allow_unused=True)
    if all(g is None or not g.abs().sum() for g in grads):
        return SAY["logits_no_gradient"]()
    return None


BLACK_BOX = _register(ExerciseSpec(
    name="black_box_learner",
    cases=lambda kind: [Case(args, label=SAY["learner_case"](ways=args[0], shots=args[2], queries=args[3], filters=args[1]))
                        for args in ([(5, 8, 1, 10), (3, 8, 2, 4)] if kind == VISIBLE else
                                     [(2, 4, 3, 5), (5, 4, 1, 1), (4, 8, 1, 7)])],
    hints=Hints(
        concept="a black-box meta-learner learns in one forward pass: it reads the support images with their "
                "labels and outputs the queries' logits, with no gradient step at test time",
        reasoning="encode every image with a conv encoder, make a token for each support example from its "
                  "features and its label, a token for each query from its features alone, let the queries "
                  "attend to the support tokens, and read the class scores off the attention"),
    fixed=False, compare=_learner_compare, expect=_learner_expect, wrap=_build_learner,
))


def check_black_box_learner(cls: Callable) -> CheckResult:
    """Check ``cls(ways, filters)`` (an ``nn.Module``) and its forward
    ``model(support_x [S, 1, 28, 28], support_y [S] long, query_x [Q, 1, 28, 28]) -> [Q, ways]``.

    The cases build ``cls(ways, filters)`` and run one task (any number of shots): the logits must
    have the right shape, be finite float32, leave inputs and weights unchanged, change when the
    support labels are permuted, and carry a gradient to the parameters. Any design passes.
    """
    return _visible(BLACK_BOX, cls)


# ============================================================================= scoring a trained model (hidden tests of the runs)
class _FlatBlackBox(nn.Module):
    """A deterministic black-box learner for the scoring cases: label attention over flat embeddings."""

    def __init__(self, embed: _FlatEmbedding) -> None:
        super().__init__()
        self.embed = embed

    def forward(self, support_x: torch.Tensor, support_y: torch.Tensor, query_x: torch.Tensor) -> torch.Tensor:
        keys, query = self.embed(support_x), self.embed(query_x)
        ways = int(support_y.max()) + 1
        weights = (query @ keys.T / math.sqrt(keys.shape[-1])).softmax(-1)
        return torch.log(weights @ nn.functional.one_hot(support_y, ways).to(keys.dtype) + 1e-6)


def _score_cases(black_box: bool) -> Callable[[str], list[Case]]:
    """Seeded 5-way tasks (a ``TaskBatch`` of 1x4x4 images, 1 or 2 shots, 3 queries per class) and a
    deterministic model: an embedding (A2) or a black-box learner (A1)."""
    from mllib.tasks.batch import TaskBatch

    def cases(kind: str) -> list[Case]:
        def case(gen: torch.Generator, i: int) -> Case:
            tasks, shots = (3, 1) if i == 0 else (4, 2)
            support_y = torch.stack([_labels(gen, (shots,) * 5) for _ in range(tasks)])
            query_y = torch.stack([_labels(gen, (3,) * 5) for _ in range(tasks)])
            batch = TaskBatch(random_tensor(gen, tasks, 5 * shots, 1, 4, 4), support_y,
                              random_tensor(gen, tasks, 15, 1, 4, 4), query_y)
            embed = _FlatEmbedding(16, 3, gen)
            return Case((_FlatBlackBox(embed) if black_box else embed, batch),
                        label=SAY["score_case"](tasks=tasks, shots=shots))

        return make_cases(2393 if black_box else 2394, 2, case)

    return cases


SCORE_PROTONET = _register(ExerciseSpec(
    name="score_protonet",
    cases=_score_cases(black_box=False),
    hints=Hints(concept="a task's accuracy is the fraction of its queries whose largest prototype logit is "
                        "their label; one number per task",
                reasoning="embed each task's images, build its logits with your proto_logits, compare the "
                          "arg-max with the labels and average per task"),
), Properties(typed=True))

SCORE_BLACK_BOX = _register(ExerciseSpec(
    name="score_black_box",
    cases=_score_cases(black_box=True),
    hints=Hints(concept="a task's accuracy is the fraction of its queries whose largest logit is their label; "
                        "one number per task",
                reasoning="run the learner once per task on its support set and queries, compare the arg-max "
                          "with the labels and average per task"),
), Properties(typed=True))


# ============================================================================= every assignment: the graded run
def _verdict(name: str, status: str, message: str, passed: int) -> CheckResult:
    return _finish(CheckResult(name, status, passed, 1, message))


def check_accuracy_band(name: str, accuracies: Any, low: float, high: float = 1.0, tasks: int = 100) -> CheckResult:
    """Pass when the mean of ``accuracies`` (one per test task, ``[tasks]`` floats in [0, 1]) lies in
    ``[low, high]``. The verdict names the mean and its 95% interval; too few tasks, values outside
    [0, 1] or a non-tensor fail with one line saying so."""
    if not isinstance(accuracies, torch.Tensor) or accuracies.dim() != 1:
        return _verdict(name, ERROR, VERDICT(exercise=name, problem=SAY["band_type"](kind=type(accuracies).__name__), hint=SAY["band_type_hint"]()), 0)
    values = accuracies.detach().double()
    if len(values) != tasks:
        return _verdict(name, FAILED, VERDICT(exercise=name, problem=SAY["band_tasks"](n=len(values), tasks=tasks), hint=SAY["band_tasks_hint"]()), 0)
    if not torch.isfinite(values).all() or values.min() < 0 or values.max() > 1:
        return _verdict(name, FAILED, VERDICT(exercise=name, problem=SAY["band_fractions"](), hint=SAY["band_fractions_hint"]()), 0)
    mean = float(values.mean())
    half = 1.96 * float(values.std(correction=1)) / math.sqrt(len(values))
    band = dict(mean=f"{100 * mean:.1f}", half=f"{100 * half:.1f}", n=len(values), low=f"{100 * low:.0f}",
                high=f"{100 * high:.0f}")
    if low <= mean <= high:
        return _verdict(name, PASSED, DONE(exercise=name, text=SAY["band_inside"](**band)), 1)
    return _verdict(name, FAILED, VERDICT(exercise=name, problem=SAY["band_outside"](**band),
                                          hint=SAY["band_outside_hint"]()), 0)


def check_training_run(name: str, run: Callable[[], Any], low: float, high: float = 1.0, tasks: int = 100) -> CheckResult:
    """The graded run of an assignment: ``run()`` trains the learner's model with the learner's code
    and returns its per-task test accuracies ``[tasks]``; passes when their mean is in ``[low, high]``
    (:func:`check_accuracy_band`). Unfinished parts (``NotImplementedError``) give the
    "not implemented" verdict and any other error one line naming it, so the notebook runs on."""
    try:
        accuracies = run()
    except NotImplementedError:
        return _verdict(name, NOT_IMPLEMENTED, TODO_LINE(exercise=name), 0)
    except Exception as err:  # noqa: BLE001 - every learner error becomes a verdict
        return _verdict(name, ERROR, VERDICT(exercise=name, problem=SAY["run_raised"](error=f"{type(err).__name__}: {err}", line=_where(err, run)), hint=SAY["run_raised_hint"]()), 0)
    return check_accuracy_band(name, accuracies, low, high, tasks)


# ============================================================================= A3: the MAML ablation
ABLATION_VARIANTS = ("second order", "first order", "inner lr 0.1", "3 inner steps")
ANSWER_KEYS = ("second_order_accuracy", "first_order_accuracy", "first_order_time_ratio", "first_vs_second",
               "best_inner_lr", "three_steps_gain")
ACCURACY_TOLERANCE, RATIO_TOLERANCE = 0.005, 0.15


def _ablation_problem(results: Any, variants: dict, steps: int, tasks: int) -> str | None:
    """What is wrong with the results of ``run_ablation`` (see :func:`check_ablation_run`), or None."""
    if not isinstance(results, dict):
        return SAY["ablation_type"](kind=type(results).__name__)
    if set(results) != set(variants):
        return SAY["ablation_keys"](keys=sorted(results), variants=sorted(variants))
    for name, row in results.items():
        if not isinstance(row, dict) or not {"accuracy", "ci95", "per_task", "cpu_seconds", "run"} <= set(row):
            return SAY["ablation_row"](name=repr(name), got=sorted(row) if isinstance(row, dict) else type(row).__name__)
        per_task = row["per_task"]
        if not isinstance(per_task, torch.Tensor) or tuple(per_task.shape) != (tasks,):
            return SAY["ablation_per_task"](name=repr(name), tasks=tasks)
        mean = float(per_task.double().mean())
        half = 1.96 * float(per_task.double().std(correction=1)) / math.sqrt(tasks)
        if not abs(float(row["accuracy"]) - mean) <= 1e-6:
            return SAY["ablation_accuracy"](name=repr(name), got=f"{float(row['accuracy']):.4f}", mean=f"{mean:.4f}")
        if not abs(float(row["ci95"]) - half) <= 1e-6:
            return SAY["ablation_ci"](name=repr(name), got=f"{float(row['ci95']):.4f}", half=f"{half:.4f}")
        if not float(row["cpu_seconds"]) > 0:
            return SAY["ablation_cpu"](name=repr(name))
        trained = getattr(row["run"], "step", None)
        if trained != steps:
            return SAY["ablation_steps"](name=repr(name), trained=trained, steps=steps)
    return None


def check_ablation_run(run_ablation: Callable[[], Any], variants: dict, steps: int, tasks: int = 100) -> dict:
    """Run ``run_ablation()`` (the learner's runs) and check its results: one entry per variant, each
    ``{"accuracy", "ci95", "per_task" [tasks], "cpu_seconds", "run"}`` with the accuracy the mean of
    ``per_task``, ``ci95`` its 95% half-width and ``run`` a ``meta_train`` result of ``steps`` steps.
    Prints the verdict (strict mode raises on failure) and returns the results ({} when they fail)."""
    name = "ablation_run"
    try:
        results = run_ablation()
    except NotImplementedError:
        _verdict(name, NOT_IMPLEMENTED, TODO_LINE(exercise=name), 0)
        return {}
    except Exception as err:  # noqa: BLE001 - every learner error becomes a verdict
        _verdict(name, ERROR, VERDICT(exercise=name, problem=SAY["ablation_raised"](error=f"{type(err).__name__}: {err}", line=_where(err, run_ablation)), hint=SAY["ablation_raised_hint"]()), 0)
        return {}
    problem = _ablation_problem(results, variants, steps, tasks)
    if problem:
        _verdict(name, FAILED, VERDICT(exercise=name, problem=problem, hint=SAY["ablation_hint"]()), 0)
        return {}
    _verdict(name, PASSED, DONE(exercise=name, text=SAY["ablation_done"](runs=len(results), steps=steps, tasks=tasks)), 1)
    return results


def check_rescored_runs(results: dict, rescore: Callable[[Any], torch.Tensor], atol: float = 1e-6) -> CheckResult:
    """Hidden test of the ablation: every run's model re-scored by the grader (``rescore(run) -> [tasks]``)
    must give the per-task accuracies the learner reported."""
    name = HIDDEN_NAME(name="ablation_run")
    if not results:
        return _verdict(name, FAILED, NO_HINT(exercise=name, problem=SAY["rescore_none"]()), 0)
    for variant, row in results.items():
        again = rescore(row["run"]).double()
        if again.shape != row["per_task"].shape or not torch.allclose(again, row["per_task"].double(), atol=atol):
            return _verdict(name, FAILED, VERDICT(exercise=name, hint=SAY["rescore_hint"](), problem=SAY["rescore_differs"](
                                              variant=repr(variant), got=f"{float(again.mean()):.4f}",
                                              reported=f"{float(row['per_task'].double().mean()):.4f}")), 0)
    return _verdict(name, PASSED, DONE(exercise=name, text=SAY["rescore_done"](runs=len(results))), 1)


def ablation_facts(results: dict) -> dict:
    """The values the written answers must report, computed from the runs (see :func:`check_ablation_answers`)."""
    from mllib.compare import paired_verdict

    second, first = results["second order"], results["first order"]
    small_lr, three = results["inner lr 0.1"], results["3 inner steps"]
    return {
        "second_order_accuracy": float(second["accuracy"]),
        "first_order_accuracy": float(first["accuracy"]),
        "first_order_time_ratio": float(first["cpu_seconds"]) / float(second["cpu_seconds"]),
        "first_vs_second": str(paired_verdict(first["per_task"].tolist(), second["per_task"].tolist())),
        "best_inner_lr": 0.4 if float(second["accuracy"]) >= float(small_lr["accuracy"]) else 0.1,
        "three_steps_gain": float(three["accuracy"]) - float(second["accuracy"]),
    }


def check_ablation_answers(fill_answers: Callable[[dict], dict], results: dict) -> CheckResult:
    """Check the learner's written numbers, ``fill_answers(results) -> dict`` with the keys of
    :data:`ANSWER_KEYS`, against the runs: accuracies and the 3-step gain within 0.005, the time ratio
    within 15%, the verdict word (``paired_verdict`` of first against second order: higher, lower or
    tie) and the better inner learning rate exactly."""
    name = "ablation_answers"
    if not results:
        try:
            fill_answers({})
        except NotImplementedError:
            return _verdict(name, NOT_IMPLEMENTED, TODO_LINE(exercise=name), 0)
        except Exception:  # noqa: BLE001 - an answered function that needs runs: the runs are missing
            pass
        return _verdict(name, FAILED, VERDICT(exercise=name, problem=SAY["answers_no_runs"](), hint=SAY["answers_no_runs_hint"]()), 0)
    try:
        answers = fill_answers(results)
    except NotImplementedError:
        return _verdict(name, NOT_IMPLEMENTED, TODO_LINE(exercise=name), 0)
    except Exception as err:  # noqa: BLE001
        return _verdict(name, ERROR, VERDICT(exercise=name, problem=SAY["answers_raised"](error=f"{type(err).__name__}: {err}"), hint=SAY["answers_raised_hint"]()), 0)
    if not isinstance(answers, dict) or set(answers) != set(ANSWER_KEYS):
        got = sorted(answers) if isinstance(answers, dict) else type(answers).__name__
        return _verdict(name, FAILED, VERDICT(exercise=name, problem=SAY["answers_keys"](keys=list(ANSWER_KEYS), got=got), hint=SAY["answers_keys_hint"]()), 0)
    facts = ablation_facts(results)
    for key in ANSWER_KEYS:
        got, want = answers[key], facts[key]
        if key == "first_vs_second":
            wrong = str(got).strip().lower() != want
        elif isinstance(got, bool) or not isinstance(got, (int, float)) or not math.isfinite(got):
            return _verdict(name, FAILED, VERDICT(exercise=name, problem=SAY["answers_number"](key=key, got=repr(got)), hint=SAY["answers_number_hint"]()), 0)
        elif key == "best_inner_lr":
            wrong = got != want
        elif key == "first_order_time_ratio":
            wrong = not abs(got - want) <= RATIO_TOLERANCE * want
        else:
            wrong = not abs(got - want) <= ACCURACY_TOLERANCE
        if wrong:
            return _verdict(name, FAILED, VERDICT(exercise=name, problem=SAY["answers_mismatch"](key=key, got=repr(got)), hint=SAY["answers_mismatch_hint"](accuracy=ACCURACY_TOLERANCE, ratio=f"{100 * RATIO_TOLERANCE:.0f}")), 0)
    return _verdict(name, PASSED, DONE(exercise=name, text=SAY["answers_done"](n=len(ANSWER_KEYS))), 1)


# ============================================================================= stored visible values
# Written by tests/test_checks_assignments.py::test_stored_values_match_the_references (run it with
# MLLIB_WRITE_ASSIGNMENT_VALUES=1 after changing a case); do not edit by hand.
STORED: dict[str, list] = {'episode_loss': [{'dtype': 'float64', 'tensor': 3.525028730715243},
                  {'dtype': 'float64', 'tensor': 0.68230454862806}],
 'label_attention': [{'dtype': 'float64',
                      'tensor': [[-1.0284286419106197, -1.4180241978015118, -1.2754908746247546, -4.24375876034536,
                                  -2.2386983205389175],
                                 [-1.2350476401494166, -1.8210839684003577, -0.9319394693176951,
                                  -2.8390261838655175, -2.353225329673449],
                                 [-0.6489908780542732, -1.1222450657986651, -2.7673568914630744, -2.753724979871383,
                                  -3.674344309155996],
                                 [-1.5774318768583375, -2.3591111613790243, -1.7329378511959488,
                                  -0.8171463594295291, -2.5189833758471734]]},
                     {'dtype': 'float64',
                      'tensor': [[-1.8728888270716875, -2.6866504097968877, -0.25075213705822347],
                                 [-1.1978606067181707, -2.264490695703431, -0.5204033501941491],
                                 [-2.297895338471732, -2.615653288588661, -0.19066072902381603]]},
                     {'dtype': 'float64',
                      'tensor': [[-0.42132659128918376, -1.0676188803985822],
                                 [-0.3177562400955151, -1.3011379951369946]]}],
 'proto_logits': [{'dtype': 'float64',
                   'tensor': [[-7.01723027868199, -1.447069300378297, -2.7783453401552736, -9.243989456015765,
                               -11.425416305909337],
                              [-10.061692465142315, -6.087446478669367, -7.533521486374909, -6.496596353860774,
                               -12.242853542307921],
                              [-3.747804903177417, -5.886158930714423, -2.8589385194865633, -3.965783255167409,
                               -8.150850717586605],
                              [-2.1402335901873797, -1.9675654600328079, -1.5382137862443397, -7.19316432796534,
                               -3.1705004177743232],
                              [-5.715251054232442, -9.555573286882266, -7.989298465101031, -6.862210797629915,
                               -3.336393020917307],
                              [-4.988528012185679, -4.884529593756546, -2.2138882336680106, -14.393974014085924,
                               -10.148922076815042],
                              [-4.670731483469493, -9.144694362541909, -3.444870590694632, -17.508616843700644,
                               -9.747044769372582],
                              [-5.870107820667121, -6.2814354017177765, -6.204561428543766, -0.12981845920501184,
                               -6.869104794190294],
                              [-23.400207541930136, -9.984367663944088, -16.90000263737342, -11.287720590780902,
                               -28.8397591563078],
                              [-6.42905705911838, -7.665533730749542, -3.362230781947069, -17.959894903282322,
                               -12.743660945428092]]},
                  {'dtype': 'float64',
                   'tensor': [[-30.060672111656526, -10.20824712772667, -10.331278627769022],
                              [-11.976422260207755, -0.6544841976270834, -6.19728191593587],
                              [-6.66860168155076, -5.295869872372541, -0.3142387804230492],
                              [-6.718539161691016, -4.925336715111889, -0.24509587027259624]]},
                  {'dtype': 'float32',
                   'tensor': [[-13.873163223266602, -13.590344429016113], [-8.893982887268066, -5.220429420471191],
                              [-0.8617346882820129, -3.9096059799194336]]}]}


__all__ = ["ASSIGNMENTS", "STORED", "hidden_tests", "hint", "show_solution", "check_training_run", "check_proto_logits", "check_episode_loss", "check_conv_embedding",
           "check_label_attention", "check_black_box_learner", "SCORE_PROTONET", "SCORE_BLACK_BOX", "check_accuracy_band",
           "ABLATION_VARIANTS", "ANSWER_KEYS", "check_ablation_run", "check_rescored_runs", "ablation_facts",
           "check_ablation_answers"]
