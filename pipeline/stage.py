"""Run a stage at most once per cache key: the idempotence rule of DESIGN.md §3.

`run_cached` computes the stage's key, returns the existing manifest when the stage folder is
complete, and otherwise calls `build(folder)`, digests the outputs it names and writes the
manifest last. The same call works from a test, the CLI or a Prefect task.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from storage.atomic import remove_stale_temporaries
from storage.digests import code_digest, file_digest, json_digest
from storage.layout import Manifest, cache_key, read_manifest, stage_dir, write_manifest

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StageResult:
    """What a stage's build function hands back: its output files and facts for the manifest."""

    outputs: dict[str, str]  # output name → path relative to the stage folder
    info: dict[str, Any] = field(default_factory=dict)
    digests: dict[str, str] = field(default_factory=dict)  # precomputed digests (skip hashing)


@dataclass(frozen=True)
class StageSpec:
    """Identity of one stage run: everything its cache key is made of."""

    stage: str
    section: Mapping[str, Any]  # the resolved config section (plain JSON-able data)
    upstream: Sequence[Manifest]
    modules: Sequence[str]  # modules whose source is part of the key

    def key(self) -> str:
        return cache_key(
            self.stage,
            self.section,
            [m.digest for m in self.upstream],
            code_digest(self.modules),
        )


def run_cached(root: Path, spec: StageSpec, build: Callable[[Path], StageResult]) -> Manifest:
    """Return the manifest of `spec`, building the stage first if it never completed."""
    key = spec.key()
    folder = stage_dir(root, spec.stage, key)
    done = read_manifest(folder)
    if done is not None:
        log.info("%s: cached (%s)", spec.stage, folder)
        return done
    folder.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(folder)
    log.info("%s: running into %s", spec.stage, folder)
    result = build(folder)
    output_digests = {
        name: result.digests.get(name) or file_digest(folder / relative)
        for name, relative in result.outputs.items()
    }
    manifest = Manifest(
        stage=spec.stage,
        cache_key=key,
        path=str(folder),
        digest=json_digest(output_digests),
        outputs=dict(result.outputs),
        info={**result.info, "output_digests": output_digests},
    )
    return write_manifest(folder, manifest)
