"""Checks of notebook 09, meta-learning today: none yet (its exercises are a written quiz, graded by hand).

The module exists because every notebook has one (``tests/test_checks.py``); an automatically checked
exercise of notebook 09 registers here and is re-exported by ``mllib.checks``.
"""
from __future__ import annotations

__all__: list[str] = []
