"""Evaluate stage: text→video retrieval of a fine-tuned model (paper §4.1; videoclip-facts §2.6).

Every test pair is one query (its text) and one candidate (its clip); the score matrix is texts ×
clips of raw dot products, the diagonal is the ground truth. Metrics come tie-safe and in MMPT's
recipe, each without and with DualSoftmax re-ranking. The frame selector scores every test pair's
own frames (`frame_scores.h5`); on synthetic data those scores are checked against the seconds
that truly show the caption's concept (precision@k).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from models.frame_selector import frame_probabilities
from models.videoclip import VideoCLIP
from pipeline.bert import build_model, load_tokenizer
from pipeline.config import EvaluateConfig, ModelConfig
from pipeline.devices import resolve_device
from pipeline.metrics import (
    dual_softmax,
    frame_precision_at_k,
    mmpt_retrieval_metrics,
    query_ranks_table,
    ranks,
    retrieval_metrics,
)
from pipeline.stage import StageResult, StageSpec, run_cached
from pipeline.synth import GROUND_TRUTH_FILE
from pipeline.training_data import PairClips, make_loader, split_pairs
from storage.atomic import atomic_output, atomic_write_json
from storage.checkpoints import load_weights
from storage.layout import Manifest
from storage.tables import write_table

log = logging.getLogger(__name__)

MODULES = (
    "pipeline.evaluate",
    "pipeline.metrics",
    "pipeline.training_data",
    "pipeline.bert",
    "pipeline.devices",
    "models",
    "storage",
)


@dataclass(frozen=True)
class Encoded:
    """The test set through the model: one row per pair."""

    video: np.ndarray  # (N, H) pooled video vectors
    text: np.ndarray  # (N, H) pooled text vectors
    frame_logits: list[np.ndarray]  # N arrays (k_i,): the selector's logits of each clip's frames


@torch.inference_mode()
def encode_pairs(
    model: VideoCLIP, dataset: PairClips, batch_size: int, device: torch.device
) -> Encoded:
    """Pooled vectors of every pair and the frame selector's logits over its own frames."""
    model.eval().to(device)
    videos, texts, logits = [], [], []
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
    return Encoded(np.concatenate(videos), np.concatenate(texts), logits)


@dataclass(frozen=True)
class Retrieval:
    metrics: dict[str, Any]
    ranks: np.ndarray  # (N,) tie-safe rank of each query's clip
    ranks_dual_softmax: np.ndarray  # (N,) the same after DualSoftmax re-ranking


def retrieval_report(scores: np.ndarray, temperature: float) -> Retrieval:
    """Metrics of a texts × clips score matrix (diagonal = truth), without and with DS."""
    targets = np.arange(len(scores))
    reranked = dual_softmax(scores, temperature)
    plain, rescored = ranks(scores, targets), ranks(reranked, targets)
    metrics = {
        "plain": retrieval_metrics(plain),
        "dual_softmax": retrieval_metrics(rescored),
        "mmpt": mmpt_retrieval_metrics(scores),
        "mmpt_dual_softmax": mmpt_retrieval_metrics(reranked),
        "dual_softmax_temperature": temperature,
    }
    return Retrieval(metrics, plain, rescored)


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


def run_evaluate(
    config: EvaluateConfig,
    variant: str,
    model_config: ModelConfig,
    finetune: Manifest,
    ingest: Manifest,
    extract: Manifest,
    artifacts: Path,
) -> Manifest:
    """Evaluate one fine-tuned variant on the `config.split` pairs of a dataset."""
    section = {**asdict(config), "variant": variant, "model": asdict(model_config)}
    for name in ("device", "batch_size"):
        section.pop(name)
    spec = StageSpec("evaluate", section, [finetune, ingest, extract], MODULES)

    def build(folder: Path) -> StageResult:
        tokenizer = load_tokenizer(model_config.bert)
        dataset = split_pairs(ingest, extract, config.split, tokenizer, model_config)
        if len(dataset) < 2:
            raise ValueError(f"evaluate: {len(dataset)} {config.split!r} pairs; need at least 2")
        model, _ = build_model(model_config)
        load_weights(finetune.output("weights"), model)
        encoded = encode_pairs(model, dataset, config.batch_size, resolve_device(config.device))
        scores = encoded.text.astype(np.float64) @ encoded.video.astype(np.float64).T  # (N, N)
        retrieval = retrieval_report(scores, config.dual_softmax_temperature)
        metrics = dict(retrieval.metrics)
        truth_path = Path(ingest.info["root"]) / GROUND_TRUTH_FILE
        truth = json.loads(truth_path.read_text()) if truth_path.is_file() else {}
        metrics |= {
            "variant": variant,
            "dataset": config.dataset,
            "split": config.split,
            "queries": len(dataset),
            "videos": len(dataset),
            "frame_precision": frame_precision(
                dataset, encoded.frame_logits, truth, config.precision_k
            ),
            "s3d_random_init": bool(extract.info.get("random_init")),
        }
        table = query_ranks_table(dataset.pair_ids, retrieval.ranks, retrieval.ranks_dual_softmax)
        write_table(table, folder / "ranks.parquet")
        write_frame_scores(folder / "frame_scores.h5", dataset, encoded.frame_logits)
        atomic_write_json(folder / "metrics.json", metrics)
        log.info("evaluate %s: %s", variant, metrics["plain"])
        outputs = {
            "metrics": "metrics.json",
            "ranks": "ranks.parquet",
            "frame_scores": "frame_scores.h5",
        }
        return StageResult(outputs=outputs, info={k: metrics[k] for k in ("plain", "variant")})

    return run_cached(artifacts, spec, build)
