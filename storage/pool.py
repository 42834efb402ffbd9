"""Shard pools: append-only units of work shared by every run of a stage with the same settings.

A pool is one folder per (stage, config section, code digest) holding shards (`<name>.h5`) and one
record per shard (`<name>.json`). The record is written atomically *after* its shard was renamed
into place, so a shard counts only once both exist; a killed writer leaves no record and its work
is simply redone. Stage folders (DESIGN.md §3) list the shards they use, so adding videos to a
dataset decodes and extracts only the new ones: every video already in a complete shard, with the
same file size and mtime, is reused.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from storage.atomic import atomic_write_json, remove_stale_temporaries

log = logging.getLogger(__name__)

_NUMBERED = re.compile(r"-(\d{5,})$")


@dataclass(frozen=True)
class ShardRecord:
    """A complete shard: its file, the file's digest, and one row of facts per video in it."""

    name: str  # e.g. "frames-00003"
    file: str  # file name inside the pool folder; "" for a record without a file
    digest: str  # sha256 of the shard file (of the rows, for a record without a file)
    rows: list[dict[str, Any]]  # per video: video_id and the facts the stage records
    info: dict[str, Any] = field(default_factory=dict)


class ShardPool:
    """The shards of one pool folder. One stage run writes to a pool at a time."""

    def __init__(self, folder: Path, prefix: str) -> None:
        self.folder = folder
        self.prefix = prefix
        folder.mkdir(parents=True, exist_ok=True)

    def clean(self) -> None:
        """Delete what killed writers left; call before planning, never while shards are written."""
        removed = remove_stale_temporaries(self.folder)
        if removed:
            log.info("%s: removed %d unfinished file(s) of a killed run", self.folder, removed)

    def shard_path(self, name: str) -> Path:
        return self.folder / f"{name}.h5"

    def records(self) -> list[ShardRecord]:
        """Complete shards (record and file both present), in name order."""
        complete = []
        for path in sorted(self.folder.glob(f"{self.prefix}-*.json")):
            record = self._read(path)
            if record is not None:
                complete.append(record)
        return complete

    def record(self, name: str) -> ShardRecord | None:
        path = self.folder / f"{name}.json"
        return self._read(path) if path.is_file() else None

    def _read(self, path: Path) -> ShardRecord | None:
        record = ShardRecord(**json.loads(path.read_text()))
        if record.file and not (self.folder / record.file).is_file():
            log.warning("%s: record without its shard file %s; ignoring", path, record.file)
            return None
        return record

    def numbered_names(self, count: int) -> list[str]:
        """`count` fresh names `<prefix>-NNNNN`, numbered after every complete shard."""
        numbers = [
            int(match.group(1))
            for record in self.records()
            if (match := _NUMBERED.search(record.name))
        ]
        start = max(numbers, default=-1) + 1
        return [f"{self.prefix}-{number:05d}" for number in range(start, start + count)]

    def commit(self, record: ShardRecord) -> ShardRecord:
        """Write the record of a shard whose file is already in place; this makes it complete."""
        if record.file and not (self.folder / record.file).is_file():
            raise FileNotFoundError(f"shard file {self.folder / record.file} is not in place")
        atomic_write_json(self.folder / f"{record.name}.json", asdict(record))
        return record


def chunk(items: Sequence[Any], size: int) -> list[list[Any]]:
    """Consecutive groups of at most `size` items."""
    if size < 1:
        raise ValueError(f"shard size must be at least 1, got {size}")
    return [list(items[start : start + size]) for start in range(0, len(items), size)]
