"""mllib.matching: the matching-network read-out (Vinyals et al. 2016), its link to the in-context
learner's read-out and to prototypical networks, and the shipped checkpoint (notebook 07)."""
from __future__ import annotations

import math

import pytest
import torch

from mllib import matching as M
from mllib.algorithms import predict, proto_logits
from mllib.incontext import LabelAttention
from mllib.models import ConvLearner, call_model, params_of
from mllib.tasks import TaskBatch


def looped_attention(query_f, support_f, scale):
    """a[t, i, j] = exp(s cos(q_ti, s_tj)) / sum_k exp(s cos(q_ti, s_tk)), one number at a time."""
    t_, q_, s_ = query_f.shape[0], query_f.shape[1], support_f.shape[1]
    out = torch.zeros(t_, q_, s_, dtype=query_f.dtype)
    for t in range(t_):
        for i in range(q_):
            cos = [float(query_f[t, i] @ support_f[t, j] / (query_f[t, i].norm() * support_f[t, j].norm()))
                   for j in range(s_)]
            total = sum(math.exp(scale * c) for c in cos)
            for j in range(s_):
                out[t, i, j] = math.exp(scale * cos[j]) / total
    return out


def test_attention_and_class_mass_equal_a_looped_form():
    g = torch.Generator().manual_seed(0)
    query_f, support_f = torch.randn(3, 4, 6, generator=g, dtype=torch.float64), \
        torch.randn(3, 5, 6, generator=g, dtype=torch.float64)
    support_y = torch.tensor([[0, 1, 2, 0, 1], [2, 2, 1, 0, 0], [1, 0, 2, 2, 2]])
    a = M.matching_attention(query_f, support_f, 7.0)
    torch.testing.assert_close(a, looped_attention(query_f, support_f, 7.0))
    mass = torch.zeros(3, 4, 3, dtype=torch.float64)          # p(c | x) = sum_i a_i [y_i = c], looped
    for t in range(3):
        for j in range(5):
            mass[t, :, support_y[t, j]] += a[t, :, j]
    torch.testing.assert_close(M.matching_log_probs(query_f, support_f, support_y, 3, 7.0).exp(), mass)


def test_a_query_identical_to_its_support_image_is_classified_right():
    torch.manual_seed(0)
    model = ConvLearner(ways=5, filters=8)
    support_x = torch.rand(1, 5, 1, 28, 28)                   # one 5-way 1-shot task; the queries are the supports
    support_y = torch.tensor([[3, 0, 4, 1, 2]])
    log_p = M.task_log_probs(model, params_of(model), support_x, support_y, support_x.clone(), 5)
    assert torch.equal(log_p.argmax(-1), support_y)


def test_loss_gradient_matches_finite_differences_in_float64():
    torch.manual_seed(0)
    model = ConvLearner(ways=3, filters=2, depth=2, image_size=8).double()
    names = ["blocks.0.conv.weight", "blocks.1.norm.weight"]
    batch = TaskBatch(torch.rand(2, 3, 1, 8, 8, dtype=torch.float64), torch.tensor([[0, 1, 2], [2, 0, 1]]),
                      torch.rand(2, 6, 1, 8, 8, dtype=torch.float64), torch.tensor([[0, 1, 2, 0, 1, 2]] * 2))
    base = params_of(model)

    def loss(scale, *tensors):
        params = dict(base, **dict(zip(names, tensors)))
        return M.batch_loss(model, params, scale, batch, 3, "support")[0]
    inputs = (torch.tensor(3.0, dtype=torch.float64, requires_grad=True),
              *(base[n].detach().clone().requires_grad_(True) for n in names))
    assert torch.autograd.gradcheck(loss, inputs, eps=1e-6, atol=1e-6)


def test_the_incontext_readout_is_the_same_class_mass_of_its_own_scores():
    torch.manual_seed(0)
    readout = LabelAttention(8).double()
    query, support = torch.randn(2, 4, 8, dtype=torch.float64), torch.randn(2, 5, 8, dtype=torch.float64)
    support_y = torch.tensor([[0, 1, 2, 2, 1], [1, 0, 0, 2, 2]])
    logits = readout(query, support, torch.nn.functional.one_hot(support_y, 3).double())
    scores = M.incontext_readout_scores(readout, query, support)
    torch.testing.assert_close(logits, torch.log(M.label_log_probs(scores, support_y, 3).exp() + 1e-6))


def test_prototype_readout_and_batched_embedding_equal_the_course_protonet_task_by_task():
    torch.manual_seed(0)
    model = ConvLearner(ways=3, filters=4, depth=2, image_size=8)
    params = params_of(model)
    sx, qx = torch.rand(2, 6, 1, 8, 8), torch.rand(2, 9, 1, 8, 8)
    sy = torch.tensor([[0, 0, 1, 1, 2, 2], [2, 1, 0, 2, 1, 0]])
    for bn in ("batch", "support"):
        with torch.no_grad():
            support_f, query_f = M.embed_tasks(model, params, sx, qx, bn, form="vmap")
            looped = M.embed_tasks(model, params, sx, qx, bn, form="loop")
            torch.testing.assert_close((support_f, query_f), looped)
            ours = M.task_log_probs(model, params, sx, sy, qx, 3, "prototype", bn=bn)
            for t in range(2):
                torch.testing.assert_close(support_f[t], call_model(model, params, sx[t], features=True))
                torch.testing.assert_close(query_f[t], predict(model, params, sx[t], qx[t], bn, features=True))
                theirs = proto_logits(model, params, sx[t], sy[t], qx[t], 3, bn).log_softmax(-1)
                torch.testing.assert_close(ours[t], theirs, atol=1e-5, rtol=1e-5)


def test_save_and_load_round_trip(tmp_path):
    torch.manual_seed(0)
    model = ConvLearner(ways=5, filters=4)
    M.save_matching(tmp_path / "m.pt", model, params_of(model), torch.tensor(12.5), {"filters": 4})
    loaded, params, scale, config = M.load_matching(tmp_path / "m.pt")
    assert float(scale) == 12.5 and config["ways"] == 5
    x = torch.rand(3, 1, 28, 28)
    torch.testing.assert_close(call_model(loaded, params, x, features=True), call_model(model, params_of(model), x,
                                                                                        features=True))


@pytest.mark.parametrize("call, words", [
    (lambda: M.cosine_scores(torch.zeros(2, 3), torch.zeros(2, 3), -1.0), "scale must be a positive finite number"),
    (lambda: M.cosine_scores(torch.zeros(2, 3), torch.zeros(2, 4), 1.0), "must share the leading dimensions"),
    (lambda: M.label_log_probs(torch.zeros(2, 3), torch.tensor([0, 0, 1]), 3), "class 2 has none"),
    (lambda: M.label_log_probs(torch.zeros(2, 3), torch.tensor([0, 1, 5]), 3), "labels must be in 0..2"),
    (lambda: M.label_log_probs(torch.zeros(2, 3), torch.tensor([0.0, 1.0, 2.0]), 3), "integer labels"),
    (lambda: M.task_log_probs(ConvLearner(3, filters=2), {}, torch.zeros(6, 1, 28, 28), torch.zeros(6),
                              torch.zeros(6, 1, 28, 28), 3), "must be image batches"),
])
def test_bad_input_is_one_sentence(call, words):
    with pytest.raises(ValueError) as info:
        call()
    assert words in str(info.value) and "\n" not in str(info.value)


def test_the_shipped_checkpoint_loads_and_is_a_matching_network():
    model, params, scale, config = M.load_matching()
    assert config["meta_steps"] == 1000 and config["filters"] == 32 and config["bn"] == "batch"
    assert math.isfinite(float(scale)) and float(scale) > 0
    assert all(torch.isfinite(p).all() for p in params.values())
