"""The MAML paper's Omniglot table in docs/results.md is the measurement in benchmarks/results/paper_table.json.

Each column's verdict is recomputed from its numbers (overlapping 95% intervals: a tie), the
checkpoints and training times are the shipped cards', every time is within the issue's limit, and
the page holds exactly the table ``benchmarks/paper_table.py --docs`` writes.
"""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from mllib.checkpoint import find_checkpoint
from mllib.compare import verdict

ROOT = Path(__file__).resolve().parents[1]
REPORT = json.loads((ROOT / "benchmarks" / "results" / "paper_table.json").read_text())


def paper_table():
    spec = importlib.util.spec_from_file_location("paper_table", ROOT / "benchmarks" / "paper_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_column_is_measured_under_the_paper_protocol_with_its_verdict():
    columns = {c["column"]: c for c in REPORT["columns"]}
    assert set(columns) == {"5-way 1-shot", "5-way 5-shot", "20-way 1-shot", "20-way 5-shot"}
    for name, c in columns.items():
        rotated = c["scores"]["rotated"]
        assert (rotated["tasks"], rotated["bn"], rotated["shots"]) == (600, "batch", c["shots"])
        assert rotated["classes"] == 4 * c["scores"]["as drawn"]["classes"]   # every test character x 4 rotations
        assert c["verdict"] == verdict(rotated["accuracy"], rotated["ci95"], c["paper_accuracy"], c["paper_ci95"])
        card = json.loads(find_checkpoint(c["checkpoint"]).with_suffix(".json").read_text())
        assert (card["ways"], card["train_seconds"]) == (c["ways"], c["train_seconds"])
        assert c["train_seconds"] <= c["time_limit_seconds"], f"{name}: trained longer than the limit"


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
