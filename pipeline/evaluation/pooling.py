"""Two reference ways to pool a clip's frames for retrieval, beside the model's own mean.

- **Query-scored pooling** (the strong simple baseline of "A CLIP-Hitchhiker's Guide to Long
  Video Retrieval", arXiv 2205.08508): for query q and clip v the clip's vector is
  Σ_k softmax_k(cos(t_q, h_vk) / τ) h_vk, so the frames most like the query dominate; no training.
- **Oracle pooling**: the mean of the frames the ground truth marks relevant: what pooling only
  the right seconds gives with the same encoder (a reference, not a bound: the frame states have
  already attended to the whole clip, distractors included).

Frames are a clip's frame hidden states (`protocols.encode_frames`) and texts the pooled text
vectors; scores are the model's dot products, rows = queries, columns = clips.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

QUERY_TEMPERATURE = 0.1  # τ on cosine similarities (fixed, not tuned on any test result)


def query_scored_scores(
    frames: Sequence[np.ndarray],  # V arrays (k_v, H): each clip's frame hidden states
    text: np.ndarray,  # (Q, H) pooled text vectors
    temperature: float = QUERY_TEMPERATURE,
) -> np.ndarray:  # (Q, V)
    text = np.asarray(text, dtype=np.float64)
    unit_text = text / np.maximum(np.linalg.norm(text, axis=1, keepdims=True), 1e-12)  # (Q, H)
    scores = np.empty((len(text), len(frames)))
    for column, clip in enumerate(frames):
        clip = np.asarray(clip, dtype=np.float64)  # (k, H)
        unit_clip = clip / np.maximum(np.linalg.norm(clip, axis=1, keepdims=True), 1e-12)
        logits = unit_text @ unit_clip.T / temperature  # (Q, k)
        weights = np.exp(logits - logits.max(axis=1, keepdims=True))
        weights /= weights.sum(axis=1, keepdims=True)  # (Q, k)
        pooled = weights @ clip  # (Q, H): one vector of the clip per query
        scores[:, column] = (text * pooled).sum(axis=1)
    return scores


def oracle_scores(
    frames: Sequence[np.ndarray],  # V arrays (k_v, H)
    relevant: Sequence[np.ndarray],  # V bool arrays (k_v,): the ground-truth relevant frames
    text: np.ndarray,  # (Q, H)
) -> np.ndarray:  # (Q, V)
    pooled = []
    for clip, mask in zip(frames, relevant, strict=True):
        mask = np.asarray(mask, dtype=bool)
        if not mask.any():
            raise ValueError("oracle pooling: a clip without any relevant frame")
        pooled.append(np.asarray(clip, dtype=np.float64)[mask].mean(axis=0))
    return np.asarray(text, dtype=np.float64) @ np.stack(pooled).T
