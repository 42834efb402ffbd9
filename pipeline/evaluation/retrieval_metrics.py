"""Retrieval metrics, DualSoftmax re-ranking and frame-selector precision (numpy only).

Text→video retrieval (videoclip-facts §2.6 and "Implications" item 7): a score matrix has one row
per text query and one column per video, `scores[q, v]` = dot product of their pooled vectors.

Ranks and ties. Our rank is tie-safe and pessimistic:

    rank_q = 1 + #{v ≠ target: s_qv > s_qt} + #{v ≠ target: s_qv == s_qt}

so a video that ties with the target is counted as ranked above it. A model that gives every video
the same score therefore gets the worst rank (V) for every query, never the best.

MMPT's `RetrievalMetric` (copied from howto100m `metrics.py`) does it differently and is kept
here as `mmpt_retrieval_metrics` so our numbers can be set against papers that used it:

    sx = sort(-x, axis=1);  d = diag(-x);  ind = where(sx - d[:, None] == 0)[1]

`ind` holds every sorted position whose score equals the target's. A row whose target ties with
m other videos contributes m + 1 entries, the first at the best tied position, and R@K is the
share of *entries* (not of queries) below K. Ties thus add extra, optimistic matches: with all N
scores equal, MMPT gives R@K = K / N where we give 0 (N = 12: R@1 = 8.3 %, R@10 = 83.3 %).

Recalls are returned in percent (0-100), as in the papers' tables; MMPT itself stores fractions.
MedR is numpy's median, which averages the two middle ranks for an even number of queries (so it
can be x.5); the papers print it as an integer.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

RECALL_AT = (1, 5, 10)  # the K of the reported R@K
METRIC_KEYS = ("R@1", "R@5", "R@10", "MedR", "MeanR")


def ranks(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """1-based, tie-pessimistic rank of each query's target video.

    scores: (Q, V) float, rows = text queries, columns = videos.
    targets: (Q,) int, the column of each query's ground-truth video.
    Returns (Q,) int64 in 1..V: the number of videos scoring >= the target, the target included.
    """
    scores = _score_matrix(scores, "scores")
    targets = np.asarray(targets)
    num_queries, num_videos = scores.shape
    if targets.shape != (num_queries,):
        raise ValueError(
            f"targets: expected shape ({num_queries},) for {num_queries} queries, "
            f"found {targets.shape}"
        )
    if num_queries == 0:
        return np.zeros(0, dtype=np.int64)
    if not np.issubdtype(targets.dtype, np.integer):
        raise ValueError(f"targets: expected integer video columns, found dtype {targets.dtype}")
    outside = np.flatnonzero((targets < 0) | (targets >= num_videos))
    if outside.size:
        raise ValueError(
            f"targets: columns must lie in 0..{num_videos - 1}; queries {outside[:5].tolist()} "
            f"have targets {targets[outside[:5]].tolist()}"
        )
    target_scores = scores[np.arange(num_queries), targets]  # (Q,)
    # `>=` counts the target itself once (the leading 1 of the formula) and every tie against it.
    return (scores >= target_scores[:, None]).sum(axis=1).astype(np.int64)  # (Q,)


def retrieval_metrics(query_ranks: np.ndarray) -> dict[str, float]:
    """R@1/5/10 (percent of queries with rank <= K), MedR and MeanR of 1-based ranks (Q,)."""
    query_ranks = np.asarray(query_ranks)
    if query_ranks.ndim != 1 or query_ranks.size == 0:
        raise ValueError(f"ranks: expected a non-empty 1-D array, found shape {query_ranks.shape}")
    if not np.issubdtype(query_ranks.dtype, np.integer) or query_ranks.min() < 1:
        raise ValueError(
            f"ranks: expected integers >= 1 (1 = best), found dtype {query_ranks.dtype}, "
            f"minimum {query_ranks.min()}"
        )
    metrics = {f"R@{k}": 100.0 * float(np.mean(query_ranks <= k)) for k in RECALL_AT}
    metrics["MedR"] = float(np.median(query_ranks))  # averages the middle two for even Q
    metrics["MeanR"] = float(np.mean(query_ranks))
    return metrics


def mmpt_retrieval_metrics(scores: np.ndarray) -> dict[str, float]:
    """MMPT's `RetrievalMetric` on a square (N, N) matrix whose diagonal is the ground truth.

    Reproduces `ind = where(sort(-x, axis=1) - diag(-x)[:, None] == 0)[1]` exactly, ties and all:
    R@K = 100 * share of `ind` entries below K, MedR = median(ind) + 1, MeanR = mean(ind) + 1
    (MeanR is not in MMPT's RetrievalMetric; it is the same recipe's mean, for completeness).
    """
    scores = _score_matrix(scores, "scores")
    if scores.shape[0] != scores.shape[1] or scores.shape[0] == 0:
        raise ValueError(
            f"scores: MMPT's metric needs a non-empty square matrix (text i matches video i), "
            f"found shape {scores.shape}"
        )
    sorted_negated = np.sort(-scores, axis=1)  # (N, N) each row best first
    target_negated = -np.diag(scores)[:, None]  # (N, 1)
    positions = np.nonzero(sorted_negated - target_negated == 0)[1]  # (>= N,) 0-based
    metrics = {f"R@{k}": 100.0 * float(np.mean(positions < k)) for k in RECALL_AT}
    metrics["MedR"] = float(np.median(positions)) + 1.0
    metrics["MeanR"] = float(np.mean(positions)) + 1.0
    return metrics


def dual_softmax(scores: np.ndarray, temperature: float) -> np.ndarray:
    """DualSoftmax re-ranking: S ⊙ softmax(S / T, axis=0), (Q, V) → (Q, V) float64.

    The softmax runs over the queries for each video (axis 0), so a video that many queries score
    highly is discounted for all but the query that scores it highest. This is transductive: it
    uses the whole query set. Common implementations (CAMoE) also multiply by the number of
    queries; a positive constant factor changes no ranking, so it is left out.

    Rankings are invariant to scaling S and T together by a > 0, and the softmax weights are
    invariant to adding a constant to S, but the product is not: (s + c) · p reorders a row when c
    moves scores across zero, and a negative score with a large weight sinks further. VideoCLIP's
    raw dot products are not normalised, so T (and the sign of the scores) matter.
    """
    scores = _score_matrix(scores, "scores").astype(np.float64)
    if not temperature > 0:
        raise ValueError(f"dual_softmax: temperature must be > 0, found {temperature}")
    logits = scores / temperature  # (Q, V)
    logits = logits - logits.max(axis=0, keepdims=True)  # max 0 per column: exp cannot overflow
    weights = np.exp(logits)
    weights /= weights.sum(axis=0, keepdims=True)  # (Q, V) each column sums to 1
    return scores * weights


def frame_precision_at_k(frame_scores: np.ndarray, relevant: np.ndarray, k: int) -> float:
    """Share of the k highest-scored frames that are relevant (ground-truth seconds).

    frame_scores: (K,) selector scores of one clip's real frames; relevant: (K,) bool.
    Ties are broken by the lower frame index; k is clipped to K; NaN when K == 0.
    """
    frame_scores = np.asarray(frame_scores, dtype=np.float64)
    relevant = np.asarray(relevant)
    if frame_scores.ndim != 1 or relevant.shape != frame_scores.shape:
        raise ValueError(
            f"frame_precision_at_k: expected frame_scores (K,) and relevant (K,), "
            f"found {frame_scores.shape} and {relevant.shape}"
        )
    if relevant.dtype != np.bool_:
        raise ValueError(f"frame_precision_at_k: relevant must be bool, found {relevant.dtype}")
    if k < 1:
        raise ValueError(f"frame_precision_at_k: k must be >= 1, found {k}")
    if np.isnan(frame_scores).any():
        raise ValueError("frame_precision_at_k: frame_scores contain NaN")
    num_frames = frame_scores.shape[0]
    if num_frames == 0:
        return float("nan")
    # A stable sort of the negated scores keeps tied frames in index order.
    top = np.argsort(-frame_scores, kind="stable")[: min(k, num_frames)]  # (k,)
    return float(relevant[top].mean())


def query_ranks_table(
    pair_ids: Sequence[str] | np.ndarray, query_ranks: np.ndarray, query_ranks_ds: np.ndarray
) -> pd.DataFrame:
    """Per-query ranks without and with DualSoftmax: columns pair_id, rank, rank_ds.

    This is the table the evaluate stage writes as `ranks.parquet`.
    """
    pair_ids = np.asarray(pair_ids)
    query_ranks = np.asarray(query_ranks)
    query_ranks_ds = np.asarray(query_ranks_ds)
    shapes = {a.shape for a in (pair_ids, query_ranks, query_ranks_ds)}
    if len(shapes) != 1 or pair_ids.ndim != 1:
        raise ValueError(
            f"query_ranks_table: pair_ids, ranks and ranks_ds must be 1-D of one length, found "
            f"{pair_ids.shape}, {query_ranks.shape} and {query_ranks_ds.shape}"
        )
    return pd.DataFrame(
        {
            "pair_id": pair_ids,
            "rank": query_ranks.astype(np.int64),
            "rank_ds": query_ranks_ds.astype(np.int64),
        }
    )


def _score_matrix(scores: np.ndarray, name: str) -> np.ndarray:
    """`scores` as a 2-D array without NaN (a NaN target would otherwise rank silently)."""
    scores = np.asarray(scores)
    if scores.ndim != 2:
        raise ValueError(f"{name}: expected a (queries, videos) matrix, found shape {scores.shape}")
    nan_rows = np.flatnonzero(np.isnan(scores).any(axis=1))
    if nan_rows.size:
        raise ValueError(
            f"{name}: NaN scores in {nan_rows.size} query rows, first {nan_rows[:5].tolist()}"
        )
    return scores
