"""Atomic file writes: write to a temporary path beside the target, fsync, rename, fsync the folder.

A reader sees either the old file or the complete new one, never a partial write; a killed writer
leaves only a `.tmp-*` file that no reader looks at (DESIGN.md §3).
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def temporary_path(path: Path) -> Path:
    """A unique sibling of `path` that readers ignore (same filesystem, so rename is atomic)."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def fsync_path(path: Path) -> None:
    """Flush a file's or a folder's contents to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_output(path: Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it is fsynced and renamed to `path`.

    On an exception the temporary file (or folder) is removed and `path` is left untouched.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    try:
        yield tmp
        fsync_path(tmp)
        os.replace(tmp, path)
        fsync_path(path.parent)
    finally:
        if tmp.is_file():
            tmp.unlink()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def remove_stale_temporaries(folder: Path) -> int:
    """Delete `.tmp-*` leftovers of killed writers in `folder`; returns how many were removed."""
    removed = 0
    for leftover in folder.glob(".*.tmp-*"):
        if leftover.is_file():
            leftover.unlink(missing_ok=True)
            removed += 1
    return removed
