"""Run pipeline stages in order for a config, without Prefect.

The runner is the one place that wires stages: for each stage call it builds the stage's typed
inputs (its config section, the manifests of the stages it reads, the artifact root) and hands
the stage function and those inputs to an executor, by default a direct call. Each stage is
cached by its DESIGN.md §3 key, so asking for a later stage resolves its upstream from cache (or
runs it, if it never completed) and a second run does no work. Results are grouped: one group
per dataset (ingest, decode, extract), then `pretrain`, one group per fine-tuned variant
(`fineco`, `baseline`, sweep points: finetune, evaluate) and `report`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from pipeline.config import STAGES, Config, ConfigError
from pipeline.decode import DecodeInputs, run_decode
from pipeline.extract import ExtractInputs, run_extract
from pipeline.feature_import import ImportInputs, run_import
from pipeline.ingest import IngestInputs, run_ingest
from pipeline.stage import StageInputs, read_stage_manifest
from storage.layout import Manifest, stage_dir

log = logging.getLogger(__name__)

StageFunction = Callable[[Any], Manifest[Any]]  # run_<stage>(inputs) -> its manifest


class Executor(Protocol):
    """How a stage call is carried out: directly (default) or, e.g., as a Prefect task."""

    def __call__(self, label: str, function: StageFunction, inputs: StageInputs) -> Manifest: ...


def call_directly(label: str, function: StageFunction, inputs: StageInputs) -> Manifest:
    return function(inputs)


FRONT_END = STAGES[:3]
Results = dict[str, dict[str, Manifest]]  # group (dataset, variant, ...) → stage → manifest


def run_stages(
    config: Config, stages: Sequence[str], artifacts: Path, execute: Executor = call_directly
) -> Results:
    """Run `stages` (and whatever upstream they need); manifests by group and stage."""
    if not config.datasets:
        raise ConfigError(f"config {config.name!r} names no datasets")
    last = max(STAGES.index(stage) for stage in stages)
    check_weight_files(config, last, artifacts)
    results: Results = {}
    for name in _front_end_datasets(config, last):
        results[name] = run_front_end(config, name, STAGES[min(last, 2)], artifacts, execute)
    if last >= STAGES.index("pretrain"):
        _run_learning(config, STAGES[last], artifacts, results, execute)
    return results


def check_weight_files(config: Config, last: int, artifacts: Path) -> None:
    """Fail before any work when a weight file the requested stages need is missing, rather
    than after hours of decoding and extraction (each error names its config key)."""
    # Imported here, as the learning stages below: `fineco run --stages ingest` and every flow
    # start need not load transformers and matplotlib.
    from pipeline.finetune import init_checkpoint_path
    from pipeline.training.model_factory import resolve_bert
    from pipeline.video.backbone import weights_path

    if last >= STAGES.index("extract") and config.extract.weights:
        weights_path(config.extract, artifacts)
    if last >= STAGES.index("pretrain"):
        resolve_bert(config.model.bert, artifacts, need_weights=not config.model.random_init)
    if last >= STAGES.index("finetune"):
        init_checkpoint_path(config.finetune, artifacts)


def planned_calls(config: Config, stages: Sequence[str]) -> int:
    """How many stage calls `run_stages(config, stages, ...)` makes (for progress bars)."""
    from pipeline.training.variants import variant_settings

    last = max(STAGES.index(stage) for stage in stages)
    calls = sum(
        min(last, 2) + 1 - (1 if last >= 1 and config.datasets[name].features else 0)
        for name in _front_end_datasets(config, last)
    )
    if last >= STAGES.index("pretrain") and (config.finetune.from_pretrain or last == 3):
        calls += 1
    if last >= STAGES.index("finetune"):
        calls += len(variant_settings(config.finetune)) * (1 if last == 4 else 2)
    return calls + (1 if last == STAGES.index("report") else 0)


def run_front_end(
    config: Config, name: str, last: str, artifacts: Path, execute: Executor = call_directly
) -> dict[str, Manifest]:
    """ingest → decode → extract of one dataset, up to `last`; a dataset of pre-extracted
    features has no decode, and its extract imports the feature files."""
    ingest = IngestInputs(artifacts=artifacts, dataset=name, config=config.datasets[name])
    manifests = {"ingest": execute(name, run_ingest, ingest)}
    if config.datasets[name].features:
        if last == "extract":
            imported = ImportInputs(artifacts=artifacts, dataset=name, ingest=manifests["ingest"])
            manifests["extract"] = execute(name, run_import, imported)
        return manifests
    if last in ("decode", "extract"):
        decode = DecodeInputs(
            artifacts=artifacts, dataset=name, ingest=manifests["ingest"], config=config.decode
        )
        manifests["decode"] = execute(name, run_decode, decode)
    if last == "extract":
        extract = ExtractInputs(
            artifacts=artifacts, dataset=name, decode=manifests["decode"], config=config.extract
        )
        manifests["extract"] = execute(name, run_extract, extract)
    return manifests


def built_extract_inputs(config: Config, name: str, artifacts: Path) -> ExtractInputs:
    """The extract stage's inputs for dataset `name` from its built ingest and decode; builds
    nothing (a worker embedding one shard must find what the submitting stage found)."""
    ingest = IngestInputs(artifacts=artifacts, dataset=name, config=config.datasets[name])
    decode = DecodeInputs(
        artifacts=artifacts, dataset=name, ingest=_built(ingest, name), config=config.decode
    )
    return ExtractInputs(
        artifacts=artifacts, dataset=name, decode=_built(decode, name), config=config.extract
    )


def _built(inputs: StageInputs, name: str) -> Manifest:
    manifest = read_stage_manifest(
        stage_dir(inputs.artifacts, inputs.stage, inputs.key), inputs.info_type
    )
    if manifest is None:
        raise ConfigError(
            f"{inputs.stage} of {name} is not built under {inputs.artifacts} (key {inputs.key}): "
            "this process runs other code or config than the run that needs it, or another "
            "artifact root"
        )
    return manifest


def _front_end_datasets(config: Config, last: int) -> list[str]:
    """Every dataset for the front-end stages alone; those the learning stages use otherwise."""
    if last < STAGES.index("pretrain"):
        return list(config.datasets)
    used = {config.finetune.dataset, config.evaluate.dataset}
    if config.finetune.from_pretrain:
        used.add(config.pretrain.dataset)
    for section in ("pretrain", "finetune", "evaluate"):
        dataset = getattr(config, section).dataset
        if dataset in used and dataset not in config.datasets:
            known = ", ".join(config.datasets)
            raise ConfigError(f"{section}.dataset={dataset!r} is not in datasets ({known})")
    return [name for name in config.datasets if name in used]


def _run_learning(
    config: Config, last: str, artifacts: Path, results: Results, execute: Executor
) -> None:
    """pretrain → finetune (each variant) → evaluate (each variant) → report, up to `last`."""
    from pipeline.evaluate import EvaluateInputs, run_evaluate
    from pipeline.finetune import FinetuneInputs, run_finetune
    from pipeline.pretrain import PretrainInputs, run_pretrain
    from pipeline.report import EvaluatedVariant, ReportInputs, run_report
    from pipeline.training.variants import variant_settings

    pretrain = None
    if config.finetune.from_pretrain or last == "pretrain":
        source = results[config.pretrain.dataset]
        inputs = PretrainInputs(
            artifacts=artifacts,
            config=config.pretrain,
            model=config.model,
            ingest=source["ingest"],
            extract=source["extract"],
        )
        pretrain = execute(config.pretrain.dataset, run_pretrain, inputs)
        results["pretrain"] = {"pretrain": pretrain}
    if last == "pretrain":
        return
    train_set, test_set = results[config.finetune.dataset], results[config.evaluate.dataset]
    evaluated = []
    for variant, settings in variant_settings(config.finetune).items():
        tuning = FinetuneInputs(
            artifacts=artifacts,
            variant=variant,
            config=settings,
            model=config.model,
            ingest=train_set["ingest"],
            extract=train_set["extract"],
            pretrain=pretrain,
        )
        finetune = execute(variant, run_finetune, tuning)
        results[variant] = {"finetune": finetune}
        if last == "finetune":
            continue
        scoring = EvaluateInputs(
            artifacts=artifacts,
            variant=variant,
            config=config.evaluate,
            model=config.model,
            finetune=finetune,
            ingest=test_set["ingest"],
            extract=test_set["extract"],
        )
        results[variant]["evaluate"] = execute(variant, run_evaluate, scoring)
        evaluated.append(EvaluatedVariant(variant, finetune, results[variant]["evaluate"]))
    if last == "report":
        inputs = ReportInputs(
            artifacts=artifacts,
            config_name=config.name,
            config=config.report,
            runs=tuple(evaluated),
            pretrain=pretrain,
            dataset=config.evaluate.dataset,
            split=config.evaluate.split,
            ingest=test_set["ingest"],
            decode=test_set.get("decode"),
            extract=test_set["extract"],
        )
        results["report"] = {"report": execute(config.name, run_report, inputs)}
