"""HowTo100M adapter: `caption.json` / `raw_caption.json` ASR captions → videos and pairs tables.

Format (reference/videoclip-facts.md §2.3, "Data files and formats"):

    {"<youtube_id>": {"start": [float, ...], "end": [float, ...], "text": [str, ...]}, ...}

or MMPT's deduplicated `raw_caption_dedup.pkl` (what VideoCLIP pretrained on): a pickled dict
`{"<youtube_id>": json.dumps({"start", "end", "text"})}`. The pickle is read with an unpickler
that admits no class or function (plain dicts, strings and numbers only), so a file that would
run code on loading is refused as malformed instead.

One pair per caption, `pair_id = "<video_id>:<caption index>"`. Splits come from the MMPT lists
`how2_s3d_train.lst` / `how2_s3d_val.lst` (one YouTube id per line) beside the caption file when
either exists; videos in neither list are then dropped. Without lists every video gets
`config.split`. Videos without a file under `<root>/<config.videos>` are dropped, and video files
without captions are left out; both are counted in `DatasetTables.dropped`.
"""

from __future__ import annotations

import json
import logging
import math
import pickle
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.config import DatasetConfig
from pipeline.datasets.tables import (
    PAIR_COLUMNS,
    AnnotationError,
    DatasetTables,
    match_video_files,
    media_files,
    pairs_table,
    read_json,
    shown,
    text_lines,
    videos_table,
)

log = logging.getLogger(__name__)

# looked for in this order
CAPTION_FILES = ("caption.json", "raw_caption.json", "raw_caption_dedup.pkl")
SPLIT_LISTS = {"train": "how2_s3d_train.lst", "val": "how2_s3d_val.lst"}

Captions = tuple[list[float], list[float], list[str]]  # start_s, end_s, text of one video


def caption_path(config: DatasetConfig, root: Path) -> Path:
    """`<root>/<config.annotations>`, else the first of CAPTION_FILES that exists under root."""
    if config.annotations:
        return root / config.annotations
    for name in CAPTION_FILES:
        if (root / name).is_file():
            return root / name
    names = " or ".join(CAPTION_FILES)
    raise FileNotFoundError(f"HowTo100M dataset at {root}: no {names} (set `annotations`)")


def annotation_files(config: DatasetConfig, root: Path) -> list[Path]:
    """Every file whose content decides the tables: the captions and the split lists present."""
    lists = [root / name for name in SPLIT_LISTS.values() if (root / name).is_file()]
    return [caption_path(config, root), *lists]


def load(config: DatasetConfig, root: Path) -> DatasetTables:
    """Read and validate the captions, match them to video files and build the tables."""
    path = caption_path(config, root)
    captions, empty = _without_empty_texts(read_captions(path))
    listed = read_split_lists(root)
    files = media_files(config, root)
    matched = match_video_files(captions, files)
    dropped: Counter[str] = Counter()
    if empty:  # ASR lines with no words: nothing to pair a clip with
        dropped["empty_caption_text"] = empty
        log.warning("howto100m %s: %d captions with empty text left out", path, empty)
    kept: dict[str, Path] = {}
    splits: dict[str, str] = {}
    for video_id, (starts, _, _) in captions.items():
        if not starts:
            dropped["no_captions"] += 1
        elif listed is not None and video_id not in listed:
            dropped["not_in_split_list"] += 1
        elif video_id not in matched:
            dropped["missing_video_file"] += 1
            dropped["missing_video_file_pairs"] += len(starts)
        else:
            kept[video_id] = matched[video_id]
            splits[video_id] = config.split if listed is None else listed[video_id]
    unannotated = len(files) - len(set(matched.values()))
    if unannotated:
        dropped["unannotated_video_file"] = unannotated
    pairs = _pairs(captions, splits)
    log.info(
        "howto100m %s: %d videos, %d pairs, dropped %s", path, len(kept), len(pairs), dict(dropped)
    )
    return DatasetTables(videos=videos_table(kept, splits), pairs=pairs, dropped=dict(dropped))


def _without_empty_texts(captions: dict[str, Captions]) -> tuple[dict[str, Captions], int]:
    """The captions without those whose text is empty or blank, and how many those were."""
    kept: dict[str, Captions] = {}
    empty = 0
    for video_id, (starts, ends, texts) in captions.items():
        keep = [i for i, text in enumerate(texts) if text.strip()]
        empty += len(texts) - len(keep)
        kept[video_id] = (
            [starts[i] for i in keep],
            [ends[i] for i in keep],
            [texts[i] for i in keep],
        )
    return kept, empty


def read_captions(path: Path) -> dict[str, Captions]:
    """The caption file, validated: every video's lists present, equal in length and well formed."""
    data = read_caption_pickle(path) if path.suffix == ".pkl" else read_json(path)
    if not isinstance(data, dict):
        expected = 'an object {"<video_id>": {"start", "end", "text"}}'
        raise AnnotationError(path, "top level", "<file>", expected, shown(data))
    return {
        str(video_id): _video_captions(path, str(video_id), entry)
        for video_id, entry in data.items()
    }


class _PlainUnpickler(pickle.Unpickler):
    """Loads only what pickle builds without naming a global: dicts, lists, str, numbers."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"the file names {module}.{name}")


def read_caption_pickle(path: Path) -> dict[str, Any]:
    """MMPT's `{video_id: json.dumps({"start", "end", "text"})}` pickle, each value decoded."""
    if not path.is_file():
        raise FileNotFoundError(f"annotation file {path} does not exist")
    expected = "a pickle of a dict {video_id: JSON text} (MMPT's raw_caption_dedup.pkl)"
    try:
        with path.open("rb") as handle:
            data = _PlainUnpickler(handle).load()
    except (pickle.UnpicklingError, EOFError, ValueError) as error:
        raise AnnotationError(path, "top level", "<file>", expected, str(error)) from error
    if not isinstance(data, dict):
        raise AnnotationError(path, "top level", "<file>", expected, shown(data))
    decoded = {}
    for video_id, text in data.items():
        if isinstance(text, dict):  # already decoded: accepted as caption.json's entries
            decoded[video_id] = text
            continue
        try:
            decoded[video_id] = json.loads(text)
        except (TypeError, json.JSONDecodeError) as error:
            record = f"video {str(video_id)!r}"
            raise AnnotationError(path, record, "<entry>", "JSON text", shown(text)) from error
    return decoded


def read_split_lists(root: Path) -> dict[str, str] | None:
    """video id → split from the MMPT split lists under root, or None when there are none."""
    present = {split: root / name for split, name in SPLIT_LISTS.items() if (root / name).is_file()}
    if not present:
        return None
    splits: dict[str, str] = {}
    for split, path in present.items():
        for line_number, line in enumerate(text_lines(path), 1):
            video_id = line.strip()
            if not video_id:
                continue
            if splits.get(video_id, split) != split:
                other = SPLIT_LISTS[splits[video_id]]
                record = f"line {line_number} (video {video_id!r})"
                raise AnnotationError(
                    path, record, "split", "a video in one list only", f"also in {other}"
                )
            splits[video_id] = split
    return splits


def _video_captions(path: Path, video_id: str, entry: Any) -> Captions:
    record = f"video {video_id!r}"
    if not isinstance(entry, dict):
        raise AnnotationError(
            path, record, "<entry>", 'an object {"start", "end", "text"}', shown(entry)
        )
    lists = {}
    for field in ("start", "end", "text"):
        if field not in entry:
            raise AnnotationError(path, record, field, "a list", "no such key")
        if not isinstance(entry[field], list):
            raise AnnotationError(path, record, field, "a list", shown(entry[field]))
        lists[field] = entry[field]
    count = len(lists["start"])
    for field in ("end", "text"):
        if len(lists[field]) != count:
            expected = f"a list of {count} items (as many as 'start')"
            raise AnnotationError(path, record, field, expected, f"{len(lists[field])}")
    starts = [
        _seconds(path, video_id, index, "start", value)
        for index, value in enumerate(lists["start"])
    ]
    ends = [
        _seconds(path, video_id, index, "end", value) for index, value in enumerate(lists["end"])
    ]
    for index, (start, end, text) in enumerate(zip(starts, ends, lists["text"], strict=True)):
        caption = f"{record} caption {index}"
        if start > end:
            raise AnnotationError(path, caption, "end", f"a time >= start ({start})", shown(end))
        if not isinstance(text, str):
            raise AnnotationError(path, caption, "text", "a string", shown(text))
    return starts, ends, lists["text"]


def _seconds(path: Path, video_id: str, index: int, field: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        record = f"video {video_id!r} caption {index}"
        raise AnnotationError(path, record, field, "a finite number of seconds", shown(value))
    if value < 0:
        record = f"video {video_id!r} caption {index}"
        raise AnnotationError(path, record, field, "a time >= 0", shown(value))
    return float(value)


def _pairs(captions: dict[str, Captions], splits: dict[str, str]) -> pd.DataFrame:
    columns: dict[str, list[Any]] = {name: [] for name in PAIR_COLUMNS}
    for video_id, split in splits.items():
        starts, ends, texts = captions[video_id]
        columns["pair_id"].extend(f"{video_id}:{index}" for index in range(len(starts)))
        columns["video_id"].extend([video_id] * len(starts))
        columns["start_s"].extend(starts)
        columns["end_s"].extend(ends)
        columns["text"].extend(texts)
        columns["split"].extend([split] * len(starts))
    return pairs_table(columns)
