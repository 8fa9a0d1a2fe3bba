"""Checks of arguments, worded once: a bad value raises ``ValueError`` naming it and what is allowed.

>>> check_int("shots", 1, low=1)
1
>>> check_int("shots", 0, low=1)
Traceback (most recent call last):
ValueError: shots must be an integer >= 1, got 0
>>> check_positive("meta_lr", float("inf"))
Traceback (most recent call last):
ValueError: meta_lr must be a finite number > 0, got inf
>>> check_choice("bn", "batch", ("batch", "support"))
'batch'
"""
from __future__ import annotations

import math
from typing import Any


def check_int(name: str, value: Any, low: int) -> int:
    """``value`` if it is an integer (not a bool) ``>= low``; else ``ValueError`` naming ``name``."""
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return value


def check_positive(name: str, value: Any) -> float:
    """``float(value)`` if it is a finite number (not a bool) ``> 0``; else ``ValueError`` naming ``name``.

    Learning rates go through here: ``inf`` or ``nan`` would turn every weight into NaN.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def check_decay(name: str, value: Any) -> float:
    """``float(value)`` if it is a number (not a bool) in ``[0, 1)``, as a moving average's decay rate
    must be (Adam's betas, momenta); else ``ValueError`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ValueError(f"{name} must be a number in [0, 1), got {value!r}")
    return float(value)


def check_choice(name: str, value: Any, allowed: tuple) -> Any:
    """``value`` if it is one of ``allowed``; else ``ValueError`` listing them."""
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(str, allowed))}; got {value!r}")
    return value


TRUE_WORDS, FALSE_WORDS = ("1", "true", "yes", "on"), ("0", "false", "no", "off")
MAX_SEED = 2**32 - 1   # seeds are combined (seed + offset) and fed to torch and numpy: keep them small


def env_flag(name: str) -> bool:
    """The switch in environment variable ``name``: unset or empty is off; ``1/true/yes/on`` on,
    ``0/false/no/off`` off (any case); anything else a ``ValueError`` naming the variable."""
    import os

    value = os.environ.get(name, "").strip().lower()
    if value in TRUE_WORDS:
        return True
    if value in ("",) + FALSE_WORDS:
        return False
    raise ValueError(f"environment variable {name} must be one of {'/'.join(TRUE_WORDS)} (on) or "
                     f"{'/'.join(FALSE_WORDS)} (off), got {os.environ[name]!r}")


def env_int(name: str, default: int, low: int, high: int) -> int:
    """The integer in environment variable ``name`` (``default`` when unset), within ``low..high``;
    else a ``ValueError`` naming the variable (an empty value is an error, not the default)."""
    import os

    if name not in os.environ:
        return default
    raw = os.environ[name]
    try:
        value = int(raw.strip())
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        raise ValueError(f"environment variable {name} must be an integer from {low} to {high}, got {raw!r} "
                         f"(unset it for the default, {default})")
    return value


def check_seed(name: str, value: Any) -> int:
    """``value`` if it is an integer from 0 to :data:`MAX_SEED`; else ``ValueError`` naming ``name``
    (``--seed 100000000000000000000`` ended in torch's "Overflow when unpacking long long")."""
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_SEED:
        raise ValueError(f"{name} must be an integer >= 0 and <= {MAX_SEED}, got {value!r}")
    return value

