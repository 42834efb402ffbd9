"""Run pipeline stages in order for a config, without Prefect.

Each stage is cached by its DESIGN.md §3 key, so asking for a later stage resolves its upstream
from cache (or runs it, if it never completed) and a second run does no work. Results are grouped:
one group per dataset (ingest, decode, extract), then `pretrain`, one group per fine-tuned variant
(`fineco`, `baseline`: finetune, evaluate) and `report`.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path

from pipeline.config import Config, ConfigError, DatasetConfig
from pipeline.decode import run_decode
from pipeline.extract import run_extract
from pipeline.ingest import run_ingest
from storage.layout import Manifest

log = logging.getLogger(__name__)

STAGES = ("ingest", "decode", "extract", "pretrain", "finetune", "evaluate", "report")
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


def run_stages(config: Config, stages: Sequence[str], artifacts: Path) -> Results:
    """Run `stages` (and whatever upstream they need); manifests by group and stage."""
    if not config.datasets:
        raise ConfigError(f"config {config.name!r} names no datasets")
    last = max(STAGES.index(stage) for stage in stages)
    results: Results = {}
    for name in _front_end_datasets(config, last):
        results[name] = run_front_end(config, name, STAGES[min(last, 2)], artifacts)
    if last >= STAGES.index("pretrain"):
        _run_learning(config, STAGES[last], artifacts, results)
    return results


def run_front_end(config: Config, name: str, last: str, artifacts: Path) -> dict[str, Manifest]:
    """ingest → decode → extract of one dataset, up to `last`."""
    manifests = {"ingest": run_ingest(name, config.datasets[name], artifacts)}
    if last in ("decode", "extract"):
        manifests["decode"] = run_decode(name, manifests["ingest"], config.decode, artifacts)
    if last == "extract":
        manifests["extract"] = run_extract(name, manifests["decode"], config.extract, artifacts)
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


def _run_learning(config: Config, last: str, artifacts: Path, results: Results) -> None:
    """pretrain → finetune (each variant) → evaluate (each variant) → report, up to `last`."""
    from pipeline.evaluate import run_evaluate
    from pipeline.finetune import run_finetune, variants
    from pipeline.pretrain import run_pretrain

    pretrain = None
    if config.finetune.from_pretrain or last == "pretrain":
        source = results[config.pretrain.dataset]
        pretrain = run_pretrain(
            config.pretrain, config.model, source["ingest"], source["extract"], artifacts
        )
        results["pretrain"] = {"pretrain": pretrain}
    if last == "pretrain":
        return
    train_set, test_set = results[config.finetune.dataset], results[config.evaluate.dataset]
    for variant in variants(config.finetune):
        finetune = run_finetune(
            config.finetune,
            variant,
            config.model,
            train_set["ingest"],
            train_set["extract"],
            pretrain,
            artifacts,
        )
        results[variant] = {"finetune": finetune}
        if last == "finetune":
            continue
        results[variant]["evaluate"] = run_evaluate(
            config.evaluate,
            variant,
            config.model,
            finetune,
            test_set["ingest"],
            test_set["extract"],
            artifacts,
        )
    if last == "report":
        from pipeline.report import run_report

        results["report"] = {"report": run_report(config, results, artifacts)}
