"""mllib.compare: a verdict takes the 95% intervals into account (overlap, or a paired interval containing 0,
is a tie), and assert_claim fails when the text's word disagrees with it (issue 22's sentences)."""
from __future__ import annotations

import doctest

import numpy as np
import pytest

from mllib import compare
from mllib.compare import assert_claim, paired_verdict, verdict, verdict_against_all


def test_overlapping_intervals_are_a_tie_and_apart_ones_are_not():
    assert verdict(0.989, 0.002, 0.987, 0.004) == "tie"              # notebook 05: 98.9 +- 0.2 against 98.7 +- 0.4
    assert verdict(0.734, 0.034, 0.706, 0.034) == "tie"              # fine-tune against scratch
    assert verdict(0.99, 0.003, 0.94, 0.009) == "higher"
    assert verdict(0.94, 0.009, 0.99, 0.003) == "lower"
    assert verdict(0.50, 0.10, 0.20) == "higher"                     # against a fixed reference (chance)
    assert "overlap" in verdict(0.5, 0.1, 0.55, 0.1).detail


def test_a_tie_called_above_fails_and_a_tie_called_a_tie_passes():
    tie = verdict(0.989, 0.002, 0.987, 0.004)
    with pytest.raises(AssertionError, match=r"says 'above' \(needs 'higher'\), but the comparison is a tie.*"
                                             r"say \"tie\""):
        assert_claim("above", tie)
    assert_claim("tie", tie)
    assert_claim("ties", tie)
    with pytest.raises(AssertionError, match="is a tie"):
        assert_claim("helps", tie)                                    # "even a rough bias helps"


def test_matches_needs_a_tie():
    assert_claim("matches", verdict(0.734, 0.034, 0.706, 0.034))
    with pytest.raises(AssertionError, match="says 'matches' \\(needs 'tie'\\), but the comparison says 'higher'"):
        assert_claim("matches", verdict(0.97, 0.006, 0.93, 0.01))


def test_better_depends_on_whether_higher_is_better():
    lower = verdict(0.247, 0.025, 0.313, 0.029)                       # errors: learned optimizer vs MAML + SGD
    assert_claim("better", lower, higher_is_better=False)
    assert_claim("lower", lower)
    assert_claim("closer", lower)                                     # a smaller distance
    with pytest.raises(AssertionError):
        assert_claim("better", lower)                                 # an accuracy that is lower is not better
    assert_claim("faster", verdict(54.0, 1.0, 90.0, 2.0), higher_is_better=False)   # a time


def test_the_longest_contradicted_by_the_table_fails():
    seconds = {"MAML": (2.40, 0.10), "FOMAML": (0.90, 0.05), "Reptile": (1.60, 0.08)}   # notebook 04's timings
    with pytest.raises(AssertionError, match="says 'the longest' \\(needs 'higher'\\), but it is not above or below every "
                                             "other entry: Reptile is not apart"):
        assert_claim("the longest", verdict_against_all("Reptile", seconds))
    assert_claim("the longest", verdict_against_all("MAML", seconds))
    assert verdict_against_all("FOMAML", seconds) == "lower"


def test_a_paired_comparison_sees_what_overlapping_intervals_hide_and_reports_a_tie_it_cannot_reject():
    rng = np.random.default_rng(0)
    difficulty = rng.normal(0.9, 0.08, 200)                            # tasks differ a lot ...
    a, b = difficulty + 0.01 + rng.normal(0, 0.005, 200), difficulty    # ... a is better on every one by 0.01
    assert verdict(a.mean(), 1.96 * a.std(ddof=1) / np.sqrt(200), b.mean(), 1.96 * b.std(ddof=1) / np.sqrt(200)) == "tie"
    assert paired_verdict(a, b) == "higher" and paired_verdict(b, a) == "lower"
    same = difficulty + rng.normal(0, 0.01, 200)                        # no systematic difference
    assert paired_verdict(same, difficulty) == "tie"                    # notebook 08: +0.08 +- 0.26 is a tie
    with pytest.raises(AssertionError, match="is a tie"):
        assert_claim("beats", paired_verdict(same, difficulty))


@pytest.mark.parametrize("call, message", [
    (lambda: verdict(0.9, -0.1, 0.8, 0.1), "a_ci95 is the half-width of a 95% interval and must be >= 0"),
    (lambda: verdict(float("nan"), 0.1, 0.8, 0.1), "a_mean must be finite"),
    (lambda: paired_verdict([1, 2, 3], [1, 2]), "paired scores must be measured on the same tasks: got 3 and 2"),
    (lambda: paired_verdict([1.0], [2.0]), "at least 2 tasks"),
    (lambda: paired_verdict([1.0, float("inf")], [1.0, 2.0]), "must all be finite"),
    (lambda: verdict_against_all("X", {"A": (1, 0), "B": (2, 0)}), "'X' is not one of the entries"),
    (lambda: assert_claim("splendid", "tie"), "'splendid' is not a comparative word"),
    (lambda: assert_claim("above", "yes"), "result must be a verdict"),
])
def test_bad_input_ends_in_one_clear_line(call, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        call()


def test_the_module_examples_run():
    failures, _ = doctest.testmod(compare)
    assert failures == 0
