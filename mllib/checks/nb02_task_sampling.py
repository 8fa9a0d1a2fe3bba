"""Checks of notebook 02, task sampling: ``check_label_remap``, ``check_support_query_split``."""
from __future__ import annotations

import hashlib
from typing import Any, Callable

import torch

from .core import Case, CheckResult, _describe, _to_tensor, make_cases
from .exercise import VISIBLE, ExerciseSpec, register, visible_check
from .hints import Hints
from .i18n import message
from .properties import Properties, declare

# what this module's checks say (English; other languages: mllib/checks/i18n/, MLLIB_LANG)
SAY = {key: message(f"nb02.{key}", english) for key, english in {
    "float_labels": "class labels are integers (cross_entropy needs them as torch.long)",
    "not_pair": "the result should be a pair (support_idx, query_idx)",
    "not_1d": "{name} should be a 1-D tensor of {size} indices, got {got}",
    "not_tensor": "{name} should be a tensor of torch.long indices, got a {kind}",
    "dtype": "{name} has dtype {dtype}; indices must be integers of dtype torch.long",
    "count": "{name} has {got} indices, expected {want}",
    "range": "{name} holds {low}..{high}, outside 0..{last}",
    "shared": "support and query share index(es) {shared}",
    "twice": "an index appears twice within the support or the query set",
    "not_reproducible": "two calls with identically seeded generators gave different splits",
    "not_random": "calls with 9 differently seeded generators chose only {count} distinct support set(s): the "
                  "split is not random",
    "independent": "drawing the support and the query indices independently lets them overlap: make one random "
                   "choice that serves both sets",
    "split_case": "num_examples={n}, shots={s}, query={q}, generator seeded {seed}",
}.items()}


def _label_remap_cases(kind: str) -> list[Case]:
    shapes = [(5, 1), (5, 3), (20, 1), (3, 5)] if kind == VISIBLE else \
        [(2, 2), (5, 5), (10, 2), (1, 4), (7, 3), (5, 1), (4, 4), (3, 1)]

    def case(gen: torch.Generator, i: int) -> Case:
        ways, shots = shapes[i]
        ids = torch.randperm(1623, generator=gen)[:ways]
        labels = ids.repeat_interleave(shots)
        labels = labels[torch.randperm(len(labels), generator=gen)]
        if i % 2 == 0:
            return Case((labels,))
        return Case((labels, ids[torch.randperm(ways, generator=gen)]))

    return make_cases(7 if kind == VISIBLE else 107, len(shapes), case)


def _label_remap_structure(case: Case, got: Any, want: Any) -> str | None:
    if isinstance(got, torch.Tensor) and got.is_floating_point():
        return SAY["float_labels"]()
    return None


LABEL_REMAP = register(ExerciseSpec(
    name="label_remap",
    cases=_label_remap_cases,
    hints=Hints(
        concept="each label becomes the *position* of its class in the task's order of classes; revisit "
                "notebook 02, section 5 (why every task numbers its classes 0..N-1 afresh)",
        reasoning="first settle the order of the N classes (the given one, or the order in which the ids "
                  "first appear), then give every class id its position in that order and replace each "
                  "label by the position of its id"),
    mistakes={
        "sorted_order": "number the classes in order of first appearance, not in sorted order of their ids",
        "ignores_classes": "when classes is given, its order decides the new labels",
        "one_based": "the new labels start at 0, not 1",
    },
    diagnose=_label_remap_structure,
))
declare(LABEL_REMAP.name, Properties(typed=True))


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
    return visible_check(LABEL_REMAP, fn)


def _split_cases(kind: str) -> list[Case]:
    """Ten calls on (20, 1, 15) with eight different seeds (one repeated), then other shapes."""
    if kind == VISIBLE:
        specs = [(20, 1, 15, 0), (20, 1, 15, 0)] + [(20, 1, 15, s) for s in range(1, 9)] + [
            (20, 5, 15, 9), (10, 3, 7, 10), (20, 10, 10, 11), (5, 2, 2, 12), (20, 1, 19, 13)]
    else:
        specs = [(20, 1, 15, 50 + s) for s in range(10)] + [(20, 1, 15, 50)] + [
            (3, 1, 2, 70), (20, 0, 5, 71), (20, 5, 0, 72), (2, 1, 1, 73), (100, 20, 30, 74)]
    return [Case((n, s, q, torch.Generator().manual_seed(1000 + seed)),
                 label=SAY["split_case"](n=n, s=s, q=q, seed=1000 + seed))
            for n, s, q, seed in specs]


def _split_expect(num_examples: int, shots: int, query: int, generator: torch.Generator) -> tuple:
    """What the property check needs to know about a call: its sizes and its generator's state."""
    state = hashlib.sha1(generator.get_state().numpy().tobytes()).hexdigest()
    return num_examples, shots, query, state


def _split_compare() -> Callable[[Any, Any], str | None]:
    seen: dict[tuple, tuple] = {}
    supports: list[tuple] = []

    def compare(got: Any, want: Any) -> str | None:
        n, s, q, state = want
        if not isinstance(got, (tuple, list)) or len(got) != 2:
            return SAY["not_pair"]()
        parts = []
        for name, value, size in (("support_idx", got[0], s), ("query_idx", got[1], q)):
            t = _to_tensor(value)
            if t is None or t.dim() != 1:
                return SAY["not_1d"](name=name, size=size, got=_describe(value))
            if not isinstance(value, torch.Tensor):
                return SAY["not_tensor"](name=name, kind=type(value).__name__)
            if t.dtype != torch.long:
                return SAY["dtype"](name=name, dtype=t.dtype)
            if len(t) != size:
                return SAY["count"](name=name, got=len(t), want=size)
            if len(t) and (int(t.min()) < 0 or int(t.max()) >= n):
                return SAY["range"](name=name, low=int(t.min()), high=int(t.max()), last=n - 1)
            parts.append(t.long())
        support, query_idx = parts
        both = torch.cat(parts)
        shared = set(support.tolist()) & set(query_idx.tolist())
        if shared:
            return SAY["shared"](shared=sorted(shared))
        if len(set(both.tolist())) != len(both):
            return SAY["twice"]()
        key = (n, s, q, state)
        result = (tuple(support.tolist()), tuple(query_idx.tolist()))
        if key in seen and seen[key] != result:
            return SAY["not_reproducible"]()
        seen[key] = result
        if (n, s, q) == (20, 1, 15):
            supports.append(result[0])
            if len(supports) == 10 and len(set(supports)) < 3:
                return SAY["not_random"](count=len(set(supports)))
        return None

    return compare


def _split_structure(case: Case, got: Any, want: Any) -> str | None:
    try:
        support, query_idx = (_to_tensor(v).long() for v in got)
    except Exception:  # noqa: BLE001
        return None
    if set(support.tolist()) & set(query_idx.tolist()):
        return SAY["independent"]()
    return None


SUPPORT_QUERY_SPLIT = register(ExerciseSpec(
    name="support_query_split",
    cases=_split_cases,
    hints=Hints(
        concept="the two sets must be disjoint, random, and reproducible from the generator alone; revisit "
                "notebook 02, section 1 (support and query sets never share an example)",
        reasoning="one random ordering of all the class's examples, drawn with the given generator, already "
                  "holds everything: its first few entries can be the support set and the next few the "
                  "query set, and no index can then appear twice"),
    fixed=False, fresh_compare=_split_compare, expect=_split_expect, diagnose=_split_structure,
))
declare(SUPPORT_QUERY_SPLIT.name, Properties(random=True))


def check_support_query_split(fn: Callable) -> CheckResult:
    """Check ``fn(num_examples, shots, query, generator) -> (support_idx, query_idx)``.

    One class of an N-way K-shot task has ``num_examples`` images (Omniglot: 20 drawers).
    ``fn`` picks ``shots`` of them for the support set and ``query`` others for the query set:
    two 1-D ``torch.long`` tensors ``[shots]`` and ``[query]`` with values in ``0..num_examples-1``,
    all ``shots + query`` values distinct (no image in both sets, none twice), drawn at random
    with ``generator`` (a seeded ``torch.Generator``) only, so the same seed gives the same split
    (a function that never draws from it, or draws from a global generator, fails).
    Any such split passes: the check tests these properties, not one particular draw.
    """
    return visible_check(SUPPORT_QUERY_SPLIT, fn)


__all__ = ["check_label_remap", "check_support_query_split"]
