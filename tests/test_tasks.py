"""Task samplers: Omniglot N-way K-shot (shapes, seeds, labels, no overlap, rotations, errors) and sinusoids."""
from __future__ import annotations

import math

import pytest
import torch

from mllib.data import split_characters
from mllib.tasks import OmniglotTasks, SinusoidTasks, TaskBatch


def test_shapes_dtypes_and_range(omniglot):
    batch = OmniglotTasks(omniglot, ways=5, shots=2, query=3).sample(4)
    assert isinstance(batch, TaskBatch)
    assert batch.support_x.shape == (4, 10, 1, 28, 28) and batch.query_x.shape == (4, 15, 1, 28, 28)
    assert batch.support_y.shape == (4, 10) and batch.query_y.shape == (4, 15)
    assert batch.support_x.dtype == torch.float32 and batch.support_y.dtype == torch.long
    assert 0 <= batch.support_x.min() and batch.support_x.max() == 1.0


def test_same_seed_same_tasks_other_seed_or_part_differs(omniglot):
    def draw(**kw):
        return OmniglotTasks(omniglot, ways=5, shots=1, query=2, rotations=False, **kw).sample(3)

    a, b = draw(seed=7), draw(seed=7)
    assert all(torch.equal(getattr(a, f), getattr(b, f)) for f in ("support_x", "support_y", "query_x", "query_y"))
    assert not torch.equal(a.support_x, draw(seed=8).support_x)
    assert not torch.equal(draw(seed=7, part="val").support_x, draw(seed=7, part="test").support_x)


def test_labels_are_a_fresh_permutation_per_task(omniglot):
    sampler = OmniglotTasks(omniglot, ways=5, shots=2, query=3, rotations=False)
    idx = sampler.sample_indices(200)
    batch = sampler.batch_from_indices(idx)
    expected = torch.arange(5).repeat_interleave(2)
    assert all(torch.equal(row.sort().values, expected) for row in batch.support_y)
    # support and query of one class carry the same label
    assert torch.equal(batch.support_y[:, ::2], batch.query_y[:, ::3])
    assert torch.equal(batch.support_y[:, ::2], idx["labels"])
    # the label of a class is not tied to its position: all 120 permutations are possible
    assert len({tuple(p.tolist()) for p in idx["labels"]}) > 60


def test_classes_distinct_within_the_split_part(omniglot):
    sampler = OmniglotTasks(omniglot, split="maml", part="val", ways=5, shots=1, query=1)
    idx = sampler.sample_indices(100)
    assert all(len(set(row.tolist())) == 5 for row in idx["classes"])
    allowed = set(split_characters("maml", "val", omniglot.characters))
    assert set(idx["characters"].flatten().tolist()) <= allowed


def test_no_image_in_both_support_and_query_and_pixels_match(omniglot):
    sampler = OmniglotTasks(omniglot, ways=5, shots=3, query=4, rotations=True)
    idx = sampler.sample_indices(6)
    batch = sampler.batch_from_indices(idx)
    drawers = idx["drawers"]
    for t in range(6):
        for w in range(5):
            support, query = set(drawers[t, w, :3].tolist()), set(drawers[t, w, 3:].tolist())
            assert len(support) == 3 and len(query) == 4 and support.isdisjoint(query)
            char, k = int(idx["characters"][t, w]), int(idx["rotation"][t, w])
            for j in range(3):
                expected = torch.rot90(omniglot.images[char, drawers[t, w, j]], k, dims=(0, 1)).float() / 255
                assert torch.equal(batch.support_x[t, w * 3 + j, 0], expected)
            for j in range(4):
                expected = torch.rot90(omniglot.images[char, drawers[t, w, 3 + j]], k, dims=(0, 1)).float() / 255
                assert torch.equal(batch.query_x[t, w * 4 + j, 0], expected)


def test_rotations_are_new_classes_on_by_default_for_train_only(omniglot):
    chars = len(split_characters("maml", "train", omniglot.characters))
    train = OmniglotTasks(omniglot, part="train")
    assert train.rotations and train.num_classes == 4 * chars
    assert set(train.sample_indices(200)["rotation"].flatten().tolist()) == {0, 1, 2, 3}
    test = OmniglotTasks(omniglot, part="test")
    assert not test.rotations and set(test.sample_indices(50)["rotation"].flatten().tolist()) == {0}
    off = OmniglotTasks(omniglot, part="train", rotations=False)
    assert off.num_classes == chars


def test_explicit_characters_and_split_none(omniglot):
    sampler = OmniglotTasks(omniglot, characters=[3, 1, 2], ways=3, rotations=False)
    assert set(sampler.sample_indices(20)["characters"].flatten().tolist()) == {1, 2, 3}
    everything = OmniglotTasks(omniglot, split=None, rotations=False)
    assert everything.num_classes == omniglot.images.shape[0]


def test_state_dict_resumes_the_same_stream(omniglot):
    a = OmniglotTasks(omniglot, ways=5, shots=1, query=2, seed=3)
    a.sample(2)
    state = a.state_dict()
    expected = a.sample(4)
    b = OmniglotTasks(omniglot, ways=5, shots=1, query=2, seed=3)
    b.load_state_dict(state)
    assert torch.equal(b.sample(4).query_x, expected.query_x)
    with pytest.raises(ValueError, match="config"):
        OmniglotTasks(omniglot, ways=4, shots=1, query=2, seed=3).load_state_dict(state)


def test_ways_below_two_is_rejected(omniglot):
    with pytest.raises(ValueError, match="ways must be an integer >= 2"):
        OmniglotTasks(omniglot, ways=1)


def test_shots_below_one_is_rejected(omniglot):
    with pytest.raises(ValueError, match="shots must be an integer >= 1"):
        OmniglotTasks(omniglot, shots=0)


def test_query_below_one_is_rejected(omniglot):
    with pytest.raises(ValueError, match="query must be an integer >= 1"):
        OmniglotTasks(omniglot, query=0)


def test_shots_plus_query_above_twenty_is_rejected(omniglot):
    with pytest.raises(ValueError, match=r"shots \+ query must be <= 20"):
        OmniglotTasks(omniglot, shots=6, query=15)


def test_more_ways_than_classes_is_rejected(omniglot):
    chars = len(split_characters("maml", "test", omniglot.characters))
    with pytest.raises(ValueError, match=rf"ways must be in 2\.\.{chars} "):
        OmniglotTasks(omniglot, part="test", ways=chars + 1)


def test_unknown_split_is_rejected(omniglot):
    with pytest.raises(ValueError, match="^split must be one of lake, maml, vinyals, None; got 'random'$"):
        OmniglotTasks(omniglot, split="random")


# ------------------------------------------------------------------ sinusoids


def test_sinusoid_shapes_ranges_and_function():
    batch, amplitude, phase = SinusoidTasks(shots=5, query=7, seed=0).sample(2000, return_params=True)
    assert batch.support_x.shape == (2000, 5, 1) and batch.query_y.shape == (2000, 7, 1)
    assert 0.1 <= amplitude.min() and amplitude.max() <= 5.0 and amplitude.max() > 4.9 and amplitude.min() < 0.2
    assert 0 <= phase.min() and phase.max() <= math.pi and phase.max() > 3.1
    for x in (batch.support_x, batch.query_x):
        assert -5 <= x.min() and x.max() <= 5 and x.min() < -4.9 and x.max() > 4.9
    expected = amplitude[:, None, None] * torch.sin(batch.query_x - phase[:, None, None])
    assert torch.allclose(batch.query_y, expected)


def test_sinusoid_seeded_and_resumable():
    a, b = SinusoidTasks(seed=1), SinusoidTasks(seed=1)
    assert torch.equal(a.sample(3).support_y, b.sample(3).support_y)
    assert not torch.equal(SinusoidTasks(seed=2).sample(3).support_y, SinusoidTasks(seed=1).sample(3).support_y)
    state = a.state_dict()
    nxt = a.sample(2)
    b.load_state_dict(state)
    assert torch.equal(b.sample(2).query_x, nxt.query_x)


def test_sinusoid_bad_sizes_are_rejected():
    with pytest.raises(ValueError, match="shots must be an integer >= 1"):
        SinusoidTasks(shots=0)
    with pytest.raises(ValueError, match="query must be an integer >= 1"):
        SinusoidTasks(query=0)


def test_thread_limit_is_restored_and_does_not_change_tasks(omniglot):
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        limited = OmniglotTasks(omniglot, ways=5, shots=1, query=2, seed=5).sample(3)
        assert torch.get_num_threads() == 2
        free = OmniglotTasks(omniglot, ways=5, shots=1, query=2, seed=5, threads=None).sample(3)
        assert torch.equal(limited.query_x, free.query_x)
    finally:
        torch.set_num_threads(before)
    with pytest.raises(ValueError, match="threads must be None or an integer >= 1"):
        OmniglotTasks(omniglot, threads=0)


def test_task_batch_iterates_one_task_at_a_time():
    batch = SinusoidTasks(shots=4, query=6, seed=0).sample(3)
    tasks = list(batch)
    assert len(tasks) == len(batch) == 3
    for t, (support_x, support_y, query_x, query_y) in enumerate(batch):
        assert support_x.shape == (4, 1) and query_y.shape == (6, 1)
        assert torch.equal(support_x, batch.support_x[t]) and torch.equal(query_y, batch.query_y[t])
    assert all(a is b for a, b in zip(batch.tensors(), (batch.support_x, batch.support_y, batch.query_x,
                                                        batch.query_y)))
    (one,) = batch[1:2]                                           # unpacking a batch of one task
    assert torch.equal(one[2], batch.query_x[1])
