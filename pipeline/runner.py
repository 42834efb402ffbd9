"""Run pipeline stages in order for every dataset of a config, without Prefect.

Each stage is cached by its DESIGN.md §3 key, so asking for a later stage resolves its upstream
from cache (or runs it, if it never completed) and a second run does no work.
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

STAGES = ("ingest", "decode", "extract")


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


def run_stages(
    config: Config, stages: Sequence[str], artifacts: Path
) -> dict[str, dict[str, Manifest]]:
    """Run `stages` (and whatever upstream they need) for each dataset; manifests by dataset."""
    if not config.datasets:
        raise ConfigError(f"config {config.name!r} names no datasets")
    last = max(STAGES.index(stage) for stage in stages)
    results: dict[str, dict[str, Manifest]] = {}
    for name, dataset in config.datasets.items():
        manifests = {"ingest": run_ingest(name, dataset, artifacts)}
        if last >= STAGES.index("decode"):
            manifests["decode"] = run_decode(name, manifests["ingest"], config.decode, artifacts)
        if last >= STAGES.index("extract"):
            manifests["extract"] = run_extract(name, manifests["decode"], config.extract, artifacts)
        results[name] = manifests
    return results
