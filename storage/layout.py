"""Artifact layout, cache keys and stage manifests (DESIGN.md §3).

    <root>/<stage>/<cache_key>/   ...outputs...   manifest.json   (written last, atomically)

`cache_key` is a sha256 over the stage name, the stage's resolved config section, the digests of
its upstream manifests, the digests of the files it declares as inputs and a digest of the code
the stage runs (pipeline/stage.py assembles them). A stage folder whose `manifest.json` exists is
complete; anything else in `<root>/<stage>/` is an unfinished attempt.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Generic, TypeVar

from storage.atomic import atomic_write_json
from storage.digests import json_digest

ARTIFACTS = "{artifacts}"  # in a config path: the artifact root
MANIFEST_NAME = "manifest.json"
KEY_LENGTH = 20  # hex characters of the sha256 used in folder names
Info = TypeVar("Info")


def artifact_root() -> Path:
    """`$FINECO_ARTIFACTS`, else `./artifacts`."""
    return Path(os.environ.get("FINECO_ARTIFACTS", "artifacts")).resolve()


def expand_path(text: str, root: Path) -> Path:
    """A config path with `{artifacts}` replaced by the artifact root and `~` expanded."""
    return Path(text.replace(ARTIFACTS, str(root))).expanduser()


def cache_key(
    stage: str,
    section: Mapping[str, Any],
    upstream: Sequence[str],
    code: str,
    files: Mapping[str, str | None] | None = None,
) -> str:
    """The DESIGN.md §3 cache key: stage, config section, upstream digests, code digest, and the
    digests of the files the stage reads besides its upstream (None: a file that is absent)."""
    payload = {
        "stage": stage,
        "section": section,
        "upstream": list(upstream),
        "files": dict(files or {}),
        "code": code,
    }
    return json_digest(payload)[:KEY_LENGTH]


@dataclass(frozen=True)
class Manifest(Generic[Info]):
    """What a completed stage produced: small, JSON-able, safe to return from a Prefect task.

    `info` holds the stage's typed facts (its class is the stage's part of the contract between
    stages, pipeline/stage.py); storage only writes it as JSON and reads it back through the
    parser the caller gives.
    """

    stage: str
    cache_key: str
    path: str  # the stage folder
    digest: str  # content digest of the outputs; downstream keys include it
    outputs: dict[str, str]  # output name → path relative to `path`
    info: Info
    output_digests: dict[str, str] = field(default_factory=dict)  # output name → sha256
    created: str = ""

    def output(self, name: str) -> Path:
        if name not in self.outputs:
            raise KeyError(f"{self.stage} manifest at {self.path} has no output {name!r}")
        return Path(self.path) / self.outputs[name]


def stage_dir(root: Path, stage: str, key: str) -> Path:
    return root / stage / key


def read_manifest(folder: Path, parse_info: Callable[[Any], Info]) -> Manifest[Info] | None:
    """The manifest of a completed stage folder (its info read by `parse_info`), or None if the
    stage never finished there."""
    path = folder / MANIFEST_NAME
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    data["path"] = str(folder)  # the artifact root may have moved since it was written
    data["info"] = parse_info(data["info"])
    return Manifest(**data)


def write_manifest(folder: Path, manifest: Manifest[Info]) -> Manifest[Info]:
    """Write `manifest.json` atomically; call this after every output is in place."""
    stamped = replace(manifest, created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
    atomic_write_json(folder / MANIFEST_NAME, asdict(stamped))
    return stamped
