"""The evaluation protocols of the FineCo paper (videoclip-facts §2.6) for pipeline/evaluate.py.

The protocol follows from the ingest manifest: `info.task` ("retrieval" | "qa" | "mc") and
`info.adapter`.

- Retrieval: the candidates are the UNIQUE clips of the split's pairs, a clip being (video id,
  fed seconds); every pair's text is a query whose target is its clip's column. One query per
  clip is plain text→video retrieval (YouCookII, MSR-VTT 1k-A); several (MSVD, ~40 captions per
  video) is multi-sentence retrieval; DiDeMo's one paragraph per video is paragraph→video. MMPT's
  square-diagonal metric exists only when every clip has exactly one query (else null).
- DiDeMo moments (in addition to paragraph retrieval): LocalizingMoments' 21 candidate moments of
  the first 30 s (6 chunks of 5 s) of each video, scored as MMPT's `DiDeMoPredictor` does: the
  mean frame hidden state over a candidate's seconds · the description's pooled text vector.
- QA: the answer head over [video ; question] picks one answer of the vocabulary; answers outside
  it (-100) count as wrong.
- MC: the video's pooled vector · each candidate caption's pooled vector, argmax over the 5.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from transformers import PreTrainedTokenizerBase

from models.heads import multiple_choice_scores
from models.videoclip import VideoCLIP
from pipeline.datasets import didemo
from pipeline.evaluation.qa_metrics import OUT_OF_VOCABULARY, multiple_choice_accuracy, qa_accuracy
from pipeline.evaluation.retrieval_metrics import (
    dual_softmax,
    mmpt_retrieval_metrics,
    ranks,
    retrieval_metrics,
)
from pipeline.training.data import PAD_ID, tokenize
from storage.features import FeatureStore

log = logging.getLogger(__name__)

MOMENT_SECONDS = didemo.N_CHUNKS * didemo.CHUNK_S  # DiDeMo videos are truncated to 30 s


# ------------------------------------------------------------------------------------ retrieval


@dataclass(frozen=True)
class ClipTargets:
    """Pairs → unique clips: the candidate columns of a retrieval score matrix."""

    targets: np.ndarray  # (N,) int64: column of each pair's clip
    first: np.ndarray  # (V,) int64: the first pair showing each clip (clips in first-seen order)
    queries: np.ndarray  # (V,) int64: how many pairs (queries) each clip has


def clip_targets(video_ids: Sequence[str], spans: Sequence[tuple[int, int]]) -> ClipTargets:
    """Group pairs by clip = (video id, fed seconds [start, stop)); clips in first-seen order."""
    if len(video_ids) != len(spans):
        raise ValueError(f"clip_targets: {len(video_ids)} video ids but {len(spans)} spans")
    columns: dict[tuple[str, int, int], int] = {}
    targets, first = [], []
    for index, (video_id, (start, stop)) in enumerate(zip(video_ids, spans, strict=True)):
        key = (str(video_id), int(start), int(stop))
        if key not in columns:
            columns[key] = len(first)
            first.append(index)
        targets.append(columns[key])
    targets_array = np.asarray(targets, dtype=np.int64)
    queries = np.bincount(targets_array, minlength=len(first)).astype(np.int64)
    return ClipTargets(targets_array, np.asarray(first, dtype=np.int64), queries)


def retrieval_protocol(adapter: str, queries_per_clip: np.ndarray) -> str:
    if adapter == "didemo":
        return "paragraph_to_video"
    return "multi_sentence" if (np.asarray(queries_per_clip) > 1).any() else "text_to_video"


@dataclass(frozen=True)
class Retrieval:
    metrics: dict[str, Any]
    ranks: np.ndarray  # (Q,) tie-safe rank of each query's clip
    ranks_dual_softmax: np.ndarray  # (Q,) the same after DualSoftmax re-ranking


def retrieval_report(scores: np.ndarray, targets: np.ndarray, temperature: float) -> Retrieval:
    """Metrics of a texts × clips score matrix (Q, V), without and with DualSoftmax.

    MMPT's metric needs text i ↔ video i: it is computed (on the columns reordered so) only when
    every clip has exactly one query, else stored as null.
    """
    targets = np.asarray(targets, dtype=np.int64)
    reranked = dual_softmax(scores, temperature)
    plain, rescored = ranks(scores, targets), ranks(reranked, targets)
    one_each = len(targets) == scores.shape[1] and len(np.unique(targets)) == len(targets)
    metrics = {
        "plain": retrieval_metrics(plain),
        "dual_softmax": retrieval_metrics(rescored),
        "mmpt": mmpt_retrieval_metrics(scores[:, targets]) if one_each else None,
        "mmpt_dual_softmax": mmpt_retrieval_metrics(reranked[:, targets]) if one_each else None,
        "dual_softmax_temperature": temperature,
    }
    return Retrieval(metrics, plain, rescored)


def evaluate_retrieval(
    video: np.ndarray,  # (N, H) pooled video vector of each pair's clip
    text: np.ndarray,  # (N, H) pooled text vector of each pair
    video_ids: Sequence[str],
    spans: Sequence[tuple[int, int]],  # (N,) fed seconds [start, stop) of each pair's clip
    adapter: str,
    temperature: float,
) -> Retrieval:
    """Every text a query over the unique clips. The clip vectors are those of each clip's first
    pair: pairs of one clip feed the same frames, so their pooled video vectors are equal (the
    evaluate stage encodes a video once per pair, which the per-pair frame scores need anyway)."""
    clips = clip_targets(video_ids, spans)
    scores = text.astype(np.float64) @ video[clips.first].astype(np.float64).T  # (N, V)
    result = retrieval_report(scores, clips.targets, temperature)
    metrics = {
        "protocol": retrieval_protocol(adapter, clips.queries),
        **result.metrics,
        "videos": len(clips.first),
    }
    return Retrieval(metrics, result.ranks, result.ranks_dual_softmax)


# ----------------------------------------------------------------------------------- encoding


@torch.inference_mode()
def encode_texts(
    model: VideoCLIP, token_ids: Sequence[list[int]], batch_size: int, device: torch.device
) -> np.ndarray:  # (T, H) pooled text vectors
    """Pooled vectors of tokenized texts (`[CLS] … [SEP]` lists), PAD_ID-padded per batch."""
    model.eval().to(device)
    rows = []
    for begin in range(0, len(token_ids), batch_size):
        chunk = token_ids[begin : begin + batch_size]
        length = max(len(ids) for ids in chunk)
        ids = torch.full((len(chunk), length), PAD_ID, dtype=torch.long)  # (B, L)
        mask = torch.zeros(len(chunk), length, dtype=torch.bool)  # (B, L)
        for row, values in enumerate(chunk):
            ids[row, : len(values)] = torch.tensor(values, dtype=torch.long)
            mask[row, : len(values)] = True
        pooled = model.encode_text(ids.to(device), mask.to(device)).pooled
        rows.append(pooled.float().cpu().numpy())
    if not rows:
        return np.zeros((0, model.hidden_size), dtype=np.float32)
    return np.concatenate(rows)


@torch.inference_mode()
def encode_frames(
    model: VideoCLIP,
    features: FeatureStore,
    video_ids: Sequence[str],
    max_seconds: int,
    batch_size: int,
    device: torch.device,
) -> list[np.ndarray]:  # per video (k_i, H) frame hidden states of its first k_i seconds
    """`frame_hidden` of each video's first min(n_seconds, max_seconds) seconds."""
    model.eval().to(device)
    hidden: list[np.ndarray] = []
    for begin in range(0, len(video_ids), batch_size):
        clips = [
            features.features(v, 0, min(features.n_seconds(v), max_seconds)).astype(np.float32)
            for v in video_ids[begin : begin + batch_size]
        ]
        frames = max(len(clip) for clip in clips)
        video = torch.zeros(len(clips), frames, clips[0].shape[1])  # (B, K, 512)
        mask = torch.zeros(len(clips), frames, dtype=torch.bool)  # (B, K)
        for row, clip in enumerate(clips):
            video[row, : len(clip)] = torch.from_numpy(clip)
            mask[row, : len(clip)] = True
        out = model.encode_video(video.to(device), mask.to(device)).frame_hidden  # (B, K, H)
        rows = out.float().cpu().numpy()
        hidden += [row[: len(clip)] for row, clip in zip(rows, clips, strict=True)]
    return hidden


# ---------------------------------------------------------------------------- DiDeMo moments


def moment_scores(frame_hidden: np.ndarray, text: np.ndarray) -> np.ndarray:
    """Scores (A, 21) of the 21 candidate moments of one video for A descriptions.

    frame_hidden: (K, H) hidden states of the video's first K seconds; text: (A, H) pooled
    description vectors. Candidate (s, e) covers seconds [5s, 5(e+1)) clipped to K; its vector is
    the mean frame hidden state there and its score the dot product with the text; a candidate
    with no second inside the video scores -inf.
    """
    frame_hidden = np.asarray(frame_hidden, dtype=np.float64)
    text = np.atleast_2d(np.asarray(text, dtype=np.float64))
    num_seconds = frame_hidden.shape[0]
    candidates = didemo.candidate_moments()
    scores = np.full((text.shape[0], len(candidates)), -np.inf)
    for column, (start, end) in enumerate(candidates):
        low, high = didemo.CHUNK_S * start, min(didemo.CHUNK_S * (end + 1), num_seconds)
        if low < high:
            scores[:, column] = text @ frame_hidden[low:high].mean(axis=0)
    return scores


def evaluate_moments(
    model: VideoCLIP,
    tokenizer: PreTrainedTokenizerBase,
    annotations: pd.DataFrame,  # didemo.moment_annotations: video, description, times
    features: FeatureStore,
    max_video_len: int,
    max_text_tokens: int,
    batch_size: int,
    device: torch.device,
) -> dict[str, Any]:
    """rank@1, rank@5, mIoU (percent) of the 21-moment protocol over annotations with features."""
    known = annotations.video.map(lambda video_id: video_id in features).to_numpy(bool)
    dropped = int((~known).sum())
    if dropped:
        log.warning("moments: %d of %d annotations dropped, no features", dropped, len(known))
    kept = annotations[known].reset_index(drop=True)
    result: dict[str, Any] = {"rank@1": None, "rank@5": None, "mIoU": None}
    if len(kept):
        tokens = [tokenize(tokenizer, text, max_text_tokens) for text in kept.description]
        text = encode_texts(model, tokens, batch_size, device)  # (A, H)
        videos = list(dict.fromkeys(kept.video))
        seconds = min(MOMENT_SECONDS, max_video_len)
        hidden = encode_frames(model, features, videos, seconds, batch_size, device)
        scores = np.zeros((len(kept), len(didemo.candidate_moments())))  # (A, 21)
        for video_id, frame_hidden in zip(videos, hidden, strict=True):
            rows = np.flatnonzero(kept.video.to_numpy() == video_id)
            scores[rows] = moment_scores(frame_hidden, text[rows])
        metrics = didemo.rank_metrics(list(scores), list(kept.times))
        result = {name: 100.0 * value for name, value in metrics.items()}
    return {**result, "annotations": len(kept), "dropped_missing_features": dropped}


# ------------------------------------------------------------------------------------- QA, MC


@dataclass(frozen=True)
class Answered:
    metrics: dict[str, Any]
    predictions: pd.DataFrame  # the predictions.parquet table


def read_answers(task_json: Path) -> list[str]:
    """The QA answer vocabulary from ingest's `task.json`."""
    answers = json.loads(Path(task_json).read_text())["answers"]
    if not isinstance(answers, list) or not answers:
        raise ValueError(f"{task_json}: expected a non-empty 'answers' list")
    return [str(answer) for answer in answers]


@torch.inference_mode()
def answer_logits(
    model: VideoCLIP, video: np.ndarray, text: np.ndarray, batch_size: int, device: torch.device
) -> np.ndarray:  # (N, A)
    """The answer head over each pair's pooled [video ; question] vectors."""
    if model.answer_head is None:
        raise ValueError("QA evaluation needs a model with an answer head (attach_answer_head)")
    model.eval().to(device)
    rows = []
    for begin in range(0, len(video), batch_size):
        v = torch.from_numpy(video[begin : begin + batch_size]).to(device)
        t = torch.from_numpy(text[begin : begin + batch_size]).to(device)
        rows.append(model.answer_head(v, t).float().cpu().numpy())
    return np.concatenate(rows)


def evaluate_qa(
    logits: np.ndarray,  # (N, A)
    answer_index: np.ndarray,  # (N,) int64, -100 = outside the vocabulary
    vocabulary: Sequence[str],
    pair_ids: Sequence[str],
    video_ids: Sequence[str],
    true_answers: Sequence[str | None],  # the answer strings (OOV ones included)
) -> Answered:
    answer_index = np.asarray(answer_index, dtype=np.int64)
    predicted = logits.argmax(axis=1)  # (N,) lowest index on ties, as qa_accuracy
    metrics = {
        "protocol": "qa",
        "accuracy": qa_accuracy(logits, answer_index),
        "questions": len(answer_index),
        "out_of_vocabulary_share": float(np.mean(answer_index == OUT_OF_VOCABULARY)),
        "answers": len(vocabulary),
    }
    table = pd.DataFrame(
        {
            "pair_id": list(pair_ids),
            "video_id": list(video_ids),
            "predicted": [vocabulary[i] for i in predicted],
            "answer": list(true_answers),
            "correct": (predicted == answer_index) & (answer_index != OUT_OF_VOCABULARY),
        }
    )
    return Answered(metrics, table)


def candidate_list(value: Any) -> list[str]:
    """A pair's `candidates` cell: JSON text of a list (the MSR-VTT adapter) or a list/array."""
    if isinstance(value, str):
        value = json.loads(value)
    if value is None or isinstance(value, str | bytes) or not hasattr(value, "__len__"):
        raise ValueError(f"candidates {value!r} is not a list of strings")
    return [str(candidate) for candidate in value]


def evaluate_mc(
    model: VideoCLIP,
    tokenizer: PreTrainedTokenizerBase,
    video: np.ndarray,  # (N, H) pooled video vectors
    candidates: Sequence[Sequence[str]],  # N lists of C candidate captions
    answer_index: np.ndarray,  # (N,) correct candidate
    pair_ids: Sequence[str],
    video_ids: Sequence[str],
    max_text_tokens: int,
    batch_size: int,
    device: torch.device,
) -> Answered:
    counts = {len(row) for row in candidates}
    if len(counts) != 1 or 0 in counts:
        raise ValueError(f"multiple choice: every question needs the same C >= 1, found {counts}")
    (num_candidates,) = counts
    tokens = [tokenize(tokenizer, text, max_text_tokens) for row in candidates for text in row]
    text = encode_texts(model, tokens, batch_size, device)  # (N * C, H)
    text = text.reshape(len(candidates), num_candidates, -1)  # (N, C, H)
    scores = multiple_choice_scores(torch.from_numpy(video), torch.from_numpy(text)).numpy()
    answer_index = np.asarray(answer_index, dtype=np.int64)
    predicted = scores.argmax(axis=1)  # (N,) lowest index on ties
    metrics = {
        "protocol": "mc",
        "accuracy": multiple_choice_accuracy(scores, answer_index),
        "questions": len(answer_index),
        "candidates": num_candidates,
    }
    table = pd.DataFrame(
        {
            "pair_id": list(pair_ids),
            "video_id": list(video_ids),
            "predicted": predicted.astype(np.int64),
            "answer_index": answer_index,
            "correct": predicted == answer_index,
        }
    )
    return Answered(metrics, table)
