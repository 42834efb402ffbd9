"""Pretrain stage: VideoCLIP's objective on a HowTo100M-format corpus (videoclip-facts §2.3).

Overlapped (video span, text span) clips are sampled around random centre captions; the loss is
the symmetric NCE over in-batch pairs. Batches hold clips of random videos, or with
`pretrain.batching: retrieval` VideoCLIP's groups of mutually near videos
(training/retrieval_batches.py). The checkpoint initialises fine-tuning.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

from pipeline.config import ModelConfig, PretrainConfig
from pipeline.stage import (
    ExtractInfo,
    IngestInfo,
    PretrainInfo,
    StageInputs,
    StageResult,
    run_cached,
)
from pipeline.training.data import HowToClips
from pipeline.training.fit import CHECKPOINTS, TRAINING_MODULES, fit, optim_section
from pipeline.training.launch import launched
from pipeline.training.model_factory import bert_files, build_model, load_tokenizer
from pipeline.training.objectives import pretrain_objective
from pipeline.training.retrieval_batches import RetrievalBatches
from storage.features import FeatureStore
from storage.layout import Manifest
from storage.tables import read_table

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class PretrainInputs(StageInputs):
    """A HowTo100M-format corpus (its ingest and extract manifests) and the training settings."""

    stage: ClassVar[str] = "pretrain"
    modules: ClassVar[tuple[str, ...]] = (
        "pipeline.pretrain",
        "pipeline.training.retrieval_batches",
        *TRAINING_MODULES,
    )
    info_type: ClassVar[type] = PretrainInfo

    config: PretrainConfig
    model: ModelConfig
    ingest: Manifest[IngestInfo]
    extract: Manifest[ExtractInfo]

    def section(self) -> dict[str, Any]:
        return {
            **asdict(self.config),
            "optim": optim_section(self.config.optim),
            "model": asdict(self.model),
        }

    def upstream(self) -> tuple[Manifest[Any], ...]:
        return (self.ingest, self.extract)

    def files(self) -> dict[str, Path]:
        return bert_files(self.model, self.artifacts)


def run_pretrain(inputs: PretrainInputs) -> Manifest[PretrainInfo]:
    """Pretrain the encoders on the corpus's training captions (in `optim.nproc` DDP processes:
    training/launch.py)."""
    return run_cached(inputs, launched(build_pretrain, inputs, inputs.config.optim))


def build_pretrain(inputs: PretrainInputs, folder: Path) -> StageResult[PretrainInfo]:
    """The stage's work into `folder` (every rank runs it under DDP; rank 0 writes)."""
    config, model_config = inputs.config, inputs.model
    pairs = read_table(inputs.ingest.output("pairs"))
    pairs = pairs[pairs.split == "train"]
    tokenizer = load_tokenizer(model_config.bert, inputs.artifacts)
    dataset = HowToClips(
        pairs,
        FeatureStore(inputs.extract.output("index")),
        tokenizer,
        config,
        model_config.max_video_len,
        model_config.max_text_tokens,
        seed=config.optim.seed,
    )
    if len(dataset) == 0:
        raise ValueError(f"pretrain: dataset {config.dataset!r} has no training clips")
    model, facts = build_model(model_config, inputs.artifacts)
    batches = None
    if config.batching == "retrieval":
        batches = RetrievalBatches(
            dataset,
            config.optim.batch_size,
            config.retrieval_candidates,
            config.optim.seed,
            folder / CHECKPOINTS / "retrieval",
            config.optim.num_workers,
        )
    fitted = fit(
        model,
        pretrain_objective(),
        dataset,
        config.optim,
        folder,
        epoch_order=batches.order if batches else None,
    )
    info = PretrainInfo(config.dataset, facts, "symmetric_nce", fitted.training)
    return StageResult(outputs=fitted.outputs, info=info)
