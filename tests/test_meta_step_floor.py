"""benchmarks/meta_step_floor.py: where a meta-step's time goes, by operator family, and its stored result."""
from __future__ import annotations

import json
import statistics

import pytest
import torch
import torch.nn.functional as F

from mllib.bench import round_ratios
from repo_scripts import ROOT, load_script

probe = load_script("benchmarks/meta_step_floor.py")
RESULT = ROOT / "benchmarks" / "results" / "meta_step_floor.json"


@pytest.mark.parametrize("op, family", [
    ("aten::convolution_backward", "convolution"), ("aten::mkldnn_convolution", "convolution"),
    ("aten::native_batch_norm_backward", "batch norm"), ("aten::max_pool2d_with_indices", "pooling"),
    ("aten::threshold_backward", "relu"), ("aten::relu", "relu"), ("aten::addmm", "linear"),
    ("aten::mm", "linear"), ("aten::_log_softmax", "loss"), ("aten::nll_loss_forward", "loss"),
    ("aten::add_", "other"), ("aten::copy_", "other"), ("autograd::engine::evaluate_function", "other"),
])
def test_each_operator_lands_in_its_family(op, family):
    assert probe.family(op) == family


def test_a_profiled_convolution_step_is_mostly_convolution():
    torch.manual_seed(0)
    x, w = torch.randn(8, 4, 16, 16), torch.randn(8, 4, 3, 3, requires_grad=True)

    def step():
        torch.autograd.grad(F.conv2d(x, w, padding=1).square().sum(), w)

    by_family = probe.profile_step(step, repeats=2)
    assert by_family["convolution"] > 0 and set(by_family) <= set(probe.FAMILIES) | {"other"}
    assert by_family["convolution"] > 0.5 * probe.arithmetic_seconds(by_family)


def test_the_stored_result_is_consistent_with_its_own_timings():
    result = json.loads(RESULT.read_text())
    seconds, by_family = result["seconds"], result["by_family"]
    references = [impl for impl in seconds if not impl.startswith("mllib")]
    assert result["fastest_reference"] == min(references, key=lambda r: statistics.median(seconds[r]))
    assert result["ratios"] == round_ratios(seconds["mllib-loop"], [seconds[r] for r in references])
    fastest = statistics.median(seconds[result["fastest_reference"]])
    assert result["floor_ratio"] == pytest.approx(probe.arithmetic_seconds(by_family["mllib-loop"]) / fastest)
    assert probe.arithmetic_seconds(by_family["mllib-loop"]) == pytest.approx(
        sum(v for k, v in by_family["mllib-loop"].items() if k != "other"))
    assert result["floor_ratio"] < result["ratios"]["ratio_median"], "the floor lies below the measured ratio"


def test_the_pages_sentences_are_the_measurements():
    """docs/time_to_accuracy.md's meta-step section: every number comes from the JSON it names."""
    text = " ".join((ROOT / "docs" / "time_to_accuracy.md").read_text().split())
    for cpu, name in (("Intel Xeon", "cpu_2026-11-30_idle.json"), ("AMD EPYC", "cpu_2026-12-08_idle_amd.json")):
        ratios = {r["algo"]: r for r in json.loads((ROOT / "benchmarks" / "results" / name).read_text())["ratios"]}
        cells = " | ".join(f"{ratios[a]['ratio_median']:.2f}x ({ratios[a]['ratio_worst']:.2f}x)"
                           for a in ("maml", "fomaml"))
        assert f"| {cpu} (`{name}`) | {cells} |" in text
    second, first = (json.loads((ROOT / "benchmarks" / "results" / f).read_text())
                     for f in ("meta_step_floor.json", "meta_step_floor_fomaml.json"))
    for result, order in ((second, "second-order"), (first, "first-order")):
        mllib = result["by_family"]["mllib-loop"]
        assert (f"{mllib['convolution']:.1f} s of" in text
                and f"{result['median_seconds']['mllib-loop']:.1f} s {order} step" in text)
    floors = {f"{r['floor_ratio']:.2f}" for r in (second, first)}
    assert floors == {"0.58"} and "come to 0.58x of the fastest reference's whole step, in both orders" in text
    assert all(r["floor_ratio"] < 0.6 < r["ratios"]["ratio_median"] for r in (second, first)), "the page's reading"
