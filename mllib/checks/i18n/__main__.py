"""``python -m mllib.checks.i18n [LANG]``: list what the catalogue of LANG (default zh) lacks or has stale.

Loads every module that registers exercises (the notebooks' checks and the assignments) first, then
prints one line per problem (:func:`mllib.checks.i18n.stale_entries`) with the English to translate and
its fingerprint; exit status 1 when there is any, 0 when the catalogue is fresh.
"""
from __future__ import annotations

import sys

from mllib.checks import assignments  # noqa: F401 - registers the assignments' exercises
from mllib.checks.i18n import stale_entries


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    lang = args[0] if args else "zh"
    problems = stale_entries(lang)
    print("\n".join(problems) if problems else f"mllib/checks/i18n/{lang}.json: fresh")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
