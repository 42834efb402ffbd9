"""Folder adapter: a directory of video files with no annotations (e.g. for feature extraction).

Every video file under `<root>/<config.videos>` (root itself when `videos` is "" or "."),
recursively, becomes one row of the videos table with split `config.split`; the video id is the
path relative to that folder without its suffix (`kitchen/day1/clip`). The pairs table is empty
but has the documented columns and dtypes (DESIGN.md §3).
"""

from __future__ import annotations

import logging
from pathlib import Path

from pipeline.config import DatasetConfig
from pipeline.datasets.tables import (
    FEATURE_SUFFIXES,
    VIDEO_SUFFIXES,
    DatasetTables,
    empty_pairs,
    media_files,
    media_folder,
    videos_table,
)

log = logging.getLogger(__name__)


def annotation_files(config: DatasetConfig, root: Path) -> list[Path]:
    """The folder adapter reads no annotation file."""
    return []


def load(config: DatasetConfig, root: Path) -> DatasetTables:
    """One videos row per video file (or feature file); no pairs."""
    folder = media_folder(config, root)
    files = media_files(config, root)
    if not files:
        kind = "feature" if config.features else "video"
        suffixes = " ".join(sorted(FEATURE_SUFFIXES if config.features else VIDEO_SUFFIXES))
        raise FileNotFoundError(f"no {kind} files ({suffixes}) under {folder}")
    splits = dict.fromkeys(files, config.split)
    log.info("folder %s: %d videos", folder, len(files))
    return DatasetTables(videos=videos_table(files, splits), pairs=empty_pairs(), dropped={})
