"""docs/results.md's table of the shipped checkpoints under both test protocols is the JSON's, as generated."""
import json
from pathlib import Path

from repo_scripts import load_script   # tests/ is on sys.path under pytest

ROOT = Path(__file__).resolve().parents[1]


def _script():
    return load_script("benchmarks/eval_protocols.py")


def test_the_protocol_table_of_the_docs_is_generated_from_the_measurements():
    script = _script()
    report = json.loads(script.OUT.read_text())
    text = script.DOCS.read_text()
    shown = text.split(script.DOCS_START, 1)[1].split(script.DOCS_END, 1)[0].strip()
    assert shown == script.docs_section(report).strip(), (
        "docs/results.md's protocol table is stale: run python benchmarks/eval_protocols.py --docs")


def test_a_changed_measurement_makes_the_table_stale(tmp_path):
    script = _script()
    report = json.loads(script.OUT.read_text())
    page = tmp_path / "results.md"
    page.write_text(f"x\n{script.DOCS_START}\n{script.DOCS_END}\ny\n")
    script.write_docs(report, page)
    report["results"][0]["accuracy"] += 0.01
    shown = page.read_text().split(script.DOCS_START, 1)[1].split(script.DOCS_END, 1)[0].strip()
    assert shown != script.docs_section(report).strip()
    assert page.read_text().startswith("x\n") and page.read_text().endswith("\ny\n")
