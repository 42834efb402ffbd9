"""Finetune stage: text→video retrieval, multiple choice or open-ended QA, FineCo or the baseline.

Two variants share every setting but the frame-level loss: `fineco` (L = weight · L1 + L2) and
`baseline` (L2 only = VideoCLIP). The task is the ingested dataset's (`ingest.info["task"]`,
"retrieval" when absent): retrieval and mc train with the contrastive L2 `finetune.objective`
names, qa with the answer head's cross-entropy over the ingest stage's answer vocabulary
(`task.json`).

Start weights, one of: the BERT initialisation (`build_model`); the pretrain stage's checkpoint
when `finetune.from_pretrain` is set (paper §3.4, §4.2); or a released VideoCLIP
`checkpoint_best.pt` named by `finetune.init_checkpoint` (`{artifacts}` expands), whose content
digest is part of the cache key. The QA answer head is attached after the start weights are
loaded, so those load strictly and the head is always freshly initialised.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

from models.videoclip import attach_answer_head
from pipeline.config import FinetuneConfig, ModelConfig
from pipeline.stage import StageResult, StageSpec, run_cached
from pipeline.training.checkpoints import load_weights
from pipeline.training.data import split_pairs
from pipeline.training.fit import TRAINING_MODULES, fit, optim_section
from pipeline.training.model_factory import build_model, load_tokenizer
from pipeline.training.objectives import finetune_objective
from pipeline.training.variants import variant_config
from pipeline.training.warm_start import WarmStartReport, load_videoclip_checkpoint
from storage.digests import file_digest
from storage.layout import Manifest, expand_path

log = logging.getLogger(__name__)

MODULES = ("pipeline.finetune", "pipeline.training.warm_start", *TRAINING_MODULES)
_KEYS_SHOWN = 10  # unexpected checkpoint keys listed in the manifest


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
    task = str(ingest.info.get("task", "retrieval"))
    section = {**asdict(settings), "optim": optim_section(settings.optim)}
    for name in ("baseline", "sweep"):  # which variants run is the runner's business
        section.pop(name)
    section["model"] = asdict(model_config)
    if settings.from_pretrain and pretrain is None:
        raise ValueError("finetune.from_pretrain is set but no pretrain manifest was given")
    init_path = init_checkpoint_path(settings, artifacts)
    if init_path is not None:  # replacing the file's content retrains
        section["init_checkpoint_digest"] = file_digest(init_path)
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
        info: dict[str, Any] = {}
        if settings.from_pretrain and pretrain is not None:
            load_weights(pretrain.output("weights"), model)
            start = pretrain.path
        elif init_path is not None:
            report = load_videoclip_checkpoint(init_path, model)
            start = str(init_path)
            info["warm_start"] = warm_start_summary(report)
            log.info(
                "finetune: %d tensors from %s (%d unexpected keys left out)",
                report.loaded,
                init_path,
                len(report.unexpected),
            )
        if task == "qa":  # only now: start weights have no answer head
            facts_of_task = read_task_facts(ingest)
            answers = facts_of_task.get("answers")
            if not isinstance(answers, list) or not answers:
                raise ValueError(
                    f"finetune: task 'qa' but {ingest.output('task')} has no answer vocabulary "
                    f"(key 'answers')"
                )
            attach_answer_head(model, len(answers), model_config.answer_hidden)
            info["answers"] = len(answers)
            info["answer_coverage"] = {
                split: facts_of_task.get(f"{split}_coverage") for split in ("train", "test")
            }
        info = {
            "dataset": settings.dataset,
            "variant": variant,
            "task": task,
            "model": facts,
            "started_from": start,
            "fineco": asdict(settings.fineco),
            "objective": "answer_cross_entropy" if task == "qa" else settings.objective,
            "dropped_pairs": dict(dataset.dropped),
            **info,
        }
        objective = finetune_objective(settings, task)
        return fit(model, objective, dataset, settings.optim, folder, info)

    return run_cached(artifacts, spec, build)


def init_checkpoint_path(config: FinetuneConfig, artifacts: Path) -> Path | None:
    """The released VideoCLIP checkpoint to start from, or None; a missing file is an error."""
    if not config.init_checkpoint:
        return None
    path = expand_path(config.init_checkpoint, artifacts)
    if not path.is_file():
        raise FileNotFoundError(
            f"finetune.init_checkpoint = {config.init_checkpoint!r}: {path} does not exist or "
            f"is not a file (a released VideoCLIP checkpoint_best.pt)"
        )
    return path


def read_task_facts(ingest: Manifest) -> dict[str, Any]:
    """The ingest stage's `task.json` (e.g. the QA answer vocabulary)."""
    path = ingest.output("task")
    facts = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(facts, dict):
        raise ValueError(f"{path}: expected a JSON object of task facts")
    return facts


def warm_start_summary(report: WarmStartReport) -> dict[str, Any]:
    """What `load_videoclip_checkpoint` did, for the manifest (key lists shortened)."""
    return {
        "source": report.source,
        "loaded": report.loaded,
        "missing": len(report.missing),  # FineCo's frame selector, not in VideoCLIP's file
        "unexpected": len(report.unexpected),
        "unexpected_keys": list(report.unexpected[:_KEYS_SHOWN]),
    }
