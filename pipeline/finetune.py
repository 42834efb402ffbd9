"""Finetune stage: text→video retrieval, multiple choice or open-ended QA, FineCo or the baseline.

Two variants share every setting but the frame-level loss: `fineco` (L = weight · L1 + L2) and
`baseline` (L2 only = VideoCLIP); sweep points are more FineCo variants. The task is the
ingested dataset's (`ingest.info.task`): retrieval and mc train with the contrastive L2
`finetune.objective` names, qa with the answer head's cross-entropy over the ingest stage's
answer vocabulary (`task.json`).

Start weights, one of: the BERT initialisation (`build_model`); the pretrain stage's checkpoint
when `finetune.from_pretrain` is set (paper §3.4, §4.2); or a released VideoCLIP
`checkpoint_best.pt` named by `finetune.init_checkpoint` (`{artifacts}` expands), a declared
input file: replacing its content retrains. The QA answer head is attached after the start
weights are loaded, so those load strictly and the head is always freshly initialised.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd

from models.videoclip import VideoCLIP, attach_answer_head
from pipeline.config import FinetuneConfig, ModelConfig
from pipeline.datasets.synthetic import GROUND_TRUTH_FILE
from pipeline.devices import resolve_device
from pipeline.evaluation.validation import Sides, Validator, training_sides
from pipeline.stage import (
    ExtractInfo,
    FinetuneInfo,
    IngestInfo,
    PretrainInfo,
    StageInputs,
    StageResult,
    run_cached,
)
from pipeline.training.checkpoints import load_weights
from pipeline.training.ddp import is_main
from pipeline.training.fit import TRAINING_MODULES, Validation, fit, optim_section
from pipeline.training.launch import launched
from pipeline.training.model_factory import bert_files, build_model, load_tokenizer
from pipeline.training.objectives import finetune_objective
from pipeline.training.warm_start import WarmStartReport, load_videoclip_checkpoint
from storage.layout import Manifest, expand_path
from storage.tables import write_table

log = logging.getLogger(__name__)

_KEYS_SHOWN = 10  # unexpected checkpoint keys listed in the manifest
VALIDATION_PAIRS = "validation_pairs.parquet"  # pair_id of each validation pair


@dataclass(frozen=True, kw_only=True)
class FinetuneInputs(StageInputs):
    """One variant's resolved settings, the dataset's manifests and the starting point.

    `config` is the variant's own section (`training.variants.variant_settings`); a released
    VideoCLIP checkpoint named by `config.init_checkpoint` is a declared input file.
    """

    stage: ClassVar[str] = "finetune"
    modules: ClassVar[tuple[str, ...]] = (
        "pipeline.finetune",
        "pipeline.training.warm_start",
        "pipeline.evaluation.validation",
        "pipeline.evaluation.frames",
        "pipeline.evaluation.protocols",
        "pipeline.evaluation.retrieval_metrics",
        *TRAINING_MODULES,
    )
    info_type: ClassVar[type] = FinetuneInfo

    variant: str
    config: FinetuneConfig
    model: ModelConfig
    ingest: Manifest[IngestInfo]
    extract: Manifest[ExtractInfo]
    pretrain: Manifest[PretrainInfo] | None = None

    def __post_init__(self) -> None:
        if self.config.from_pretrain and self.pretrain is None:
            raise ValueError("finetune.from_pretrain is set but no pretrain manifest was given")

    def section(self) -> dict[str, Any]:
        section = {**asdict(self.config), "optim": optim_section(self.config.optim)}
        for name in ("baseline", "sweep"):  # which variants run is the runner's business
            section.pop(name)
        return {**section, "model": asdict(self.model)}

    def upstream(self) -> tuple[Manifest[Any], ...]:
        start = (self.pretrain,) if self.config.from_pretrain and self.pretrain else ()
        return (self.ingest, self.extract, *start)

    def files(self) -> dict[str, Path]:
        """A VideoCLIP checkpoint, the BERT files and, when validating, the synthetic ground
        truth (absent for real data) that the selector's precision is checked against."""
        path = init_checkpoint_path(self.config, self.artifacts)
        start = {"init_checkpoint": path} if path is not None else {}
        files = {**start, **bert_files(self.model, self.artifacts)}
        validation = self.config.validation
        if validation.holdout_share or validation.split:
            files["ground_truth"] = Path(self.ingest.info.root) / GROUND_TRUTH_FILE
        return files


def run_finetune(inputs: FinetuneInputs) -> Manifest[FinetuneInfo]:
    """Fine-tune one variant on the `config.split` pairs of the ingested dataset (in
    `optim.nproc` DDP processes: training/launch.py)."""
    return run_cached(inputs, launched(build_finetune, inputs, inputs.config.optim))


def build_finetune(inputs: FinetuneInputs, folder: Path) -> StageResult[FinetuneInfo]:
    """The stage's work into `folder` (every rank runs it under DDP; rank 0 writes)."""
    settings, model_config, ingest = inputs.config, inputs.model, inputs.ingest
    task = ingest.info.task
    init_path = init_checkpoint_path(settings, inputs.artifacts)
    tokenizer = load_tokenizer(model_config.bert, inputs.artifacts)
    sides = training_sides(
        ingest, inputs.extract, settings.split, settings.validation, tokenizer, model_config
    )
    dataset = sides.train
    if len(dataset) == 0:
        raise ValueError(
            f"finetune: no {settings.split!r} pairs with features in {settings.dataset!r}"
        )
    model, facts = build_model(model_config, inputs.artifacts)
    started_from, warm_start = _load_start(model, inputs, init_path)
    answers = coverage = None
    if task == "qa":  # only now: start weights have no answer head
        answers, coverage = _attach_answer_head(model, ingest, model_config)
    objective = finetune_objective(settings, task)
    scales = {"frame_selector.": settings.fineco.selector_lr_scale}
    validation = _validation(inputs, sides)
    fitted = fit(
        model,
        objective,
        dataset,
        settings.optim,
        folder,
        scales,
        validation,
        contrastive=task != "qa",  # QA's answer cross-entropy needs no negatives
    )
    outputs = dict(fitted.outputs)
    if sides.validation is not None:  # evaluate chooses the DualSoftmax temperature on them
        if is_main():
            held = pd.DataFrame({"pair_id": sides.validation.pair_ids})
            write_table(held, folder / VALIDATION_PAIRS)
        outputs["validation_pairs"] = VALIDATION_PAIRS
    info = FinetuneInfo(
        dataset=settings.dataset,
        variant=inputs.variant,
        task=task,
        model=facts,
        started_from=started_from,
        fineco=asdict(settings.fineco),
        objective="answer_cross_entropy" if task == "qa" else settings.objective,
        dropped_pairs=dict(dataset.dropped),
        training=fitted.training,
        warm_start=warm_start,
        answers=answers,
        answer_coverage=coverage,
    )
    return StageResult(outputs=outputs, info=info)


def _validation(inputs: FinetuneInputs, sides: Sides) -> Validation | None:
    """The epoch hook of `finetune.validation`, or None without it: retrieval R@1 (retrieval,
    and multiple choice on held-out training videos) or answer accuracy (QA) per epoch."""
    config, task = inputs.config.validation, inputs.ingest.info.task
    if config.split and config.split == inputs.config.split:
        raise ValueError(
            f"finetune.validation.split = {config.split!r} is finetune.split: validating on "
            "the pairs trained on selects nothing; name another split or use holdout_share"
        )
    if sides.validation is None:
        if config.holdout_share or config.split:
            raise ValueError(
                f"finetune.validation: no validation pairs in {inputs.config.dataset!r} "
                f"(holdout_share={config.holdout_share}, split={config.split!r})"
            )
        return None
    if task == "mc" and config.split:
        raise ValueError(
            f"finetune.validation.split = {config.split!r}: a multiple-choice dataset trains on "
            "retrieval pairs and its other split is the choice test; validate on held-out "
            "training videos instead (finetune.validation.holdout_share, split='')"
        )
    if len(sides.validation) == 0:
        raise ValueError(f"finetune.validation: {sides.source} have no pairs with features")
    truth_path = inputs.files()["ground_truth"]
    truth = json.loads(truth_path.read_text()) if truth_path.is_file() else {}
    device = resolve_device(inputs.config.optim.device)
    validate = Validator(
        sides.validation, truth, config.precision_k, config.batch_size, device, task=task
    )
    criterion = "accuracy" if task == "qa" else "r1"
    return Validation(validate, config.select, sides.source, len(sides.validation), criterion)


def _load_start(
    model: VideoCLIP, inputs: FinetuneInputs, init_path: Path | None
) -> tuple[str, dict[str, Any] | None]:
    """Load the starting weights: where they came from, and what a VideoCLIP file gave."""
    if inputs.config.from_pretrain and inputs.pretrain is not None:
        # Pretraining never trains the selector (its loss does not use it): fine-tuning starts it
        # from its own seeded init, which may have another shape (model.selector_interaction).
        load_weights(inputs.pretrain.output("weights"), model, keep="frame_selector.")
        return inputs.pretrain.path, None
    if init_path is None:
        return "bert", None
    report = load_videoclip_checkpoint(init_path, model)
    log.info(
        "finetune: %d tensors from %s (%d unexpected keys left out)",
        report.loaded,
        init_path,
        len(report.unexpected),
    )
    return str(init_path), warm_start_summary(report)


def _attach_answer_head(
    model: VideoCLIP, ingest: Manifest[IngestInfo], model_config: ModelConfig
) -> tuple[int, dict[str, float | None]]:
    """The QA head over ingest's answer vocabulary; its size and the answers' coverage."""
    facts_of_task = read_task_facts(ingest)
    answers = facts_of_task.get("answers")
    if not isinstance(answers, list) or not answers:
        raise ValueError(
            f"finetune: task 'qa' but {ingest.output('task')} has no answer vocabulary "
            f"(key 'answers')"
        )
    attach_answer_head(model, len(answers), model_config.answer_hidden)
    coverage = {split: facts_of_task.get(f"{split}_coverage") for split in ("train", "test")}
    return len(answers), coverage


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


def read_task_facts(ingest: Manifest[IngestInfo]) -> dict[str, Any]:
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
