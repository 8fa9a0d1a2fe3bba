"""The MAML paper's Omniglot table in docs/results.md is the measurement in benchmarks/results/paper_table.json.

Each column's verdict is recomputed from its numbers (overlapping 95% intervals: a tie), the
checkpoints and training times are the shipped cards', every time is within the issue's limit, and
the page holds exactly the table ``benchmarks/paper_table.py --docs`` writes.
"""
from __future__ import annotations

import json
from pathlib import Path

from mllib.checkpoint import find_checkpoint
from mllib.compare import verdict

from repo_scripts import load_script   # tests/ is on sys.path under pytest

ROOT = Path(__file__).resolve().parents[1]
REPORT = json.loads((ROOT / "benchmarks" / "results" / "paper_table.json").read_text())


def paper_table():
    return load_script("benchmarks/paper_table.py")


def test_every_column_is_measured_under_the_paper_protocol_with_its_verdict():
    rows = REPORT["columns"]                       # one row per checkpoint; a column may have several
    assert {c["column"] for c in rows} == {"5-way 1-shot", "5-way 5-shot", "20-way 1-shot", "20-way 5-shot"}
    for c in rows:
        name = f"{c['column']} ({c['checkpoint']})"
        rotated = c["scores"]["rotated"]
        assert (rotated["tasks"], rotated["bn"], rotated["shots"]) == (600, "batch", c["shots"])
        assert rotated["classes"] == 4 * c["scores"]["as drawn"]["classes"]   # every test character x 4 rotations
        assert c["verdict"] == verdict(rotated["accuracy"], rotated["ci95"], c["paper_accuracy"], c["paper_ci95"])
        card = json.loads(find_checkpoint(c["checkpoint"]).with_suffix(".json").read_text())
        assert (card["ways"], card["shots"], card["train_seconds"]) == (c["ways"], c["trained_shots"], c["train_seconds"])
        assert c["train_seconds"] <= c["time_limit_seconds"], f"{name}: trained longer than the limit"


def test_the_report_has_one_row_per_row_of_the_script_in_its_order():
    rows = [(c["column"], c["shots"], c["checkpoint"]) for c in REPORT["columns"]]
    assert rows == [(name, shots, checkpoint) for name, _, shots, checkpoint, *_ in paper_table().COLUMNS], (
        "benchmarks/results/paper_table.json is stale: run python benchmarks/paper_table.py")


def test_the_page_holds_the_generated_table():
    module = paper_table()
    page = (ROOT / "docs" / "results.md").read_text()
    assert f"{module.DOCS_START}\n{module.docs_section(REPORT)}\n{module.DOCS_END}" in page


def test_a_planted_number_changes_the_table_and_the_verdict():
    module = paper_table()
    planted = json.loads(json.dumps(REPORT))
    column = planted["columns"][2]
    column["scores"]["rotated"]["accuracy"] -= 0.01           # 1 point lower: below the paper, not a tie
    assert module.docs_section(planted) != module.docs_section(REPORT)
    rotated = column["scores"]["rotated"]
    assert verdict(rotated["accuracy"], rotated["ci95"], column["paper_accuracy"], column["paper_ci95"]) == "lower"


def test_the_curves_are_read_from_each_checkpoints_shipped_training_log():
    module = paper_table()
    for c in REPORT["columns"]:
        card = json.loads(find_checkpoint(c["checkpoint"]).with_suffix(".json").read_text())
        log = find_checkpoint(c["checkpoint"]).with_suffix(".train.log").read_text()
        steps, minutes, accuracy = zip(*module.validation_curve(log))
        assert steps[-1] == card["meta_steps"] and abs(60 * minutes[-1] - card["train_seconds"]) < 1
        assert abs(max(accuracy) - card["best_val_accuracy"]) < 1e-4
    assert module.validation_curve("step 500: loss 0.4, train acc 0.8, 108 s") == []   # no validation on that line
    assert module.FIGURE.exists() and module.FIGURE.name in (ROOT / "docs" / "results.md").read_text()


def test_the_pages_sentence_on_the_two_learners_of_each_5_shot_column_is_the_measurement():
    """docs/results.md says the 5-shot-trained and the 1-shot-trained learner tie on 5-shot tasks, for 5 and 20 ways."""
    page = " ".join((ROOT / "docs" / "results.md").read_text().split())
    for column in ("5-way 5-shot", "20-way 5-shot"):
        rows = [c for c in REPORT["columns"] if c["column"] == column]
        assert [c["trained_shots"] for c in rows] == [5, 1]
        trained_5, trained_1 = (c["scores"]["rotated"] for c in rows)
        assert verdict(trained_5["accuracy"], trained_5["ci95"], trained_1["accuracy"], trained_1["ci95"]) == "tie"
        shown = (f"({100 * trained_5['accuracy']:.2f} ± {100 * trained_5['ci95']:.2f} "
                 f"against {100 * trained_1['accuracy']:.2f} ± {100 * trained_1['ci95']:.2f})")
        assert shown in page, f"docs/results.md should say of {column}: {shown}"
    below = [c["checkpoint"] for c in REPORT["columns"] if c["verdict"] != "tie"]
    assert below == ["maml_omniglot_5w5s_laptop"] and "5-shot-trained 5-way learner is below it" in page
