"""Lines of code of mllib per group of the package map, at one or more git revisions.

The package map in ``mllib/__init__.py`` puts every module in one of four groups (taught core, taught
extensions, infrastructure, course tooling); this counts the lines of the ``.py`` files of each
group's modules (a sub-package counts all its files) as they are at each revision, grouped by today's
map (``HEAD``), so that a module counts in the same group before and after. Lines are physical lines (``wc -l``), docstrings and comments included.

    python benchmarks/code_lines.py b843fbb HEAD
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GROUPS = ["Taught core", "Taught extensions", "Infrastructure", "Course tooling"]


def git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=True).stdout


def module_groups(init_source: str) -> dict[str, str]:
    """``{module: group}`` from the package map (the module docstring of ``mllib/__init__.py``)."""
    doc = init_source.split('"""')[1]
    mapped, group = {}, None
    for line in doc.splitlines():
        group = next((g for g in GROUPS if line.startswith(g + " (")), group)
        if line.startswith("* ") and group:
            for name in re.findall(r"``(\w+)``", line.split(":", 1)[0]):
                mapped[name] = group
    return mapped


def lines_per_group(rev: str, map_rev: str = "HEAD") -> dict[str, int]:
    """Lines per group at ``rev``; modules are grouped by the map of ``map_rev`` (so that revisions
    before the map had groups compare), then by ``rev``'s own map for modules ``map_rev`` lacks."""
    groups = {**module_groups(git("show", f"{rev}:mllib/__init__.py")),
              **module_groups(git("show", f"{map_rev}:mllib/__init__.py"))}
    counts = dict.fromkeys(GROUPS + ["unmapped"], 0)
    for path in git("ls-tree", "-r", "--name-only", rev, "mllib").split():
        if not path.endswith(".py") or path.count("/") < 1:
            continue
        parts = path.split("/")
        if parts[1] in ("__init__.py", "__main__.py"):
            group = "Infrastructure"
        else:
            group = groups.get(parts[1].removesuffix(".py"), "unmapped")
        counts[group] += git("show", f"{rev}:{path}").count("\n")
    return counts


def main(revs: list[str]) -> None:
    table = {rev: lines_per_group(rev) for rev in revs}
    print("| group | " + " | ".join(revs) + " |")
    print("|---|" + "---:|" * len(revs))
    for group in GROUPS + ["unmapped"]:
        print(f"| {group} | " + " | ".join(f"{table[r][group]:,}" for r in revs) + " |")
    print("| all | " + " | ".join(f"{sum(table[r].values()):,}" for r in revs) + " |")


if __name__ == "__main__":
    main(sys.argv[1:] or ["HEAD"])
