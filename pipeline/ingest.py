"""Ingest stage: dataset root + adapter → `videos.parquet` and `pairs.parquet` (DESIGN.md §3).

The stage's cache key covers the dataset's config section and a cheap fingerprint of its inputs:
the sha256 of each annotation file the adapter reads and a digest of the video folder's listing
(relative path, size, mtime in ns; no video is opened). Editing an annotation, adding, replacing or
touching a video, or moving the dataset root therefore gives a new key; rerunning on unchanged
inputs returns the existing manifest and writes nothing.

Adapters with task facts (`DatasetTables.extras`, e.g. MSR-VTT-QA's answer vocabulary) get them
written to `task.json` (output "task"); the manifest's info holds a short summary
(`task_facts`: scalars as they are, lists and objects by their length).
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.config import DatasetConfig
from pipeline.datasets import annotation_files, load_dataset
from pipeline.datasets.tables import find_video_files, video_folder
from pipeline.stage import StageResult, StageSpec, run_cached
from storage.atomic import atomic_write_json
from storage.digests import file_digest, json_digest
from storage.layout import Manifest, expand_path
from storage.tables import write_table

log = logging.getLogger(__name__)

STAGE = "ingest"
MODULES = ["pipeline.ingest", "pipeline.datasets", "storage"]
VIDEOS_TABLE = "videos.parquet"
PAIRS_TABLE = "pairs.parquet"
TASK_FILE = "task.json"


def run_ingest(name: str, config: DatasetConfig, artifacts: Path) -> Manifest:
    """Index dataset `name` into `<artifacts>/ingest/<cache_key>/`, or return the cached index."""
    root = dataset_root(name, config, artifacts)
    section = {"dataset": name, **asdict(config), "fingerprint": fingerprint(config, root)}
    spec = StageSpec(stage=STAGE, section=section, upstream=[], modules=MODULES)

    def build(folder: Path) -> StageResult:
        return _build(name, config, root, folder)

    return run_cached(artifacts, spec, build)


def dataset_root(name: str, config: DatasetConfig, artifacts: Path) -> Path:
    """The absolute dataset root (`{artifacts}` expanded); a missing root is an error naming it."""
    root = Path(os.path.abspath(expand_path(config.root, artifacts)))
    if not root.is_dir():
        raise FileNotFoundError(
            f"dataset {name!r}: root {root} does not exist or is not a folder "
            f"(config datasets.{name}.root = {config.root!r})"
        )
    return root


def fingerprint(config: DatasetConfig, root: Path) -> dict[str, Any]:
    """What the tables depend on besides the config: annotation digests and the video listing."""
    annotations = {}
    for path in annotation_files(config, root):
        if not path.is_file():
            raise FileNotFoundError(
                f"{config.adapter} dataset at {root}: annotation file {path} does not exist"
            )
        annotations[str(path)] = file_digest(path)
    folder = video_folder(config, root)
    listing = []
    for path in find_video_files(folder).values():
        stat = path.stat()
        listing.append((path.relative_to(folder).as_posix(), stat.st_size, stat.st_mtime_ns))
    return {"root": str(root), "annotations": annotations, "videos": json_digest(sorted(listing))}


def _build(name: str, config: DatasetConfig, root: Path, folder: Path) -> StageResult:
    tables = load_dataset(config, root)
    write_table(tables.videos, folder / VIDEOS_TABLE)
    write_table(tables.pairs, folder / PAIRS_TABLE)
    if tables.dropped:
        log.warning("ingest %s: dropped %s", name, tables.dropped)
    info = {
        "dataset": name,
        "adapter": config.adapter,
        "task": config.task,
        "root": str(root),
        "annotation_dir": str(annotation_dir(config, root)),
        "videos": len(tables.videos),
        "pairs": len(tables.pairs),
        "splits": _split_counts(tables.videos, tables.pairs),
        "dropped": {reason: int(count) for reason, count in tables.dropped.items()},
    }
    outputs = {"videos": VIDEOS_TABLE, "pairs": PAIRS_TABLE}
    if tables.extras:
        atomic_write_json(folder / TASK_FILE, tables.extras)
        outputs["task"] = TASK_FILE
        info["task_facts"] = task_summary(tables.extras)
    log.info("ingest %s: %d videos, %d pairs", name, info["videos"], info["pairs"])
    return StageResult(outputs=outputs, info=info)


def task_summary(extras: dict[str, Any]) -> dict[str, Any]:
    """The task facts for a manifest's info: scalars as they are, lists and objects by length."""
    return {
        key: len(value) if isinstance(value, list | tuple | dict) else value
        for key, value in extras.items()
    }


def annotation_dir(config: DatasetConfig, root: Path) -> Path:
    """The folder holding the annotation files (`annotations` names a file for some adapters)."""
    path = root / config.annotations if config.annotations not in ("", ".") else root
    return path if path.is_dir() else path.parent


def _split_counts(videos: pd.DataFrame, pairs: pd.DataFrame) -> dict[str, dict[str, int]]:
    """{split: {"videos": n, "pairs": m}} for every split present in either table."""
    video_counts = videos["split"].value_counts()
    pair_counts = pairs["split"].value_counts()
    splits = sorted(set(video_counts.index) | set(pair_counts.index))
    return {
        str(split): {
            "videos": int(video_counts.get(split, 0)),
            "pairs": int(pair_counts.get(split, 0)),
        }
        for split in splits
    }
