"""Extract stage: one-second clips → S3D-G `video_embedding` features in HDF5 shards (DESIGN.md §3).

A dataset that comes as pre-extracted features (`datasets.<name>.features`, one `<id>.npy` per
video) is imported instead (`pipeline/feature_import.py`): its files are checked and copied into
feature shards with the same index, so the stages after extract cannot tell the two apart.

With `decode.streaming` the decode stage has only read the headers: the videos are decoded here
for the first time, in the same pass that embeds them, and those that end before their header's
seconds are kept as far as they decoded and listed in the manifest (`ended_early`).

Each frame shard maps to one feature shard named after the frame shard's content digest, in a pool
shared by every run with the same backbone and code, so adding videos extracts only the new
shards. Features are L2-normalised and stored float16 (VideoCLIP's extraction convention,
videoclip-facts §2.4). Without a weights file the backbone is randomly initialised from
`extract.init_seed`; every manifest and shard says so.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd

from models.s3dg import EMBEDDING_DIM
from pipeline import progress
from pipeline.config import DecodeConfig, ExtractConfig
from pipeline.stage import (
    DecodeInfo,
    ExtractInfo,
    StageInputs,
    StageResult,
    run_cached,
)
from pipeline.video.backbone import (
    Backbone,
    backbone_recipe,
    embed_clips,
    load_backbone,
    weights_identity,
    weights_path,
)
from pipeline.video.clips import (
    PREFETCH_BATCHES,
    VideoClips,
    clip_batches,
    prefetch,
    shard_clips,
    stream_clips,
)
from storage.digests import code_digest
from storage.layout import Manifest, cache_key
from storage.pool import ShardPool, ShardRecord
from storage.shards import FeatureShardWriter, FrameShardReader
from storage.tables import read_table, write_table

log = logging.getLogger(__name__)

MODULES = (
    "pipeline.extract",
    "pipeline.video.clips",
    "pipeline.video.decoders",
    "pipeline.video.probe",
    "pipeline.devices",
    "pipeline.video.backbone",
    "models.s3dg",
    "storage",
)
INDEX_COLUMNS = ["video_id", "shard", "row", "n_seconds"]
PROGRESS_EVERY_S = 10.0
SECONDS = "extract: video-seconds"  # the stage's progress unit


def extract_shard(
    name: str,
    videos: Iterator[VideoClips],
    pool: ShardPool,
    backbone: Backbone,
    batch: int,
    attrs: dict[str, Any],
) -> ShardRecord:
    """Embed every clip of `videos` into the feature shard `name` of `pool`."""
    path = pool.shard_path(name)
    counts: dict[str, int] = {}
    rate = _RateLog(name)
    with FeatureShardWriter(path, EMBEDDING_DIM, attrs) as writer:
        current = None
        # the next batches decode (or load) while this one embeds; closed on any exit
        batches = contextlib.closing(prefetch(clip_batches(videos, batch), PREFETCH_BATCHES))
        with batches as prefetched:
            for clips, owners in prefetched:
                rows = embed_clips(backbone, clips)  # (B, 512)
                for video_id, row in zip(owners, rows, strict=True):
                    if video_id != current:
                        if current is not None:
                            writer.end_video()
                        writer.begin_video(video_id)
                        current = video_id
                    writer.append_rows(row[None])
                    counts[video_id] = counts.get(video_id, 0) + 1
                rate.update(len(owners))
                progress.advance(SECONDS, len(owners))
        if current is not None:
            writer.end_video()
        digest = writer.commit()
    rows = [{"video_id": video_id, "n_seconds": n} for video_id, n in counts.items()]
    return pool.commit(ShardRecord(name, path.name, digest, rows, info=attrs))


class _RateLog:
    """Logs video-seconds embedded and the rate, at most every PROGRESS_EVERY_S seconds."""

    def __init__(self, name: str) -> None:
        self.name, self.seconds = name, 0
        self.started = self.last = time.perf_counter()

    def update(self, seconds: int) -> None:
        self.seconds += seconds
        now = time.perf_counter()
        if now - self.last >= PROGRESS_EVERY_S:
            rate = self.seconds / (now - self.started)
            log.info("extract %s: %d video-seconds (%.1f/s)", self.name, self.seconds, rate)
            self.last = now


def extract_pool(artifacts: Path, identity: dict[str, Any], precision: str) -> ShardPool:
    """The feature-shard pool shared by every extract run with the same backbone, precision and
    code (the weights file's content, not where it lies)."""
    content = {name: value for name, value in identity.items() if name != "path"}
    content["precision"] = precision
    key = cache_key("extract-pool", content, [], code_digest(MODULES))
    return ShardPool(artifacts / "extract" / f"pool-{key}", prefix="features")


# Runs `work` on each pending frame shard (a name and its rows), yielding each feature record,
# or the shard's name when its record went to the shard pool from elsewhere (a worker's run).
ShardWork = Callable[[pd.DataFrame], ShardRecord]
GroupRunner = Callable[[list[tuple[str, pd.DataFrame]], ShardWork], Iterable[ShardRecord | str]]


def run_groups_in_turn(
    groups: list[tuple[str, pd.DataFrame]], work: ShardWork
) -> Iterable[ShardRecord]:
    """The default shard runner: one frame shard after another in this process (one model)."""
    return (work(group) for _, group in groups)


@dataclass(frozen=True, kw_only=True)
class ExtractInputs(StageInputs):
    """A decoded dataset and the backbone settings; a weights file is a declared input."""

    stage: ClassVar[str] = "extract"
    modules: ClassVar[tuple[str, ...]] = MODULES
    info_type: ClassVar[type] = ExtractInfo

    dataset: str
    decode: Manifest[DecodeInfo]
    config: ExtractConfig

    def section(self) -> dict[str, Any]:
        clip = self.decode.info
        recipe = backbone_recipe(self.config, clip.frames_per_second, clip.size)
        return {
            "dataset": self.dataset,
            "init_seed": self.config.init_seed,
            "backbone": recipe,
            "precision": self.config.precision,
        }

    def upstream(self) -> tuple[Manifest[Any], ...]:
        return (self.decode,)

    def files(self) -> dict[str, Path]:
        if not self.config.weights:
            return {}
        return {"weights": weights_path(self.config, self.artifacts)}


def run_extract(
    inputs: ExtractInputs, shard_runner: GroupRunner | None = None
) -> Manifest[ExtractInfo]:
    """Embed every decoded second of a dataset (cached; only new frame shards are embedded).

    `shard_runner` runs the pending shards (default: in turn, here); an orchestrator may make
    each one a task, or a flow run on a work pool of GPU workers (`extract_one_shard` is what
    such a run does). It does not change the cache key. Its records may also come back through
    the shard pool: every pending shard's record is read from it once the runner is done.
    """
    name, config, decode = inputs.dataset, inputs.config, inputs.decode

    def build(folder: Path) -> StageResult[ExtractInfo]:
        plan = _plan(inputs)
        plan.pool.clean()
        started = time.perf_counter()
        backbones: list[Backbone] = []  # loaded on the first pending shard, then shared

        def work(group: pd.DataFrame) -> ShardRecord:
            if not backbones:
                backbones.append(load_backbone(config, plan.identity))
            return _extract_group(group, decode, plan.pool, backbones[0], config)

        total = int(plan.usable.n_seconds.sum())
        finished = total - sum(int(group.n_seconds.sum()) for _, group in plan.pending)
        progress.expect(SECONDS, total, done=finished)
        embedded = 0
        groups = dict(plan.pending)
        for done in (shard_runner or run_groups_in_turn)(plan.pending, work):
            if isinstance(done, str):  # embedded by a worker's run (flows/extract_shards.py)
                embedded += int(groups[done].n_seconds.sum())
            else:
                embedded += sum(row["n_seconds"] for row in done.rows)
            progress.at_least(SECONDS, finished + embedded, total)
        elapsed = time.perf_counter() - started
        records = dict(plan.records)
        for shard, group in plan.pending:
            record = plan.pool.record(shard)
            if record is None:
                raise RuntimeError(f"extract {name}: shard {shard} was not written by its runner")
            records[group.shard_digest.iloc[0]] = record
        index = _index(plan.usable, records, plan.pool, folder)
        write_table(index, folder / "index.parquet")
        ended_early = _ended_early(plan.usable, index)
        info = ExtractInfo(
            dataset=name,
            weights=plan.identity,
            random_init=plan.identity["random_init"],
            videos=len(index),
            seconds=int(index.n_seconds.sum()),
            embedded_seconds=embedded,
            embedded_per_second=round(embedded / elapsed, 2) if embedded else None,
            device=str(backbones[0].device) if backbones else None,
            ended_early=ended_early,
        )
        return StageResult(outputs={"index": "index.parquet"}, info=info)

    return run_cached(inputs, build)


@dataclass
class _ExtractPlan:
    identity: dict[str, Any]  # the backbone's identity (weights digest or seed)
    usable: pd.DataFrame  # decode's status rows of the videos with seconds
    pool: ShardPool
    records: dict[str, ShardRecord]  # frames digest → finished feature shard
    pending: list[tuple[str, pd.DataFrame]]  # (feature shard name, its videos) still to embed


def _plan(inputs: ExtractInputs) -> _ExtractPlan:
    """Which feature shards the stage needs, and which of them the pool already holds."""
    clip = inputs.decode.info
    identity = weights_identity(inputs.config, clip.frames_per_second, clip.size, inputs.artifacts)
    status = read_table(inputs.decode.output("decode"))
    usable = status[(status.status != "failed") & (status.n_seconds > 0)]
    pool = extract_pool(inputs.artifacts, identity, inputs.config.precision)
    records: dict[str, ShardRecord] = {}
    pending = []
    for digest, group in usable.groupby("shard_digest", sort=True):
        record = pool.record(f"features-{digest[:16]}")
        if record is None:
            pending.append((f"features-{digest[:16]}", group))
        else:
            records[digest] = record
    return _ExtractPlan(identity, usable, pool, records, pending)


def extract_one_shard(inputs: ExtractInputs, shard: str) -> ShardRecord:
    """Embed one pending feature shard of the stage (`features-<frames digest>`), the work of a
    shard run on a GPU worker; a shard the pool already holds (a retried or restarted run's) is
    returned as it is, so N workers taking disjoint shards never embed one twice."""
    plan = _plan(inputs)
    done = plan.pool.record(shard)
    if done is not None:
        log.info("extract %s: %s is already in the pool", inputs.dataset, shard)
        return done
    groups = dict(plan.pending)
    if shard not in groups:
        raise ValueError(f"extract {inputs.dataset}: no frame shard makes {shard}")
    backbone = load_backbone(inputs.config, plan.identity)
    return _extract_group(groups[shard], inputs.decode, plan.pool, backbone, inputs.config)


def _extract_group(
    group: pd.DataFrame,
    decode: Manifest,
    pool: ShardPool,
    backbone: Backbone,
    config: ExtractConfig,
) -> ShardRecord:
    """Embed the videos of one decode shard, from its frame shard or decoded again."""
    digest = group.shard_digest.iloc[0]
    attrs = {**backbone.weights, "frames_digest": digest, "embedding": "video_embedding"}
    # what `precision: auto` resolved to on this worker (it is keyed as "auto", like the device)
    attrs["autocast"] = str(backbone.dtype).removeprefix("torch.") if backbone.dtype else "fp32"
    name = f"features-{digest[:16]}"
    shard = group.shard.iloc[0]
    if not shard:  # frames not kept: decode the videos again, exactly as the decode stage did
        videos = stream_clips(group, decode_settings(decode))
        return extract_shard(name, videos, pool, backbone, config.batch_seconds, attrs)
    with FrameShardReader(Path(decode.path) / shard) as reader:
        videos = shard_clips(reader, config.batch_seconds)
        return extract_shard(name, videos, pool, backbone, config.batch_seconds, attrs)


def decode_settings(decode: Manifest[DecodeInfo]) -> DecodeConfig:
    """The decode settings a decode manifest was produced with (to decode the same clips)."""
    info = decode.info
    return DecodeConfig(
        backend=info.backend,
        frames_per_second=info.frames_per_second,
        size=info.size,
        keep_frames=info.keep_frames,
        streaming=info.streaming,
    )


def _index(
    usable: pd.DataFrame, records: dict[str, ShardRecord], pool: ShardPool, folder: Path
) -> pd.DataFrame:
    """video_id → feature shard (relative to the stage folder), row in that shard, n_seconds."""
    positions = {
        digest: {row["video_id"]: (i, row["n_seconds"]) for i, row in enumerate(record.rows)}
        for digest, record in records.items()
    }
    rows = []
    for video in usable.itertuples():
        if video.video_id not in positions[video.shard_digest]:  # streaming: nothing decoded
            continue
        row, n_seconds = positions[video.shard_digest][video.video_id]
        shard = os.path.relpath(pool.folder / records[video.shard_digest].file, folder)
        rows.append([video.video_id, shard, row, n_seconds])
    return pd.DataFrame(rows, columns=INDEX_COLUMNS)


def _ended_early(usable: pd.DataFrame, index: pd.DataFrame) -> dict[str, str]:
    """`decode.streaming`: videos that decoded to fewer seconds than decode's header count (two
    passes cannot: extract then refuses a video whose seconds changed)."""
    got = dict(zip(index.video_id, index.n_seconds, strict=True))
    ended = {}
    for video in usable.itertuples():
        decoded = int(got.get(video.video_id, 0))
        if decoded < video.n_seconds:
            ended[video.video_id] = f"decoded {decoded} of {video.n_seconds} seconds"
            log.warning("extract: video %s %s", video.video_id, ended[video.video_id])
    return ended
