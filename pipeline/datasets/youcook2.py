"""YouCookII adapter: `youcookii_annotations_trainval.json` → videos and pairs tables.

Format (reference/videoclip-facts.md §2.7, "YouCookII"):

    {"database": {"<youtube_id>": {"duration": 241.64, "subset": "validation",
        "recipe_type": "212", "video_url": "...",
        "annotations": [{"id": 0, "segment": [25, 37], "sentence": "..."}, ...]}}}

Segments are whole seconds. One pair per annotation, `pair_id = "<youtube_id>_<annotation id>"`
(MMPT's clip id, §2.7); subsets map to splits training → train, validation → val,
testing → test. Task columns after PAIR_COLUMNS: `recipe_type` (str), `duration_s` (float64).
Video files are matched by id in the video folder or in any subfolder (the official
`raw_videos/<subset>/<recipe_type>/<id>.mp4` layout); videos without a file are dropped and
counted, as MMPT drops records whose feature file is missing.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.config import DatasetConfig
from pipeline.datasets.tables import (
    PAIR_COLUMNS,
    AnnotationError,
    DatasetTables,
    find_video_files,
    match_video_files,
    pairs_table,
    read_json,
    shown,
    video_folder,
    videos_table,
    whole_seconds,
)

log = logging.getLogger(__name__)

ANNOTATION_FILE = "youcookii_annotations_trainval.json"
SUBSET_SPLITS = {"training": "train", "validation": "val", "testing": "test"}
TASK_DTYPES = {"recipe_type": "str", "duration_s": "float64"}


@dataclass(frozen=True)
class Segment:
    """One annotated step of a recipe video: whole seconds [start_s, end_s) and its sentence."""

    annotation_id: int
    start_s: int
    end_s: int
    sentence: str


@dataclass(frozen=True)
class Video:
    """One validated `database` entry."""

    split: str
    recipe_type: str
    duration_s: float
    segments: list[Segment]


def annotation_path(config: DatasetConfig, root: Path) -> Path:
    """`<root>/<config.annotations or ANNOTATION_FILE>`."""
    return root / (config.annotations or ANNOTATION_FILE)


def annotation_files(config: DatasetConfig, root: Path) -> list[Path]:
    """Every file whose content decides the tables."""
    return [annotation_path(config, root)]


def load(config: DatasetConfig, root: Path) -> DatasetTables:
    """Read and validate the annotations, match them to video files and build the tables."""
    path = annotation_path(config, root)
    videos = read_annotations(path)
    files = find_video_files(video_folder(config, root))
    matched = match_video_files(videos, files)
    dropped: Counter[str] = Counter()
    kept: dict[str, Path] = {}
    for video_id, video in videos.items():
        if not video.segments:
            dropped["no_annotations"] += 1
        elif video_id not in matched:
            dropped["missing_video_file"] += 1
            dropped["missing_video_file_pairs"] += len(video.segments)
        else:
            kept[video_id] = matched[video_id]
    unannotated = len(files) - len(set(matched.values()))
    if unannotated:
        dropped["unannotated_video_file"] = unannotated
    splits = {video_id: videos[video_id].split for video_id in kept}
    pairs = _pairs({video_id: videos[video_id] for video_id in kept})
    log.info(
        "youcook2 %s: %d videos, %d pairs, dropped %s", path, len(kept), len(pairs), dict(dropped)
    )
    return DatasetTables(videos=videos_table(kept, splits), pairs=pairs, dropped=dict(dropped))


def read_annotations(path: Path) -> dict[str, Video]:
    """The annotation file, validated entry by entry."""
    data = read_json(path)
    expected = 'a top-level object with a "database" object'
    if not isinstance(data, dict):
        raise AnnotationError(path, "top level", "database", expected, shown(data))
    if "database" not in data:
        raise AnnotationError(path, "top level", "database", expected, "no such key")
    database = data["database"]
    if not isinstance(database, dict):
        expected = 'an object {"<youtube_id>": {...}}'
        raise AnnotationError(path, "top level", "database", expected, shown(database))
    return {
        str(video_id): _video(path, str(video_id), entry) for video_id, entry in database.items()
    }


def _video(path: Path, video_id: str, entry: Any) -> Video:
    record = f"video {video_id!r}"
    if not isinstance(entry, dict):
        raise AnnotationError(path, record, "<entry>", "an object", shown(entry))
    for field in ("subset", "duration", "recipe_type", "annotations"):
        if field not in entry:
            raise AnnotationError(path, record, field, "a value", "no such key")
    subset = entry["subset"]
    if not isinstance(subset, str) or subset not in SUBSET_SPLITS:
        raise AnnotationError(
            path, record, "subset", f"one of {list(SUBSET_SPLITS)}", shown(subset)
        )
    duration = entry["duration"]
    if not _is_seconds(duration):
        raise AnnotationError(
            path, record, "duration", "a finite number of seconds >= 0", shown(duration)
        )
    recipe_type = entry["recipe_type"]
    if isinstance(recipe_type, bool) or not isinstance(recipe_type, str | int):
        raise AnnotationError(
            path, record, "recipe_type", "a string such as '212'", shown(recipe_type)
        )
    annotations = entry["annotations"]
    if not isinstance(annotations, list):
        raise AnnotationError(path, record, "annotations", "a list", shown(annotations))
    segments = [_segment(path, video_id, index, item) for index, item in enumerate(annotations)]
    _check_unique_ids(path, video_id, segments)
    return Video(SUBSET_SPLITS[subset], str(recipe_type), float(duration), segments)


def _is_seconds(value: Any) -> bool:
    """A finite, non-negative JSON number (booleans are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return math.isfinite(value) and value >= 0


def _segment(path: Path, video_id: str, index: int, item: Any) -> Segment:
    record = f"video {video_id!r} annotation {index}"
    if not isinstance(item, dict):
        raise AnnotationError(
            path, record, "<annotation>", 'an object {"id", "segment", "sentence"}', shown(item)
        )
    for field in ("id", "segment", "sentence"):
        if field not in item:
            raise AnnotationError(path, record, field, "a value", "no such key")
    annotation_id = whole_seconds(item["id"])
    if annotation_id is None:
        raise AnnotationError(path, record, "id", "an integer", shown(item["id"]))
    segment = item["segment"]
    bounds = [whole_seconds(value) for value in segment] if isinstance(segment, list) else []
    if len(bounds) != 2 or any(bound is None or bound < 0 for bound in bounds):
        expected = "[start, end], two whole seconds >= 0"
        raise AnnotationError(path, record, "segment", expected, shown(segment))
    start_s, end_s = bounds
    if not start_s < end_s:
        raise AnnotationError(path, record, "segment", "start < end", shown(segment))
    sentence = item["sentence"]
    if not isinstance(sentence, str) or not sentence.strip():
        raise AnnotationError(path, record, "sentence", "a non-empty string", shown(sentence))
    return Segment(annotation_id, start_s, end_s, sentence)


def _check_unique_ids(path: Path, video_id: str, segments: list[Segment]) -> None:
    first_index: dict[int, int] = {}
    for index, segment in enumerate(segments):
        if segment.annotation_id in first_index:
            record = f"video {video_id!r} annotation {index}"
            expected = "an id unique within the video"
            earlier = first_index[segment.annotation_id]
            found = f"{segment.annotation_id}, also the id of annotation {earlier}"
            raise AnnotationError(path, record, "id", expected, found)
        first_index[segment.annotation_id] = index


def _pairs(videos: dict[str, Video]) -> pd.DataFrame:
    columns: dict[str, list[Any]] = {name: [] for name in [*PAIR_COLUMNS, *TASK_DTYPES]}
    for video_id, video in videos.items():
        for segment in video.segments:
            columns["pair_id"].append(f"{video_id}_{segment.annotation_id}")
            columns["video_id"].append(video_id)
            columns["start_s"].append(float(segment.start_s))
            columns["end_s"].append(float(segment.end_s))
            columns["text"].append(segment.sentence)
            columns["split"].append(video.split)
            columns["recipe_type"].append(video.recipe_type)
            columns["duration_s"].append(video.duration_s)
    return pairs_table(columns, TASK_DTYPES)
