"""Ingest stage: dataset root + adapter → `videos.parquet` and `pairs.parquet` (DESIGN.md §3).

The stage's key covers the dataset's config section, the adapter's annotation files (declared
input files: their content digests) and a digest of the video folder's listing (relative path,
size, mtime in ns; no video is opened). Editing an annotation, adding, replacing or touching a
video, or moving the dataset root therefore gives a new key; rerunning on unchanged inputs
returns the existing manifest and writes nothing.

Adapters with task facts (`DatasetTables.extras`, e.g. MSR-VTT-QA's answer vocabulary) get them
written to `task.json` (output "task"); the manifest's info holds a short summary
(`task_facts`: scalars as they are, lists and objects by their length).
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd

from pipeline.config import DatasetConfig
from pipeline.datasets import annotation_files, load_dataset
from pipeline.datasets.tables import media_files, media_folder
from pipeline.stage import IngestInfo, StageInputs, StageResult, run_cached
from storage.atomic import atomic_write_json
from storage.digests import json_digest
from storage.layout import Manifest, expand_path
from storage.tables import write_table

log = logging.getLogger(__name__)

VIDEOS_TABLE = "videos.parquet"
PAIRS_TABLE = "pairs.parquet"
TASK_FILE = "task.json"


@dataclass(frozen=True, kw_only=True)
class IngestInputs(StageInputs):
    """One dataset on disk: its name in the config and its section."""

    stage: ClassVar[str] = "ingest"
    modules: ClassVar[tuple[str, ...]] = ("pipeline.ingest", "pipeline.datasets", "storage")
    info_type: ClassVar[type] = IngestInfo

    dataset: str
    config: DatasetConfig

    def root(self) -> Path:
        return dataset_root(self.dataset, self.config, self.artifacts)

    def section(self) -> dict[str, Any]:
        root = self.root()
        return {
            "dataset": self.dataset,
            **asdict(self.config),
            "root": str(root),
            "video_listing": video_listing(self.config, root),
        }

    def files(self) -> dict[str, Path]:
        """The adapter's annotation files (each must exist), by their path under the root."""
        root = self.root()
        files = {}
        for path in annotation_files(self.config, root):
            if not path.is_file():
                raise FileNotFoundError(
                    f"{self.config.adapter} dataset at {root}: annotation file {path} does not "
                    f"exist (config datasets.{self.dataset})"
                )
            files[os.path.relpath(path, root)] = path
        return files


def run_ingest(inputs: IngestInputs) -> Manifest[IngestInfo]:
    """Index the dataset into `<artifacts>/ingest/<cache_key>/`, or return the cached index."""
    root = inputs.root()
    return run_cached(inputs, lambda folder: _build(inputs.dataset, inputs.config, root, folder))


def dataset_root(name: str, config: DatasetConfig, artifacts: Path) -> Path:
    """The absolute dataset root (`{artifacts}` expanded); a missing root is an error naming it."""
    root = Path(os.path.abspath(expand_path(config.root, artifacts)))
    if not root.is_dir():
        raise FileNotFoundError(
            f"dataset {name!r}: root {root} does not exist or is not a folder "
            f"(config datasets.{name}.root = {config.root!r})"
        )
    return root


def video_listing(config: DatasetConfig, root: Path) -> str:
    """A digest of the media folder's listing (videos, or feature files): relative path, size
    and mtime of every file."""
    folder = media_folder(config, root)
    listing = []
    for path in media_files(config, root).values():
        stat = path.stat()
        listing.append((path.relative_to(folder).as_posix(), stat.st_size, stat.st_mtime_ns))
    return json_digest(sorted(listing))


def _build(name: str, config: DatasetConfig, root: Path, folder: Path) -> StageResult:
    tables = load_dataset(config, root)
    write_table(tables.videos, folder / VIDEOS_TABLE)
    write_table(tables.pairs, folder / PAIRS_TABLE)
    if tables.dropped:
        log.warning("ingest %s: dropped %s", name, tables.dropped)
    outputs = {"videos": VIDEOS_TABLE, "pairs": PAIRS_TABLE}
    if tables.extras:
        atomic_write_json(folder / TASK_FILE, tables.extras)
        outputs["task"] = TASK_FILE
    info = IngestInfo(
        dataset=name,
        adapter=config.adapter,
        task=config.task,
        root=str(root),
        annotation_dir=str(annotation_dir(config, root)),
        videos=len(tables.videos),
        pairs=len(tables.pairs),
        splits=_split_counts(tables.videos, tables.pairs),
        dropped={reason: int(count) for reason, count in tables.dropped.items()},
        task_facts=task_summary(tables.extras) if tables.extras else {},
        features=bool(config.features),
    )
    log.info("ingest %s: %d videos, %d pairs", name, info.videos, info.pairs)
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
