"""HDF5 shards of the decode (frames) and extract (features) stages (DESIGN.md §3).

    frames-NNNNN.h5    clips/000000 ... uint8 (n_seconds, F, S, S, 3), one chunk per second;
                       `ids` UTF-8 strings [V], `n_seconds` int64 [V]
    features-NNNNN.h5  `feats` float16 [ΣK, D], chunks (256, D), no compression;
                       `offsets` int64 [V+1] (video i is feats[offsets[i]:offsets[i+1]]), `ids` [V]

Measured (reference/decode-storage.md §D): concatenated `feats` + `offsets` reads random videos
2× faster than one dataset per video; compression saves nothing on float16 and costs 6–15× in read
rate. Ids may contain '/', so they are data, not HDF5 names. `commit()` writes the shard kind last,
then renames: a killed writer leaves only a `.tmp-*` file no reader accepts. Readers open lazily,
keep the file open, reopen after a fork. A shard lists only videos with ≥ 1 second (see end_video).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Self

import h5py
import numpy as np

from storage.atomic import fsync_path, temporary_path
from storage.digests import file_digest

FORMAT_VERSION = 1
_KIND = "shard_kind"
_VERSION = "format_version"
_JSON_NAMES = "json_encoded_attributes"  # names of the attrs stored as JSON text
_STRING = h5py.string_dtype("utf-8")
Attrs = Mapping[str, Any] | None  # extra file attributes: model name, weights digest, config...


class ShardFormatError(ValueError):
    """A file that is not a complete shard of the expected kind."""


def _encode_attributes(path: Path, attrs: Mapping[str, Any], own: dict[str, int]) -> dict[str, Any]:
    """Scalars as they are, others as JSON text; `own` (the writer's) names may not be reused."""
    encoded: dict[str, Any] = dict(own)
    json_names: list[str] = []
    for name, value in attrs.items():
        if name in (_KIND, _VERSION, _JSON_NAMES, *own):
            raise ValueError(f"shard {path}: attribute name {name!r} is reserved")
        if isinstance(value, str | bool | int | float | np.generic):
            encoded[name] = value
            continue
        try:
            encoded[name] = json.dumps(value, sort_keys=True)
        except TypeError as error:
            raise ValueError(f"shard {path}: attribute {name!r} is not JSON-able") from error
        json_names.append(name)
    encoded[_JSON_NAMES] = json.dumps(json_names)
    encoded[_VERSION] = FORMAT_VERSION
    return encoded


def _decode_attributes(raw: Mapping[str, Any]) -> dict[str, Any]:
    json_names = set(json.loads(raw.get(_JSON_NAMES, "[]")))
    decoded = {name: value for name, value in raw.items() if name != _JSON_NAMES}
    for name, value in decoded.items():
        if name in json_names:
            decoded[name] = json.loads(value)
        elif isinstance(value, np.generic):  # numpy scalars back to int, float, bool
            decoded[name] = value.item()
    return decoded


class _ShardWriter:
    """Temporary file, video bookkeeping, abort and commit shared by both writers."""

    kind: ClassVar[str]

    def __init__(self, path: Path, attrs: Attrs, own: dict[str, int] | None = None) -> None:
        self.path = Path(path)
        self._attrs = _encode_attributes(self.path, attrs or {}, own or {})
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._temporary = temporary_path(self.path)
        self._file: h5py.File | None = h5py.File(self._temporary, "w")
        self._video_ids: list[str] = []  # listed videos, in order
        self._counts: list[int] = []  # seconds (rows) of each listed video
        self._current: str | None = None  # the video begun and not yet ended

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._abort()  # after commit() there is nothing left to abort

    def _open_file(self) -> h5py.File:
        if self._file is None:
            raise RuntimeError(f"{self.kind} shard writer for {self.path} is already closed")
        return self._file

    def begin_video(self, video_id: str) -> None:
        self._open_file()
        if self._current is not None:
            raise RuntimeError(f"shard {self.path}: video {self._current!r} is still open")
        if video_id in self._video_ids:
            raise ValueError(f"shard {self.path}: duplicate video id {video_id!r}")
        self._current = video_id

    def _current_video(self) -> str:
        if self._current is None:
            raise RuntimeError(f"shard {self.path}: no video begun (call begin_video first)")
        return self._current

    def _finish(self, count: int) -> int:
        """List the current video with `count` seconds, or drop it and raise if there are none."""
        video_id = self._current_video()
        if count == 0:
            self.discard_video()
            message = "has no seconds; record it as failed instead"
            raise ValueError(f"shard {self.path}: video {video_id!r} {message}")
        self._video_ids.append(video_id)
        self._counts.append(count)
        self._current = None
        return count

    def discard_video(self) -> None: ...

    def _write_index(self, file: h5py.File) -> None: ...

    def commit(self) -> str:
        """Close, fsync, rename into `path`, fsync the folder; returns the file's sha256 hex."""
        file = self._open_file()
        if self._current is not None:
            raise RuntimeError(f"shard {self.path}: commit() while video {self._current!r} is open")
        try:
            file.create_dataset("ids", data=np.array(self._video_ids, dtype=object), dtype=_STRING)
            self._write_index(file)
            file.attrs.update(self._attrs)
            file.attrs[_KIND] = self.kind  # written last: only a finished file has it
            file.close()
            self._file = None
            fsync_path(self._temporary)
            digest = file_digest(self._temporary)
            os.replace(self._temporary, self.path)
            fsync_path(self.path.parent)
        except BaseException:
            self._abort()
            raise
        return digest

    def _abort(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self._temporary.unlink(missing_ok=True)


class FrameShardWriter(_ShardWriter):
    """frames-NNNNN.h5: one uint8 dataset per video, (n_seconds, F, S, S, 3), chunked per second."""

    kind = "frames"

    def __init__(self, path: Path, frames_per_second: int, size: int, attrs: Attrs = None) -> None:
        self.clip_shape = (frames_per_second, size, size, 3)  # (F, S, S, 3)
        super().__init__(path, attrs, {"frames_per_second": frames_per_second, "size": size})
        self._clips: h5py.Dataset | None = None  # (n, F, S, S, 3) of the current video

    def begin_video(self, video_id: str) -> None:
        super().begin_video(video_id)
        shape, name = self.clip_shape, f"clips/{len(self._video_ids):06d}"
        self._clips = self._open_file().create_dataset(
            name, (0, *shape), np.uint8, maxshape=(None, *shape), chunks=(1, *shape)
        )

    def append_second(self, clip: np.ndarray) -> None:
        """Append one second, (F, S, S, 3) uint8; only this second is held in memory."""
        video_id = self._current_video()
        if clip.shape != self.clip_shape or clip.dtype != np.uint8:
            raise ValueError(
                f"shard {self.path}, video {video_id!r}: expected a uint8 clip of shape "
                f"{self.clip_shape}, got {clip.dtype} {clip.shape}"
            )
        assert self._clips is not None
        seconds = self._clips.shape[0]
        self._clips.resize(seconds + 1, axis=0)
        self._clips[seconds] = clip

    def end_video(self) -> int:
        """Close the current video; returns its seconds. With none: drops it, raises ValueError."""
        self._current_video()
        assert self._clips is not None
        seconds = self._finish(self._clips.shape[0])
        self._clips = None
        return seconds

    def discard_video(self) -> None:
        """Drop the video begun (its decode failed); it is not listed in the shard."""
        self._current_video()
        assert self._clips is not None
        del self._open_file()[self._clips.name]
        self._clips = None
        self._current = None

    def _write_index(self, file: h5py.File) -> None:
        file.create_dataset("n_seconds", data=np.array(self._counts, dtype=np.int64))  # (V,)


class FeatureShardWriter(_ShardWriter):
    """features-NNNNN.h5: `feats` float16 [ΣK, D], `offsets` int64 [V+1], `ids` [V]."""

    kind = "features"

    def __init__(self, path: Path, dim: int, attrs: Attrs = None) -> None:
        super().__init__(path, attrs)
        self.dim = dim
        self._feats = self._open_file().create_dataset(  # (ΣK, D), no compression
            "feats", (0, dim), np.float16, maxshape=(None, dim), chunks=(256, dim)
        )
        self._listed_rows = 0  # rows of the listed videos; the current video's follow them

    def append_rows(self, rows: np.ndarray) -> None:
        """Append (k, D) float rows (float16 or float32) of the current video, stored float16."""
        video_id = self._current_video()
        if rows.ndim != 2 or rows.shape[1] != self.dim or rows.dtype.kind != "f":
            raise ValueError(
                f"shard {self.path}, video {video_id!r}: expected float rows of shape (k, "
                f"{self.dim}), got {rows.dtype} {rows.shape}"
            )
        half = rows.astype(np.float16)  # (k, D)
        if not np.isfinite(half).all():
            raise ValueError(f"shard {self.path}, video {video_id!r}: NaN or beyond float16")
        total = self._feats.shape[0]
        self._feats.resize(total + len(half), axis=0)
        self._feats[total:] = half

    def end_video(self) -> int:
        """Close the current video; returns its rows. With none: drops it, raises ValueError."""
        rows = self._finish(self._feats.shape[0] - self._listed_rows)
        self._listed_rows += rows
        return rows

    def discard_video(self) -> None:
        """Drop the video begun and the rows appended to it; it is not listed in the shard."""
        self._current_video()
        self._feats.resize(self._listed_rows, axis=0)
        self._current = None

    def add(self, video_id: str, features: np.ndarray) -> None:
        """begin_video + append_rows + end_video; on an error the video is left out."""
        self.begin_video(video_id)
        try:
            self.append_rows(features)
        except BaseException:
            self.discard_video()
            raise
        self.end_video()

    def _write_index(self, file: h5py.File) -> None:
        file.create_dataset("offsets", data=np.cumsum([0, *self._counts], dtype=np.int64))


class _ShardReader:
    """Lazy, fork-safe opening, kind check and id lookup shared by both readers."""

    kind: ClassVar[str]

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._handle: h5py.File | None = None
        self._pid: int | None = None  # the process that opened _handle
        self._positions: dict[str, int] | None = None  # video id → position, in `ids` order
        self._counts = np.zeros(0, dtype=np.int64)  # (V,) seconds per video
        self._attrs: dict[str, Any] = {}

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        if self._handle is not None and self._pid == os.getpid():
            self._handle.close()
        self._handle = None

    def _file(self) -> h5py.File:
        """The open file of this process; after a fork the child opens its own."""
        if self._handle is None or self._pid != os.getpid():
            self._handle = self._open()
            self._pid = os.getpid()
        return self._handle

    def _open(self) -> h5py.File:
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.kind} shard {self.path} does not exist")
        try:
            file = h5py.File(self.path, "r")
        except OSError as error:
            raise ShardFormatError(f"{self.path} is not an HDF5 file: {error}") from error
        try:
            kind, version = file.attrs.get(_KIND), file.attrs.get(_VERSION)
            if kind != self.kind or version != FORMAT_VERSION:
                found = f"shard_kind={kind!r}, format_version={version!r}"
                raise ShardFormatError(f"{self.path} is not a complete {self.kind} shard ({found})")
            self._opened(file)
            if self._positions is None:  # the small index is read once and kept across a fork
                self._counts = self._read_counts(file)
                self._attrs = _decode_attributes(file.attrs)
                ids = file["ids"].asstr()[()]  # (V,)
                self._positions = {video_id: position for position, video_id in enumerate(ids)}
        except BaseException:
            file.close()
            raise
        return file

    def _read_counts(self, file: h5py.File) -> np.ndarray: ...  # (V,) seconds per video

    def _opened(self, file: h5py.File) -> None: ...  # cache this process's dataset handles

    @property
    def video_ids(self) -> list[str]:
        self._file()
        return list(self._positions or {})

    @property
    def attrs(self) -> dict[str, Any]:
        """File attributes: the writer's attrs plus shard_kind and format_version."""
        self._file()
        return dict(self._attrs)

    def _position(self, video_id: str) -> int:
        self._file()
        if (position := (self._positions or {}).get(video_id)) is None:
            raise KeyError(f"video {video_id!r} is not in {self.kind} shard {self.path}")
        return position

    def n_seconds(self, video_id: str) -> int:
        position = self._position(video_id)  # opens the file (and loads the counts) first
        return int(self._counts[position])

    def _locate(self, video_id: str, start: int, stop: int | None) -> tuple[int, int, int]:
        """(position, start, stop) of seconds [start, stop) of a video, checked."""
        position = self._position(video_id)
        length = int(self._counts[position])
        stop = length if stop is None else stop
        if not 0 <= start <= stop <= length:
            where = f"shard {self.path}, video {video_id!r}"
            raise IndexError(f"{where}: seconds [{start}, {stop}) outside [0, {length})")
        return position, start, stop


class FrameShardReader(_ShardReader):
    """Reads frame shards written by FrameShardWriter; one second is one chunk on disk."""

    kind = "frames"

    def _read_counts(self, file: h5py.File) -> np.ndarray:
        return file["n_seconds"][()]  # (V,)

    @property
    def frames_per_second(self) -> int:
        return int(self.attrs["frames_per_second"])

    @property
    def size(self) -> int:
        return int(self.attrs["size"])

    def clips(self, video_id: str, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Seconds [start, stop) of a video: (n, F, S, S, 3) uint8; reads only those chunks."""
        position, start, stop = self._locate(video_id, start, stop)
        return self._file()[f"clips/{position:06d}"][start:stop]


class FeatureShardReader(_ShardReader):
    """Reads feature shards written by FeatureShardWriter; ids and offsets are loaded once."""

    kind = "features"
    _feats: h5py.Dataset  # (ΣK, D) float16

    def _read_counts(self, file: h5py.File) -> np.ndarray:
        offsets = file["offsets"][()]  # (V+1,)
        if len(offsets) == 0 or offsets[0] != 0 or offsets[-1] != len(self._feats):
            raise ShardFormatError(f"{self.path}: `offsets` do not span the rows of `feats`")
        self._starts = offsets[:-1]  # (V,)
        return np.diff(offsets)

    def _opened(self, file: h5py.File) -> None:
        self._feats = file["feats"]

    @property
    def dim(self) -> int:
        self._file()
        return int(self._feats.shape[1])

    def row(self, video_id: str) -> int:
        """Position of the video in `ids` (its rows are feats[offsets[row]:offsets[row + 1]])."""
        return self._position(video_id)

    def features(self, video_id: str, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Rows [start, stop) of a video: (k, D) float16; reads only those rows."""
        position, start, stop = self._locate(video_id, start, stop)
        first = int(self._starts[position])
        return self._feats[first + start : first + stop]  # (k, D)
