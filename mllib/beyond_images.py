"""Few-shot learning beyond images: which module of Python's standard library wrote a docstring.

Notebook 09, section 5. The data ship with every Python: the docstrings of the standard library,
read from its source files (never imported). A **class** is one module (``json.decoder``,
``email.message``, ...), its **examples** are the docstrings of its functions and classes. An
``N``-way ``K``-shot task shows ``K`` docstrings of each of ``N`` modules and asks which of them wrote
each query docstring. It is a genuine few-shot family: a hundred-odd classes, a few dozen examples
each, arbitrary labels per task (mutually exclusive tasks, notebook 09 section 1), and the test
modules come from other **packages** than the training ones (``email.*`` all on one side), so a test
task's classes and their vocabulary are new.

* :func:`stdlib_docstrings`: ``{module: [docstring, ...]}`` from the ``.py`` files under a folder
  (default: this Python's standard library, tests and vendored code left out);
* :func:`docstring_classes`: whitespace collapsed, short and shared docstrings dropped, modules with
  at least ``min_examples`` kept;
* :func:`split_by_package`: training and test modules, by a fixed hash of the top-level package;
* :func:`ngram_features`: hashed character ``n``-gram counts, ``log(1 + count)``, ``[texts, dim]``;
* :class:`TextClasses` and :func:`sample_text_tasks`: the pool of one split and its ``N``-way
  ``K``-shot tasks as a :class:`~mllib.tasks.batch.TaskBatch` (``support_x [T, N*K, dim]``);
* :func:`weighted_centroid_logits`: the cosine nearest centroid on features weighted per
  dimension, every task at once (``[T, Q, N]``); weights 1: the raw features, the IDF: tf-idf;
* :func:`idf_weights`: the inverse document frequency of a pool (hand-designed, label-free);
* :func:`meta_train_weights`: the meta-learner, a prototypical network whose embedding is one learned
  weight per feature, ``x * exp(w)``, trained by the episode loss on training tasks;
* :func:`task_accuracies`: per-task query accuracies ``[T]``; :func:`score_text_tasks`: those of several
  weightings on the same test tasks, drawn in chunks.
"""
from __future__ import annotations

import math
import os
import re
import sysconfig
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from mllib.arguments import check_int, check_positive
from mllib.tasks.batch import TaskBatch

# a def or class line (its signature may span lines), then a triple-quoted string: the docstring
DOCSTRING = re.compile(r'^[ \t]*(?:async[ \t]+)?(?:def|class)[ \t]+\w+\b(?:[^:\'"#]|:(?!\s*\n))*:[ \t]*\n'
                       r'[ \t]*[rRuU]?("""|\'\'\')(.*?)\1', re.M | re.S)
SKIP_DIRS = frozenset({"test", "tests", "idle_test", "site-packages", "dist-packages", "lib2to3", "ensurepip",
                       "turtledemo", "__phello__", "__pycache__"})
HASH_MULTIPLIER = 2654435761   # Knuth's multiplicative hash (the golden ratio times 2^32)


def stdlib_docstrings(root: str | Path | None = None) -> dict[str, list[str]]:
    """``{module: [docstring, ...]}``: every triple-quoted docstring that follows a ``def`` or
    ``class`` line in the ``.py`` files under ``root`` (default: this Python's standard library),
    in file order; folders in :data:`SKIP_DIRS` (tests, vendored code) are left out. Module names
    are dotted paths (``email/message.py`` -> ``email.message``). Files are read, never imported."""
    root = Path(root if root is not None else sysconfig.get_paths()["stdlib"])
    if not root.is_dir():
        raise ValueError(f"no folder {root} to read docstrings from")
    corpus = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS)
        for name in sorted(f for f in files if f.endswith(".py")):
            path = Path(folder, name)
            module = ".".join(path.relative_to(root).with_suffix("").parts)
            text = path.read_text(encoding="utf-8", errors="replace")
            corpus[module] = [match.group(2) for match in DOCSTRING.finditer(text)]
    return corpus


def docstring_classes(corpus: Mapping[str, Sequence[str]], min_chars: int = 40,
                      min_examples: int = 10) -> dict[str, list[str]]:
    """The classes of the task family: each docstring with its whitespace collapsed to single
    spaces; dropped when shorter than ``min_chars``, repeated in its module, or found in another
    module too (a copy, as ``_pyio`` and ``io``, would give the answer away); then only the modules
    with at least ``min_examples`` docstrings, in sorted order."""
    check_int("min_chars", min_chars, 1)
    check_int("min_examples", min_examples, 2)
    cleaned = {module: list(dict.fromkeys(" ".join(d.split()) for d in docs)) for module, docs in corpus.items()}
    owners = Counter(d for docs in cleaned.values() for d in docs)
    kept = {module: [d for d in docs if len(d) >= min_chars and owners[d] == 1] for module, docs in cleaned.items()}
    return {module: kept[module] for module in sorted(kept) if len(kept[module]) >= min_examples}


def split_by_package(modules: Sequence[str], test_fraction: float = 0.3) -> tuple[list[str], list[str]]:
    """``(train, test)`` module names: a module is a test module when the CRC-32 of its top-level
    package falls in the first ``test_fraction`` of the range, so a whole package is on one side and
    the split of a name never depends on which other modules exist (or on Python's hash seed)."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must lie strictly between 0 and 1, got {test_fraction!r}")
    is_test = {m: zlib.crc32(m.split(".")[0].encode()) < test_fraction * 2 ** 32 for m in modules}
    return [m for m in modules if not is_test[m]], [m for m in modules if is_test[m]]


def ngram_codes(text: str, n: int = 3, dim: int = 2048) -> np.ndarray:
    """The bucket ``[0, dim)`` of every character ``n``-gram of ``text`` (of its UTF-8 bytes): the
    ``n`` bytes read as one big-endian integer ``c``, ``h = c * 2654435761 mod 2^32`` (multiplicative
    hashing), bucket ``floor(h * dim / 2^32)``: the high bits of ``h``, which depend on every byte."""
    data = np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int64)
    count = len(data) - n + 1
    if count <= 0:
        return np.zeros(0, dtype=np.int64)
    code = data[:count].copy()
    for j in range(1, n):
        code = (code << 8) | data[j:j + count]
    hashed = (code * HASH_MULTIPLIER) & 0xFFFFFFFF          # int64 wraps, the low 32 bits stay exact
    return (hashed * dim) >> 32


def ngram_features(texts: Sequence[str], n: int = 3, dim: int = 2048) -> Tensor:
    """``[len(texts), dim]`` float32: ``log(1 + count)`` of each text's hashed character ``n``-grams
    (:func:`ngram_codes`; ``n`` in 1..4). A text shorter than ``n`` gives a row of zeros."""
    check_int("n", n, 1)
    check_int("dim", dim, 1)
    if dim > 2 ** 24:
        raise ValueError(f"dim must be at most 2^24 buckets, got {dim}")
    if n > 4:
        raise ValueError(f"n must be at most 4 (an n-gram is packed into 32 bits), got {n}")
    counts = np.zeros((len(texts), dim), dtype=np.float32)
    for row, text in enumerate(texts):
        counts[row] = np.bincount(ngram_codes(text, n, dim), minlength=dim)
    return torch.from_numpy(np.log1p(counts))


@dataclass(frozen=True)
class TextClasses:
    """The pool of one split: ``features [E, dim]`` of all its examples, class by class; class ``c``
    owns rows ``start[c] .. start[c] + count[c] - 1``; ``names[c]`` is its module."""

    features: Tensor
    start: Tensor
    count: Tensor
    names: tuple[str, ...]

    @classmethod
    def from_texts(cls, classes: Mapping[str, Sequence[str]], names: Sequence[str], n: int = 3,
                   dim: int = 2048) -> "TextClasses":
        """The pool of modules ``names`` (keys of ``classes``), featurised by :func:`ngram_features`."""
        missing = [m for m in names if m not in classes]
        if missing:
            raise ValueError(f"no examples for {len(missing)} of the modules asked for, e.g. {missing[0]!r}")
        count = torch.tensor([len(classes[m]) for m in names], dtype=torch.long)
        features = ngram_features([t for m in names for t in classes[m]], n, dim)
        return cls(features, torch.cumsum(count, 0) - count, count, tuple(names))

    @property
    def num_classes(self) -> int:
        return len(self.names)


def sample_text_tasks(pool: TextClasses, num_tasks: int, ways: int = 5, shots: int = 1, query: int = 5,
                      generator: torch.Generator | None = None) -> TaskBatch:
    """``num_tasks`` ``ways``-way ``shots``-shot tasks: distinct classes in a random order (so each
    task labels its classes by a fresh permutation), ``shots + query`` distinct examples of each.
    ``support_x [T, ways*shots, dim]``, ``support_y [T, ways*shots]`` (long, class-major: ``0,0,1,1..``),
    ``query_x [T, ways*query, dim]``, ``query_y [T, ways*query]``; all draws from ``generator``."""
    for name, value, low in (("num_tasks", num_tasks, 1), ("ways", ways, 2), ("shots", shots, 1),
                             ("query", query, 1)):
        check_int(name, value, low)
    if ways > pool.num_classes:
        raise ValueError(f"ways={ways} needs at least {ways} classes; this pool has {pool.num_classes}")
    if int(pool.count.min()) < shots + query:
        raise ValueError(f"every class needs shots + query = {shots + query} examples; the smallest has "
                         f"{int(pool.count.min())}")
    chosen = torch.rand(num_tasks, pool.num_classes, generator=generator).argsort(dim=1)[:, :ways]   # [T, N]
    longest = int(pool.count.max())
    keys = torch.rand(num_tasks, ways, longest, generator=generator)
    keys = keys.masked_fill(torch.arange(longest) >= pool.count[chosen][..., None], 2.0)  # past the class's end
    rows = pool.start[chosen][..., None] + keys.argsort(dim=-1)[..., :shots + query]     # [T, N, K+Q]
    x = pool.features[rows]
    labels = torch.arange(ways)[None, :, None]

    def flat(t: Tensor) -> Tensor:
        return t.reshape(num_tasks, -1, *t.shape[3:])

    return TaskBatch(flat(x[:, :, :shots]), flat(labels.expand(num_tasks, ways, shots)),
                     flat(x[:, :, shots:]), flat(labels.expand(num_tasks, ways, query)))


def idf_weights(features: Tensor) -> Tensor:
    """``[dim]``: the inverse document frequency ``log(E / (1 + df_j))`` of every feature over the
    ``E`` rows of ``features [E, dim]`` (``df_j``: the rows where feature ``j`` is not zero). No labels."""
    if features.dim() != 2 or features.shape[0] < 1:
        raise ValueError(f"features must be [examples, dim] with at least one row, got {tuple(features.shape)}")
    df = (features != 0).sum(0).to(features.dtype)
    return torch.log(features.shape[0] / (1 + df))


def weighted_centroid_logits(support_x: Tensor, support_y: Tensor, query_x: Tensor, ways: int,
                             weights: Tensor | None = None) -> Tensor:
    """``[T, Q, ways]``: ``cos(w * q, c_k)`` of every query with every class centroid, ``c_k`` the mean
    of the unit-length weighted support features of class ``k`` (notebook 09 section 4's cosine nearest
    centroid, every task at once). ``support_x [T, S, dim]``, ``support_y [T, S]`` long in
    ``0..ways-1``, ``query_x [T, Q, dim]``, ``weights [dim]`` (None: all ones)."""
    check_int("ways", ways, 2)
    if support_x.dim() != 3 or query_x.dim() != 3 or support_x.shape[::2] != query_x.shape[::2]:
        raise ValueError(f"support_x and query_x must be [T, S, dim] and [T, Q, dim] with the same T and dim; "
                         f"got {tuple(support_x.shape)} and {tuple(query_x.shape)}")
    if weights is not None:
        support_x, query_x = support_x * weights, query_x * weights
    one_hot = F.one_hot(support_y, ways).to(support_x.dtype)                          # [T, S, ways]
    sums = one_hot.transpose(1, 2) @ F.normalize(support_x, dim=-1)                  # [T, ways, dim]
    centroids = sums / one_hot.sum(1)[..., None]
    return F.normalize(query_x, dim=-1) @ F.normalize(centroids, dim=-1).transpose(1, 2)


def task_accuracies(batch: TaskBatch, ways: int, weights: Tensor | None = None) -> Tensor:
    """Per-task query accuracy ``[T]`` of the weighted cosine nearest centroid (no graph)."""
    with torch.no_grad():
        logits = weighted_centroid_logits(batch.support_x, batch.support_y, batch.query_x, ways, weights)
    return (logits.argmax(-1) == batch.query_y).float().mean(1)


def score_text_tasks(pool: TextClasses, weights: Mapping[str, Tensor | None], num_tasks: int, ways: int = 5,
                     shots: int = 1, query: int = 5, seed: int = 600, chunk: int = 100) -> dict[str, Tensor]:
    """``{name: accuracies [num_tasks]}``: the per-task query accuracy of the weighted cosine nearest
    centroid with each entry of ``weights`` (``[dim]``, or None for the raw features), every entry on
    the same tasks, drawn by :func:`sample_text_tasks` from a generator seeded with ``seed``, ``chunk``
    tasks at a time (the features of 600 tasks would take 150 MB at once)."""
    check_int("num_tasks", num_tasks, 1)
    check_int("chunk", chunk, 1)
    generator = torch.Generator().manual_seed(seed)
    scores: dict[str, list[Tensor]] = {name: [] for name in weights}
    for first in range(0, num_tasks, chunk):
        batch = sample_text_tasks(pool, min(chunk, num_tasks - first), ways, shots, query, generator)
        for name, w in weights.items():
            scores[name].append(task_accuracies(batch, ways, w))
    return {name: torch.cat(parts) for name, parts in scores.items()}


def meta_train_weights(pool: TextClasses, steps: int, tasks_per_step: int = 8, ways: int = 5, shots: int = 1,
                       query: int = 5, lr: float = 0.03, scale: float = 10.0,
                       seed: int = 0) -> tuple[Tensor, list[float]]:
    """Meta-train one log-weight per feature, ``w [dim]`` from zero (the raw features), by the
    prototypical-network episode loss: cross-entropy of ``scale * cos`` logits
    (:func:`weighted_centroid_logits` with weights ``exp(w)``) on fresh training tasks, Adam at ``lr``.
    Returns ``(w, the loss of every step)``; ``exp(w)`` are the learned weights."""
    check_int("steps", steps, 1)
    check_positive("lr", lr)
    check_positive("scale", scale)
    generator = torch.Generator().manual_seed(seed)
    log_w = torch.zeros(pool.features.shape[1], requires_grad=True)
    optimizer = torch.optim.Adam([log_w], lr=lr)
    losses = []
    for _ in range(steps):
        batch = sample_text_tasks(pool, tasks_per_step, ways, shots, query, generator)
        logits = scale * weighted_centroid_logits(batch.support_x, batch.support_y, batch.query_x, ways,
                                                  log_w.exp())
        loss = F.cross_entropy(logits.reshape(-1, ways), batch.query_y.reshape(-1))
        if not math.isfinite(loss.item()):
            raise FloatingPointError(f"the episode loss became {loss.item()}; lower lr (now {lr})")
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return log_w.detach(), losses


__all__ = ["DOCSTRING", "SKIP_DIRS", "stdlib_docstrings", "docstring_classes", "split_by_package", "ngram_codes",
           "ngram_features", "TextClasses", "sample_text_tasks", "idf_weights", "weighted_centroid_logits",
           "task_accuracies", "score_text_tasks", "meta_train_weights"]
