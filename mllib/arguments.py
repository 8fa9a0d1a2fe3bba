"""Checks of arguments, worded once: a bad value raises ``ValueError`` naming it and what is allowed.

>>> check_int("shots", 1, low=1)
1
>>> check_int("shots", 0, low=1)
Traceback (most recent call last):
ValueError: shots must be an integer >= 1, got 0
>>> check_choice("bn", "batch", ("batch", "support"))
'batch'
"""
from __future__ import annotations

from typing import Any


def check_int(name: str, value: Any, low: int) -> int:
    """``value`` if it is an integer (not a bool) ``>= low``; else ``ValueError`` naming ``name``."""
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return value


def check_positive(name: str, value: Any) -> float:
    """``float(value)`` if it is a number (not a bool) ``> 0``; else ``ValueError`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be a number > 0, got {value!r}")
    return float(value)


def check_choice(name: str, value: Any, allowed: tuple) -> Any:
    """``value`` if it is one of ``allowed``; else ``ValueError`` listing them."""
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(str, allowed))}; got {value!r}")
    return value
