"""Run a stage at most once per cache key: the idempotence rule of DESIGN.md §3.

`run_cached` computes the stage's key, returns the existing manifest when the stage folder is
complete, and otherwise calls `build(folder)`, digests the outputs it names and writes the
manifest last. The same call works from a test, the CLI or a Prefect task.

Two context managers serve orchestrators without changing any stage's signature:
`stage_key(call)` returns the key a stage call would use, without running it (Prefect's
`cache_key_fn`); `rebuilding()` makes the calls inside it build again even when complete (a
user-requested rerun; the old folder is kept beside the new one as `<key>.replaced-<time>`).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextvars import ContextVar
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


_PROBE: ContextVar[bool] = ContextVar("fineco_stage_key_probe", default=False)
_REBUILD: ContextVar[bool] = ContextVar("fineco_stage_rebuild", default=False)


class _KeyFound(Exception):  # control flow of stage_key only; never escapes it
    def __init__(self, stage: str, key: str) -> None:
        super().__init__(f"{stage}-{key}")
        self.stage_key = f"{stage}-{key}"


def stage_key(call: Callable[[], object]) -> str:
    """`<stage>-<cache key>` of a stage call (`lambda: run_decode(...)`), without running it.

    The call runs only up to the point where its key is known (its cheap input fingerprints
    included), so the key is exactly the one `run_cached` uses.
    """
    token = _PROBE.set(True)
    try:
        call()
    except _KeyFound as found:
        return found.stage_key
    finally:
        _PROBE.reset(token)
    raise RuntimeError("stage_key: the call never reached run_cached")


@contextlib.contextmanager
def rebuilding() -> Iterator[None]:
    """Stages run inside this block build again even if complete (an explicit rerun)."""
    token = _REBUILD.set(True)
    try:
        yield
    finally:
        _REBUILD.reset(token)


def run_cached(root: Path, spec: StageSpec, build: Callable[[Path], StageResult]) -> Manifest:
    """Return the manifest of `spec`, building the stage first if it never completed."""
    key = spec.key()
    if _PROBE.get():
        raise _KeyFound(spec.stage, key)
    folder = stage_dir(root, spec.stage, key)
    done = read_manifest(folder)
    if done is not None and _REBUILD.get():
        replaced = folder.with_name(f"{key}.replaced-{time.strftime('%Y%m%dT%H%M%S')}")
        folder.rename(replaced)
        log.info("%s: rerun requested; the previous result moved to %s", spec.stage, replaced)
        done = None
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
