"""Run times in the notebooks' headers, the README's course map and ``docs/instructors.md``, from a measurement.

``python -m mllib course execute`` writes ``build/notebook_report.json`` (wall time and peak memory
per notebook). ``python -m mllib course times`` turns that report into:

* the line starting with ``**Run time**`` in each measured notebook's header (the Markdown cell
  with "What you will learn"), e.g. ``**Run time**: 11 s in the quick profile on an idle 2-core
  CPU (measured); the full profile on a GPU has not been measured yet.``;
* the quick-profile column of the README's course-map table (the row that links the notebook);
* the table between ``<!-- runtimes:start -->`` and ``<!-- runtimes:end -->`` of
  ``docs/instructors.md`` (time, peak memory and machine per notebook, and the total).

So the stated times cannot drift from a measured run. Notebooks the report does not cover are
left alone. Measure on an idle machine: ``--machine`` says which machine it was.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from .nbio import read_notebook, source, write_notebook

# the run-time paragraph: its first line and the lines that continue it (not blank, not a new "**...**" item)
RUN_TIME_LINE = re.compile(r"^\*\*(?:Expected run time|Run time)\b.*(?:\n(?![ \t]*\*\*)[ \t]*\S.*)*", re.M)
HEADER_MARK = "What you will learn"
TABLE_START, TABLE_END = "<!-- runtimes:start -->", "<!-- runtimes:end -->"


def format_seconds(seconds: float) -> str:
    """``11 s``, ``2.3 min``: how a header states a run time."""
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def load_report(path: str | Path) -> dict:
    report = json.loads(Path(path).read_text(encoding="utf-8"))
    if not report.get("notebooks"):
        raise ValueError(f"{path}: no notebooks in the report (run `python -m mllib course execute` first)")
    failed = [Path(nb["path"]).name for nb in report["notebooks"] if not nb.get("ok", True)]
    if failed:
        raise ValueError(f"{path}: these notebooks did not run cleanly, their times are not trustworthy: {failed}")
    profile = (report.get("env") or {}).get("MLLIB_PROFILE")
    if profile not in (None, "quick"):
        raise ValueError(f"{path}: measured with MLLIB_PROFILE={profile!r}; the stated times are quick-profile times")
    return report


def header_line(seconds: float, machine: str) -> str:
    return (f"**Run time**: {format_seconds(seconds)} in the quick profile on {machine} (measured); "
            f"the full profile on a GPU has not been measured yet.")


def update_header(nb, seconds: float, machine: str) -> bool:
    """Rewrite the ``**Run time**`` line of ``nb``'s header cell; True when it changed."""
    for cell in nb.cells:
        text = source(cell)
        if cell.cell_type == "markdown" and HEADER_MARK in text:
            if not RUN_TIME_LINE.search(text):
                raise ValueError(f"the header cell has no line starting with **Run time**: {text[:60]!r}...")
            new = RUN_TIME_LINE.sub(header_line(seconds, machine).replace("\\", "\\\\"), text, count=1)
            cell.source = new
            return new != text
    raise ValueError(f"no header cell (a Markdown cell with {HEADER_MARK!r})")


def update_readme(text: str, times: dict[str, float]) -> str:
    """The README with the quick-profile cell of each measured notebook's course-map row replaced."""
    lines = text.splitlines(keepends=True)
    header = next((i for i, line in enumerate(lines) if line.startswith("| notebook |") and "quick" in line), None)
    if header is None:
        raise ValueError("README.md: no course-map table (a row starting with '| notebook |' naming 'quick')")
    column = [c.strip() for c in lines[header].strip().strip("|").split("|")].index(
        next(c.strip() for c in lines[header].strip().strip("|").split("|") if "quick" in c))
    for i in range(header + 2, len(lines)):
        if not lines[i].startswith("|"):
            break
        cells = lines[i].rstrip("\n").strip().strip("|").split("|")
        for name, seconds in times.items():
            if f"({name})" in cells[0] or f"/{name})" in cells[0]:
                cells[column] = f" {format_seconds(seconds)} "
                lines[i] = "|" + "|".join(cells) + "|\n"
    return "".join(lines)


def runtime_table(report: dict, machine: str) -> str:
    rows = ["| notebook | wall time (s) | peak memory (MB) | machine |", "| --- | ---: | ---: | --- |"]
    for i, nb in enumerate(report["notebooks"]):
        mem = "n/a" if nb.get("peak_rss_mb") is None else f"{nb['peak_rss_mb']:.0f}"
        rows.append(f"| {Path(nb['path']).stem} | {nb['wall_s']:.0f} | {mem} | "
                    f"{machine + ', quick profile' if i == 0 else 'same'} |")
    total = sum(nb["wall_s"] for nb in report["notebooks"])
    date = str(report.get("created", ""))[:10]
    rows += ["", f"All {len(report['notebooks'])} notebooks: {total:.0f} s (`python -m mllib course execute`, "
                 f"{date}); regenerate this table, the README course map and the notebook headers from the "
                 f"report with `python -m mllib course times`."]
    return "\n".join(rows)


def update_instructors(text: str, report: dict, machine: str) -> str:
    start, end = text.find(TABLE_START), text.find(TABLE_END)
    if start < 0 or end < start:
        raise ValueError(f"docs/instructors.md: markers {TABLE_START} ... {TABLE_END} not found")
    return text[:start + len(TABLE_START)] + "\n" + runtime_table(report, machine) + "\n" + text[end:]


def apply_times(report_path: str | Path = "build/notebook_report.json", root: str | Path = ".",
                machine: str = "an idle 2-core CPU") -> list[Path]:
    """Write the measured times into headers, README and instructors' page; returns the changed files."""
    root = Path(root)
    report = load_report(report_path)
    times = {Path(nb["path"]).name: float(nb["wall_s"]) for nb in report["notebooks"]}
    changed = []
    for name, seconds in times.items():
        path = root / "notebooks" / name
        nb = read_notebook(path)
        if update_header(nb, seconds, machine) and write_notebook(nb, path):
            changed.append(path)
    for path, update in ((root / "README.md", lambda t: update_readme(t, times)),
                         (root / "docs" / "instructors.md", lambda t: update_instructors(t, report, machine))):
        text = path.read_text(encoding="utf-8")
        new = update(text)
        if new != text:
            path.write_text(new, encoding="utf-8")
            changed.append(path)
    return changed
