"""The one progress bar of mllib: tqdm (a widget in Jupyter, text elsewhere), off when ``$CI`` is set.

>>> [step for step in progress_bar(range(3), desc="demo", enabled=False)]
[0, 1, 2]
"""
from __future__ import annotations

import os
from typing import Iterable

from tqdm.auto import tqdm

CI_ENV = "CI"


def progress_bar(iterable: Iterable | None = None, *, total: int | None = None, desc: str | None = None,
                 enabled: bool = True, **options) -> tqdm:
    """A ``tqdm.auto`` bar over ``iterable`` (or counting to ``total``), hidden when ``enabled`` is
    false or ``$CI`` is set (logs of automated runs stay readable). ``options`` go to tqdm."""
    disable = not enabled or bool(os.environ.get(CI_ENV))
    return tqdm(iterable, total=total, desc=desc, disable=disable, dynamic_ncols=True, **options)


def write(message: str) -> None:
    """Print ``message`` above any open progress bar (the bar stays intact)."""
    tqdm.write(message)
