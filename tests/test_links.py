"""Every relative link of README.md and docs/*.md leads somewhere: a file (or folder) that exists and,
with an ``#anchor``, a heading of that page (GitHub's anchors) or of that notebook.

Web addresses (``https://...``, ``mailto:``) are not fetched. Links inside code (fenced blocks and
code spans) are not links and are skipped.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from mllib.course.lint import heading_anchors as notebook_anchors
from mllib.course.lint import prose
from mllib.course.nbio import read_notebook

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s.*)?$", re.M)
_HTML_ANCHOR = re.compile(r"<a\s[^>]*\b(?:id|name)\s*=\s*[\"']([^\"']+)[\"']", re.I)
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)
_FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)


def markdown_links(text: str) -> list[str]:
    """The targets of every inline link, image and reference definition outside code, in order."""
    plain = prose(text)
    return _LINK.findall(plain) + _REFERENCE.findall(plain)


def github_anchors(text: str) -> set[str]:
    """The anchors GitHub gives the headings of a Markdown page (lower case, punctuation dropped,
    spaces to dashes, ``-1``, ``-2`` on repeats), plus explicit ``<a id=...>`` / ``<a name=...>``."""
    anchors, seen = set(_HTML_ANCHOR.findall(text)), {}
    for heading in _HEADING.findall(_FENCE.sub("", text)):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower(), flags=re.U).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def _anchors_of(path: Path) -> set[str] | None:
    """The anchors of a page or notebook; None for other files (their anchors are not checked)."""
    if path.suffix == ".md":
        return github_anchors(path.read_text(encoding="utf-8"))
    if path.suffix == ".ipynb":
        return notebook_anchors(read_notebook(path))
    return None


def broken_links(page: Path) -> list[str]:
    """One sentence per link of ``page`` that leads nowhere (relative to the page's folder)."""
    text = page.read_text(encoding="utf-8")
    problems = []
    for target in markdown_links(text):
        if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", target):
            continue                                        # https:, mailto:, ...: not fetched
        path_part, _, anchor = target.partition("#")
        path = (page.parent / path_part).resolve() if path_part else page
        if not path.exists():
            problems.append(f"{page.name}: link {target!r}: {path_part} does not exist")
            continue
        anchors = _anchors_of(path) if anchor and path.is_file() else None
        if anchors is not None and anchor not in anchors:
            problems.append(f"{page.name}: link {target!r}: {path.name} has no heading with the anchor #{anchor}")
    return problems


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_every_relative_link_resolves(page):
    assert broken_links(page) == []


def test_a_planted_broken_file_link_and_anchor_are_reported(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# A page\n\n## Which Python make uses\n\ntext\n")
    (tmp_path / "README.md").write_text(
        "# R\n\n[ok](docs/a.md) [ok anchor](docs/a.md#which-python-make-uses) [self](#r)\n"
        "[gone](docs/missing.md) [bad anchor](docs/a.md#no-such-heading) ![img](docs/nope.png)\n"
        "[web](https://example.org/x.md) `[in code](docs/missing2.md)`\n\n"
        "```\n[in a fence](docs/missing3.md)\n```\n")
    problems = broken_links(tmp_path / "README.md")
    assert len(problems) == 3, problems
    assert any("docs/missing.md" in p for p in problems)
    assert any("#no-such-heading" in p for p in problems)
    assert any("docs/nope.png" in p for p in problems)


def test_github_anchors_follow_githubs_rules():
    text = "# Time to accuracy\n## Offline, or with your own copy of Omniglot\n## Notes\n## Notes\n" \
           "### Without any extra tool: `python -m mllib course grade`\n```\n# not a heading\n```\n<a id=\"x1\"></a>\n"
    assert github_anchors(text) == {"time-to-accuracy", "offline-or-with-your-own-copy-of-omniglot", "notes",
                                    "notes-1", "without-any-extra-tool-python--m-mllib-course-grade", "x1"}


def test_the_readme_is_a_landing_page():
    """README: at most about 150 lines, in the issue's order, every other topic on a page it links."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 150, "the README is a landing page: move details to docs/"
    order = ["## Prerequisites", "## The course", "## Three ways in", "## The two commands",
             "## Where to ask, how to cite, licence"]
    positions = [text.find(h) for h in order]
    assert -1 not in positions and positions == sorted(positions), f"README sections out of order: {positions}"
    for page in ("docs/install.md", "docs/settings.md", "docs/cli.md", "docs/time_to_accuracy.md",
                 "docs/results.md", "docs/scaling.md", "docs/gpu.md", "docs/publishing.md",
                 "docs/instructors.md", "docs/develop.md", "docs/citing.md"):
        assert f"]({page}" in text, f"README does not link {page}"
