"""The dataset index every adapter produces: the `videos` and `pairs` tables of DESIGN.md §3.

    videos: video_id, path, bytes, mtime, split                       (one row per usable video)
    pairs:  pair_id, video_id, start_s, end_s, text, split, [task fields]  (one row per caption)

Adapters read annotation files in the real datasets' formats (reference/videoclip-facts.md §2.3
for HowTo100M, §2.7 for YouCookII) and never read video content: a video is known by its path,
size and modification time only. This module holds what the adapters share: the schemas, the
video-file scan, the matching of annotation ids to files and the annotation error.
"""

from __future__ import annotations

import codecs
import json
import math
import os
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import pandas as pd

from pipeline.config import DatasetConfig

VIDEO_DTYPES: dict[str, str] = {
    "video_id": "str",
    "path": "str",  # absolute path of the video file
    "bytes": "int64",
    "mtime": "float64",  # seconds since the epoch (os.stat st_mtime)
    "split": "str",
}
PAIR_DTYPES: dict[str, str] = {
    "pair_id": "str",
    "video_id": "str",
    "start_s": "float64",
    "end_s": "float64",
    "text": "str",
    "split": "str",
}
VIDEO_COLUMNS: list[str] = list(VIDEO_DTYPES)
# end_s of a pair that covers its whole video (MSR-VTT, MSVD, DiDeMo): finite, so tables stay
# plain floats; PairClips clips it to the video's length.
WHOLE_VIDEO_END_S = 1e9
PAIR_COLUMNS: list[str] = list(PAIR_DTYPES)  # task fields may follow these

VIDEO_SUFFIXES: frozenset[str] = frozenset(
    {
        ".mp4",
        ".webm",
        ".mkv",
        ".avi",
        ".mov",
        ".m4v",
        ".mpg",
        ".mpeg",
        ".flv",
        ".wmv",
        ".ts",
        ".mts",  # AVCHD camera files (DiDeMo's Flickr videos include them)
        ".m2ts",
        ".3gp",
        ".3g2",
    }
)


FEATURE_SUFFIXES: frozenset[str] = frozenset({".npy"})  # pre-extracted features per video


class AnnotationError(ValueError):
    """An annotation file that does not fit its format.

    The message names the file, the record (video id, caption or annotation index), the field,
    what was expected and what was found.
    """

    def __init__(self, file: Path, record: str, field: str, expected: str, found: str) -> None:
        self.file = Path(file)
        self.record = record
        self.field = field
        self.expected = expected
        self.found = found
        super().__init__(f"{file}: {record}, field {field!r}: expected {expected}, found {found}")

    def __reduce__(self) -> tuple[type, tuple[Path, str, str, str, str]]:
        # Keeps the error picklable (Prefect ships exceptions between processes).
        return (type(self), (self.file, self.record, self.field, self.expected, self.found))


@dataclass(frozen=True)
class DatasetTables:
    """What an adapter returns: the two tables, how many records it dropped, by reason, and the
    task's facts (JSON-able; e.g. MSR-VTT-QA's answer vocabulary), which ingest writes to
    `task.json` when there are any."""

    videos: pd.DataFrame
    pairs: pd.DataFrame
    dropped: dict[str, int]  # e.g. {"missing_video_file": 3}
    extras: dict[str, Any] = field(default_factory=dict)  # e.g. {"task": "qa", "answers": [...]}

    def __post_init__(self) -> None:
        if list(self.videos.columns) != VIDEO_COLUMNS:
            raise ValueError(f"videos table columns {list(self.videos.columns)} != {VIDEO_COLUMNS}")
        if list(self.pairs.columns[: len(PAIR_COLUMNS)]) != PAIR_COLUMNS:
            found = list(self.pairs.columns)
            raise ValueError(f"pairs table columns {found} do not start with {PAIR_COLUMNS}")


def shown(value: Any) -> str:
    """A JSON value as an error message shows it: a short repr and its JSON type."""
    json_types = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    kind = json_types.get(type(value), "number" if isinstance(value, int | float) else "value")
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({kind})"


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """json's object hook: an object naming a key twice (json would keep the last silently)."""
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise _DuplicateKey(key)
        seen[key] = value
    return seen


def read_json(path: Path) -> Any:
    """Parse a JSON annotation file; text that is not JSON, or an object with a key twice (a
    video listed twice: json keeps one copy silently), is an AnnotationError naming the spot."""
    if not path.is_file():
        raise FileNotFoundError(f"annotation file {path} does not exist")
    try:
        with path.open(encoding="utf-8-sig") as handle:
            return json.load(handle, object_pairs_hook=_unique_keys)
    except _DuplicateKey as error:
        found = f"key {error.key!r} twice in one object"
        raise AnnotationError(path, f"key {error.key!r}", "<key>", "each key once", found) from None
    except json.JSONDecodeError as error:
        record = f"line {error.lineno} column {error.colno}"
        found = f"text that is not JSON ({error.msg})"
        raise AnnotationError(path, record, "<file>", "JSON", found) from error
    except UnicodeDecodeError as error:
        record = f"byte {error.start}"
        raise AnnotationError(path, record, "<file>", "UTF-8 JSON text", error.reason) from error


def text_lines(path: Path) -> list[str]:
    """The lines of a UTF-8 text file (a byte-order mark allowed), split at newlines only:
    `splitlines` would also cut at U+0085, U+2028, U+001E ... inside a caption. Bytes that are
    not UTF-8 raise an AnnotationError naming their line and byte."""
    try:
        text = path.read_text(encoding="utf-8-sig")  # "\r\n" and "\r" read as "\n"
    except UnicodeDecodeError as error:
        raise not_utf8(path) from error
    return text.split("\n")


def not_utf8(path: Path, expected: str = "UTF-8 text") -> AnnotationError:
    """The error for a file that does not decode as UTF-8, naming the line and byte of its first
    bad byte (a decoder's own error counts from the chunk it was given, not the file's start)."""
    data = path.read_bytes()
    bom = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        data[bom:].decode("utf-8")
    except UnicodeDecodeError as error:
        byte = bom + error.start
        line = data.count(b"\n", 0, byte) + 1
        record = f"line {line} (byte {byte})"
        return AnnotationError(path, record, "<file>", expected, error.reason)
    return AnnotationError(path, "top level", "<file>", expected, "bytes that do not decode")


def whole_seconds(value: Any) -> int | None:
    """`value` as an int if it is a whole number (25 or 25.0), else None (25.5, "25", True)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return None


def video_folder(config: DatasetConfig, root: Path) -> Path:
    """The folder holding the dataset's video files: `<root>/<config.videos>` ("" or "." = root)."""
    if config.videos in ("", "."):
        return root
    return root / config.videos


def media_folder(config: DatasetConfig, root: Path) -> Path:
    """Where the dataset's media are: its feature folder when it has one, else its videos."""
    return root / config.features if config.features else video_folder(config, root)


def media_files(config: DatasetConfig, root: Path) -> dict[str, Path]:
    """The dataset's media files by video id: `<id>.npy` features when `config.features` is
    set, else video files (what adapters match their annotations against)."""
    suffixes = FEATURE_SUFFIXES if config.features else VIDEO_SUFFIXES
    return find_video_files(media_folder(config, root), suffixes)


def find_video_files(folder: Path, suffixes: frozenset[str] = VIDEO_SUFFIXES) -> dict[str, Path]:
    """Every media file under `folder` (video files by default), recursively, keyed by video id.

    The id is the path relative to `folder` without its suffix, in posix form (`a/b/clip` for
    `a/b/clip.MP4`). Suffixes are matched case-insensitively against `suffixes`; files and
    folders whose names start with "." (temporaries, macOS `._*` forks) are skipped. Two files
    with the same id (`clip.mp4` and `clip.webm`) are an error naming both.
    """
    if not folder.is_dir():
        raise FileNotFoundError(f"media folder {folder} does not exist or is not a folder")
    files: dict[str, Path] = {}
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if any(part.startswith(".") for part in relative.parts):
            continue
        if path.suffix.lower() not in suffixes or not path.is_file():
            continue
        video_id = relative.with_suffix("").as_posix()
        if video_id in files:
            raise ValueError(
                f"two video files have the id {video_id!r}: {files[video_id]} and {path}; "
                "keep one of them"
            )
        files[video_id] = path
    return files


def match_video_files(video_ids: Iterable[str], files: Mapping[str, Path]) -> dict[str, Path]:
    """The file of each annotated video id that has one.

    A file matches an id when its relative id is the id (`<id>.mp4` in the video folder) or, failing
    that, when its name is the id in some subfolder (`training/101/<id>.mp4`, the YouCookII raw
    video layout). An id whose name is found in several subfolders is an error naming the files.
    """
    by_name: dict[str, list[str]] = defaultdict(list)
    for file_id in files:
        by_name[PurePosixPath(file_id).name].append(file_id)
    matched: dict[str, Path] = {}
    for video_id in video_ids:
        if video_id in files:
            matched[video_id] = files[video_id]
            continue
        candidates = by_name.get(video_id, [])
        if len(candidates) > 1:
            paths = ", ".join(str(files[file_id]) for file_id in candidates)
            raise ValueError(f"video {video_id!r} matches several files: {paths}")
        if candidates:
            matched[video_id] = files[candidates[0]]
    return matched


def videos_table(files: Mapping[str, Path], splits: Mapping[str, str]) -> pd.DataFrame:
    """The videos table: one row per file, sorted by id; size and mtime from `stat`."""
    rows: dict[str, list[Any]] = {name: [] for name in VIDEO_COLUMNS}
    for video_id in sorted(files):
        if video_id not in splits:
            raise KeyError(f"video {video_id!r} ({files[video_id]}) has no split")
        path = files[video_id]
        stat = path.stat()
        rows["video_id"].append(video_id)
        rows["path"].append(os.path.abspath(path))
        rows["bytes"].append(stat.st_size)
        rows["mtime"].append(stat.st_mtime)
        rows["split"].append(splits[video_id])
    return _typed_frame(rows, VIDEO_DTYPES)


def pairs_table(
    columns: Mapping[str, Sequence[Any]], task_dtypes: Mapping[str, str] | None = None
) -> pd.DataFrame:
    """The pairs table from column lists: PAIR_COLUMNS, then the task columns in the given order."""
    return _typed_frame(columns, {**PAIR_DTYPES, **(task_dtypes or {})})


def empty_pairs() -> pd.DataFrame:
    """A pairs table with no rows and the documented columns and dtypes."""
    return pairs_table({name: [] for name in PAIR_COLUMNS})


def _typed_frame(columns: Mapping[str, Sequence[Any]], dtypes: Mapping[str, str]) -> pd.DataFrame:
    if set(columns) != set(dtypes):
        raise ValueError(f"table columns {sorted(columns)} differ from the schema {list(dtypes)}")
    return pd.DataFrame(
        {name: pd.Series(columns[name], dtype=dtype) for name, dtype in dtypes.items()}
    )
