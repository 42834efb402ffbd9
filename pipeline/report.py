"""Report stage: report.md with the paper-style tables, training curves and frame strips.

Its inputs are the manifests of a run: per evaluated variant its finetune and evaluate stages,
the pretrain stage (when the run pretrained) and the evaluated dataset's front end, plus one
declared input file, the dataset's ground truth (synthetic sets only: the selector's precision and
the framed seconds of the strips). The document itself is written by pipeline/reporting/.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

from pipeline.config import ReportConfig
from pipeline.datasets.synthetic import GROUND_TRUTH_FILE
from pipeline.reporting.document import ReportSources, RunSources, write_report
from pipeline.stage import (
    DecodeInfo,
    EvaluateInfo,
    ExtractInfo,
    FinetuneInfo,
    IngestInfo,
    PretrainInfo,
    ReportInfo,
    StageInputs,
    StageResult,
    run_cached,
)
from storage.layout import Manifest

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvaluatedVariant:
    """One fine-tuned and evaluated variant of the run."""

    variant: str
    finetune: Manifest[FinetuneInfo]
    evaluate: Manifest[EvaluateInfo]


@dataclass(frozen=True, kw_only=True)
class ReportInputs(StageInputs):
    """Everything the report shows: the variants, the pretraining log and the test set."""

    stage: ClassVar[str] = "report"
    modules: ClassVar[tuple[str, ...]] = ("pipeline.report", "pipeline.reporting", "storage")
    info_type: ClassVar[type] = ReportInfo

    config_name: str  # the run's config, named in the title
    config: ReportConfig
    runs: tuple[EvaluatedVariant, ...]
    pretrain: Manifest[PretrainInfo] | None
    dataset: str  # the evaluated dataset and split
    split: str
    ingest: Manifest[IngestInfo]
    decode: Manifest[DecodeInfo] | None  # None: the dataset came as features, no frames
    extract: Manifest[ExtractInfo]

    def __post_init__(self) -> None:
        if not self.runs:
            raise ValueError("report: no evaluated variant to report on (run evaluate first)")

    def section(self) -> dict[str, Any]:
        return {"config": self.config_name, **asdict(self.config)}

    def upstream(self) -> tuple[Manifest[Any], ...]:
        runs = [manifest for run in self.runs for manifest in (run.finetune, run.evaluate)]
        pretrain = [self.pretrain] if self.pretrain is not None else []
        decode = [self.decode] if self.decode is not None else []
        return (*runs, self.ingest, *decode, self.extract, *pretrain)

    def files(self) -> dict[str, Path]:
        return {"ground_truth": Path(self.ingest.info.root) / GROUND_TRUTH_FILE}


def report_sources(inputs: ReportInputs) -> ReportSources:
    """The files the report document reads, from the run's manifests."""
    runs = []
    for run in inputs.runs:
        selection = run.finetune.info.training.selection
        runs.append(
            RunSources(
                variant=run.variant,
                metrics_json=run.evaluate.output("metrics"),
                frame_scores_h5=run.evaluate.output("frame_scores"),
                train_metrics=run.finetune.output("metrics"),
                fineco=dict(run.finetune.info.fineco),
                epochs=run.finetune.output("epochs") if "epochs" in run.finetune.outputs else None,
                selection=asdict(selection) if selection else None,
            )
        )
    truth = inputs.files()["ground_truth"]
    return ReportSources(
        config_name=inputs.config_name,
        runs=runs,
        pretrain_metrics=inputs.pretrain.output("metrics") if inputs.pretrain else None,
        decode_table=inputs.decode.output("decode") if inputs.decode else None,
        decode_folder=Path(inputs.decode.path) if inputs.decode else None,
        ground_truth=truth if truth.is_file() else None,
        s3d_random_init=inputs.extract.info.random_init,
        features_imported=inputs.extract.info.imported,
        dataset=inputs.dataset,
        split=inputs.split,
        pairs_table=inputs.ingest.output("pairs"),
        adapter=inputs.ingest.info.adapter,
        task=inputs.ingest.info.task,
    )


def run_report(inputs: ReportInputs) -> Manifest[ReportInfo]:
    """Write the report of a run whose evaluate stages are done (cached like every stage)."""

    def build(folder: Path) -> StageResult[ReportInfo]:
        written = write_report(report_sources(inputs), inputs.config, folder)
        outputs = {"report": "report.md"} | {name: name for name in written if name != "report.md"}
        log.info("report: %s", folder / "report.md")
        return StageResult(outputs=outputs, info=ReportInfo(figures=len(written) - 1))

    return run_cached(inputs, build)
