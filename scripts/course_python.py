"""Is the course already installed in this Python?  The Makefile asks before it creates ``.venv``.

    python3 scripts/course_python.py [EXTRA ...]      # e.g. course notebooks test

Prints exactly one line, or nothing:

* ``USE <sys.executable>``: ``learning-to-learn-course`` is installed here, at this checkout's
  version, with every distribution its core and the named extras require: ``make`` runs with it;
* ``NOTE <why not>``: the course is installed but something is missing (an extra, or an older
  version): ``make`` says so and falls back to ``.venv``;
* nothing: the course is not installed here (a fresh machine: ``make`` creates ``.venv``).

Standard library only: it runs under whatever Python ``make`` is given, before anything is installed.
Requirement names come from the installed distribution's metadata (so from ``pyproject.toml``);
versions are not compared, presence is enough.
"""
from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path

DISTRIBUTION = "learning-to-learn-course"
CHECKOUT = Path(__file__).resolve().parent.parent
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
_EXTRA = re.compile(r"""extra\s*==\s*["']([^"']+)["']""")


def required_names(requires: list[str], extras: list[str]) -> list[str]:
    """Distribution names a requirement list asks for: the core ones plus those of ``extras``.

        >>> required_names(['torch>=2.1', 'pytest>=7; extra == "test"', 'jupyterlab; extra == "notebooks"'], ['test'])
        ['torch', 'pytest']
    """
    names = []
    for line in requires:
        requirement, _, marker = line.partition(";")
        extra = _EXTRA.search(marker)
        if (extra is None or extra.group(1) in extras) and _NAME.match(requirement):
            name = _NAME.match(requirement).group(1)
            if name not in names:
                names.append(name)
    return names


def missing_names(names: list[str], is_installed) -> list[str]:
    """The names for which ``is_installed(name)`` is false, in order."""
    return [name for name in names if not is_installed(name)]


def checkout_version(root: Path = CHECKOUT) -> str | None:
    """``__version__`` of this checkout's ``mllib/__init__.py`` (None when it has none)."""
    found = re.search(r"""^__version__\s*=\s*["']([^"']+)["']""",
                      (root / "mllib" / "__init__.py").read_text(encoding="utf-8"), re.M)
    return found.group(1) if found else None


def _installed(name: str) -> bool:
    try:
        metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return False
    return True


def verdict(extras: list[str]) -> str:
    """The one line to print (``USE ...``, ``NOTE ...``) or ``""``."""
    try:
        dist = metadata.distribution(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return ""
    python = sys.executable
    wanted = checkout_version()
    if wanted is not None and dist.version != wanted:
        return (f"NOTE {python} has {DISTRIBUTION} {dist.version}, this checkout is {wanted}: using .venv "
                f"(or update it: {python} -m pip install -e '.[course,notebooks,test]')")
    missing = missing_names(required_names(dist.requires or [], extras), _installed)
    if missing:
        target = f".[{','.join(extras)}]" if extras else "."
        return (f"NOTE {python} has the course but not {', '.join(missing)} (extras: {' '.join(extras) or 'none'}): "
                f"using .venv (or add them: {python} -m pip install -e '{target}')")
    return f"USE {python}"


if __name__ == "__main__":
    sys.path[:] = [p for p in sys.path if p not in ("", ".", str(CHECKOUT))]  # never the checkout's egg-info
    line = verdict(sys.argv[1:])
    if line:
        print(line)
