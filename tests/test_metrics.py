"""Tests for pipeline/evaluation/retrieval_metrics.py: hand-computed values (ties included) and
loop references."""

from __future__ import annotations

import math

import numpy as np
import pytest
from reference_metrics import (
    dual_softmax_loop,
    frame_precision_loop,
    mmpt_metrics_loop,
    ranks_loop,
    retrieval_metrics_loop,
)

from pipeline.evaluation.retrieval_metrics import (
    METRIC_KEYS,
    dual_softmax,
    frame_precision_at_k,
    mmpt_retrieval_metrics,
    query_ranks_table,
    ranks,
    retrieval_metrics,
)


def diagonal_ranks(scores: np.ndarray) -> np.ndarray:
    return ranks(scores, np.arange(scores.shape[0]))


def assert_metrics(found: dict[str, float], expected: dict[str, float]) -> None:
    assert tuple(found) == METRIC_KEYS
    for key in METRIC_KEYS:
        assert found[key] == pytest.approx(expected[key], abs=1e-9), key


# --- ranks and retrieval metrics on hand-built matrices ------------------------------------------

# Row 1's target (column 1) ties with column 0.
TIED_3X3 = np.array(
    [
        [0.9, 0.1, 0.2],
        [0.5, 0.5, 0.1],
        [0.3, 0.2, 0.8],
    ]
)


def test_tie_with_target_counts_against_it() -> None:
    assert diagonal_ranks(TIED_3X3).tolist() == [1, 2, 1]
    # R@1 = 2 of 3 queries; every rank <= 5; ranks [1, 1, 2]: median 1, mean 4/3.
    assert_metrics(
        retrieval_metrics(diagonal_ranks(TIED_3X3)),
        {"R@1": 200 / 3, "R@5": 100.0, "R@10": 100.0, "MedR": 1.0, "MeanR": 4 / 3},
    )


def test_mmpt_counts_a_tie_as_two_matches() -> None:
    # Sorted rows (best first) and the positions equal to the diagonal score:
    #   row 0 [0.9, 0.2, 0.1], target 0.9 -> position 0
    #   row 1 [0.5, 0.5, 0.1], target 0.5 -> positions 0 and 1
    #   row 2 [0.8, 0.3, 0.2], target 0.8 -> position 0
    # ind = [0, 0, 1, 0]: R@1 = 3/4, median(ind) + 1 = 1, mean(ind) + 1 = 1.25.
    assert_metrics(
        mmpt_retrieval_metrics(TIED_3X3),
        {"R@1": 75.0, "R@5": 100.0, "R@10": 100.0, "MedR": 1.0, "MeanR": 1.25},
    )


def test_all_equal_scores_worst_for_us_and_skewed_for_mmpt() -> None:
    scores = np.zeros((12, 12))
    assert diagonal_ranks(scores).tolist() == [12] * 12
    assert_metrics(
        retrieval_metrics(diagonal_ranks(scores)),
        {"R@1": 0.0, "R@5": 0.0, "R@10": 0.0, "MedR": 12.0, "MeanR": 12.0},
    )
    # MMPT: every row matches at positions 0..11, so ind = 12 copies of 0..11 (144 entries).
    # R@K = K/12; median(0..11) = 5.5 and mean = 5.5, so MedR = MeanR = 6.5.
    assert_metrics(
        mmpt_retrieval_metrics(scores),
        {"R@1": 100 / 12, "R@5": 500 / 12, "R@10": 1000 / 12, "MedR": 6.5, "MeanR": 6.5},
    )


def test_perfect_diagonal() -> None:
    scores = -np.abs(np.subtract.outer(np.arange(7), np.arange(7))).astype(float)  # 0 on diagonal
    perfect = {"R@1": 100.0, "R@5": 100.0, "R@10": 100.0, "MedR": 1.0, "MeanR": 1.0}
    assert diagonal_ranks(scores).tolist() == [1] * 7
    assert_metrics(retrieval_metrics(diagonal_ranks(scores)), perfect)
    assert_metrics(mmpt_retrieval_metrics(scores), perfect)


def test_reversed_order() -> None:
    # scores[i, j] = (j - i) mod 6: each row's target scores 0, the other five 1..5, no ties.
    n = 6
    scores = np.mod(np.subtract.outer(np.arange(n), np.arange(n)) * -1, n).astype(float)
    assert np.all(np.diag(scores) == 0)
    assert diagonal_ranks(scores).tolist() == [6] * 6
    worst = {"R@1": 0.0, "R@5": 0.0, "R@10": 100.0, "MedR": 6.0, "MeanR": 6.0}
    assert_metrics(retrieval_metrics(diagonal_ranks(scores)), worst)
    assert_metrics(mmpt_retrieval_metrics(scores), worst)  # no ties: the two recipes agree


def test_non_square_with_explicit_targets() -> None:
    scores = np.array(
        [
            [0.1, 0.4, 0.3, 0.2],  # target 2 (0.3): 0.4 above -> rank 2
            [0.7, 0.7, 0.9, 0.0],  # target 0 (0.7): 0.9 above, 0.7 tied -> rank 3
            [0.2, 0.2, 0.2, 0.6],  # target 3 (0.6): best -> rank 1
        ]
    )
    found = ranks(scores, np.array([2, 0, 3]))
    assert found.dtype == np.int64
    assert found.tolist() == [2, 3, 1]


def test_median_of_even_count_averages_middle_ranks() -> None:
    # ranks [1, 2, 6, 11]: R@1 1/4, R@5 2/4, R@10 3/4, median (2 + 6) / 2 = 4, mean 20 / 4 = 5.
    assert_metrics(
        retrieval_metrics(np.array([11, 1, 6, 2])),
        {"R@1": 25.0, "R@5": 50.0, "R@10": 75.0, "MedR": 4.0, "MeanR": 5.0},
    )


def test_ranks_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="targets"):
        ranks(TIED_3X3, np.array([0, 1]))
    with pytest.raises(ValueError, match=r"0\.\.2"):
        ranks(TIED_3X3, np.array([0, 1, 3]))
    with pytest.raises(ValueError, match="integer"):
        ranks(TIED_3X3, np.array([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match="NaN"):
        ranks(np.array([[np.nan, 1.0], [0.0, 1.0]]), np.array([0, 1]))
    with pytest.raises(ValueError, match="square"):
        mmpt_retrieval_metrics(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=">= 1"):
        retrieval_metrics(np.array([0, 1]))
    with pytest.raises(ValueError, match="non-empty"):
        retrieval_metrics(np.array([], dtype=np.int64))


# --- DualSoftmax ---------------------------------------------------------------------------------


def test_dual_softmax_by_hand() -> None:
    scores = np.array([[1.0, 0.0, 2.0], [0.0, 0.0, 1.0]])
    # T = 0.5, softmax over the two queries of each column of S / T:
    #   column 0: S/T = [2, 0] -> [e²/(e²+1), 1/(e²+1)] = [7.389056/8.389056, 1/8.389056]
    #             = [0.8807971, 0.1192029];  S ⊙ w = [0.8807971, 0]
    #   column 1: S/T = [0, 0] -> [0.5, 0.5];  S ⊙ w = [0, 0]
    #   column 2: S/T = [4, 2] -> same weights as column 0;  S ⊙ w = [2 · 0.8807971, 1 · 0.1192029]
    expected = np.array([[0.8807971, 0.0, 1.7615942], [0.0, 0.0, 0.1192029]])
    np.testing.assert_allclose(dual_softmax(scores, 0.5), expected, atol=1e-7)


def test_dual_softmax_is_stable_for_large_scores() -> None:
    scores = np.array([[1000.0, -1000.0], [999.0, 1000.0]])
    result = dual_softmax(scores, 0.01)
    assert np.isfinite(result).all()
    # Column 0: (1000 - 999) / 0.01 = 100 in favour of query 0: weights [1, e^-100].
    np.testing.assert_allclose(result[:, 0], [1000.0, 999.0 * math.exp(-100)], rtol=1e-12)


def test_dual_softmax_weights_ignore_a_constant_offset() -> None:
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(9, 7))
    offset = 3.25
    # The softmax weights are unchanged, so DS(S + c) = (S + c) ⊙ w(S).
    weights = dual_softmax(scores, 0.3) / scores
    np.testing.assert_allclose(dual_softmax(scores + offset, 0.3), (scores + offset) * weights)


def test_dual_softmax_rankings_invariant_to_joint_scaling() -> None:
    rng = np.random.default_rng(1)
    scores = rng.normal(size=(11, 11))
    targets = np.arange(11)
    base = ranks(dual_softmax(scores, 0.2), targets)
    np.testing.assert_array_equal(ranks(dual_softmax(4.0 * scores, 0.8), targets), base)
    # A positive constant factor (CAMoE's · N) changes no ranking either.
    np.testing.assert_array_equal(ranks(11 * dual_softmax(scores, 0.2), targets), base)


def test_dual_softmax_rankings_depend_on_the_score_origin() -> None:
    # The weights ignore a shift but the product S ⊙ w does not: query 1 below flips its order.
    scores = np.array([[1.0, 5.0], [0.0, 0.0]])
    # Weights (T = 1, any shift): column 0 softmax([1, 0]) = [0.7311, 0.2689],
    #                             column 1 softmax([5, 0]) = [0.9933, 0.0067].
    # Query 1 after +1: [1 · 0.2689, 1 · 0.0067] = [0.2689, 0.0067]     -> video 0 first.
    # Query 1 after -1: [-1 · 0.2689, -1 · 0.0067] = [-0.2689, -0.0067] -> video 1 first.
    plus = dual_softmax(scores + 1.0, 1.0)[1]
    minus = dual_softmax(scores - 1.0, 1.0)[1]
    np.testing.assert_allclose(plus, [0.2689414, 0.0066929], atol=1e-7)
    np.testing.assert_allclose(minus, [-0.2689414, -0.0066929], atol=1e-7)
    assert ranks(dual_softmax(scores + 1.0, 1.0), np.array([0, 0]))[1] == 1
    assert ranks(dual_softmax(scores - 1.0, 1.0), np.array([0, 0]))[1] == 2


def test_dual_softmax_rejects_bad_temperature() -> None:
    with pytest.raises(ValueError, match="temperature"):
        dual_softmax(np.zeros((2, 2)), 0.0)


# --- frame precision -----------------------------------------------------------------------------


def test_frame_precision_ties_go_to_the_lower_index() -> None:
    scores = np.array([0.5, 0.9, 0.5, 0.5, 0.1])
    relevant = np.array([False, True, False, True, False])
    # Order: 1 (0.9), then the tied 0, 2, 3 by index, then 4.
    assert frame_precision_at_k(scores, relevant, 1) == 1.0  # {1}
    assert frame_precision_at_k(scores, relevant, 2) == 0.5  # {1, 0}; 3 would give 1.0
    assert frame_precision_at_k(scores, relevant, 4) == 0.5  # {1, 0, 2, 3}
    assert frame_precision_at_k(scores, relevant, 10) == 0.4  # k clipped to 5: 2 of 5


def test_frame_precision_empty_and_bad_input() -> None:
    assert math.isnan(frame_precision_at_k(np.zeros(0), np.zeros(0, dtype=bool), 5))
    with pytest.raises(ValueError, match="k must be"):
        frame_precision_at_k(np.zeros(3), np.zeros(3, dtype=bool), 0)
    with pytest.raises(ValueError, match=r"\(K,\)"):
        frame_precision_at_k(np.zeros(3), np.zeros(4, dtype=bool), 1)
    with pytest.raises(ValueError, match="bool"):
        frame_precision_at_k(np.zeros(3), np.zeros(3), 1)


# --- per-query table -----------------------------------------------------------------------------


def test_query_ranks_table() -> None:
    table = query_ranks_table(["a_0", "a_1", "b_0"], np.array([1, 4, 2]), np.array([2, 1, 2]))
    assert list(table.columns) == ["pair_id", "rank", "rank_ds"]
    assert table["pair_id"].tolist() == ["a_0", "a_1", "b_0"]
    assert table["rank"].tolist() == [1, 4, 2]
    assert table["rank_ds"].tolist() == [2, 1, 2]
    assert table["rank"].dtype == np.int64
    with pytest.raises(ValueError, match="one length"):
        query_ranks_table(["a_0"], np.array([1, 2]), np.array([1, 2]))


# --- vectorised versus loop references on random matrices ---------------------------------------

RANDOM_CASES = [
    pytest.param("float", 17, 17, id="float-17x17"),
    pytest.param("int", 23, 23, id="int-23x23-ties"),
    pytest.param("int", 9, 31, id="int-9x31-ties"),
    pytest.param("float", 30, 13, id="float-30x13"),
]


def random_scores(kind: str, rows: int, columns: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "int":
        return rng.integers(0, 4, size=(rows, columns)).astype(np.float32)  # many ties
    return rng.normal(size=(rows, columns)).astype(np.float32)


@pytest.mark.parametrize(("kind", "rows", "columns"), RANDOM_CASES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ranks_and_metrics_match_loops(kind: str, rows: int, columns: int, seed: int) -> None:
    scores = random_scores(kind, rows, columns, seed)
    targets = np.random.default_rng(seed + 100).integers(0, columns, size=rows)
    found = ranks(scores, targets)
    expected = ranks_loop(scores, targets)
    assert found.tolist() == expected
    assert_metrics(retrieval_metrics(found), retrieval_metrics_loop(expected))
    if rows == columns:
        assert_metrics(mmpt_retrieval_metrics(scores), mmpt_metrics_loop(scores))


@pytest.mark.parametrize(("kind", "rows", "columns"), RANDOM_CASES)
@pytest.mark.parametrize("temperature", [0.05, 1.0, 7.0])
def test_dual_softmax_matches_loop(kind: str, rows: int, columns: int, temperature: float) -> None:
    scores = random_scores(kind, rows, columns, seed=3)
    np.testing.assert_allclose(
        dual_softmax(scores, temperature), dual_softmax_loop(scores, temperature), rtol=1e-12
    )


@pytest.mark.parametrize("kind", ["float", "int"])
@pytest.mark.parametrize("seed", range(5))
def test_frame_precision_matches_loop(kind: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    num_frames = int(rng.integers(1, 40))
    frame_scores = random_scores(kind, 1, num_frames, seed)[0]
    relevant = rng.random(num_frames) < 0.4
    for k in (1, 3, 5, num_frames, num_frames + 7):
        assert frame_precision_at_k(frame_scores, relevant, k) == pytest.approx(
            frame_precision_loop(frame_scores, relevant, k)
        )
