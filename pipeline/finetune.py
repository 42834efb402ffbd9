"""Finetune stage: text→video retrieval (or multiple choice) with FineCo or the baseline.

Two variants share every setting but the frame-level loss: `fineco` (L = weight · L1 + L2) and
`baseline` (L2 only = VideoCLIP). Both start from the pretrain checkpoint when
`finetune.from_pretrain` is set (paper §3.4, §4.2).
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path

from pipeline.bert import build_model, load_tokenizer
from pipeline.config import FinetuneConfig, ModelConfig
from pipeline.fit import TRAINING_MODULES, fit, optim_section
from pipeline.objectives import finetune_objective
from pipeline.stage import StageResult, StageSpec, run_cached
from pipeline.training_data import split_pairs
from pipeline.variants import variant_config
from storage.checkpoints import load_weights
from storage.layout import Manifest

log = logging.getLogger(__name__)

MODULES = ("pipeline.finetune", *TRAINING_MODULES)


def run_finetune(
    config: FinetuneConfig,
    variant: str,
    model_config: ModelConfig,
    ingest: Manifest,
    extract: Manifest,
    pretrain: Manifest | None,
    artifacts: Path,
) -> Manifest:
    """Fine-tune one variant on the `config.split` pairs of the ingested dataset."""
    settings = variant_config(config, variant)
    section = {**asdict(settings), "optim": optim_section(settings.optim)}
    for name in ("baseline", "sweep"):  # which variants run is the runner's business
        section.pop(name)
    section["model"] = asdict(model_config)
    if settings.from_pretrain and pretrain is None:
        raise ValueError("finetune.from_pretrain is set but no pretrain manifest was given")
    upstream = [ingest, extract] + ([pretrain] if settings.from_pretrain and pretrain else [])
    spec = StageSpec("finetune", section, upstream, MODULES)

    def build(folder: Path) -> StageResult:
        tokenizer = load_tokenizer(model_config.bert)
        dataset = split_pairs(ingest, extract, settings.split, tokenizer, model_config)
        if len(dataset) == 0:
            raise ValueError(
                f"finetune: no {settings.split!r} pairs with features in {settings.dataset!r}"
            )
        model, facts = build_model(model_config)
        start = "bert"
        if settings.from_pretrain and pretrain is not None:
            load_weights(pretrain.output("weights"), model)
            start = pretrain.path
        info = {
            "dataset": settings.dataset,
            "variant": variant,
            "model": facts,
            "started_from": start,
            "fineco": asdict(settings.fineco),
            "objective": settings.objective,
            "dropped_pairs": dict(dataset.dropped),
        }
        return fit(model, finetune_objective(settings), dataset, settings.optim, folder, info)

    return run_cached(artifacts, spec, build)
