"""The test set through a fine-tuned model, and the frame selector's scores (paper §3.2, Fig. 3).

`encode_pairs` gives every test pair's pooled video and text vectors and the selector's logits
over the pair's own frames; `frame_precision` checks those logits against a synthetic set's
ground-truth seconds (precision@k against a random choice's expectation); `write_frame_scores`
stores them as `frame_scores.h5` for the report's frame strips.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from models.frame_selector import frame_probabilities
from models.videoclip import VideoCLIP
from pipeline.evaluation.retrieval_metrics import frame_precision_at_k
from pipeline.progress import report
from pipeline.training.data import PairClips, make_loader
from storage.atomic import atomic_output


@dataclass(frozen=True)
class Encoded:
    """The test set through the model: one row per pair."""

    video: np.ndarray  # (N, H) pooled video vectors
    text: np.ndarray  # (N, H) pooled text vectors
    frame_logits: list[np.ndarray]  # N arrays (k_i,): the selector's logits of each clip's frames
    frame_hidden: list[np.ndarray] | None = None  # N arrays (k_i, H), when asked for


@torch.inference_mode()
def encode_pairs(
    model: VideoCLIP,
    dataset: PairClips,
    batch_size: int,
    device: torch.device,
    keep_frames: bool = False,
    progress_what: str = "",
) -> Encoded:
    """Pooled vectors of every pair and the frame selector's logits over its own frames (and,
    with `keep_frames`, the frames' hidden states, for pooling them otherwise). With
    `progress_what`, the pairs encoded are reported as progress under that name."""
    model.eval().to(device)
    videos, texts, logits, frames = [], [], [], []
    loader = make_loader(dataset, batch_size, shuffle=False, seed=0, epoch=0, num_workers=0)
    for batch in loader:
        batch = batch.to(device)
        video = model.encode_video(batch.video, batch.video_mask)
        text = model.encode_text(batch.text_ids, batch.text_mask)
        frame_logits = model.select_frames(video.frame_hidden, text.pooled)  # (B, K)
        videos.append(video.pooled.float().cpu().numpy())
        texts.append(text.pooled.float().cpu().numpy())
        lengths = batch.video_mask.sum(dim=1).tolist()
        rows = frame_logits.float().cpu().numpy()
        logits += [row[:length] for row, length in zip(rows, lengths, strict=True)]
        if keep_frames:
            hidden = video.frame_hidden.float().cpu().numpy()  # (B, K, H)
            frames += [row[:length] for row, length in zip(hidden, lengths, strict=True)]
        if progress_what:
            report(progress_what, len(logits), len(dataset))
    hidden_states = frames if keep_frames else None
    return Encoded(np.concatenate(videos), np.concatenate(texts), logits, hidden_states)


def frame_precision(
    dataset: PairClips, logits: list[np.ndarray], truth: dict[str, Any], k: int
) -> dict[str, Any] | None:
    """Mean precision@k of the selector's top frames against the ground-truth seconds."""
    precisions, expectations = [], []
    for index, (pair_id, scores) in enumerate(zip(dataset.pair_ids, logits, strict=True)):
        if pair_id not in truth:
            continue
        start, _ = dataset.clip_seconds(index)
        seconds = set(truth[pair_id]["seconds"])
        relevant = np.array([start + j in seconds for j in range(len(scores))])  # (k_i,)
        if not relevant.any():
            continue
        precisions.append(frame_precision_at_k(scores, relevant, k))
        expectations.append(float(relevant.mean()))
    if not precisions:
        return None
    return {
        "k": k,
        "precision_at_k": float(np.mean(precisions)),
        "random_expectation": float(np.mean(expectations)),
        "pairs": len(precisions),
    }


def write_frame_scores(path: Path, dataset: PairClips, logits: list[np.ndarray]) -> None:
    """`frame_scores.h5`: per test pair its frames' selector logits and probabilities."""
    lengths = np.array([len(row) for row in logits], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)])  # (N + 1,)
    probabilities = [
        frame_probabilities(torch.from_numpy(row)[None], torch.ones(1, len(row), dtype=torch.bool))
        for row in logits
    ]
    starts = [dataset.clip_seconds(i)[0] for i in range(len(dataset))]
    strings = h5py.string_dtype("utf-8")
    with atomic_output(path) as tmp, h5py.File(tmp, "w") as handle:
        handle["pair_ids"] = np.array(dataset.pair_ids, dtype=object).astype(strings)
        handle["video_ids"] = np.array(dataset.video_ids, dtype=object).astype(strings)
        handle["offsets"] = offsets
        handle["logits"] = np.concatenate(logits).astype(np.float32)
        handle["probabilities"] = torch.cat(probabilities, dim=1)[0].numpy().astype(np.float32)
        handle["start_s"] = np.array(starts, dtype=np.int64)
