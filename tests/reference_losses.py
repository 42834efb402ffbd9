"""Slow, loop-based references for models/losses.py, used only by tests/test_losses.py.

Each function follows the paper's formula literally (one clip or one pair at a time, plain
exp / log / sums), so the vectorised code in models/losses.py can be checked against it in value
and gradient. Inputs are meant to be float64 with moderate values (no overflow guards here).
"""

from __future__ import annotations

import torch
from torch import Tensor


def reference_t2v(video: Tensor, text: Tensor) -> Tensor:
    """Mean over texts i of -log( exp(t_i·v_i) / Σ_j exp(t_i·v_j) )."""
    batch = video.shape[0]
    total = video.new_zeros(())
    for i in range(batch):
        scores = [torch.dot(text[i], video[j]) for j in range(batch)]
        denominator = sum(torch.exp(score) for score in scores)
        total = total - torch.log(torch.exp(scores[i]) / denominator)
    return total / batch


def reference_v2t(video: Tensor, text: Tensor) -> Tensor:
    """Mean over videos i of -log( exp(v_i·t_i) / Σ_j exp(v_i·t_j) )."""
    batch = video.shape[0]
    total = video.new_zeros(())
    for i in range(batch):
        scores = [torch.dot(video[i], text[j]) for j in range(batch)]
        denominator = sum(torch.exp(score) for score in scores)
        total = total - torch.log(torch.exp(scores[i]) / denominator)
    return total / batch


def reference_symmetric(video: Tensor, text: Tensor) -> Tensor:
    """MMPT MMContraLoss: the sum of both directions."""
    return reference_t2v(video, text) + reference_v2t(video, text)


def reference_fineco(frame_logits: Tensor, frame_mask: Tensor, positives: Tensor) -> Tensor:
    """Paper Eq. 3 per clip: -log(A / (A + B)) over real frames, mean over clips with a frame."""
    total = frame_logits.new_zeros(())
    rows = 0
    for i in range(frame_logits.shape[0]):
        real = [k for k in range(frame_logits.shape[1]) if frame_mask[i, k]]
        if not real:
            continue
        positive_sum = sum(torch.exp(frame_logits[i, k]) for k in real if positives[i, k])
        negative_sum = sum(torch.exp(frame_logits[i, k]) for k in real if not positives[i, k])
        total = total - torch.log(positive_sum / (positive_sum + negative_sum))
        rows += 1
    return total / max(rows, 1)


def _top(values: list[float], real: list[int], count: int) -> set[int]:
    """The `count` real frames with the highest values; ties go to the lower index."""
    return set(sorted(real, key=lambda k: (-values[k], k))[:count])


def _median(values: list[float]) -> float:
    """Middle value for an odd count, mean of the two middle values for an even count."""
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


def reference_positives(
    frame_logits: Tensor,
    frame_mask: Tensor,
    kind: str,
    k: int = 50,
    ratio: float = 0.5,
    true_lengths: Tensor | None = None,
) -> Tensor:
    """select_positives for fixed_k, median and ratio, one clip at a time."""
    logits = frame_logits.tolist()
    batch, frames = frame_mask.shape
    real = [[j for j in range(frames) if frame_mask[i, j]] for i in range(batch)]
    chosen: list[set[int]] = []
    if kind == "median":
        medians = [_median([logits[i][j] for j in real[i]]) for i in range(batch) if real[i]]
        threshold = sum(medians) / len(medians) if medians else 0.0
    for i in range(batch):
        if kind == "fixed_k":
            chosen.append(_top(logits[i], real[i], k))
        elif kind == "ratio":
            assert true_lengths is not None
            count = max(1, round(ratio * int(true_lengths[i])))
            chosen.append(_top(logits[i], real[i], min(count, len(real[i]))))
        elif kind == "median":
            above = {j for j in real[i] if logits[i][j] > threshold}
            chosen.append(above or _top(logits[i], real[i], 1))
        else:
            raise ValueError(f"reference_positives: no reference for kind {kind!r}")
    result = torch.zeros(batch, frames, dtype=torch.bool)
    for i, frames_chosen in enumerate(chosen):
        for j in frames_chosen:
            result[i, j] = True
    return result
