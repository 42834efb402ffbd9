"""Content digests: of files, of JSON-able values and of the code a stage runs (DESIGN.md §3)."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

_CHUNK = 1 << 20


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes, hex."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace: equal values give equal text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def json_digest(value: Any) -> str:
    """sha256 of the canonical JSON of a value, hex."""
    return hashlib.sha256(canonical_json(value).encode("utf-8")).hexdigest()


def code_digest(modules: Iterable[str]) -> str:
    """sha256 over the source files of the named modules (packages: every .py file beneath).

    A stage's cache key includes the digest of the modules it runs, so a change to the code that
    produced an artifact invalidates it.
    """
    digest = hashlib.sha256()
    for name in sorted(set(modules)):
        for source in _module_sources(name):
            digest.update(f"{name}:{source.name}\0".encode())
            digest.update(source.read_bytes())
    return digest.hexdigest()


def _module_sources(name: str) -> list[Path]:
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(f"cannot compute a code digest: module {name!r} not found")
    origin = Path(spec.origin)
    if spec.submodule_search_locations:  # a package: every source file beneath it
        return sorted(origin.parent.rglob("*.py"))
    return [origin]
