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

Clip lists (§2.7): when `youcook_train.pkl` and/or `youcook_val.pkl` (HowTo100M
`metadata_eval.zip`) lie in the dataset root, they decide which clips are in train / val instead
of the json `subset`. Each is a pickled list of dicts whose `id` is `"<youtube_id>_<clip_idx>"`,
split at the last `_` (YouTube ids may hold `_`); clip_idx indexes the video's annotation list.
`caption` and the pooled-feature keys are ignored. A listed video keeps only its listed clips,
with the list's split; an unlisted video whose json subset maps to a split that has a list is
dropped. Both count their clips as `not_in_clip_lists`. Unlisted videos of a split without a list
(test; train when only the val list exists) keep their json subset. List ids that
are not in the json, ids listed twice, and videos with clips in both lists are AnnotationErrors.
"""

from __future__ import annotations

import io
import logging
import math
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.config import DatasetConfig
from pipeline.datasets.msvd import _PlainUnpickler
from pipeline.datasets.tables import (
    PAIR_COLUMNS,
    AnnotationError,
    DatasetTables,
    match_video_files,
    media_files,
    pairs_table,
    read_json,
    shown,
    videos_table,
    whole_seconds,
)

log = logging.getLogger(__name__)

ANNOTATION_FILE = "youcookii_annotations_trainval.json"
SUBSET_SPLITS = {"training": "train", "validation": "val", "testing": "test"}
TASK_DTYPES = {"recipe_type": "str", "duration_s": "float64"}
CLIP_LIST_FILES = {"train": "youcook_train.pkl", "val": "youcook_val.pkl"}
# numpy globals a HowTo100M clip list may hold (its '2d'/'3d' pooled features): never built.
_IGNORED_GLOBALS = frozenset(
    {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # bytes in protocol-2 pickles of arrays
    }
)


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


def clip_list_paths(root: Path) -> dict[str, Path]:
    """The MMPT clip lists present in the dataset root, by split."""
    paths = {split: root / name for split, name in CLIP_LIST_FILES.items()}
    return {split: path for split, path in paths.items() if path.is_file()}


def annotation_files(config: DatasetConfig, root: Path) -> list[Path]:
    """Every file whose content decides the tables: the json and the clip lists present."""
    return [annotation_path(config, root), *clip_list_paths(root).values()]


def load(config: DatasetConfig, root: Path) -> DatasetTables:
    """Read and validate the annotations, match them to video files and build the tables."""
    path = annotation_path(config, root)
    annotated = read_annotations(path)
    dropped: Counter[str] = Counter()
    lists = clip_list_paths(root)
    videos = apply_clip_lists(annotated, lists, dropped) if lists else annotated
    files = media_files(config, root)
    matched = match_video_files(annotated, files)  # files of unlisted videos are not unannotated
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


class _ClipListUnpickler(_PlainUnpickler):
    """Plain data, plus numpy arrays replaced by an inert placeholder (their content is unused)."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _IGNORED_GLOBALS:
            return _Ignored
        return super().find_class(module, name)


class _Ignored:
    """Stands in for a pickled numpy object; accepts any arguments and state."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass


def read_clip_list(path: Path) -> list[tuple[str, int]]:
    """A `youcook_<split>.pkl` clip list as (youtube_id, clip_idx) in list order."""
    try:
        # latin1: HowTo100M's pickles may come from Python 2.
        data = _ClipListUnpickler(io.BytesIO(path.read_bytes()), encoding="latin1").load()
    except Exception as error:  # any unpickling failure is a malformed file
        found = f"data that does not unpickle to plain values ({type(error).__name__}: {error})"
        raise AnnotationError(path, "top level", "<file>", "a pickled list", found) from error
    if not isinstance(data, list):
        expected = 'a list of dicts {"id": "<youtube_id>_<clip_idx>", ...}'
        raise AnnotationError(path, "top level", "<file>", expected, shown(data))
    clips = []
    for index, item in enumerate(data):
        record = f"list index {index}"
        if not isinstance(item, dict):
            raise AnnotationError(path, record, "<record>", 'a dict with an "id"', shown(item))
        if "id" not in item:
            raise AnnotationError(path, record, "id", "a value", "no such key")
        clip_id = item["id"]
        expected = 'a string "<youtube_id>_<clip_idx>"'
        if not isinstance(clip_id, str):
            raise AnnotationError(path, record, "id", expected, shown(clip_id))
        video_id, _, clip_idx = clip_id.rpartition("_")
        if not video_id or not clip_idx.isdigit() or not clip_idx.isascii():
            raise AnnotationError(path, record, "id", expected, shown(clip_id))
        clips.append((video_id, int(clip_idx)))
    return clips


def apply_clip_lists(
    videos: dict[str, Video], lists: dict[str, Path], dropped: Counter[str]
) -> dict[str, Video]:
    """Videos restricted to the listed clips, with the lists' splits; counts the rest."""
    chosen: dict[str, dict[int, str]] = {}  # video id -> {clip_idx: split}
    where: dict[tuple[str, int], tuple[Path, int]] = {}
    for split, path in lists.items():
        for index, (video_id, clip_idx) in enumerate(read_clip_list(path)):
            record = f"list index {index}"
            clip_id = f"{video_id}_{clip_idx}"
            video = videos.get(video_id)
            if video is None:
                found = f"{clip_id!r}, whose video is not in the annotation json"
                raise AnnotationError(path, record, "id", "a clip of an annotated video", found)
            if clip_idx >= len(video.segments):
                found = f"{clip_id!r}, but the video has {len(video.segments)} annotations"
                raise AnnotationError(path, record, "id", "a clip of an annotated video", found)
            if (video_id, clip_idx) in where:
                other, other_index = where[(video_id, clip_idx)]
                found = f"{clip_id!r}, also at list index {other_index} of {other.name}"
                raise AnnotationError(path, record, "id", "a clip listed once", found)
            clips = chosen.setdefault(video_id, {})
            other_splits = set(clips.values()) - {split}
            if other_splits:
                found = f"{clip_id!r}, but the video has clips in {sorted(other_splits)}"
                raise AnnotationError(path, record, "id", "one split per video", found)
            where[(video_id, clip_idx)] = (path, index)
            clips[clip_idx] = split
    result: dict[str, Video] = {}
    for video_id, video in videos.items():
        clips = chosen.get(video_id, {})
        if clips:  # a listed video keeps exactly its listed clips, in annotation order
            if len(clips) < len(video.segments):
                dropped["not_in_clip_lists"] += len(video.segments) - len(clips)
            segments = [s for i, s in enumerate(video.segments) if i in clips]
            split = next(iter(clips.values()))
            result[video_id] = replace(video, split=split, segments=segments)
        elif video.split in lists and video.segments:
            dropped["not_in_clip_lists"] += len(video.segments)
        else:
            result[video_id] = video
    return result


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
    _check_within(path, video_id, float(duration), segments)
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


def _check_within(path: Path, video_id: str, duration: float, segments: list[Segment]) -> None:
    """Every segment starts inside the video and ends at most one second past its duration
    (whole-second ends round the last partial second up; the pair reads what the video has)."""
    for index, segment in enumerate(segments):
        if segment.start_s >= duration or segment.end_s > math.ceil(duration) + 1:
            record = f"video {video_id!r} annotation {index}"
            expected = f"a segment inside the video's duration {duration:g} s"
            found = f"[{segment.start_s}, {segment.end_s}]"
            raise AnnotationError(path, record, "segment", expected, found)


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
