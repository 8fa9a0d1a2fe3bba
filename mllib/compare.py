"""Comparisons that take the uncertainty into account, and the assert that ties a sentence's word to one.

A sentence such as "MAML is above the paper's 98.7%" or "fine-tuning matches training from scratch" is
a measurement; it is true only when the comparison computed from the numbers says so. This module
computes that comparison and checks the word:

* :func:`verdict` compares two means with their 95% intervals (``mean +- ci95``, as
  :func:`mllib.evaluate.mean_ci95` returns them): ``"higher"`` when ``a``'s interval lies entirely
  above ``b``'s, ``"lower"`` when entirely below, ``"tie"`` when the two intervals overlap. A published
  number without an interval is a reference with ``ci95=0``.
* :func:`paired_verdict` compares two methods measured on the *same* tasks (arrays of per-task
  scores, shape ``[n_tasks]``): the 95% interval of the mean paired difference ``a - b``
  (``1.96 * sd / sqrt(n)``, as ``mean_ci95``); ``"tie"`` when it contains zero (the paired test
  cannot reject "no difference"). Pairing removes the task-to-task variation both share, so it sees
  differences that overlapping per-method intervals hide.
* :func:`verdict_against_all` says whether one entry is above (``"higher"``) or below (``"lower"``)
  *every* other entry, which is what a superlative ("the longest", "the best") claims.
* :func:`assert_claim` raises ``AssertionError`` when the word of the text disagrees with the
  verdict: "above" needs ``"higher"``, "matches" and "tie" need ``"tie"``, "better" needs
  ``"higher"`` for a score (``higher_is_better=True``) and ``"lower"`` for an error or a time.

Every verdict is a :class:`Verdict`: a ``str`` (``"higher"``, ``"lower"`` or ``"tie"``) that also
carries the numbers it came from, so that a failing :func:`assert_claim` can say why.

    >>> verdict(0.989, 0.002, 0.987, 0.004)        # 98.9 +- 0.2 against 98.7 +- 0.4: the intervals overlap
    'tie'
    >>> assert_claim("tie", verdict(0.989, 0.002, 0.987, 0.004))
    >>> assert_claim("above", verdict(0.989, 0.002, 0.987, 0.004))
    Traceback (most recent call last):
    ...
    AssertionError: the text says 'above' (needs 'higher'), but the comparison is a tie: 0.989 +- 0.002 against 0.987 +- 0.004 (the 95% intervals overlap); say "tie" in the text and assert_claim("tie", ...)

``python -m mllib course lint`` requires a call of :func:`assert_claim` whose word is the sentence's
word next to every comparative sentence with a measured number (``mllib.course.claims``).
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

from mllib.arguments import check_choice

__all__ = ["Verdict", "verdict", "paired_verdict", "verdict_against_all", "assert_claim", "expected_verdict",
           "COMPARATIVE_WORDS"]

Z95 = 1.96

# The comparative and causal words the text may use, by what they claim about "a against b".
HIGHER_WORDS = ("higher", "above", "larger", "more", "longer", "exceeds", "exceed", "exceeded", "the longest",
                "the highest", "the largest", "the most")
LOWER_WORDS = ("lower", "below", "smaller", "less", "fewer", "shorter", "closer", "the shortest", "the lowest",
               "the smallest", "the least", "the closest")
BETTER_WORDS = ("better", "beats", "beat", "beating", "outperforms", "outperform", "outperformed", "helps", "help",
                "helped", "improves", "improve", "improved", "ahead", "faster", "the best", "the fastest")
WORSE_WORDS = ("worse", "hurts", "hurt", "behind", "slower", "the worst", "the slowest")
TIE_WORDS = ("tie", "ties", "tied", "matches", "match", "matched", "matching", "the same as", "as good as",
             "as well as", "indistinguishable", "on par")
COMPARATIVE_WORDS = HIGHER_WORDS + LOWER_WORDS + BETTER_WORDS + WORSE_WORDS + TIE_WORDS


class Verdict(str):
    """``"higher"``, ``"lower"`` or ``"tie"``, with ``detail``: the numbers and the rule that gave it."""

    detail: str
    superlative: bool

    def __new__(cls, value: str, detail: str = "", superlative: bool = False):
        check_choice("verdict", value, ("higher", "lower", "tie"))
        obj = super().__new__(cls, value)
        obj.detail = detail
        obj.superlative = superlative
        return obj


def _number(value, name: str) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(x):
        raise ValueError(f"{name} must be finite, got {x}")
    return x


def _half_width(value, name: str) -> float:
    x = _number(value, name)
    if x < 0:
        raise ValueError(f"{name} is the half-width of a 95% interval and must be >= 0, got {x}")
    return x


def verdict(a_mean: float, a_ci95: float, b_mean: float, b_ci95: float = 0.0) -> Verdict:
    """Compare ``a_mean +- a_ci95`` with ``b_mean +- b_ci95`` (95% interval half-widths, >= 0).

    ``"higher"``: a's interval lies entirely above b's; ``"lower"``: entirely below; ``"tie"``: they
    overlap (touching counts as overlapping). Scalars in, a :class:`Verdict` out.
    """
    a, ea = _number(a_mean, "a_mean"), _half_width(a_ci95, "a_ci95")
    b, eb = _number(b_mean, "b_mean"), _half_width(b_ci95, "b_ci95")
    shown = f"{a:.4g} +- {ea:.2g} against {b:.4g} +- {eb:.2g}"
    if a - ea > b + eb:
        return Verdict("higher", f"{shown} (the 95% intervals are apart)")
    if a + ea < b - eb:
        return Verdict("lower", f"{shown} (the 95% intervals are apart)")
    return Verdict("tie", f"{shown} (the 95% intervals overlap)")


def paired_verdict(a: Sequence[float], b: Sequence[float]) -> Verdict:
    """Compare two methods scored on the same tasks: ``a``, ``b`` of shape ``[n_tasks]``, ``n_tasks >= 2``.

    The mean paired difference ``d = mean(a - b)`` with its 95% interval ``1.96 * sd(a - b) / sqrt(n)``:
    ``"higher"`` when the interval lies above 0, ``"lower"`` below 0, ``"tie"`` when it contains 0.
    """
    import numpy as np

    x, y = np.asarray(a, dtype=float).reshape(-1), np.asarray(b, dtype=float).reshape(-1)
    if x.shape != y.shape:
        raise ValueError(f"paired scores must be measured on the same tasks: got {x.size} and {y.size} values; "
                         f"pass one score per task for both methods, in the same task order")
    if x.size < 2:
        raise ValueError(f"a paired comparison needs at least 2 tasks, got {x.size}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("paired scores must all be finite (a diverged run is not a score; compare the runs "
                         "that finished, or count divergence separately)")
    d = x - y
    mean, half = float(d.mean()), float(Z95 * d.std(ddof=1) / math.sqrt(d.size))
    shown = f"mean paired difference {mean:.4g} +- {half:.2g} over {d.size} tasks"
    if mean - half > 0:
        return Verdict("higher", f"{shown} (the 95% interval lies above 0)")
    if mean + half < 0:
        return Verdict("lower", f"{shown} (the 95% interval lies below 0)")
    return Verdict("tie", f"{shown} (the 95% interval contains 0)")


def verdict_against_all(name: str, entries: Mapping[str, tuple[float, float]]) -> Verdict:
    """Whether ``entries[name]`` (``(mean, ci95)``) is above every other entry (``"higher"``: "the longest",
    "the highest"), below every other (``"lower"``), or neither (``"tie"``). ``entries``: at least two."""
    if name not in entries:
        raise ValueError(f"{name!r} is not one of the entries {sorted(entries)}")
    if len(entries) < 2:
        raise ValueError("a superlative needs at least two entries to compare")
    mean, ci = entries[name]
    verdicts = {other: verdict(mean, ci, m, c) for other, (m, c) in entries.items() if other != name}
    shown = "; ".join(f"against {other}: {v} ({v.detail})" for other, v in verdicts.items())
    for side in ("higher", "lower"):
        if all(v == side for v in verdicts.values()):
            return Verdict(side, f"{name} {shown}", superlative=True)
    return Verdict("tie", f"{name} is not apart from every other entry: {shown}", superlative=True)


def _word(word: str) -> str:
    return " ".join(str(word).lower().split())


def expected_verdict(word: str, higher_is_better: bool = True) -> str:
    """The verdict the word claims for "a against b": ``"higher"``, ``"lower"`` or ``"tie"``.

    "better"-type words depend on the measure: a score (accuracy, return) is better when higher, an
    error, a loss or a time when lower (``higher_is_better=False``). "closer" claims a smaller distance.
    """
    w = _word(word)
    if w in TIE_WORDS:
        return "tie"
    if w in HIGHER_WORDS:
        return "higher"
    if w in LOWER_WORDS:
        return "lower"
    if w in BETTER_WORDS:
        return "higher" if higher_is_better else "lower"
    if w in WORSE_WORDS:
        return "lower" if higher_is_better else "higher"
    raise ValueError(f"{word!r} is not a comparative word assert_claim knows; use one of: "
                     f"{', '.join(COMPARATIVE_WORDS)}")


def assert_claim(word: str, result: str, *, higher_is_better: bool = True, what: str = "") -> None:
    """Raise ``AssertionError`` unless ``result`` (a verdict of "a against b") is what ``word`` claims.

    ``word``: the comparative word of the sentence, as written ("above", "matches", "the longest", ...);
    ``result``: :func:`verdict`, :func:`paired_verdict` or :func:`verdict_against_all`'s answer;
    ``higher_is_better``: False when the measure is an error, a loss or a time; ``what``: a few words
    naming the comparison, for the message.
    """
    if str(result) not in ("higher", "lower", "tie"):
        raise ValueError(f"result must be a verdict ('higher', 'lower' or 'tie'), got {result!r}: pass "
                         f"verdict(...), paired_verdict(...) or verdict_against_all(...)")
    needed = expected_verdict(word, higher_is_better)
    if needed == str(result):
        return
    detail = getattr(result, "detail", "")
    about = f"{what}: " if what else ""
    said = f"the text says {_word(word)!r} (needs {needed!r})"
    if result == "tie" and getattr(result, "superlative", False):
        raise AssertionError(f"{about}{said}, but it is not above or below every other entry: {detail}; "
                             f"change the word to match the measurement")
    if result == "tie":
        fix = 'say "tie" in the text and assert_claim("tie", ...)'
        raise AssertionError(f"{about}{said}, but the comparison is a tie: {detail}; {fix}")
    raise AssertionError(f"{about}{said}, but the comparison says {str(result)!r}: {detail}; "
                         f"change the word to match the measurement")

