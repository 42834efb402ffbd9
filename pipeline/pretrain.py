"""Pretrain stage: VideoCLIP's objective on a HowTo100M-format corpus (videoclip-facts §2.3).

Overlapped (video span, text span) clips are sampled around random centre captions; the loss is
the symmetric NCE over in-batch pairs. The checkpoint initialises fine-tuning.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path

from pipeline.config import ModelConfig, PretrainConfig
from pipeline.stage import StageResult, StageSpec, run_cached
from pipeline.training.data import HowToClips
from pipeline.training.fit import TRAINING_MODULES, fit, optim_section
from pipeline.training.model_factory import build_model, load_tokenizer
from pipeline.training.objectives import pretrain_objective
from storage.features import FeatureStore
from storage.layout import Manifest
from storage.tables import read_table

log = logging.getLogger(__name__)

MODULES = ("pipeline.pretrain", *TRAINING_MODULES)


def run_pretrain(
    config: PretrainConfig,
    model_config: ModelConfig,
    ingest: Manifest,
    extract: Manifest,
    artifacts: Path,
) -> Manifest:
    """Pretrain the encoders on the corpus ingested as `ingest` with features `extract`."""
    section = {
        **asdict(config),
        "optim": optim_section(config.optim),
        "model": asdict(model_config),
    }
    spec = StageSpec("pretrain", section, [ingest, extract], MODULES)

    def build(folder: Path) -> StageResult:
        pairs = read_table(ingest.output("pairs"))
        pairs = pairs[pairs.split == "train"]
        tokenizer = load_tokenizer(model_config.bert)
        dataset = HowToClips(
            pairs,
            FeatureStore(extract.output("index")),
            tokenizer,
            config,
            model_config.max_video_len,
            model_config.max_text_tokens,
            seed=config.optim.seed,
        )
        if len(dataset) == 0:
            raise ValueError(f"pretrain: dataset {config.dataset!r} has no training clips")
        model, facts = build_model(model_config)
        info = {"dataset": config.dataset, "model": facts, "objective": "symmetric_nce"}
        return fit(model, pretrain_objective(), dataset, config.optim, folder, info)

    return run_cached(artifacts, spec, build)
