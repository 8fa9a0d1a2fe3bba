"""What this copy of mllib is and where it comes from.

* ``DISTRIBUTION``: the name to ``pip install`` (``learning-to-learn-course``); the import name
  stays ``mllib``.
* ``checkout_root()``: the repository checkout mllib runs from (the folder above the package, whose
  ``pyproject.toml`` names ``DISTRIBUTION``), or ``None`` for an installed package.
* ``git_commit()``: the commit of that checkout, when it is the top of a git work tree; ``None``
  otherwise. An installed package never reports a commit, not even when its virtual environment
  lies inside some other git repository: its version (``mllib.__version__``) says what it is.
"""
from __future__ import annotations

import re
import subprocess
from functools import lru_cache
from pathlib import Path

DISTRIBUTION = "learning-to-learn-course"
PACKAGE_DIR = Path(__file__).resolve().parent
_NAME_RE = re.compile(r'^\s*name\s*=\s*["\']([^"\']+)["\']', re.MULTILINE)


def _project_name(pyproject_text: str) -> str | None:
    """``[project] name`` of a pyproject.toml (a small reader: tomllib needs Python 3.11)."""
    start = pyproject_text.find("[project]")
    if start < 0:
        return None
    section = pyproject_text[start + len("[project]"):]
    nxt = re.search(r"^\s*\[", section, re.MULTILINE)
    match = _NAME_RE.search(section[: nxt.start()] if nxt else section)
    return match.group(1) if match else None


def checkout_root(package_dir: str | Path = PACKAGE_DIR) -> Path | None:
    """The checkout of this repository that ``package_dir`` belongs to, or ``None``."""
    package_dir = Path(package_dir)
    candidate = package_dir.parent
    try:
        text = (candidate / "pyproject.toml").read_text(encoding="utf-8")
    except OSError:
        return None
    if package_dir.name != "mllib" or _project_name(text) != DISTRIBUTION:
        return None
    return candidate


def _git_commit_of(package_dir: str | Path) -> str | None:
    root = checkout_root(package_dir)
    if root is None:
        return None
    try:
        out = subprocess.run(["git", "rev-parse", "--show-toplevel", "HEAD"], cwd=root,
                             capture_output=True, text=True, timeout=5, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = out.stdout.split()
    if len(lines) != 2 or Path(lines[0]).resolve() != root.resolve():
        return None  # the package sits inside another repository's work tree, not at a checkout's top
    return lines[1]


@lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The git commit of the checkout mllib runs from; ``None`` for an installed package."""
    return _git_commit_of(PACKAGE_DIR)
