"""Validation during fine-tuning (`finetune.validation`): after every epoch the validation pairs
are ranked as the test pairs will be, and the frame selector is checked.

- `validation_pairs`: the training pairs split into those trained on and those validating —
  a share of the training *videos* held out (the lowest sha1 of their ids, so the same videos
  for every seed, method and rerun, and no video on both sides), or the dataset's own split;
- `Validator`: text→clip retrieval over the validation clips (R@1/5/10, MedR, pessimistic ranks
  as evaluate's; multiple choice too, whose training pairs are retrieval pairs), or for QA the
  answer head's accuracy on the validation questions (out-of-vocabulary answers wrong, as
  evaluate's); the selector's precision@k against synthetic ground truth (with a random
  choice's expectation) and its mean normalised entropy (1 = uniform, 0 = one frame).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from transformers import PreTrainedTokenizerBase

from models.videoclip import VideoCLIP
from pipeline.config import ModelConfig, ValidationConfig
from pipeline.evaluation.frames import encode_pairs, frame_precision
from pipeline.evaluation.protocols import answer_logits, clip_targets
from pipeline.evaluation.qa_metrics import qa_accuracy
from pipeline.evaluation.retrieval_metrics import dual_softmax, ranks, retrieval_metrics
from pipeline.training.data import PairClips
from storage.features import FeatureStore
from storage.layout import Manifest
from storage.tables import read_table


def holdout_videos(video_ids: Iterable[str], share: float) -> set[str]:
    """round(share × videos) of `video_ids` (at least one when share > 0 and there are two or
    more), chosen by the smallest sha1 of the id: stable, and independent of every seed."""
    unique = sorted(set(map(str, video_ids)))
    if share <= 0 or len(unique) < 2:
        return set()
    count = min(max(1, round(share * len(unique))), len(unique) - 1)
    ordered = sorted(unique, key=lambda video: hashlib.sha1(video.encode()).hexdigest())
    return set(ordered[:count])


def validation_pairs(
    pairs: pd.DataFrame, split: str, config: ValidationConfig
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """(training pairs, validation pairs or None) of the `split` training pairs."""
    train = pairs[pairs.split == split]
    if config.split:
        return train, pairs[pairs.split == config.split]
    held = holdout_videos(train.video_id, config.holdout_share)
    if not held:
        return train, None
    inside = train.video_id.astype(str).isin(held)
    return train[~inside], train[inside]


@dataclass(frozen=True)
class Sides:
    """A fine-tuning run's training pairs and (when validated) its validation pairs."""

    train: PairClips
    validation: PairClips | None
    source: str  # where the validation pairs came from ("" without validation)


def training_sides(
    ingest: Manifest[Any],
    extract: Manifest[Any],
    split: str,
    config: ValidationConfig,
    tokenizer: PreTrainedTokenizerBase,
    model: ModelConfig,
) -> Sides:
    """The `split` pairs over the extracted features, minus the held-out validation pairs."""
    train, held = validation_pairs(read_table(ingest.output("pairs")), split, config)
    features = FeatureStore(extract.output("index"))

    def clips(pairs: pd.DataFrame) -> PairClips:
        return PairClips(pairs, features, tokenizer, model.max_video_len, model.max_text_tokens)

    if held is None:
        return Sides(clips(train), None, "")
    if config.split:
        source = f"the dataset's {config.split!r} split"
    else:
        videos = held.video_id.nunique()
        source = f"{config.holdout_share:.0%} of the {split!r} videos held out ({videos} videos)"
    return Sides(clips(train), clips(held), source)


def pairs_by_id(
    ingest: Manifest[Any],
    extract: Manifest[Any],
    pair_ids: Sequence[str],
    tokenizer: PreTrainedTokenizerBase,
    model: ModelConfig,
) -> PairClips:
    """The pairs named by `pair_ids` (a fine-tuning run's validation pairs), in that order."""
    pairs = read_table(ingest.output("pairs")).astype({"pair_id": str}).set_index("pair_id")
    unknown = [pair for pair in pair_ids if pair not in pairs.index]
    if unknown:
        raise ValueError(f"{ingest.output('pairs')} has no pairs {unknown[:5]} (validation pairs)")
    chosen = pairs.loc[list(pair_ids)].reset_index()
    features = FeatureStore(extract.output("index"))
    return PairClips(chosen, features, tokenizer, model.max_video_len, model.max_text_tokens)


def choose_temperature(
    scores: np.ndarray,  # (Q, V) validation texts × clips
    targets: np.ndarray,  # (Q,) each query's clip column
    grid: Sequence[float],
) -> tuple[float, dict[str, float]]:
    """The DualSoftmax temperature of `grid` with the best validation R@1, and every one's R@1.
    Ties go to the larger T (the milder re-ranking: as T grows DS tends to the plain order)."""
    r1 = {float(t): retrieval_metrics(ranks(dual_softmax(scores, t), targets))["R@1"] for t in grid}
    best = max(r1.values())
    return max(t for t, value in r1.items() if value == best), {f"{t:g}": v for t, v in r1.items()}


def selector_entropy(logits: list[np.ndarray]) -> float | None:
    """Mean over clips of softmax entropy / log(frames) (clips of one frame left out)."""
    values = []
    for row in logits:
        if len(row) < 2:
            continue
        shifted = np.exp(row.astype(np.float64) - row.max())  # (k,)
        probabilities = shifted / shifted.sum()
        entropy = -(probabilities * np.log(np.clip(probabilities, 1e-12, None))).sum()
        values.append(entropy / np.log(len(row)))
    return float(np.mean(values)) if values else None


@dataclass(frozen=True)
class Validator:
    """The epoch hook of a fine-tuning run: validation metrics of the model as it stands."""

    dataset: PairClips
    truth: dict[str, Any]  # synthetic ground truth by pair id ({} for real data)
    precision_k: int
    batch_size: int
    device: torch.device
    task: str = "retrieval"  # "qa": answer accuracy; "retrieval" and "mc": text→clip ranks

    def __call__(self, model: VideoCLIP) -> dict[str, Any]:
        encoded = encode_pairs(model, self.dataset, self.batch_size, self.device)
        record: dict[str, Any]
        if self.task == "qa":
            logits = answer_logits(model, encoded.video, encoded.text, self.batch_size, self.device)
            answers = np.asarray(self.dataset.answers, dtype=np.int64)  # (N,)
            record = {"accuracy": qa_accuracy(logits, answers), "queries": len(self.dataset)}
        else:
            record = self._retrieval(encoded.text, encoded.video)
        record["selector_entropy"] = selector_entropy(encoded.frame_logits)
        precision = frame_precision(
            self.dataset, encoded.frame_logits, self.truth, self.precision_k
        )
        if precision is not None:
            record["selector_precision"] = precision["precision_at_k"]
            record["selector_random"] = precision["random_expectation"]
        return record

    def _retrieval(self, text: np.ndarray, video: np.ndarray) -> dict[str, Any]:
        """Text→clip ranks of the pooled vectors (N, H) of the validation pairs."""
        spans = [self.dataset.clip_seconds(i) for i in range(len(self.dataset))]
        clips = clip_targets(self.dataset.video_ids, spans)
        text, video = text.astype(np.float64), video.astype(np.float64)
        scores = text @ video[clips.first].T  # (queries, clips), in float64 as evaluate
        metrics = retrieval_metrics(ranks(scores, clips.targets))
        return {
            "r1": metrics["R@1"],
            "r5": metrics["R@5"],
            "r10": metrics["R@10"],
            "medr": metrics["MedR"],
            "queries": len(self.dataset),
            "clips": len(clips.first),
        }
