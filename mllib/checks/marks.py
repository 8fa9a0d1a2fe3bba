"""The marks that open what the checks print, and their plain-text fallback.

A verdict opens with ✅, ❌ or ⏳; a hint with 💡; a refused solution with 🔒. Where a font lacks the
emoji, ``MLLIB_PLAIN_MARKS=1`` (or true/yes/on) prints ``[PASS]``, ``[FAIL]``, ``[TODO]``, ``[HINT]``,
``[LOCKED]`` instead; an output that cannot encode the emoji (a cp1252 console) gets them without
asking. ``mllib.checks.core`` (verdicts) and ``mllib.checks.hints`` (hints) both use this switch.
"""
from __future__ import annotations

import os
import sys

PLAIN_MARKS_ENV = "MLLIB_PLAIN_MARKS"
PLAIN_MARK = {"✅": "[PASS]", "❌": "[FAIL]", "⏳": "[TODO]", "💡": "[HINT]", "🔒": "[LOCKED]"}
_ON = {"1", "true", "yes", "on"}


def plain_marks_wanted(stream=None) -> bool:
    """Whether the checks print plain-text marks: ``MLLIB_PLAIN_MARKS`` on, or ``stream`` (default
    stdout) cannot encode the emoji (``=0`` keeps them where it can)."""
    if os.environ.get(PLAIN_MARKS_ENV, "").strip().lower() in _ON:
        return True
    encoding = getattr(stream if stream is not None else sys.stdout, "encoding", None) or "utf-8"
    try:
        "".join(PLAIN_MARK).encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return True
    return False


def with_marks(message: str, plain: bool) -> str:
    """``message`` with its emoji marks replaced by plain-text ones when ``plain``."""
    for mark, word in PLAIN_MARK.items() if plain else ():
        message = message.replace(mark, word)
    return message


__all__ = ["PLAIN_MARKS_ENV", "PLAIN_MARK", "plain_marks_wanted", "with_marks"]
