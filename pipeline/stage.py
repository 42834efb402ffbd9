"""Stages as typed functions: declared inputs, one cache key, run at most once (DESIGN.md §3).

A stage is a plain function over one frozen inputs object, a `StageInputs` subclass that names
the stage, the code it runs and the type of its manifest's facts, and holds what the stage reads:
its config section, the manifests of its upstream stages and its declared input files (the
annotation, ground-truth or weights files it opens besides upstream outputs). `stage_key(inputs)`
is the one function that makes a cache key, from exactly those and the source of the code,
without running the stage; `inputs.key` keeps it, so an orchestrator that asks for the key first
(Prefect's `cache_key_fn`) and the stage that then runs compute it once. Editing a declared file
re-keys the stages that declare it and no other.

`run_cached(inputs, build)` returns the existing manifest when the stage folder is complete;
otherwise it calls `build(folder)`, digests the outputs it names and writes the manifest last.
Inside `rebuilding()` a complete stage is built again (a user-requested rerun; the old folder is
kept beside the new one as `<key>.replaced-<time>`).

The `*Info` classes at the end are the stages' contract (DESIGN.md §3 table): the typed facts each
stage records in its manifest and later stages read (`ingest.info.task`, `decode.info.size`);
a manifest is read back into its stage's class.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import TypeAdapter, ValidationError

from storage.atomic import remove_stale_temporaries
from storage.digests import code_digest, file_digest, json_digest
from storage.layout import (
    MANIFEST_NAME,
    Manifest,
    cache_key,
    read_manifest,
    stage_dir,
    write_manifest,
)

log = logging.getLogger(__name__)

Info = TypeVar("Info")


@dataclass(frozen=True)
class StageResult(Generic[Info]):
    """What a stage's build function hands back: its output files and its typed facts."""

    outputs: dict[str, str]  # output name → path relative to the stage folder
    info: Info
    digests: dict[str, str] = field(default_factory=dict)  # precomputed digests (skip hashing)


@dataclass(frozen=True, kw_only=True)
class StageInputs:
    """Everything one stage run reads; subclasses add their fields and say what is keyed."""

    stage: ClassVar[str]  # the stage's name: its folder under the artifact root
    modules: ClassVar[tuple[str, ...]]  # the code the stage runs (module or package names)
    info_type: ClassVar[type]  # the class of its manifest's facts

    artifacts: Path  # the artifact root

    def section(self) -> dict[str, Any]:
        """The config values (plain JSON-able data) that decide the stage's outputs."""
        raise NotImplementedError

    def upstream(self) -> tuple[Manifest[Any], ...]:
        """The manifests of the stages whose outputs this stage reads."""
        return ()

    def files(self) -> dict[str, Path]:
        """Declared input files by role; a file that does not exist is keyed as absent."""
        return {}

    @functools.cached_property
    def key(self) -> str:
        """This run's cache key (computed once per inputs object)."""
        return stage_key(self)


def stage_key(inputs: StageInputs) -> str:
    """The DESIGN.md §3 cache key of a stage run, from its declared inputs alone. The code is
    the stage's modules and this one (it defines how manifests are written and read back)."""
    files = {role: declared_digest(path) for role, path in sorted(inputs.files().items())}
    upstream = [manifest.digest for manifest in inputs.upstream()]
    code = code_digest((__name__, *inputs.modules))
    return cache_key(inputs.stage, inputs.section(), upstream, code, files)


def declared_digest(path: Path) -> str | None:
    """sha256 of a declared input file, None when it is absent. Remembered per process by (path,
    size, mtime), so a large file (BERT weights) is read once however many stages declare it."""
    if not path.is_file():
        return None
    status = path.stat()
    return _digest(str(path.resolve()), status.st_size, status.st_mtime_ns)


@functools.lru_cache(maxsize=256)
def _digest(path: str, size: int, mtime_ns: int) -> str:
    return file_digest(Path(path))


_REBUILD: ContextVar[bool] = ContextVar("fineco_stage_rebuild", default=False)


@contextlib.contextmanager
def rebuilding() -> Iterator[None]:
    """Stages run inside this block build again even if complete (an explicit rerun)."""
    token = _REBUILD.set(True)
    try:
        yield
    finally:
        _REBUILD.reset(token)


@functools.cache
def _parser(info_type: type) -> Callable[[Any], Any]:
    return TypeAdapter(info_type).validate_python


def read_stage_manifest(folder: Path, info_type: type[Info]) -> Manifest[Info] | None:
    """The manifest of a complete stage folder with its facts as `info_type`, or None."""
    try:
        return read_manifest(folder, _parser(info_type))
    except ValidationError as error:  # written by other code under the same key: say where
        raise ValueError(
            f"{folder / MANIFEST_NAME}: its facts do not read as {info_type.__name__} ({error}); "
            "move the folder aside to run the stage again"
        ) from None


def run_cached(inputs: StageInputs, build: Callable[[Path], StageResult[Info]]) -> Manifest[Info]:
    """Return the manifest of `inputs`' stage run, building it first if it never completed."""
    key = inputs.key
    folder = stage_dir(inputs.artifacts, inputs.stage, key)
    done = read_stage_manifest(folder, inputs.info_type)
    if done is not None and _REBUILD.get():
        replaced = folder.with_name(f"{key}.replaced-{time.strftime('%Y%m%dT%H%M%S')}")
        folder.rename(replaced)
        log.info("%s: rerun requested; the previous result moved to %s", inputs.stage, replaced)
        done = None
    if done is not None:
        log.info("%s: cached (%s)", inputs.stage, folder)
        return done
    folder.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(folder)
    log.info("%s: running into %s", inputs.stage, folder)
    result = build(folder)
    if not isinstance(result.info, inputs.info_type):
        raise TypeError(
            f"{inputs.stage}: the build returned {type(result.info).__name__} facts, "
            f"expected {inputs.info_type.__name__}"
        )
    output_digests = {
        name: result.digests.get(name) or file_digest(folder / relative)
        for name, relative in result.outputs.items()
    }
    manifest = Manifest(
        stage=inputs.stage,
        cache_key=key,
        path=str(folder),
        digest=json_digest(output_digests),
        outputs=dict(result.outputs),
        info=result.info,
        output_digests=output_digests,
    )
    return write_manifest(folder, manifest)


# ---------------------------------------------------------------- what each stage records


@dataclass(frozen=True)
class IngestInfo:
    dataset: str
    adapter: str
    task: str  # retrieval, qa or mc: decides the pairs' columns and the evaluation protocol
    root: str  # the dataset root (absolute)
    annotation_dir: str  # the folder holding the annotation files
    videos: int
    pairs: int
    splits: dict[str, dict[str, int]]  # split → {"videos": n, "pairs": m}
    dropped: dict[str, int]  # reason → records left out
    task_facts: dict[str, Any] = field(default_factory=dict)  # task.json summarised
    features: bool = False  # the videos are pre-extracted feature files (no decode)


@dataclass(frozen=True)
class DecodeInfo:
    dataset: str
    videos: int
    status_counts: dict[str, int]  # ok / truncated / failed / too_short → videos
    seconds: int  # one-second clips decoded
    bad_videos: dict[str, str]  # video id → "status: reason"
    frames_per_second: int
    size: int
    backend: str
    keep_frames: bool
    shards: list[str]  # content digests of the frame shards used
    # one pass: statuses "probed" and `seconds` from the headers; extract decodes (and records
    # the videos that end early in ExtractInfo.ended_early)
    streaming: bool = False


@dataclass(frozen=True)
class ExtractInfo:
    dataset: str
    weights: dict[str, Any]  # the backbone's identity: file digest, or seed and calibration
    random_init: bool
    videos: int
    seconds: int
    embedded_seconds: int  # embedded by this run (the rest came from the pool)
    embedded_per_second: float | None
    device: str | None  # None when every shard came from the pool
    imported: bool = False  # features read from the dataset's files, not computed by S3D-G
    # decode.streaming: videos that decoded to fewer seconds than their header → "decoded k of
    # n seconds" (0: left out of the index)
    ended_early: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SelectionFacts:
    """Which epoch's weights a validated fine-tuning run kept, and why."""

    select: str  # "last" or "best" (finetune.validation.select)
    criterion: str  # what "best" maximises, e.g. "validation R@1"
    validation: str  # where the validation pairs came from
    validation_pairs: int
    selected_epoch: int  # 0-based: the epoch whose weights are the stage's output
    best_epoch: int  # the epoch with the highest criterion (ties: the earlier)


@dataclass(frozen=True)
class TrainingFacts:
    """What the training loop did (pretrain and finetune alike)."""

    steps: int
    steps_per_epoch: int
    train_seconds: float
    resumed_from_step: int | None  # None for a run that started fresh
    items: int  # training items (pairs or sampled clips) per epoch
    selection: SelectionFacts | None = None  # with per-epoch validation (fine-tuning)


@dataclass(frozen=True)
class PretrainInfo:
    dataset: str
    model: dict[str, Any]  # build_model's facts: bert, sizes, parameters
    objective: str
    training: TrainingFacts


@dataclass(frozen=True)
class FinetuneInfo:
    dataset: str
    variant: str
    task: str
    model: dict[str, Any]
    started_from: str  # "bert", the pretrain stage folder or a VideoCLIP checkpoint path
    fineco: dict[str, Any]  # the variant's FineCo section (enabled false: the baseline)
    objective: str
    dropped_pairs: dict[str, int]
    training: TrainingFacts
    warm_start: dict[str, Any] | None = None  # what a VideoCLIP checkpoint gave
    answers: int | None = None  # QA: the answer vocabulary's size
    answer_coverage: dict[str, float | None] | None = None  # QA: train/test answers covered


@dataclass(frozen=True)
class EvaluateInfo:
    variant: str
    task: str
    protocol: str
    plain: dict[str, float] | None = None  # retrieval: R@1/5/10, MedR, MeanR without DS
    accuracy: float | None = None  # QA and multiple choice


@dataclass(frozen=True)
class ReportInfo:
    figures: int


@dataclass(frozen=True)
class BenchmarkInfo:
    """The long-sparse benchmark's files (pipeline/synth/long_sparse.py) under the stage folder."""

    test_queries: int
    chance_r1: float  # percent
    long_relevant_share_mean: float
    long_mean_seconds: float


@dataclass(frozen=True)
class StudyInfo:
    seeds: list[int]
    methods: list[str]
    queries: dict[str, int]  # set → test queries
