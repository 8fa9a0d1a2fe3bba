"""The papers' test protocol: rotated test classes (``EvalProtocol.test_rotations``, ``eval --test-rotations``).

The MAML and Prototypical Networks papers test on every test character rotated by 0, 90, 180 and
270 degrees, each rotation a class of its own; the course's default tests the characters as drawn.
Checked here: a rotated class's images are exactly the base images rotated, there are four times
as many classes, one label never mixes rotations or characters, a fixed seed gives fixed tasks, and
the default protocol draws exactly the tasks it drew before the option existed. Also: the MAML
reference code's variant (one rotation per character in a task), ``eval``'s flag, results of
learners without an inner loop, and ``benchmarks/results/protocols.json`` (the numbers the README
and notebook 05 quote: protocol, batch-norm mode and budget stated, verdicts by interval overlap).
"""
from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import pytest
import torch

import mllib.cli.eval as cli_eval
import mllib.evaluate as ev
from mllib.__main__ import main
from mllib.algorithms import MetaConfig
from mllib.data import OmniglotData
from mllib.data.splits import split_characters
from mllib.evaluate import EvalProtocol, LearnerToTest, evaluate, format_result, test_sampler, test_tasks
from mllib.learners import build_learner
from mllib.models import build_conv_learner, params_of
from mllib.tasks import OmniglotTasks

from repo_scripts import load_script   # tests/ is on sys.path under pytest

AS_DRAWN = EvalProtocol(MetaConfig(form="loop"), ways=5, shots=1, query=3, inner_steps=1)
ROTATED = AS_DRAWN.with_changes(test_rotations=True)


def image_classes(omniglot, characters: list[int]) -> dict[bytes, set[tuple[int, int]]]:
    """Every image of ``characters`` at every rotation k (as the float bytes a task holds) -> ``{(character, k)}``."""
    table: dict[bytes, set[tuple[int, int]]] = {}
    for c in characters:
        for k in range(4):
            rotated = torch.rot90(omniglot.images[c], k, dims=(1, 2)).float().div(255)  # [drawers, 28, 28]
            for image in rotated:
                table.setdefault(image.numpy().tobytes(), set()).add((c, k))
    return table


def label_classes(images, labels, table) -> dict[int, set[tuple[int, int]]]:
    """For each label of one task: the (character, k) pairs that every one of its images could be."""
    found: dict[int, set[tuple[int, int]]] = {}
    for image, label in zip(images, labels.tolist()):
        candidates = table[image[0].numpy().tobytes()]
        found[label] = found[label] & candidates if label in found else set(candidates)
    return found


def test_rotated_class_images_are_the_base_images_rotated(omniglot):
    tasks = test_tasks(omniglot, ROTATED, count=8, seed=3)
    idx = test_sampler(omniglot, ROTATED, seed=3).sample_indices(8)  # the same draws, from a fresh sampler
    for t in range(8):
        for w in range(5):
            char, k = int(idx["characters"][t, w]), int(idx["rotation"][t, w])
            drawers = idx["drawers"][t, w]
            expected = torch.rot90(omniglot.images[char, drawers], k, dims=(1, 2)).float() / 255
            assert torch.equal(tasks.support_x[t, w, 0], expected[0])
            assert torch.equal(tasks.query_x[t, w * 3:(w + 1) * 3, 0], expected[1:])
    rotations = test_sampler(omniglot, ROTATED, seed=3).sample_indices(200)["rotation"]
    assert set(rotations.flatten().tolist()) == {0, 1, 2, 3}  # every rotation is drawn
    as_drawn = test_sampler(omniglot, AS_DRAWN, seed=3).sample_indices(200)["rotation"]
    assert set(as_drawn.flatten().tolist()) == {0}


def test_rotated_protocol_has_four_times_the_classes(omniglot):
    characters = len(split_characters("maml", "test", omniglot.characters))
    assert test_sampler(omniglot, AS_DRAWN).num_classes == characters
    assert test_sampler(omniglot, ROTATED).num_classes == 4 * characters
    # training tasks are rotated under either protocol (as before)
    train = len(split_characters("maml", "train", omniglot.characters))
    assert test_sampler(omniglot, AS_DRAWN, part="train").num_classes == 4 * train
    assert test_sampler(omniglot, ROTATED, part="train").num_classes == 4 * train


def test_one_label_is_one_character_at_one_rotation(omniglot):
    """Read from the pixels alone: all images of a label are one character at one rotation, and
    different labels are different classes."""
    tasks = test_tasks(omniglot, ROTATED, count=12, seed=7)
    table = image_classes(omniglot, split_characters("maml", "test", omniglot.characters))
    for support_x, support_y, query_x, query_y in tasks:
        found = label_classes(torch.cat([support_x, query_x]), torch.cat([support_y, query_y]), table)
        assert sorted(found) == list(range(5))
        assert all(found[label] for label in found), "a label mixes characters or rotations"
        unique = [next(iter(pairs)) for pairs in found.values() if len(pairs) == 1]
        assert len(set(unique)) == len(unique), "two labels hold the same class"


def test_fixed_seed_gives_fixed_rotated_tasks(omniglot):
    a, b = test_tasks(omniglot, ROTATED, count=6, seed=11), test_tasks(omniglot, ROTATED, count=6, seed=11)
    assert all(torch.equal(x, y) for x, y in zip(a.tensors(), b.tensors()))
    other_seed = test_tasks(omniglot, ROTATED, count=6, seed=12)
    as_drawn = test_tasks(omniglot, AS_DRAWN, count=6, seed=11)
    assert not torch.equal(a.support_x, other_seed.support_x)
    assert not torch.equal(a.support_x, as_drawn.support_x)


def fingerprint(batch) -> str:
    digest = hashlib.sha256()
    for tensor in batch.tensors():
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


# sha256 of test_tasks(count=7, seed=5) on the 12-character data below, computed with the code as it
# was before test_rotations existed (commit 538b1f1): the default protocol must draw the same tasks.
BEFORE = {"test": "a358ce5ed0f31cfefe1a609540cd95ab22b0f3b7173bd0c03d7e2613ee8d631e",
          "train": "d8c4fe0f341754767401c5cd1ee9bb71a75e770510d11372d40795eca6a7e648"}


@pytest.mark.parametrize("part", ["test", "train"])
def test_default_protocol_draws_the_same_tasks_as_before(part):
    names = [f"alphabet/character{i:02d}" for i in range(12)]
    images = (torch.arange(12 * 20 * 28 * 28) % 251).to(torch.uint8).view(12, 20, 28, 28)
    data = OmniglotData(images, names, ["background"] * 12)
    protocol = EvalProtocol(MetaConfig(form="loop"), ways=5, shots=1, query=2, inner_steps=1, split=None)
    assert protocol.test_rotations is False
    assert fingerprint(test_tasks(data, protocol, count=7, part=part, seed=5)) == BEFORE[part]
    rotated = fingerprint(test_tasks(data, protocol.with_changes(test_rotations=True), count=7, part=part, seed=5))
    assert (rotated == BEFORE[part]) == (part == "train")  # training tasks were already rotated


def tiny_run() -> LearnerToTest:
    torch.manual_seed(0)
    model = build_conv_learner(ways=5, filters=4)
    return LearnerToTest(model, params_of(model), EvalProtocol(MetaConfig(), ways=5, shots=1, query=2, inner_steps=1))


def test_evaluate_reports_the_protocol(omniglot):
    drawn = evaluate(tiny_run(), data=omniglot, tasks=4, device="cpu", progress=False)
    rotated = evaluate(tiny_run(), data=omniglot, tasks=4, device="cpu", progress=False, test_rotations=True)
    characters = len(split_characters("maml", "test", omniglot.characters))
    assert (drawn["test_rotations"], drawn["classes"]) == (False, characters)
    assert (rotated["test_rotations"], rotated["classes"]) == (True, 4 * characters)
    assert "rotated" not in format_result(drawn)
    assert f"[rotated test classes, {4 * characters} of them" in format_result(rotated)
    assert ev.load_run(tiny_run(), "cpu", test_rotations=True).protocol.test_rotations is True


def test_eval_cli_passes_test_rotations(monkeypatch, capsys, tmp_path):
    seen = []
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.pt").write_bytes(b"")   # eval looks the checkpoint up before it evaluates it

    def fake_evaluate(checkpoint, **kwargs):
        seen.append(kwargs["test_rotations"])
        return dict(algo="maml", ways=5, shots=1, accuracy=0.9, ci95=0.01, tasks=600, split="test", query=5,
                    inner_steps=1, inner_lr=0.4, bn="batch", transductive=True, device="cpu", seconds=1,
                    test_rotations=kwargs["test_rotations"], classes=1692)

    monkeypatch.setattr(cli_eval, "evaluate", fake_evaluate)
    assert main(["eval", "--checkpoint", "x.pt"]) == 0
    assert main(["eval", "--checkpoint", "x.pt", "--test-rotations"]) == 0
    assert seen == [False, True]
    assert "rotated test classes" in capsys.readouterr().out.splitlines()[-1]


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_test_rotations_must_be_a_bool(value):
    with pytest.raises(ValueError, match="test_rotations must be True .* or False"):
        EvalProtocol(MetaConfig(), ways=5, shots=1, query=2, inner_steps=1, test_rotations=value)


def test_one_rotation_per_character_as_the_maml_reference_code(omniglot):
    """The MAML reference code's variant: distinct characters per task, each at a random rotation;
    the default (ProtoNets: distinct classes of the four-fold set) sometimes puts two rotations of
    one character into a 20-way task."""
    kw = dict(split="maml", part="test", ways=20, shots=1, query=1, rotations=True, seed=2)
    maml_code = OmniglotTasks(omniglot, one_rotation_per_character=True, **kw)
    idx = maml_code.sample_indices(300)
    assert all(len(set(row.tolist())) == 20 for row in idx["characters"])
    assert set(idx["rotation"].flatten().tolist()) == {0, 1, 2, 3}
    batch = maml_code.batch_from_indices(idx)
    char, k, drawer = int(idx["characters"][0, 3]), int(idx["rotation"][0, 3]), int(idx["drawers"][0, 3, 0])
    assert torch.equal(batch.support_x[0, 3, 0], torch.rot90(omniglot.images[char, drawer], k).float() / 255)
    classes = OmniglotTasks(omniglot, **kw).sample_indices(300)["characters"]
    assert any(len(set(row.tolist())) < 20 for row in classes)
    with pytest.raises(ValueError, match="one_rotation_per_character must be True \\(with rotations=True\\)"):
        OmniglotTasks(omniglot, **{**kw, "rotations": False}, one_rotation_per_character=True)


# ---------------------------------------------------------------- benchmarks/results/protocols.json

ROOT = Path(__file__).resolve().parent.parent


def load_benchmark():
    return load_script("benchmarks/eval_protocols.py")


def check_protocols_report(report: dict, bench) -> None:
    """What the README and notebook 05 quote from protocols.json: every row states its protocol, batch-norm
    mode, test steps, tasks and training budget; the as-drawn rows reproduce the model cards; papers are
    compared only under their (rotated) protocol, with the verdict that the intervals give."""
    assert report["kind"] == "eval-protocols" and report["results"]
    for r in report["results"]:
        assert r["protocol"] in bench.PROTOCOLS and r["bn"] in ("batch", "support", "running")
        assert r["tasks"] >= 600 and r["test_steps"] >= 0 and "meta-steps" in r["training_budget"]
        assert 0 <= r["accuracy"] <= 1 and 0 < r["ci95"] < 0.05
        assert r["test_classes"] == (423 if r["protocol"] == "as-drawn" else 4 * 423), r
        if r["protocol"] == "as-drawn":
            assert r["matches_card"] is True, f"{r['checkpoint']}: {r['accuracy']} != card {r['card_accuracy']}"
    rotated = {(r["checkpoint"], r["protocol"]) for r in report["results"] if r["protocol"] in bench.PAPER_PROTOCOLS}
    for c in report["paper_comparisons"]:
        assert (c["checkpoint"], c["protocol"]) in rotated, f"{c['checkpoint']} compared under {c['protocol']}"
        assert c["verdict"] == bench.verdict(c["ours"], c["ours_ci95"], c["paper_accuracy"], c["paper_ci95"]), c


def test_verdict_is_a_tie_when_the_intervals_overlap():
    bench = load_benchmark()
    assert bench.verdict(0.9894, 0.0019, 0.987, 0.004) == "tie"  # the README's "above" of issue 22
    assert bench.verdict(0.9403, 0.0027, 0.958, 0.003) == "below"
    assert bench.verdict(0.999, 0.001, 0.987, 0.004) == "above"
    assert bench.verdict(0.97, 0.006, 0.975, None) == "tie"  # no paper interval: ours alone
    assert bench.verdict(0.97, 0.004, 0.975, None) == "below"


def test_protocols_json_states_its_protocols_and_verdicts():
    bench = load_benchmark()
    report = json.loads((ROOT / "benchmarks" / "results" / "protocols.json").read_text())
    check_protocols_report(report, bench)
    assert {r["protocol"] for r in report["results"]} >= {"as-drawn", "rotated"}
    # planted errors: each must be caught
    bad = copy.deepcopy(report)
    bad["paper_comparisons"][0]["verdict"] = "above" if bad["paper_comparisons"][0]["verdict"] != "above" else "below"
    with pytest.raises(AssertionError):
        check_protocols_report(bad, bench)
    bad = copy.deepcopy(report)
    drawn = next(r for r in bad["results"] if r["protocol"] == "as-drawn")
    bad["paper_comparisons"].append({**bad["paper_comparisons"][0], "checkpoint": drawn["checkpoint"],
                                     "protocol": "as-drawn"})
    with pytest.raises(AssertionError, match="compared under as-drawn"):
        check_protocols_report(bad, bench)
    bad = copy.deepcopy(report)
    del bad["results"][0]["bn"]
    with pytest.raises(KeyError):
        check_protocols_report(bad, bench)


def test_protonet_results_say_no_inner_loop(omniglot):
    """A prototypical network takes no gradient step at test time, whatever steps its profile names
    (issue 22: its results printed "3 inner steps at lr 0.4")."""
    torch.manual_seed(0)
    model = build_learner("protonet", 5, 4, 4)
    protocol = EvalProtocol(MetaConfig(algo="protonet"), ways=5, shots=1, query=2, inner_steps=3)
    result = evaluate(LearnerToTest(model, params_of(model), protocol), data=omniglot, tasks=4, device="cpu",
                      progress=False)
    assert (result["inner_steps"], result["inner_lr"]) == (0, None)
    assert "no inner loop" in format_result(result) and "inner steps at lr" not in format_result(result)
