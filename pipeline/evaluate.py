"""Evaluate stage: one fine-tuned variant under its dataset's protocol (paper §4; videoclip-facts
§2.6). The protocol follows from the ingest manifest (`info.task`, `info.adapter`); the protocols
themselves are in pipeline/evaluation/. Declared input files: the dataset's ground-truth file
(synthetic sets) and DiDeMo's `<split>_data.json` (the 21 candidate moments).

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
unless every clip has one query), dual_softmax_temperature and dual_softmax_choice (how T was
chosen: on the fine-tuning run's validation pairs when it has them), videos, moments (DiDeMo);
qa: accuracy, questions, out_of_vocabulary_share (0-1), answers; mc: accuracy, questions,
candidates.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
from transformers import PreTrainedTokenizerBase

from models.videoclip import VideoCLIP, attach_answer_head
from pipeline.config import TASKS, EvaluateConfig, ModelConfig
from pipeline.datasets import didemo
from pipeline.datasets.synthetic import GROUND_TRUTH_FILE
from pipeline.devices import resolve_device
from pipeline.evaluation.frames import (
    Encoded,
    encode_pairs,
    frame_precision,
    write_frame_scores,
)
from pipeline.evaluation.protocols import (
    Answered,
    answer_logits,
    candidate_list,
    clip_targets,
    evaluate_mc,
    evaluate_moments,
    evaluate_qa,
    evaluate_retrieval,
    read_answers,
)
from pipeline.evaluation.retrieval_metrics import query_ranks_table
from pipeline.evaluation.validation import choose_temperature, pairs_by_id
from pipeline.stage import (
    EvaluateInfo,
    ExtractInfo,
    FinetuneInfo,
    IngestInfo,
    StageInputs,
    StageResult,
    run_cached,
)
from pipeline.training.checkpoints import load_weights
from pipeline.training.data import PairClips, split_pairs
from pipeline.training.model_factory import bert_files, build_model, load_tokenizer
from storage.atomic import atomic_write_json
from storage.features import FeatureStore
from storage.layout import Manifest
from storage.tables import read_table, write_table

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class EvaluateInputs(StageInputs):
    """One fine-tuned variant, the test dataset's manifests and the evaluation settings."""

    stage: ClassVar[str] = "evaluate"
    modules: ClassVar[tuple[str, ...]] = (
        "pipeline.evaluate",
        "pipeline.evaluation",
        "pipeline.datasets",
        "pipeline.training.batches",
        "pipeline.training.data",
        "pipeline.training.model_factory",
        "pipeline.training.checkpoints",
        "pipeline.devices",
        "models",
        "storage",
    )
    info_type: ClassVar[type] = EvaluateInfo

    variant: str
    config: EvaluateConfig
    model: ModelConfig
    finetune: Manifest[FinetuneInfo]
    ingest: Manifest[IngestInfo]
    extract: Manifest[ExtractInfo]

    def __post_init__(self) -> None:
        if self.ingest.info.task not in TASKS:
            raise ValueError(
                f"evaluate: task {self.ingest.info.task!r} of {self.ingest.path} is not one of "
                f"{TASKS}"
            )

    def section(self) -> dict[str, Any]:
        section = {**asdict(self.config), "variant": self.variant, "model": asdict(self.model)}
        for name in ("device", "batch_size"):  # where and in what chunks, not what
            section.pop(name)
        return section

    def upstream(self) -> tuple[Manifest[Any], ...]:
        return (self.finetune, self.ingest, self.extract)

    def files(self) -> dict[str, Path]:
        """The synthetic ground truth (absent for real data), DiDeMo's moment annotations and
        the BERT files the model is built from."""
        files = {"ground_truth": Path(self.ingest.info.root) / GROUND_TRUTH_FILE}
        if self.ingest.info.adapter == "didemo":
            folder = Path(self.ingest.info.annotation_dir)
            files["moments"] = didemo.data_path(folder, self.config.split)
        return {**files, **bert_files(self.model, self.artifacts)}


def split_columns(ingest: Manifest[IngestInfo], split: str, pair_ids: list[str]) -> pd.DataFrame:
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


def ds_temperature(
    inputs: EvaluateInputs,
    model: VideoCLIP,
    tokenizer: PreTrainedTokenizerBase,
    device: torch.device,
) -> tuple[float, dict[str, Any]]:
    """DualSoftmax's temperature: chosen on the fine-tuning run's validation pairs when it has
    them, else `evaluate.dual_softmax_temperature`; with how it was chosen."""
    config, finetune = inputs.config, inputs.finetune
    if "validation_pairs" not in finetune.outputs:
        fixed = "evaluate.dual_softmax_temperature, not tuned (no validation pairs)"
        return config.dual_softmax_temperature, {"chosen_on": fixed}
    if finetune.info.dataset != inputs.ingest.info.dataset:
        fixed = (
            "evaluate.dual_softmax_temperature, not tuned (the validation pairs are of "
            f"{finetune.info.dataset!r}, this evaluation of {inputs.ingest.info.dataset!r})"
        )
        return config.dual_softmax_temperature, {"chosen_on": fixed}
    pair_ids = read_table(finetune.output("validation_pairs"))["pair_id"].astype(str).tolist()
    held = pairs_by_id(inputs.ingest, inputs.extract, pair_ids, tokenizer, inputs.model)
    encoded = encode_pairs(model, held, config.batch_size, device)
    clips = clip_targets(held.video_ids, [held.clip_seconds(i) for i in range(len(held))])
    scores = encoded.text.astype(np.float64) @ encoded.video[clips.first].astype(np.float64).T
    temperature, r1 = choose_temperature(scores, clips.targets, config.dual_softmax_grid)
    chosen_on = f"validation R@1 over {len(held)} pairs of the fine-tuning run"
    log.info("DualSoftmax temperature %g (%s)", temperature, chosen_on)
    return temperature, {"chosen_on": chosen_on, "validation_r1": r1}


def run_evaluate(inputs: EvaluateInputs) -> Manifest[EvaluateInfo]:
    """Evaluate one fine-tuned variant on the `config.split` pairs of a dataset."""
    config, model_config, ingest, extract = (
        inputs.config,
        inputs.model,
        inputs.ingest,
        inputs.extract,
    )
    task, adapter = ingest.info.task, ingest.info.adapter

    def build(folder: Path) -> StageResult[EvaluateInfo]:
        tokenizer = load_tokenizer(model_config.bert, inputs.artifacts)
        dataset = split_pairs(ingest, extract, config.split, tokenizer, model_config)
        needed = 2 if task == "retrieval" else 1
        if len(dataset) < needed:
            raise ValueError(
                f"evaluate: {len(dataset)} {config.split!r} pairs; need at least {needed}"
            )
        model, _ = build_model(model_config, inputs.artifacts)
        vocabulary = read_answers(ingest.output("task")) if task == "qa" else None
        if vocabulary is not None:  # the head first, so the fine-tuned weights load strictly
            attach_answer_head(model, len(vocabulary), model_config.answer_hidden)
        load_weights(inputs.finetune.output("weights"), model)
        device = resolve_device(config.device)
        what = f"evaluate: {config.split} pairs encoded"
        encoded = encode_pairs(model, dataset, config.batch_size, device, progress_what=what)
        metrics: dict[str, Any] = {"task": task}
        if task == "retrieval":
            spans = [dataset.clip_seconds(i) for i in range(len(dataset))]
            temperature, choice = ds_temperature(inputs, model, tokenizer, device)
            retrieval = evaluate_retrieval(
                encoded.video, encoded.text, dataset.video_ids, spans, adapter, temperature
            )
            metrics |= retrieval.metrics | {"dual_softmax_choice": choice}
            if adapter == "didemo":
                annotations = didemo.moment_annotations(
                    Path(ingest.info.annotation_dir), config.split
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
        truth_path = inputs.files()["ground_truth"]
        truth = json.loads(truth_path.read_text()) if truth_path.is_file() else {}
        metrics |= {
            "variant": inputs.variant,
            "dataset": ingest.info.dataset,
            "split": config.split,
            "queries": len(dataset),
            "dropped_pairs": dict(dataset.dropped),  # e.g. {"missing_features": 3}
            "frame_precision": frame_precision(
                dataset, encoded.frame_logits, truth, config.precision_k
            ),
            "s3d_random_init": extract.info.random_init,
        }
        write_table(table, folder / table_output[1])
        write_frame_scores(folder / "frame_scores.h5", dataset, encoded.frame_logits)
        atomic_write_json(folder / "metrics.json", metrics)
        headline = "plain" if task == "retrieval" else "accuracy"
        log.info("evaluate %s (%s): %s", inputs.variant, metrics["protocol"], metrics[headline])
        outputs = {
            "metrics": "metrics.json",
            table_output[0]: table_output[1],
            "frame_scores": "frame_scores.h5",
        }
        info = EvaluateInfo(
            variant=inputs.variant,
            task=task,
            protocol=metrics["protocol"],
            plain=metrics.get("plain"),
            accuracy=metrics.get("accuracy"),
        )
        return StageResult(outputs=outputs, info=info)

    return run_cached(inputs, build)
