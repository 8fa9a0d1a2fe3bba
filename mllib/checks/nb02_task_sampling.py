"""Checks of notebook 02, task sampling: ``check_label_remap``, ``check_support_query_split``."""
from __future__ import annotations

from typing import Any, Callable

import torch

from .core import Case, CheckResult, _describe, _to_tensor, make_cases, run_check


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


__all__ = ["check_label_remap", "check_support_query_split"]
