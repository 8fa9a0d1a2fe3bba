"""The family at one budget (issue 25): benchmarks/results/family_at_one_budget.json, its rules, and
notebook 06's section 2b, which prints it (the stored output must show the JSON's numbers)."""
import json
import math
import re
from pathlib import Path

import pytest
import torch

from mllib.algorithms import MetaConfig, init_meta_params, meta_gradient
from mllib.compare import paired_verdict
from mllib.evaluate import mean_ci95
from mllib.models import ConvLearner
from mllib.tasks.batch import TaskBatch

ROOT = Path(__file__).resolve().parent.parent
RESULT = ROOT / "benchmarks" / "results" / "family_at_one_budget.json"
NOTEBOOK = ROOT / "notebooks" / "06_learning_the_learning_algorithm.ipynb"


@pytest.fixture(scope="module")
def result():
    return json.loads(RESULT.read_text())


def _runs(result):
    yield from result["family"].items()
    yield from result["sweep"]["runs"].items()
    yield from result["tricks"]["runs"].items()


def test_anil_with_the_zero_head_and_one_step_is_maml_exactly(one_thread):
    """Why the JSON's ANIL is the MAML run: the same meta-gradient, bit for bit (float64)."""
    torch.manual_seed(0)
    model = ConvLearner(ways=3, filters=4, depth=2).double()
    g = torch.Generator().manual_seed(1)
    batch = TaskBatch(torch.rand(2, 3, 1, 28, 28, generator=g, dtype=torch.float64), torch.arange(3).repeat(2, 1),
                      torch.rand(2, 6, 1, 28, 28, generator=g, dtype=torch.float64), torch.arange(3).repeat(2, 2))
    grads = {}
    for algo in ("maml", "anil"):
        cfg = MetaConfig(algo=algo, head_init="zero", form="loop")
        grads[algo], _ = meta_gradient(model, init_meta_params(model, cfg), batch, cfg)
    assert all(torch.equal(grads["maml"][k], grads["anil"][k]) for k in grads["maml"])
    two = {}
    for algo in ("maml", "anil"):  # with two inner steps the body adapts in MAML only
        cfg = MetaConfig(algo=algo, head_init="zero", form="loop", inner_steps=2)
        two[algo], _ = meta_gradient(model, init_meta_params(model, cfg), batch, cfg)
    assert not all(torch.equal(two["maml"][k], two["anil"][k]) for k in two["maml"])


def test_every_accuracy_and_paired_difference_is_recomputed_from_the_600_scores(result):
    maml = result["family"]["maml"]["scores"]
    base = result["sweep"]["runs"].get("sweep_lr0.4_k2", {}).get("scores")
    for name, entry in _runs(result):
        assert len(entry["scores"]) == 600, name
        mean, half = mean_ci95(entry["scores"])
        assert (entry["accuracy"], entry["ci95"]) == (round(mean, 4), round(half, 4)), name
        if "paired" in entry:
            against = base if name.startswith("trick_") else maml
            assert entry["paired"]["verdict"] == str(paired_verdict(entry["scores"], against)), name
            diff, diff_half = mean_ci95([a - b for a, b in zip(entry["scores"], against)])
            assert entry["paired"]["difference"] == round(diff, 4), name


def test_step_budgets_are_the_idle_maml_budget_over_the_measured_ratio(result):
    cost = result["cost"]["variants"]
    assert result["recipe"]["meta_steps"] == 2500 and result["recipe"]["idle_budget_s"] == 229.0
    for name, row in cost.items():
        assert row["step_budget"] == int(round(2500 / row["ratio_median"], -1)), name
    for name, entry in result["family"].items():
        if name in ("maml", "anil"):
            assert entry["meta_steps"] == 2500
        elif "budget_fraction" not in entry:  # trained at the full budget
            assert entry["meta_steps"] == cost[name]["step_budget"], name
    for group in ("sweep", "tricks"):
        for name, entry in result[group]["runs"].items():
            assert entry["meta_steps"] == result[group]["meta_steps"], name
    assert "shared machine" in result["machine"]


def _section_output():
    """The printed output of notebook 06's cells that load or read the JSON (section 2b)."""
    cells = [cell for cell in json.loads(NOTEBOOK.read_text())["cells"] if cell["cell_type"] == "code"]
    assert any("family_at_one_budget.json" in "".join(c["source"]) for c in cells), "notebook 06 never loads it"
    return "".join("".join(o.get("text", "")) for c in cells if "FAMILY" in "".join(c["source"])
                   for o in c.get("outputs", []))


def test_notebook_06_shows_the_numbers_of_the_json(result):
    shown = _section_output()
    for name, entry in _runs(result):
        line = re.search(rf"^{re.escape(name)}\s.*$", shown, re.M)
        assert line, f"notebook 06's section 2b does not print {name}: re-execute it"
        assert f"{100 * entry['accuracy']:.1f}% ± {100 * entry['ci95']:.1f}" in line.group(0), (name, line.group(0))
    assert not math.isnan(result["family"]["maml"]["accuracy"])
