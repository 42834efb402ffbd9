"""The study's paired tests on hand-made hits whose answers are known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.evaluation.significance import mcnemar_exact, paired_comparison
from pipeline.evaluation.study_results import comparisons, long_versus_short


def test_mcnemar_is_the_doubled_binomial_tail() -> None:
    assert mcnemar_exact(0, 0) == 1.0  # no discordant pair: no evidence either way
    assert mcnemar_exact(5, 5) == 1.0
    assert mcnemar_exact(10, 0) == pytest.approx(2 * 0.5**10)
    assert mcnemar_exact(1, 9) == pytest.approx(2 * (1 + 10) / 2**10)


def test_equal_methods_differ_by_nothing() -> None:
    hits = np.random.default_rng(0).random((3, 50)) < 0.4
    result = paired_comparison(hits, hits)
    assert (result.diff_mean, result.ci95, result.p_value) == (0.0, (0.0, 0.0), 1.0)
    assert not result.significant and result.a_only == result.b_only == 0


def test_a_method_right_on_30_more_of_100_queries_is_a_gain() -> None:
    a = np.zeros((2, 100), dtype=bool)
    a[:, :30] = True  # A right on queries 0-29 in both seeds, B never
    result = paired_comparison(a, np.zeros_like(a), resamples=2000)
    assert result.diff_mean == pytest.approx(30.0)
    assert 20.0 <= result.ci95[0] < 30.0 < result.ci95[1] <= 40.0  # binomial sd 4.6 points
    assert result.p_value == pytest.approx(1 / 2001) and result.significant
    assert (result.a_only, result.b_only, result.queries, result.seeds) == (60, 0, 100, 2)


def test_a_difference_seen_in_one_seed_only_is_not_a_gain() -> None:
    a = np.zeros((2, 40), dtype=bool)
    a[0, :2] = True  # two queries, one seed
    result = paired_comparison(a, np.zeros_like(a), resamples=2000)
    assert result.diff_mean == pytest.approx(2.5) and result.ci95[0] <= 0.0
    assert not result.significant


def test_runs_that_ranked_other_queries_are_refused() -> None:
    baseline = pd.Series([True, False, True], index=["q0", "q1", "q2"])
    other = pd.Series([True, True], index=["q0", "q1"])  # q2 missing: it must not count as a hit
    hits = {("long", "baseline"): {0: baseline}, ("long", "fineco-median"): {0: other}}
    with pytest.raises(ValueError, match="long fineco-median seed 0 ranked other test queries"):
        comparisons(hits, [0])


def test_a_gain_on_long_clips_only_is_more_on_long() -> None:
    """Method A beats the baseline on 30 of 100 long-set queries and ties it on the short set:
    its gain on long minus its gain on short is +30 points, paired by caption."""
    ids = [f"q{i}" for i in range(100)]
    right = pd.Series([i < 30 for i in range(100)], index=ids)
    wrong = pd.Series(False, index=ids)
    hits = {
        ("long", "a"): {0: right},
        ("long", "baseline"): {0: wrong},
        ("short", "a"): {0: right},
        ("short", "baseline"): {0: right},  # a tie on short
    }
    (row,) = long_versus_short(hits, [0])
    assert (row["a"], row["b"]) == ("a", "baseline")
    assert row["long_minus_short_r1_diff"] == pytest.approx(30.0)
    assert row["ci95"][0] > 0 and row["p_value"] < 0.001 and row["significant"]
