"""Decode stage: raw videos → one-second uint8 clips in HDF5 frame shards (DESIGN.md §3, §4).

The stage is split so an orchestrator can fan out one task per shard:
`plan_decode` (which videos still need decoding, grouped into shards) → `decode_shard` (one
shard, any process) → `finish_decode` (the `decode.parquet` status table and the bad-share
check). `run_decode` does all three, with one decoder process per core.

Bad videos never stop the stage: each gets a status row with its reason. The stage fails only
when the share of failed videos exceeds `decode.max_bad_share`; the status table is written
first, and the error names the failed videos, the counts of every status, the table and the
override that would pass. Videos under one second are `too_short`: excluded, never counted as
failed. Shards already finished stay in the pool, so a rerun after fixing the inputs redoes
nothing that succeeded.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from pipeline import progress
from pipeline.config import DecodeConfig, section_dict
from pipeline.stage import DecodeInfo, IngestInfo, StageInputs, StageResult, run_cached
from pipeline.video.decoders import ClipWriter, decode_video, probe_outcome
from storage.digests import code_digest, json_digest
from storage.layout import Manifest, cache_key
from storage.pool import ShardPool, ShardRecord, chunk
from storage.shards import FrameShardWriter
from storage.tables import read_table, write_table

log = logging.getLogger(__name__)

MODULES = ("pipeline.decode", "pipeline.video.decoders", "pipeline.video.probe", "storage")
# Fields that change the decoded pixels (and whether they are kept); the rest only schedule work.
CONTENT_FIELDS = ("backend", "frames_per_second", "size", "keep_frames", "streaming")
FINGERPRINT = ("video_id", "bytes", "mtime")  # a video already decoded with the same file
STATUS_COLUMNS = [
    "video_id",
    "path",
    "status",
    "error",
    "duration_s",
    "native_fps",
    "codec",
    "n_seconds",
    "shard",
    "shard_digest",
]


class DecodeStageError(RuntimeError):
    """Too many videos could not be decoded."""


@dataclass(frozen=True, kw_only=True)
class DecodeInputs(StageInputs):
    """An ingested dataset's videos and the decode settings."""

    stage: ClassVar[str] = "decode"
    modules: ClassVar[tuple[str, ...]] = MODULES
    info_type: ClassVar[type] = DecodeInfo

    dataset: str
    ingest: Manifest[IngestInfo]
    config: DecodeConfig

    def section(self) -> dict[str, Any]:
        section = {"dataset": self.dataset, **section_dict(self.config)}
        section.pop("workers")  # where the work runs, not what it produces
        return section

    def upstream(self) -> tuple[Manifest[Any], ...]:
        return (self.ingest,)


@dataclass(frozen=True)
class DecodeTask:
    """One shard of work: decode `videos` into the shard `name` of the pool at `pool`."""

    pool: str
    name: str
    videos: list[dict[str, Any]]  # video_id, path, bytes, mtime


def decode_pool(artifacts: Path, config: DecodeConfig) -> ShardPool:
    """The frame-shard pool shared by every decode run with the same pixels and code."""
    content = {name: getattr(config, name) for name in CONTENT_FIELDS}
    key = cache_key("decode-pool", content, [], code_digest(MODULES))
    return ShardPool(artifacts / "decode" / f"pool-{key}", prefix="frames")


def plan_decode(
    videos: pd.DataFrame, pool: ShardPool, config: DecodeConfig
) -> tuple[dict[str, ShardRecord], list[DecodeTask]]:
    """Videos already in a complete shard (video_id → its record), and shards still to decode."""
    done: dict[tuple, ShardRecord] = {}
    for record in pool.records():
        for row in record.rows:
            done.setdefault(_fingerprint(row), record)
    reused = {}
    todo = []
    for video in videos.to_dict("records"):
        record = done.get(_fingerprint(video))
        if record is None:
            todo.append({key: video[key] for key in ("video_id", "path", "bytes", "mtime")})
        else:
            reused[video["video_id"]] = record
    groups = chunk(todo, config.videos_per_shard)
    names = pool.numbered_names(len(groups))
    folder = str(pool.folder)
    tasks = [DecodeTask(folder, name, group) for name, group in zip(names, groups, strict=True)]
    return reused, tasks


class SecondCounter:
    """A frame writer that keeps no pixels (`decode.keep_frames=false`): it counts seconds."""

    def __init__(self) -> None:
        self.seconds = 0

    def begin_video(self, video_id: str) -> None:
        self.seconds = 0

    def append_second(self, clip: np.ndarray) -> None:
        self.seconds += 1

    def end_video(self) -> int:
        return self.seconds

    def discard_video(self) -> None:
        self.seconds = 0


def decode_shard(task: DecodeTask, config: DecodeConfig) -> ShardRecord:
    """Decode every video of `task` into one frame shard and record each video's outcome.

    Without `keep_frames` the videos are decoded all the same (statuses and seconds are exact)
    but only the record is written; extract then decodes them again.
    """
    pool = ShardPool(Path(task.pool), prefix="frames")
    info = {name: getattr(config, name) for name in CONTENT_FIELDS}
    if not config.keep_frames:
        decode = _probe_row if config.streaming else _decode_row
        rows = [decode(video, SecondCounter(), config) for video in task.videos]
        digest = json_digest({"rows": rows, "info": info})
        return pool.commit(ShardRecord(task.name, file="", digest=digest, rows=rows, info=info))
    path = pool.shard_path(task.name)
    attrs = {"backend": config.backend}  # the writer records frames_per_second and size itself
    with FrameShardWriter(path, config.frames_per_second, config.size, attrs) as writer:
        rows = [_decode_row(video, writer, config) for video in task.videos]
        digest = writer.commit()
    return pool.commit(ShardRecord(task.name, file=path.name, digest=digest, rows=rows, info=info))


def _decode_row(video: dict[str, Any], writer: ClipWriter, config: DecodeConfig) -> dict:
    outcome = decode_video(Path(video["path"]), video["video_id"], writer, config)
    progress.advance(VIDEOS)  # reaches a listener when shards run in threads, not processes
    return {**video, **asdict(outcome)}  # decode_video logs bad videos


def _probe_row(video: dict[str, Any], writer: ClipWriter, config: DecodeConfig) -> dict:
    """`decode.streaming`: the header only (extract decodes the video, once)."""
    outcome = probe_outcome(Path(video["path"]), video["video_id"])
    progress.advance(VIDEOS)
    return {**video, **asdict(outcome)}


def finish_decode(
    videos: pd.DataFrame, records: dict[str, ShardRecord], pool: ShardPool, folder: Path
) -> pd.DataFrame:
    """One status row per video of this dataset, pointing at the shard that holds it."""
    rows = []
    for video in videos.to_dict("records"):
        record = records[video["video_id"]]
        facts = next(r for r in record.rows if _fingerprint(r) == _fingerprint(video))
        shard = os.path.relpath(pool.folder / record.file, folder) if record.file else ""
        rows.append({**facts, "path": video["path"], "shard": shard, "shard_digest": record.digest})
    return pd.DataFrame(rows, columns=STATUS_COLUMNS)  # shard "": frames not kept


def check_bad_share(
    table: pd.DataFrame, config: DecodeConfig, dataset: str, written: Path | None = None
) -> None:
    """Raise when more than `max_bad_share` of the videos failed, naming them and why, the
    counts of every status, the table already `written` and the override that would pass.
    Videos under one second (`too_short`) are excluded, not counted as failed."""
    failed = table[table.status == "failed"]
    if len(table) == 0 or len(failed) / len(table) <= config.max_bad_share:
        return
    listed = "; ".join(f"{r.video_id}: {r.error}" for r in failed.head(20).itertuples())
    more = f" (and {len(failed) - 20} more)" if len(failed) > 20 else ""
    counts = ", ".join(f"{k} {int(v)}" for k, v in sorted(table.status.value_counts().items()))
    needed = math.ceil(1000 * len(failed) / len(table)) / 1000  # the share, rounded up
    where = f"; every video's status and reason: {written}" if written else ""
    raise DecodeStageError(
        f"decode of dataset {dataset!r}: {len(failed)} of {len(table)} videos failed "
        f"({len(failed) / len(table):.0%}), above decode.max_bad_share={config.max_bad_share} "
        f"(statuses: {counts}{where}; to go on without them: decode.max_bad_share={needed}): "
        f"{listed}{more}"
    )


ShardRunner = Callable[[list[DecodeTask], DecodeConfig], Iterable[ShardRecord]]
VIDEOS = "decode: videos"  # the stage's progress unit


def run_decode(
    inputs: DecodeInputs, shard_runner: ShardRunner | None = None
) -> Manifest[DecodeInfo]:
    """Decode every video of an ingested dataset (cached; only new videos are decoded).

    `shard_runner` decodes the planned shards (default: `decode_shards`, a process per core); an
    orchestrator may pass its own, e.g. one task per shard. It does not change the cache key.
    """
    name, config = inputs.dataset, inputs.config

    def build(folder: Path) -> StageResult[DecodeInfo]:
        videos = read_table(inputs.ingest.output("videos"))
        pool = decode_pool(inputs.artifacts, config)
        pool.clean()
        records, tasks = plan_decode(videos, pool, config)
        log.info(
            "decode %s: %d videos, %d already decoded, %d shards to decode",
            name,
            len(videos),
            len(records),
            len(tasks),
        )
        progress.expect(VIDEOS, len(videos), done=len(records))
        shards = (shard_runner or decode_shards)(tasks, config)
        for record in _with_progress(shards, len(tasks), time.perf_counter()):
            records.update({row["video_id"]: record for row in record.rows})
            progress.at_least(VIDEOS, len(records), len(videos))
        table = finish_decode(videos, records, pool, folder)
        write_table(table, folder / "decode.parquet")  # first: a failing check points at it
        check_bad_share(table, config, name, folder / "decode.parquet")
        return StageResult(outputs={"decode": "decode.parquet"}, info=_summary(name, table, config))

    return run_cached(inputs, build)


def decode_shards(tasks: list[DecodeTask], config: DecodeConfig) -> Iterable[ShardRecord]:
    """Decode shards in up to `config.workers` processes (0 = one per core), as they finish.

    One single-threaded ffmpeg per process and one process per core is the measured best use of
    cores here (decode-storage.md §B).
    """
    workers = min(config.workers or os.cpu_count() or 1, len(tasks))
    if workers <= 1:
        yield from (decode_shard(task, config) for task in tasks)
        return
    level = logging.getLogger().getEffectiveLevel()
    context = get_context("spawn")
    with ProcessPoolExecutor(workers, context, _log_like_parent, (level,)) as executor:
        futures = [executor.submit(decode_shard, task, config) for task in tasks]
        yield from (future.result() for future in as_completed(futures))


def _log_like_parent(level: int) -> None:
    """Worker initializer: a spawned process starts with no logging set up."""
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _with_progress(
    records: Iterable[ShardRecord], total: int, started: float
) -> Iterable[ShardRecord]:
    for done, record in enumerate(records, start=1):
        failed = sum(row["status"] == "failed" for row in record.rows)
        seconds = sum(row["n_seconds"] for row in record.rows)
        log.info(
            "decode: shard %d/%d %s done (%d videos, %d s of video, %d failed) after %.1f s",
            done,
            total,
            record.name,
            len(record.rows),
            seconds,
            failed,
            time.perf_counter() - started,
        )
        yield record


def _summary(name: str, table: pd.DataFrame, config: DecodeConfig) -> DecodeInfo:
    bad = table[~table.status.isin(["ok", "probed"])]
    return DecodeInfo(
        dataset=name,
        videos=len(table),
        status_counts={k: int(v) for k, v in table.status.value_counts().items()},
        seconds=int(table.n_seconds.sum()),
        bad_videos={r.video_id: f"{r.status}: {r.error}" for r in bad.itertuples()},
        frames_per_second=config.frames_per_second,
        size=config.size,
        backend=config.backend,
        keep_frames=config.keep_frames,
        streaming=config.streaming,
        shards=sorted(set(table.shard_digest)),
    )


def _fingerprint(row: dict[str, Any]) -> tuple:
    return tuple(row[key] for key in FINGERPRINT)
