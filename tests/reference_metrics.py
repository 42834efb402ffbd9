"""Loop references for pipeline/evaluation/retrieval_metrics.py, for tests only: one query,
video or frame at a time."""

from __future__ import annotations

import math
import statistics

import numpy as np


def ranks_loop(scores: np.ndarray, targets: np.ndarray) -> list[int]:
    """rank = 1 + #{j ≠ t: s_j > s_t} + #{j ≠ t: s_j == s_t}, query by query."""
    out = []
    for row, target in zip(scores.tolist(), targets.tolist()):
        above = sum(1 for j, s in enumerate(row) if j != target and s > row[target])
        tied = sum(1 for j, s in enumerate(row) if j != target and s == row[target])
        out.append(1 + above + tied)
    return out


def retrieval_metrics_loop(query_ranks: list[int]) -> dict[str, float]:
    n = len(query_ranks)
    metrics = {f"R@{k}": 100.0 * sum(1 for r in query_ranks if r <= k) / n for k in (1, 5, 10)}
    metrics["MedR"] = float(statistics.median(query_ranks))
    metrics["MeanR"] = sum(query_ranks) / n
    return metrics


def mmpt_metrics_loop(scores: np.ndarray) -> dict[str, float]:
    """MMPT's recipe spelt out: each sorted position whose score equals the diagonal's matches."""
    positions = []
    for i, row in enumerate(scores.tolist()):
        for position, s in enumerate(sorted(row, reverse=True)):
            if s == row[i]:
                positions.append(position)
    n = len(positions)
    metrics = {f"R@{k}": 100.0 * sum(1 for p in positions if p < k) / n for k in (1, 5, 10)}
    metrics["MedR"] = float(statistics.median(positions)) + 1.0
    metrics["MeanR"] = sum(positions) / n + 1.0
    return metrics


def dual_softmax_loop(scores: np.ndarray, temperature: float) -> np.ndarray:
    """S[q, v] * exp(S[q, v] / T) / Σ_q' exp(S[q', v] / T), column by column."""
    num_queries, num_videos = scores.shape
    out = np.zeros((num_queries, num_videos))
    for v in range(num_videos):
        column = [float(scores[q, v]) / temperature for q in range(num_queries)]
        top = max(column)
        exps = [math.exp(c - top) for c in column]
        total = sum(exps)
        for q in range(num_queries):
            out[q, v] = float(scores[q, v]) * exps[q] / total
    return out


def frame_precision_loop(frame_scores: np.ndarray, relevant: np.ndarray, k: int) -> float:
    num_frames = len(frame_scores)
    if num_frames == 0:
        return float("nan")
    order = sorted(range(num_frames), key=lambda j: (-float(frame_scores[j]), j))
    top = order[: min(k, num_frames)]
    return sum(1 for j in top if relevant[j]) / len(top)
