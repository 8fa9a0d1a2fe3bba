"""The few-shot text family of notebook 09, section 5 (``mllib.beyond_images``): docstrings read from
source files, classes, the package split, hashed n-gram features against a pure-Python loop, the task
sampler, the batched weighted nearest centroid against the per-task one, IDF, and meta-training."""
from __future__ import annotations

import ast
import math
import textwrap

import numpy as np
import pytest
import torch

from mllib.beyond_images import (HASH_MULTIPLIER, TextClasses, docstring_classes, idf_weights, meta_train_weights,
                                 ngram_codes, ngram_features, sample_text_tasks, score_text_tasks, split_by_package,
                                 stdlib_docstrings, task_accuracies, weighted_centroid_logits)
from mllib.feature_baselines import nearest_centroid_logits

pytestmark = pytest.mark.usefixtures("one_thread")

SOURCE = textwrap.dedent('''
    """Module docstring: not a def or class, not read."""


    def plain(a, b):
        """Plain function docstring, long enough."""


    async def waits(x,
                    y: int = 3) -> dict[str, int]:
        \'\'\'Async, a signature over two lines and single quotes.\'\'\'


    class Thing(Base, metaclass=Meta):
        r"""A raw class docstring."""

        def method(self):
            """A method's docstring, indented."""
            return 1

        def no_doc(self):
            return "not a docstring"
    ''')


def _write(root, relative, text=SOURCE):
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def test_docstrings_are_read_like_ast_reads_them_and_skipped_folders_are_left_out(tmp_path):
    _write(tmp_path, "alpha.py")
    _write(tmp_path, "pkg/beta.py")
    _write(tmp_path, "test/gamma.py")
    _write(tmp_path, "pkg/__pycache__/delta.py")
    corpus = stdlib_docstrings(tmp_path)
    assert sorted(corpus) == ["alpha", "pkg.beta"]
    tree = ast.parse(SOURCE)
    expected = [ast.get_docstring(node, clean=False) for node in ast.walk(tree)
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
    assert sorted(corpus["alpha"]) == sorted(d for d in expected if d)
    assert len(corpus["alpha"]) == 4
    with pytest.raises(ValueError, match="no folder"):
        stdlib_docstrings(tmp_path / "missing")


def test_classes_drop_short_repeated_and_shared_docstrings():
    shared = "a docstring copied into two modules, word for word"
    corpus = {"a": ["x" * 50 + f" {i}" for i in range(4)] + [shared, "short"],
              "b": [shared] + ["y" * 50 + f"  {i}\n" for i in range(3)] + ["y" * 50 + " 0"],
              "c": ["z" * 50 + f" {i}" for i in range(2)]}
    classes = docstring_classes(corpus, min_chars=40, min_examples=3)
    assert list(classes) == ["a", "b"]
    assert classes["a"] == ["x" * 50 + f" {i}" for i in range(4)]
    assert classes["b"] == ["y" * 50 + f" {i}" for i in range(3)]      # whitespace collapsed, then deduplicated
    with pytest.raises(ValueError, match="min_examples"):
        docstring_classes(corpus, min_examples=1)


def test_the_split_keeps_packages_whole_and_does_not_depend_on_the_other_names():
    names = [f"pkg{i}.mod{j}" for i in range(40) for j in range(3)] + [f"single{i}" for i in range(40)]
    train, test = split_by_package(names, 0.3)
    assert sorted(train + test) == sorted(names) and not set(train) & set(test)
    assert not {n.split(".")[0] for n in train} & {n.split(".")[0] for n in test}
    assert 0.15 < len(test) / len(names) < 0.45
    again_train, again_test = split_by_package(list(reversed(names[:50])), 0.3)
    assert set(again_test) == set(test) & set(names[:50])
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        split_by_package(names, 1.0)


def _codes_by_hand(text, n, dim):
    data = text.encode("utf-8")
    codes = []
    for i in range(len(data) - n + 1):
        value = int.from_bytes(data[i:i + n], "big")
        codes.append(((value * HASH_MULTIPLIER) % 2 ** 32) * dim // 2 ** 32)
    return codes


@pytest.mark.parametrize("n, dim", [(1, 7), (3, 2048), (4, 1000)])
def test_ngram_features_against_a_pure_python_loop(n, dim):
    texts = ["Return the value of x.", "ab", "", "héllo wörld, naïve café ≠ cafe", "zzzz" * 30]
    got = ngram_features(texts, n, dim)
    assert got.dtype == torch.float32 and got.shape == (len(texts), dim)
    for row, text in zip(got, texts):
        counts = np.bincount(np.array(_codes_by_hand(text, n, dim), dtype=np.int64), minlength=dim)
        assert torch.allclose(row, torch.from_numpy(np.log1p(counts.astype(np.float32))))
        assert ngram_codes(text, n, dim).tolist() == _codes_by_hand(text, n, dim)
    assert int((got[-1] > 0).sum()) <= 4      # one repeated text: few distinct n-grams
    with pytest.raises(ValueError, match="at most 4"):
        ngram_features(texts, 5)


def test_the_hash_spreads_trigrams_over_the_buckets():
    text = " ".join(f"word{i} value{i * 7} other{i % 13}" for i in range(400))
    used = len(set(ngram_codes(text, 3, 2048).tolist()))
    distinct = len({text[i:i + 3] for i in range(len(text) - 2)})
    assert used > 0.7 * min(distinct, 2048)


def _pool(classes=7, per_class=(6, 9, 12)):
    """Feature 0: the class, feature 1: the example's index in its class."""
    counts = [per_class[c % len(per_class)] for c in range(classes)]
    features = torch.tensor([[float(c), float(i)] for c, k in enumerate(counts) for i in range(k)])
    count = torch.tensor(counts)
    return TextClasses(features, torch.cumsum(count, 0) - count, count, tuple(f"m{c}" for c in range(classes)))


def test_the_sampler_draws_distinct_classes_and_distinct_examples_of_each():
    pool = _pool()
    batch = sample_text_tasks(pool, 50, ways=4, shots=2, query=3, generator=torch.Generator().manual_seed(0))
    assert batch.support_x.shape == (50, 8, 2) and batch.query_x.shape == (50, 12, 2)
    assert batch.support_y.dtype == torch.long and batch.support_y[0].tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    firsts = set()
    for support_x, support_y, query_x, query_y in batch:
        classes = [int(c) for c in support_x[::2, 0]]
        assert len(set(classes)) == 4
        firsts.add(classes[0])
        for label, cls in enumerate(classes):
            s, q = support_x[support_y == label], query_x[query_y == label]
            assert (s[:, 0] == cls).all() and (q[:, 0] == cls).all()
            examples = torch.cat([s[:, 1], q[:, 1]]).tolist()
            assert len(set(examples)) == 5 and max(examples) < int(pool.count[cls])
    assert firsts == set(range(7))      # every class gets every label
    again = sample_text_tasks(pool, 50, 4, 2, 3, torch.Generator().manual_seed(0))
    assert torch.equal(again.query_x, batch.query_x)
    state = torch.get_rng_state()
    sample_text_tasks(pool, 3, 4, 2, 3, torch.Generator().manual_seed(1))
    assert torch.equal(state, torch.get_rng_state())
    with pytest.raises(ValueError, match="shots \\+ query = 7"):
        sample_text_tasks(pool, 3, 4, 2, 5)
    with pytest.raises(ValueError, match="ways=8 needs at least 8 classes"):
        sample_text_tasks(pool, 3, 8, 1, 1)


def test_the_pool_of_named_modules(tmp_path):
    classes = {"b": ["two words", "more words here"], "a": ["one"]}
    pool = TextClasses.from_texts(classes, ["b", "a"], n=2, dim=16)
    assert pool.start.tolist() == [0, 2] and pool.count.tolist() == [2, 1] and pool.names == ("b", "a")
    assert torch.equal(pool.features[2], ngram_features(["one"], 2, 16)[0])
    with pytest.raises(ValueError, match="no examples for 1 of the modules"):
        TextClasses.from_texts(classes, ["a", "c"])


def test_batched_weighted_centroids_against_the_per_task_cosine_centroid():
    gen = torch.Generator().manual_seed(3)
    support_x = torch.rand(6, 9, 11, generator=gen, dtype=torch.float64)
    support_y = torch.stack([torch.randperm(9, generator=gen) % 3 for _ in range(6)])   # 3 ways, 3 shots
    query_x = torch.rand(6, 4, 11, generator=gen, dtype=torch.float64)
    weights = torch.rand(11, generator=gen, dtype=torch.float64) * 3
    got = weighted_centroid_logits(support_x, support_y, query_x, 3, weights)
    for t in range(6):
        want = nearest_centroid_logits(support_x[t] * weights, support_y[t], query_x[t] * weights, 3, "cosine")
        assert torch.allclose(got[t], want, atol=1e-12)
    plain = weighted_centroid_logits(support_x, support_y, query_x, 3)
    assert torch.allclose(plain, weighted_centroid_logits(support_x, support_y, query_x, 3, torch.ones(11, dtype=torch.float64)))
    with pytest.raises(ValueError, match="same T and dim"):
        weighted_centroid_logits(support_x, support_y, query_x[:, :, :5], 3)


def test_scores_in_chunks_are_the_scores_of_the_same_tasks_drawn_in_one_go():
    pool = _noisy_pool(classes=12, per_class=8)
    weights = {"raw": None, "weighted": torch.linspace(0.1, 2.0, 40)}
    chunked = score_text_tasks(pool, weights, 250, ways=4, shots=2, query=3, seed=5, chunk=100)
    assert {name: s.shape for name, s in chunked.items()} == {"raw": (250,), "weighted": (250,)}
    first = sample_text_tasks(pool, 100, 4, 2, 3, torch.Generator().manual_seed(5))
    for name, w in weights.items():
        assert torch.equal(chunked[name][:100], task_accuracies(first, 4, w))
    whole = score_text_tasks(pool, weights, 100, ways=4, shots=2, query=3, seed=5, chunk=100)
    assert torch.equal(whole["weighted"], chunked["weighted"][:100])
    assert not torch.equal(chunked["raw"], chunked["weighted"])


def test_idf_against_its_formula():
    features = torch.tensor([[1.0, 0.0, 2.0], [0.0, 0.0, 1.0], [3.0, 0.0, 0.5], [0.0, 0.0, 1.0]])
    want = torch.tensor([math.log(4 / 3), math.log(4 / 1), math.log(4 / 5)])
    assert torch.allclose(idf_weights(features), want)
    with pytest.raises(ValueError, match="at least one row"):
        idf_weights(torch.zeros(3))


def _noisy_pool(classes=40, per_class=12, seed=0):
    """Features 0..7 identify the class a little; features 8..39 are loud noise shared by all."""
    gen = torch.Generator().manual_seed(seed)
    means = torch.rand(classes, 8, generator=gen)
    rows = [torch.cat([means[c] + 0.05 * torch.rand(per_class, 8, generator=gen),
                       3 * torch.rand(per_class, 32, generator=gen)], 1) for c in range(classes)]
    count = torch.full((classes,), per_class)
    return TextClasses(torch.cat(rows), torch.cumsum(count, 0) - count, count, tuple(map(str, range(classes))))


def test_meta_training_learns_to_weight_the_informative_features():
    train, test = _noisy_pool(seed=0), _noisy_pool(seed=1)
    log_w, losses = meta_train_weights(train, 120, tasks_per_step=8, lr=0.05, seed=0)
    assert log_w.shape == (40,) and not log_w.requires_grad and len(losses) == 120
    assert sum(losses[-20:]) < 0.7 * sum(losses[:20])
    assert log_w[:8].mean() > log_w[8:].mean() + 0.5          # the informative features weigh more
    tasks = sample_text_tasks(test, 200, 5, 1, 5, torch.Generator().manual_seed(600))
    assert task_accuracies(tasks, 5, log_w.exp()).mean() > task_accuracies(tasks, 5).mean() + 0.1
    first, second = (meta_train_weights(train, 10, tasks_per_step=8, lr=0.05, seed=0)[0] for _ in range(2))
    assert torch.equal(first, second) and torch.equal(first, meta_train_weights(train, 10, lr=0.05)[0])
    with pytest.raises(ValueError, match="lr"):
        meta_train_weights(train, 5, lr=0.0)


def test_the_standard_library_gives_a_few_shot_family():
    classes = docstring_classes(stdlib_docstrings())
    assert len(classes) >= 60 and min(map(len, classes.values())) >= 10
    train, test = split_by_package(list(classes))
    assert len(train) >= 30 and len(test) >= 15
