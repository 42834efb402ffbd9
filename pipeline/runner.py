"""Run pipeline stages in order for a config, without Prefect.

Each stage is cached by its DESIGN.md §3 key, so asking for a later stage resolves its upstream
from cache (or runs it, if it never completed) and a second run does no work. Results are grouped:
one group per dataset (ingest, decode, extract), then `pretrain`, one group per fine-tuned variant
(`fineco`, `baseline`: finetune, evaluate) and `report`.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from pipeline.config import STAGES, Config, ConfigError, DatasetConfig, OptimConfig
from pipeline.datasets.synthetic import SYNTHETIC_SETS
from pipeline.decode import run_decode
from pipeline.extract import run_extract
from pipeline.ingest import run_ingest
from storage.layout import Manifest

log = logging.getLogger(__name__)

StageFunction = Callable[..., Manifest]


class Executor(Protocol):
    """How a stage call is carried out: directly (default) or, e.g., as a Prefect task."""

    def __call__(
        self, stage: str, label: str, function: StageFunction, arguments: dict[str, Any]
    ) -> Manifest: ...


def call_directly(
    stage: str, label: str, function: StageFunction, arguments: dict[str, Any]
) -> Manifest:
    return function(**arguments)


FRONT_END = STAGES[:3]
Results = dict[str, dict[str, Manifest]]  # group (dataset, variant, ...) → stage → manifest


def parse_stages(text: str | Sequence[str]) -> list[str]:
    """`"ingest,decode"` (or a list) → validated stage names in pipeline order."""
    names = [s.strip() for s in (text.split(",") if isinstance(text, str) else text) if s.strip()]
    unknown = [name for name in names if name not in STAGES]
    if unknown:
        raise ConfigError(f"unknown stage(s) {unknown}; stages: {', '.join(STAGES)}")
    return [stage for stage in STAGES if stage in names]


def with_video_folder(config: Config, folder: Path) -> Config:
    """The config with its datasets replaced by one folder of the user's own videos."""
    if not folder.is_dir():
        raise ConfigError(f"--videos {folder}: not a directory")
    dataset = DatasetConfig(adapter="folder", root=str(folder.resolve()), videos="")
    return dataclasses.replace(config, datasets={"videos": dataset})


def with_synthetic_data(config: Config) -> Config:
    """The config run on `fineco synth`'s sets in each dataset's own format, offline.

    Every dataset is pointed at the synthetic set of its adapter (its task kept), the weights
    become the offline defaults: random S3D-G, MiniLM, no VideoCLIP checkpoint (a paper preset
    names the public weights, which a synthetic run does not need), and mixed precision becomes
    `auto` (the paper's fp16 on a GPU, off on a CPU).
    """
    out_dir = config.synth.out_dir
    datasets = {}
    for name, dataset in config.datasets.items():
        if dataset.adapter not in SYNTHETIC_SETS:
            raise ConfigError(f"datasets.{name}: no synthetic set for adapter {dataset.adapter}")
        synthetic = SYNTHETIC_SETS[dataset.adapter]
        datasets[name] = dataclasses.replace(
            dataset,
            root=f"{out_dir}/{synthetic.folder}",
            annotations=synthetic.annotations,
            videos=synthetic.videos,
        )
    log.info("synthetic data from %s; random S3D-G, MiniLM, no VideoCLIP checkpoint", out_dir)
    return dataclasses.replace(
        config,
        datasets=datasets,
        extract=dataclasses.replace(config.extract, weights=""),
        model=dataclasses.replace(config.model, bert="minilm"),
        pretrain=dataclasses.replace(config.pretrain, optim=_auto_amp(config.pretrain.optim)),
        finetune=dataclasses.replace(
            config.finetune, init_checkpoint="", optim=_auto_amp(config.finetune.optim)
        ),
    )


def _auto_amp(optim: OptimConfig) -> OptimConfig:
    return dataclasses.replace(optim, amp="auto")


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
    if last >= STAGES.index("extract") and config.extract.weights:
        from pipeline.video.backbone import weights_path

        weights_path(config.extract)
    if last >= STAGES.index("pretrain"):
        from pipeline.training.model_factory import resolve_bert

        resolve_bert(config.model.bert, need_weights=not config.model.random_init)
    if last >= STAGES.index("finetune"):
        from pipeline.finetune import init_checkpoint_path

        init_checkpoint_path(config.finetune, artifacts)


def planned_calls(config: Config, stages: Sequence[str]) -> int:
    """How many stage calls `run_stages(config, stages, ...)` makes (for progress bars)."""
    from pipeline.training.variants import variants

    last = max(STAGES.index(stage) for stage in stages)
    calls = len(_front_end_datasets(config, last)) * (min(last, 2) + 1)
    if last >= STAGES.index("pretrain") and (config.finetune.from_pretrain or last == 3):
        calls += 1
    if last >= STAGES.index("finetune"):
        calls += len(variants(config.finetune)) * (1 if last == 4 else 2)
    return calls + (1 if last == STAGES.index("report") else 0)


def run_front_end(
    config: Config, name: str, last: str, artifacts: Path, execute: Executor = call_directly
) -> dict[str, Manifest]:
    """ingest → decode → extract of one dataset, up to `last`."""
    common = {"name": name, "artifacts": artifacts}
    ingest = {"config": config.datasets[name], **common}
    manifests = {"ingest": execute("ingest", name, run_ingest, ingest)}
    if last in ("decode", "extract"):
        decode = {"ingest": manifests["ingest"], "config": config.decode, **common}
        manifests["decode"] = execute("decode", name, run_decode, decode)
    if last == "extract":
        extract = {"decode": manifests["decode"], "config": config.extract, **common}
        manifests["extract"] = execute("extract", name, run_extract, extract)
    return manifests


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
    from pipeline.evaluate import run_evaluate
    from pipeline.finetune import run_finetune
    from pipeline.pretrain import run_pretrain
    from pipeline.training.variants import variants

    pretrain = None
    if config.finetune.from_pretrain or last == "pretrain":
        source = results[config.pretrain.dataset]
        arguments = {
            "config": config.pretrain,
            "model_config": config.model,
            "ingest": source["ingest"],
            "extract": source["extract"],
            "artifacts": artifacts,
        }
        pretrain = execute("pretrain", config.pretrain.dataset, run_pretrain, arguments)
        results["pretrain"] = {"pretrain": pretrain}
    if last == "pretrain":
        return
    train_set, test_set = results[config.finetune.dataset], results[config.evaluate.dataset]
    for variant in variants(config.finetune):
        arguments = {
            "config": config.finetune,
            "variant": variant,
            "model_config": config.model,
            "ingest": train_set["ingest"],
            "extract": train_set["extract"],
            "pretrain": pretrain,
            "artifacts": artifacts,
        }
        finetune = execute("finetune", variant, run_finetune, arguments)
        results[variant] = {"finetune": finetune}
        if last == "finetune":
            continue
        arguments = {
            "config": config.evaluate,
            "variant": variant,
            "model_config": config.model,
            "finetune": finetune,
            "ingest": test_set["ingest"],
            "extract": test_set["extract"],
            "artifacts": artifacts,
        }
        results[variant]["evaluate"] = execute("evaluate", variant, run_evaluate, arguments)
    if last == "report":
        from pipeline.report import run_report

        arguments = {"config": config, "results": results, "artifacts": artifacts}
        results["report"] = {"report": execute("report", config.name, run_report, arguments)}
