"""Evaluate stage: one fine-tuned variant under its dataset's protocol (paper §4; videoclip-facts
§2.6). The protocol follows from the ingest manifest (`info["task"]`, `info["adapter"]`); the
protocols themselves are in pipeline/evaluation/protocols.py.

- retrieval: every test text is a query over the unique test clips (text→video, MSVD's
  multi-sentence, DiDeMo's paragraph→video), metrics tie-safe and in MMPT's recipe, each without
  and with DualSoftmax (`ranks.parquet`); DiDeMo adds the 21-moment ranking (`moments`).
- qa: answer-head accuracy over all questions, out-of-vocabulary answers wrong; mc: the video
  picks one of its candidate captions. Both write `predictions.parquet`.

For every protocol the frame selector scores each test pair's own frames against its text
(`frame_scores.h5`); on synthetic data those scores are checked against the seconds that truly
show the caption's concept (precision@k).

metrics.json keys: task, protocol, variant, dataset, split, queries, s3d_random_init,
frame_precision, and per task — retrieval: plain, dual_softmax, mmpt, mmpt_dual_softmax (null
unless every clip has one query), dual_softmax_temperature, videos, moments (DiDeMo only);
qa: accuracy, questions, out_of_vocabulary_share (0-1), answers; mc: accuracy, questions,
candidates.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd
import torch
from transformers import PreTrainedTokenizerBase

from models.frame_selector import frame_probabilities
from models.videoclip import VideoCLIP, attach_answer_head
from pipeline.config import TASKS, EvaluateConfig, ModelConfig
from pipeline.datasets import didemo
from pipeline.datasets.synthetic import GROUND_TRUTH_FILE
from pipeline.devices import resolve_device
from pipeline.evaluation.protocols import (
    Answered,
    answer_logits,
    candidate_list,
    evaluate_mc,
    evaluate_moments,
    evaluate_qa,
    evaluate_retrieval,
    read_answers,
)
from pipeline.evaluation.retrieval_metrics import frame_precision_at_k, query_ranks_table
from pipeline.stage import StageResult, StageSpec, run_cached
from pipeline.training.checkpoints import load_weights
from pipeline.training.data import PairClips, make_loader, split_pairs
from pipeline.training.model_factory import build_model, load_tokenizer
from storage.atomic import atomic_output, atomic_write_json
from storage.features import FeatureStore
from storage.layout import Manifest
from storage.tables import read_table, write_table

log = logging.getLogger(__name__)

MODULES = (
    "pipeline.evaluate",
    "pipeline.evaluation.protocols",
    "pipeline.evaluation.retrieval_metrics",
    "pipeline.evaluation.qa_metrics",
    "pipeline.datasets",
    "pipeline.training.data",
    "pipeline.training.model_factory",
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


def split_columns(ingest: Manifest, split: str, pair_ids: list[str]) -> pd.DataFrame:
    """The `split` rows of ingest's pairs table in the order of `pair_ids` (task columns too)."""
    pairs = read_table(ingest.output("pairs"))
    pairs = pairs[pairs.split == split].astype({"pair_id": str}).set_index("pair_id")
    if not pairs.index.is_unique:
        raise ValueError(f"{ingest.output('pairs')}: pair ids of split {split!r} are not unique")
    return pairs.loc[pair_ids]


def answer_task(
    model: VideoCLIP,
    tokenizer: PreTrainedTokenizerBase,
    dataset: PairClips,
    encoded: Encoded,
    rows: pd.DataFrame,  # the pairs table's rows of `dataset`, in its order
    vocabulary: list[str] | None,  # QA answers; None = multiple choice
    model_config: ModelConfig,
    config: EvaluateConfig,
    device: torch.device,
) -> Answered:
    """QA (with a vocabulary) or multiple choice over the encoded test pairs."""
    answer_index = np.asarray(dataset.answers, dtype=np.int64)
    if vocabulary is not None:
        logits = answer_logits(model, encoded.video, encoded.text, config.batch_size, device)
        if "answer" in rows.columns:
            truths = rows["answer"].astype(str).tolist()
        else:
            truths = [vocabulary[i] if i >= 0 else None for i in answer_index]
        return evaluate_qa(
            logits, answer_index, vocabulary, dataset.pair_ids, dataset.video_ids, truths
        )
    if "candidates" not in rows.columns:
        raise ValueError("evaluate: the mc pairs have no 'candidates' column")
    candidates = [candidate_list(value) for value in rows["candidates"]]
    return evaluate_mc(
        model, tokenizer, encoded.video, candidates, answer_index, dataset.pair_ids,
        dataset.video_ids, model_config.max_text_tokens, config.batch_size, device,
    )  # fmt: skip


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
    task, adapter = ingest.info.get("task", "retrieval"), str(ingest.info.get("adapter", ""))
    if task not in TASKS:
        raise ValueError(f"evaluate: task {task!r} of {ingest.path} is not one of {TASKS}")

    def build(folder: Path) -> StageResult:
        tokenizer = load_tokenizer(model_config.bert)
        dataset = split_pairs(ingest, extract, config.split, tokenizer, model_config)
        needed = 2 if task == "retrieval" else 1
        if len(dataset) < needed:
            raise ValueError(
                f"evaluate: {len(dataset)} {config.split!r} pairs; need at least {needed}"
            )
        model, _ = build_model(model_config)
        vocabulary = read_answers(ingest.output("task")) if task == "qa" else None
        if vocabulary is not None:  # the head first, so the fine-tuned weights load strictly
            attach_answer_head(model, len(vocabulary), model_config.answer_hidden)
        load_weights(finetune.output("weights"), model)
        device = resolve_device(config.device)
        encoded = encode_pairs(model, dataset, config.batch_size, device)
        metrics: dict[str, Any] = {"task": task}
        if task == "retrieval":
            spans = [dataset.clip_seconds(i) for i in range(len(dataset))]
            retrieval = evaluate_retrieval(
                encoded.video, encoded.text, dataset.video_ids, spans, adapter,
                config.dual_softmax_temperature,
            )  # fmt: skip
            metrics |= retrieval.metrics
            if adapter == "didemo":
                annotations = didemo.moment_annotations(
                    Path(ingest.info["annotation_dir"]), config.split
                )
                metrics["moments"] = evaluate_moments(
                    model, tokenizer, annotations, FeatureStore(extract.output("index")),
                    model_config.max_video_len, model_config.max_text_tokens,
                    config.batch_size, device,
                )  # fmt: skip
            table = query_ranks_table(
                dataset.pair_ids, retrieval.ranks, retrieval.ranks_dual_softmax
            )
            table_output = ("ranks", "ranks.parquet")
        else:
            rows = split_columns(ingest, config.split, dataset.pair_ids)
            answered = answer_task(
                model, tokenizer, dataset, encoded, rows, vocabulary, model_config, config, device
            )
            metrics |= answered.metrics
            table, table_output = answered.predictions, ("predictions", "predictions.parquet")
        truth_path = Path(ingest.info["root"]) / GROUND_TRUTH_FILE
        truth = json.loads(truth_path.read_text()) if truth_path.is_file() else {}
        metrics |= {
            "variant": variant,
            "dataset": config.dataset,
            "split": config.split,
            "queries": len(dataset),
            "dropped_pairs": dict(dataset.dropped),  # e.g. {"missing_features": 3}
            "frame_precision": frame_precision(
                dataset, encoded.frame_logits, truth, config.precision_k
            ),
            "s3d_random_init": bool(extract.info.get("random_init")),
        }
        write_table(table, folder / table_output[1])
        write_frame_scores(folder / "frame_scores.h5", dataset, encoded.frame_logits)
        atomic_write_json(folder / "metrics.json", metrics)
        headline = "plain" if task == "retrieval" else "accuracy"
        log.info("evaluate %s (%s): %s", variant, metrics["protocol"], metrics[headline])
        outputs = {
            "metrics": "metrics.json",
            table_output[0]: table_output[1],
            "frame_scores": "frame_scores.h5",
        }
        info = {key: metrics[key] for key in ("variant", "task", "protocol", headline)}
        return StageResult(outputs=outputs, info=info)

    return run_cached(artifacts, spec, build)
