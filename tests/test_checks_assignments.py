"""The checks of the graded assignments (mllib/checks/assignments.py, notebooks/assignments/).

For every exercise: the reference passes both layers, and planted wrong answers (one per kind of
mistake: values, generality, side effects, types, differentiability) fail both. The stored visible
values are the references' results (MLLIB_WRITE_ASSIGNMENT_VALUES=1 prints the literal to paste).
"""
from __future__ import annotations

import math
import os
import pprint

import pytest
import torch
from torch import nn
import torch.nn.functional as F

from mllib.checks import assignments as graded
from mllib.checks.exercise import VISIBLE, encode


# ----------------------------------------------------------------------------- the references
def proto_logits_ref(support, support_y, query, ways):
    protos = torch.stack([support[support_y == c].mean(0) for c in range(ways)])
    return -((query[:, None, :] - protos[None]) ** 2).sum(-1)


def episode_loss_ref(embed, support_x, support_y, query_x, query_y, ways):
    logits = proto_logits_ref(embed(support_x), support_y, embed(query_x), ways)
    return F.cross_entropy(logits, query_y)


def label_attention_ref(query, keys, support_y, ways):
    weights = (query @ keys.T / math.sqrt(query.shape[-1])).softmax(-1)          # [Q, S]
    one_hot = F.one_hot(support_y, ways).to(query.dtype)                          # [S, ways]
    return torch.log(weights @ one_hot + 1e-6)


REFERENCES = {"proto_logits": proto_logits_ref, "episode_loss": episode_loss_ref,
              "label_attention": label_attention_ref}


class Embedding(nn.Module):
    def __init__(self, filters):
        super().__init__()
        self.blocks = nn.Sequential(*[nn.Sequential(nn.Conv2d(c, filters, 3, padding=1), nn.BatchNorm2d(filters),
                                                    nn.ReLU(), nn.MaxPool2d(2)) for c in (1, filters, filters, filters)])

    def forward(self, x):
        return self.blocks(x).flatten(1)


class BlackBox(nn.Module):
    def __init__(self, ways, filters, dim=16):
        super().__init__()
        self.ways, self.encoder = ways, Embedding(filters)
        self.features, self.labels = nn.Linear(filters, dim), nn.Linear(ways, dim, bias=False)

    def forward(self, support_x, support_y, query_x):
        feats = self.features(self.encoder(torch.cat([support_x, query_x])))
        keys = feats[:len(support_x)] + self.labels(F.one_hot(support_y, self.ways).float())
        return label_attention_ref(feats[len(support_x):], keys, support_y, self.ways)


def _silent(monkeypatch):
    monkeypatch.setenv("MLLIB_CHECKS_STRICT", "0")


# ----------------------------------------------------------------------------- stored values
def test_stored_values_match_the_references():
    computed = {}
    for name, ref in REFERENCES.items():
        spec = graded.ASSIGNMENTS[name]
        computed[name] = [encode(ref(*c.args, **c.kwargs)) for c in spec.cases(VISIBLE)]
    if os.environ.get("MLLIB_WRITE_ASSIGNMENT_VALUES"):
        print("STORED: dict[str, list] = " + pprint.pformat(computed, width=118, compact=True))
    for name, values in computed.items():
        got = [graded.decode(v) for v in graded.STORED[name]]
        want = [graded.decode(v) for v in values]
        for g, w in zip(got, want, strict=True):
            # a few units in the last place: two CPUs (Intel, AMD) round the same float64 sums differently,
            # while a stale value (a changed case or reference) differs by far more
            eps = 16 * torch.finfo(w.dtype).eps
            assert g.dtype == w.dtype and g.shape == w.shape, f"{name}: stored values are stale"
            assert torch.allclose(g, w, rtol=eps, atol=eps), f"{name}: stored values are stale"


# ----------------------------------------------------------------------------- both layers pass the references
@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_reference_passes_both_layers(name, monkeypatch, capsys):
    _silent(monkeypatch)
    check = getattr(graded, f"check_{name}")
    assert check(REFERENCES[name]), capsys.readouterr().out
    assert graded.hidden_tests(name, REFERENCES[name], REFERENCES[name]), capsys.readouterr().out


def test_embedding_and_black_box_pass(monkeypatch, capsys):
    _silent(monkeypatch)
    assert graded.check_conv_embedding(Embedding), capsys.readouterr().out
    assert graded.hidden_tests("conv_embedding", Embedding), capsys.readouterr().out
    assert graded.check_black_box_learner(BlackBox), capsys.readouterr().out
    assert graded.hidden_tests("black_box_learner", BlackBox), capsys.readouterr().out


# ----------------------------------------------------------------------------- planted mistakes fail both layers
def proto_balanced_only(support, support_y, query, ways):          # generality: reshape into [ways, shots, D]
    order = support_y.argsort()
    protos = support[order].reshape(ways, -1, support.shape[-1]).mean(1)
    return -((query[:, None, :] - protos[None]) ** 2).sum(-1)


def proto_plus_sign(support, support_y, query, ways):
    return -proto_logits_ref(support, support_y, query, ways)


def proto_sqrt(support, support_y, query, ways):
    return -(-proto_logits_ref(support, support_y, query, ways)).sqrt()


def proto_float32(support, support_y, query, ways):               # types: float64 in, float32 out
    return proto_logits_ref(support, support_y, query, ways).float()


def proto_in_place(support, support_y, query, ways):              # side effect: centres the query in place
    query -= query.mean(0)
    support -= query.mean(0)
    return proto_logits_ref(support, support_y, query, ways)


def proto_library(support, support_y, query, ways):
    from mllib.algorithms import proto_logits
    return proto_logits(nn.Identity(), {}, support, support_y, query, ways)


def loss_detached(*args):                                           # differentiability
    return episode_loss_ref(*args).detach()


def loss_float(*args):
    return float(episode_loss_ref(*args))


def loss_backward(*args):                                           # .grad left on the embedding
    loss = episode_loss_ref(*args)
    loss.backward(retain_graph=True)
    return loss


def loss_sum(embed, support_x, support_y, query_x, query_y, ways):  # sum, not mean over queries
    logits = proto_logits_ref(embed(support_x), support_y, embed(query_x), ways)
    return F.cross_entropy(logits, query_y, reduction="sum")


def loss_prototypes_from_query(embed, support_x, support_y, query_x, query_y, ways):
    logits = proto_logits_ref(embed(query_x), query_y, embed(query_x), ways)
    return F.cross_entropy(logits, query_y)


def attention_no_scale(query, keys, support_y, ways):
    return label_attention_ref(query * math.sqrt(query.shape[-1]), keys, support_y, ways)


def attention_probs(query, keys, support_y, ways):
    return label_attention_ref(query, keys, support_y, ways).exp()


def attention_class_softmax(query, keys, support_y, ways):          # generality: one key per class assumed
    scores = query @ keys[support_y.argsort()][:ways].T / math.sqrt(query.shape[-1])
    return scores.log_softmax(-1)


PLANTED = [
    ("proto_logits", proto_balanced_only), ("proto_logits", proto_plus_sign), ("proto_logits", proto_sqrt),
    ("proto_logits", proto_float32), ("proto_logits", proto_in_place), ("proto_logits", proto_library),
    ("episode_loss", loss_detached), ("episode_loss", loss_float), ("episode_loss", loss_backward),
    ("episode_loss", loss_sum), ("episode_loss", loss_prototypes_from_query),
    ("label_attention", attention_no_scale), ("label_attention", attention_probs),
    ("label_attention", attention_class_softmax),
]


@pytest.mark.parametrize("name,wrong", PLANTED, ids=[w.__name__ for _, w in PLANTED])
def test_planted_mistake_fails_both_layers(name, wrong, monkeypatch, capsys):
    _silent(monkeypatch)
    assert not getattr(graded, f"check_{name}")(wrong)
    assert not graded.hidden_tests(name, wrong, REFERENCES[name])
    out = capsys.readouterr().out
    assert "❌" in out and "Traceback" not in out


def test_property_hints_name_the_property(monkeypatch, capsys):
    _silent(monkeypatch)
    graded.check_proto_logits(proto_in_place)
    assert "changed its input" in capsys.readouterr().out
    graded.check_episode_loss(loss_detached)
    assert "the loss has no gradient" in capsys.readouterr().out
    graded.check_episode_loss(loss_backward)
    assert ".grad" in capsys.readouterr().out
    graded.check_proto_logits(proto_balanced_only)
    assert "same number of support examples" in capsys.readouterr().out


class EmbeddingNoNorm(Embedding):
    def __init__(self, filters):
        super().__init__(filters)
        for block in self.blocks:
            block[1] = nn.Identity()


class EmbeddingThreeBlocks(Embedding):
    def __init__(self, filters):
        super().__init__(filters)
        self.blocks = self.blocks[:3]


class EmbeddingLastPoolMissing(Embedding):
    def __init__(self, filters):
        super().__init__(filters)
        self.blocks[3][3] = nn.Identity()


class BlackBoxIgnoresLabels(BlackBox):
    def forward(self, support_x, support_y, query_x):
        feats = self.features(self.encoder(torch.cat([support_x, query_x])))
        keys = feats[:len(support_x)] + self.labels(torch.zeros(len(support_x), self.ways))
        return (feats[len(support_x):] @ keys.T)[:, :self.ways]


class BlackBoxFineTunes(BlackBox):                                   # a gradient step at test time
    def forward(self, support_x, support_y, query_x):
        with torch.no_grad():
            self.features.bias -= 0.01
        return super().forward(support_x, support_y, query_x)


class BlackBoxOneShotOnly(BlackBox):                                 # generality: example j has label j
    def forward(self, support_x, support_y, query_x):
        feats = self.features(self.encoder(torch.cat([support_x, query_x])))
        keys = feats[:len(support_x)] + self.labels(torch.eye(self.ways))
        return label_attention_ref(feats[len(support_x):], keys, torch.arange(self.ways), self.ways)


@pytest.mark.parametrize("wrong", [EmbeddingNoNorm, EmbeddingThreeBlocks, EmbeddingLastPoolMissing])
def test_wrong_embeddings_fail_both_layers(wrong, monkeypatch, capsys):
    _silent(monkeypatch)
    assert not graded.check_conv_embedding(wrong)
    assert not graded.hidden_tests("conv_embedding", wrong)


@pytest.mark.parametrize("wrong", [BlackBoxIgnoresLabels, BlackBoxFineTunes, BlackBoxOneShotOnly])
def test_wrong_black_boxes_fail_both_layers(wrong, monkeypatch, capsys):
    _silent(monkeypatch)
    assert not graded.check_black_box_learner(wrong)
    assert not graded.hidden_tests("black_box_learner", wrong)
    assert "Traceback" not in capsys.readouterr().out


# ----------------------------------------------------------------------------- the graded run
def test_accuracy_band(monkeypatch, capsys):
    _silent(monkeypatch)
    good = torch.full((100,), 0.92)
    assert graded.check_accuracy_band("A2 run", good, 0.85)
    assert not graded.check_accuracy_band("A2 run", good - 0.2, 0.85)
    assert not graded.check_accuracy_band("A2 run", good[:50], 0.85)              # too few tasks
    assert not graded.check_accuracy_band("A2 run", good * 100, 0.85)             # percent, not fractions
    assert not graded.check_accuracy_band("A2 run", 0.92, 0.85)                   # a number, not per task
    out = capsys.readouterr().out
    assert "outside the band" in out and "100 test tasks scored" not in out and "Traceback" not in out


def test_strict_mode_raises_on_a_failed_band(monkeypatch):
    monkeypatch.setenv("MLLIB_CHECKS_STRICT", "1")
    with pytest.raises(AssertionError, match="outside the band"):
        graded.check_accuracy_band("A2 run", torch.full((100,), 0.5), 0.85)


def test_assignments_stay_out_of_the_course_registry():
    from mllib.checks.exercise import SPECS
    assert not set(graded.ASSIGNMENTS) & set(SPECS)


# ----------------------------------------------------------------------------- the student build of a subfolder
def test_student_build_strips_assignment_notebooks_and_keeps_their_links(tmp_path):
    import nbformat

    from mllib.course.config import load_config
    from mllib.course.student import build_student

    root = tmp_path / "repo"
    (root / "docs").mkdir(parents=True)
    (root / "docs" / "glossary.md").write_text("# glossary\n")
    src = root / "notebooks"
    (src / "assignments").mkdir(parents=True)
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("See [the glossary](../../docs/glossary.md), "
                                              "[notebook 05](../05_x.ipynb) and [part 2](#part-2)."),
                nbformat.v4.new_code_cell("def f(x):\n    ### BEGIN SOLUTION\n    return x + 1\n    ### END SOLUTION\n")]
    nbformat.write(nb, src / "assignments" / "A9.ipynb")
    nbformat.write(nbformat.v4.new_notebook(), src / "05_x.ipynb")
    out = root / "build" / "student"
    build_student(src, out, load_config())
    built = nbformat.read(out / "assignments" / "A9.ipynb", as_version=4)
    code = built.cells[1].source
    assert "return x + 1" not in code and "raise NotImplementedError" in code
    text = built.cells[0].source
    assert "(../../../docs/glossary.md)" in text and "(../05_x.ipynb)" in text and "(#part-2)" in text
    assert (out / "assignments" / "../../../docs/glossary.md").resolve() == (root / "docs" / "glossary.md").resolve()


# ----------------------------------------------------------------------------- scoring (hidden tests of the runs)
def score_protonet_ref(model, tasks):
    accs = []
    with torch.no_grad():
        for sx, sy, qx, qy in tasks:
            logits = proto_logits_ref(model(sx), sy, model(qx), int(sy.max()) + 1)
            accs.append((logits.argmax(-1) == qy).float().mean())
    return torch.stack(accs)


def score_black_box_ref(model, tasks):
    with torch.no_grad():
        return torch.stack([(model(sx, sy, qx).argmax(-1) == qy).float().mean() for sx, sy, qx, qy in tasks])


def score_pooled(model, tasks):                                     # one accuracy over all tasks, not per task
    return score_protonet_ref(model, tasks).mean()


def score_first_task_only(model, tasks):
    return score_protonet_ref(model, tasks[:1])


def score_error_rate(model, tasks):
    return 1 - score_protonet_ref(model, tasks)


def score_bb_float64(model, tasks):
    return score_black_box_ref(model, tasks).double()


@pytest.mark.parametrize("name,reference,wrong", [
    ("score_protonet", score_protonet_ref, None), ("score_black_box", score_black_box_ref, None),
    ("score_protonet", score_protonet_ref, score_pooled), ("score_protonet", score_protonet_ref, score_first_task_only),
    ("score_protonet", score_protonet_ref, score_error_rate), ("score_black_box", score_black_box_ref, score_bb_float64),
])
def test_scoring_hidden_tests(name, reference, wrong, monkeypatch, capsys):
    _silent(monkeypatch)
    result = graded.hidden_tests(name, wrong or reference, reference)
    assert bool(result) == (wrong is None), capsys.readouterr().out


# ----------------------------------------------------------------------------- A3: the ablation's runs and answers
def _fake_results(steps=10, tasks=100):
    from types import SimpleNamespace

    gen = torch.Generator().manual_seed(0)
    base = {"second order": 0.80, "first order": 0.78, "inner lr 0.1": 0.70, "3 inner steps": 0.84}
    results = {}
    for i, (name, level) in enumerate(base.items()):
        per_task = (level + 0.1 * torch.randn(tasks, generator=gen, dtype=torch.float64)).clamp(0, 1).float()
        values = per_task.double()
        results[name] = {"accuracy": float(values.mean()), "ci95": 1.96 * float(values.std()) / math.sqrt(tasks),
                         "per_task": per_task, "cpu_seconds": 10.0 - 4 * (name == "first order"),
                         "run": SimpleNamespace(step=steps, index=i)}
    return results


def _answers_from(results):
    return dict(graded.ablation_facts(results))


def test_ablation_run_accepts_consistent_results(monkeypatch):
    _silent(monkeypatch)
    results = _fake_results()
    assert graded.check_ablation_run(lambda: results, dict.fromkeys(results), 10) is results
    rescore = lambda run: results[list(results)[run.index]]["per_task"]  # noqa: E731
    assert graded.check_rescored_runs(results, rescore)


@pytest.mark.parametrize("spoil", ["missing variant", "accuracy not the mean", "ci of one task", "steps", "tasks",
                                   "not implemented", "raises"])
def test_ablation_run_rejects_inconsistent_results(spoil, monkeypatch, capsys):
    _silent(monkeypatch)
    results = _fake_results()
    variants = dict.fromkeys(results)
    if spoil == "missing variant":
        results.pop("first order")
    elif spoil == "accuracy not the mean":
        results["first order"]["accuracy"] += 0.01
    elif spoil == "ci of one task":
        results["first order"]["ci95"] = 1.96 * float(results["first order"]["per_task"].double().std())
    elif spoil == "steps":
        results["first order"]["run"].step = 9
    elif spoil == "tasks":
        results["first order"]["per_task"] = results["first order"]["per_task"][:50]

    def run():
        if spoil == "not implemented":
            raise NotImplementedError
        if spoil == "raises":
            raise KeyError("inner_lr")
        return results

    assert graded.check_ablation_run(run, variants, 10) == {}
    out = capsys.readouterr().out
    assert ("⏳" if spoil == "not implemented" else "❌") in out and "Traceback" not in out


def test_rescored_runs_catch_numbers_not_from_the_run(monkeypatch):
    _silent(monkeypatch)
    results = _fake_results()
    rescore = lambda run: results[list(results)[run.index]]["per_task"] * 0.9  # noqa: E731
    assert not graded.check_rescored_runs(results, rescore)


def test_ablation_answers_read_against_the_runs(monkeypatch, capsys):
    _silent(monkeypatch)
    results = _fake_results()
    facts = graded.ablation_facts(results)
    assert facts["best_inner_lr"] == 0.4 and facts["first_order_time_ratio"] == pytest.approx(0.6)
    assert graded.check_ablation_answers(_answers_from, results), capsys.readouterr().out
    within = {**facts, "second_order_accuracy": facts["second_order_accuracy"] + 0.004}
    assert graded.check_ablation_answers(lambda r: within, results)
    wrong = [("second_order_accuracy", facts["second_order_accuracy"] + 0.02),
             ("first_order_accuracy", 100 * facts["first_order_accuracy"]),       # a percentage
             ("first_order_time_ratio", 1 / facts["first_order_time_ratio"]),     # the ratio upside down
             ("first_vs_second", "higher" if facts["first_vs_second"] != "higher" else "lower"),
             ("best_inner_lr", 0.1), ("three_steps_gain", -facts["three_steps_gain"]),
             ("three_steps_gain", "0.04")]
    for key, value in wrong:
        assert not graded.check_ablation_answers(lambda r: {**facts, key: value}, results), key
    assert not graded.check_ablation_answers(lambda r: {k: v for k, v in facts.items() if k != "best_inner_lr"},
                                             results)
    assert not graded.check_ablation_answers(_answers_from, {})
    out = capsys.readouterr().out
    assert "does not match your runs" in out and "Traceback" not in out


def test_unanswered_ablation_is_not_implemented_even_without_runs(monkeypatch, capsys):
    _silent(monkeypatch)

    def unanswered(results):
        raise NotImplementedError

    assert graded.check_ablation_answers(unanswered, {}).status == "not_implemented"
    assert graded.check_ablation_answers(_answers_from, {}).status == "failed"
