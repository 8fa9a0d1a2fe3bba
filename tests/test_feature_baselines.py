"""mllib.feature_baselines: nearest centroid and linear probe on frozen features (notebook 09, section 4)."""
from __future__ import annotations

import pytest
import torch

from mllib import feature_baselines as FB
from mllib.algorithms import proto_logits
from mllib.models import ConvLearner, params_of
from mllib.tasks import TaskBatch


def separable(ways=5, shots=3, dim=16, query=4, seed=0):
    """Class c's features sit near a random direction of its own: separable by any sensible rule."""
    g = torch.Generator().manual_seed(seed)
    means = 3 * torch.randn(ways, dim, generator=g)
    sy = torch.arange(ways).repeat_interleave(shots)
    qy = torch.arange(ways).repeat_interleave(query)
    sf = means[sy] + 0.3 * torch.randn(len(sy), dim, generator=g)
    qf = means[qy] + 0.3 * torch.randn(len(qy), dim, generator=g)
    return sf, sy, qf, qy


def test_euclidean_centroid_is_protonets_rule_on_the_same_features():
    torch.manual_seed(0)
    model = ConvLearner(ways=3, filters=4, depth=2, image_size=8)
    params = params_of(model)
    sx, sy = torch.rand(6, 1, 8, 8), torch.tensor([0, 0, 1, 1, 2, 2])
    qx = torch.rand(9, 1, 8, 8)
    for bn in ("batch", "support"):
        s, q = FB.task_features(model, params, sx, qx, bn)
        assert s.shape == (6, model.feature_dim) and q.shape == (9, model.feature_dim)
        ours = FB.nearest_centroid_logits(s, sy, q, 3, metric="euclidean")
        with torch.no_grad():
            theirs = proto_logits(model, params, sx, sy, qx, ways=3, bn=bn)
        torch.testing.assert_close(ours, theirs)


def test_cosine_centroid_ignores_feature_scale_and_matches_a_hand_computation():
    sf = torch.tensor([[2.0, 0.0], [0.0, 1.0], [0.0, 5.0]])
    sy = torch.tensor([0, 1, 1])
    qf = torch.tensor([[1.0, 1.0]])
    logits = FB.nearest_centroid_logits(sf, sy, qf, 2, metric="cosine")
    torch.testing.assert_close(logits, torch.tensor([[2 ** -0.5, 2 ** -0.5]]))
    torch.testing.assert_close(FB.nearest_centroid_logits(7 * sf, sy, 0.1 * qf, 2), logits)
    # euclidean is scale-sensitive: the far-away support point pulls class 1's centroid
    assert FB.nearest_centroid_logits(sf, sy, qf, 2, metric="euclidean").argmax() == 0


def test_linear_probe_fits_separable_support_and_classifies_its_queries():
    sf, sy, qf, qy = separable()
    train = FB.linear_probe_logits(sf, sy, sf, 5)
    assert train.shape == (15, 5)
    assert (train.argmax(-1) == sy).all()                        # 100% on its own support set
    assert (FB.linear_probe_logits(sf, sy, qf, 5).argmax(-1) == qy).float().mean() == 1.0
    # more steps fit the support set more confidently (the loss goes down)
    few = torch.nn.functional.cross_entropy(FB.linear_probe_logits(sf, sy, sf, 5, steps=2), sy)
    many = torch.nn.functional.cross_entropy(FB.linear_probe_logits(sf, sy, sf, 5, steps=200), sy)
    assert many < few


def test_linear_probe_l2_shrinks_the_weights():
    sf, sy, qf, _ = separable()
    free = FB.linear_probe_logits(sf, sy, qf, 5, l2=0.0, steps=200)
    shrunk = FB.linear_probe_logits(sf, sy, qf, 5, l2=1.0, steps=200)
    assert shrunk.abs().max() < free.abs().max()


def test_classifiers_pick_the_right_class_where_a_planted_label_swap_would_not():
    sf, sy, qf, qy = separable(seed=3)
    for fn in (lambda *a: FB.nearest_centroid_logits(*a, metric="cosine"),
               lambda *a: FB.nearest_centroid_logits(*a, metric="euclidean"), FB.linear_probe_logits):
        assert (fn(sf, sy, qf, 5).argmax(-1) == qy).all()
        swapped = sy.clone()
        swapped[sy == 0], swapped[sy == 1] = 1, 0
        assert (fn(sf, swapped, qf, 5).argmax(-1) == qy).float().mean() == pytest.approx(0.6)


def test_feature_accuracies_shape_and_agreement_with_the_logits():
    torch.manual_seed(1)
    model = ConvLearner(ways=4, filters=4, depth=2, image_size=8)
    params = params_of(model)
    proto = torch.rand(3, 1, 8, 8)   # three fixed patterns, a little noise: easy tasks
    sx = torch.stack([proto.repeat_interleave(2, 0) + 0.05 * torch.randn(6, 1, 8, 8) for _ in range(4)])
    qx = torch.stack([proto.repeat_interleave(3, 0) + 0.05 * torch.randn(9, 1, 8, 8) for _ in range(4)])
    batch = TaskBatch(sx, torch.arange(3).repeat_interleave(2).expand(4, 6).clone(), qx,
                      torch.arange(3).repeat_interleave(3).expand(4, 9).clone())
    for classifier in FB.CLASSIFIERS:
        acc = FB.feature_accuracies(model, params, batch, classifier=classifier)
        assert acc.shape == (4,) and acc.dtype == torch.float32
        assert acc.mean() > 0.9      # random features still separate three fixed patterns
    s, q = FB.task_features(model, params, sx[2], qx[2])
    expected = (FB.nearest_centroid_logits(s, batch.support_y[2], q, 3).argmax(-1) == batch.query_y[2]).float().mean()
    assert FB.feature_accuracies(model, params, batch)[2] == expected


@pytest.mark.parametrize("call,message", [
    (lambda: FB.nearest_centroid_logits(torch.zeros(2, 3), torch.tensor([0, 1]), torch.zeros(4, 5), 2), "same D"),
    (lambda: FB.nearest_centroid_logits(torch.zeros(2, 3), torch.tensor([0, 0]), torch.zeros(4, 3), 2), "classes [1]"),
    (lambda: FB.nearest_centroid_logits(torch.zeros(2, 3), torch.tensor([0, 2]), torch.zeros(4, 3), 2), "0..1"),
    (lambda: FB.nearest_centroid_logits(torch.zeros(2, 3), torch.tensor([0., 1.]), torch.zeros(4, 3), 2), "long"),
    (lambda: FB.nearest_centroid_logits(torch.zeros(2, 3), torch.tensor([0, 1]), torch.zeros(4, 3), 2, "l1"), "metric"),
    (lambda: FB.linear_probe_logits(torch.zeros(2, 3), torch.tensor([0, 1]), torch.zeros(4, 3), 2, l2=-1), "l2"),
])
def test_bad_input_says_what_is_wrong(call, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        call()


# ---------------------------------------------------------------- the shipped pre-trained network
def test_shipped_pretrained_network_loads_with_weights_only_and_its_card_shows_convergence():
    import json

    model, params = FB.load_pretrained()
    assert FB.PRETRAINED.stat().st_size < 1_500_000
    assert all(v.dtype == torch.float32 for v in params.values())
    s, q = FB.task_features(model, params, torch.rand(5, 1, 28, 28), torch.rand(7, 1, 28, 28))
    assert s.shape == (5, 32) and q.shape == (7, 32) and torch.isfinite(q).all()
    card = json.loads(FB.PRETRAINED.with_suffix(".train.log").read_text())
    assert card["checkpoint"] == FB.PRETRAINED.name and card["num_classes"] == 4400
    assert card["stop"].startswith("validation flat")      # stopped by its rule, not by the clock
    assert card["val_last_spread"] <= 0.005 and len(card["val_last_points"]) >= 3
    assert card["best_val_accuracy"] == max(p["val_accuracy"] for p in card["val_curve"])


def test_load_pretrained_refuses_a_file_that_is_not_one(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"format": "something else"}, path)
    with pytest.raises(ValueError, match="not a pre-trained classifier"):
        FB.load_pretrained(path)
    with pytest.raises(FileNotFoundError, match="make_pretrained_omniglot"):
        FB.load_pretrained(tmp_path / "missing.pt")
    state = torch.load(FB.PRETRAINED, weights_only=True)
    state["state_dict"].pop("head.bias")
    torch.save(state, path)
    with pytest.raises(ValueError, match="head.bias"):
        FB.load_pretrained(path)
