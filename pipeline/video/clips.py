"""The clips the extract stage embeds: read from frame shards, or decoded again from the videos
(`decode.keep_frames=false`), and batched across videos with bounded memory."""

from __future__ import annotations

import contextlib
import itertools
import queue
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

import numpy as np
import pandas as pd

from pipeline.config import DecodeConfig
from pipeline.video.decoders import iter_clips
from pipeline.video.probe import probe_video
from storage.shards import FrameShardReader

T = TypeVar("T")
PREFETCH_BATCHES = 2  # clip batches decoded ahead of the one being embedded
ClipBatch = tuple[np.ndarray, list[str]]  # (B, F, S, S, 3) uint8 clips and each clip's video

# One video's clips as they are read: (video_id, chunks of (n, F, S, S, 3) uint8 clips).
VideoClips = tuple[str, Iterator[np.ndarray]]


def shard_clips(reader: FrameShardReader, chunk_seconds: int) -> Iterator[VideoClips]:
    """The clips of every video in a frame shard, read `chunk_seconds` at a time."""
    for video_id in reader.video_ids:
        n_seconds = reader.n_seconds(video_id)
        starts = range(0, n_seconds, chunk_seconds)
        chunks = (reader.clips(video_id, s, min(n_seconds, s + chunk_seconds)) for s in starts)
        yield video_id, chunks


def stream_clips(videos: pd.DataFrame, decode: DecodeConfig) -> Iterator[VideoClips]:
    """The clips of videos decoded from their files (`decode.keep_frames=false`): again, after
    decode counted them, or for the first time with `decode.streaming` (then a video may end
    before its header's seconds; what decoded is kept)."""
    for video in videos.itertuples():
        yield video.video_id, _redecode(Path(video.path), video.video_id, video.n_seconds, decode)


def _redecode(path: Path, video_id: str, n_seconds: int, decode: DecodeConfig) -> Iterator:
    clips = iter_clips(path, probe_video(path), decode)
    produced = 0
    for clip in itertools.islice(clips, n_seconds):
        produced += 1
        yield clip[None]  # (1, F, S, S, 3)
    clips.close()
    if produced != n_seconds and not (decode.streaming and produced < n_seconds):
        raise RuntimeError(
            f"video {video_id} ({path}) now decodes to {produced} seconds, but decode recorded "
            f"{n_seconds}: the file changed after the decode stage ran; run decode again"
        )


def clip_batches(videos: Iterator[VideoClips], batch_seconds: int) -> Iterator[ClipBatch]:
    """Batches of up to `batch_seconds` clips across videos, with each clip's owner.

    Holds at most one batch of seconds (plus one chunk), so long videos stream through memory.
    """
    pending: list[np.ndarray] = []
    owners: list[str] = []
    for video_id, chunks in videos:
        for chunk in chunks:  # (n, F, S, S, 3)
            pending.append(chunk)
            owners += [video_id] * len(chunk)
            while len(owners) >= batch_seconds:
                clips = np.concatenate(pending)
                yield clips[:batch_seconds], owners[:batch_seconds]
                pending, owners = [clips[batch_seconds:]], owners[batch_seconds:]
    if owners:
        yield np.concatenate(pending), owners


_DONE = object()


def prefetch(items: Iterator[T], depth: int) -> Iterator[T]:
    """`items`, produced up to `depth` ahead by a background thread: the next batch decodes (in
    its ffmpeg process and our pipe reads, which release the GIL) while the device embeds this
    one. An exception in the producer is raised here, in order; closing this generator stops the
    producer (at most `depth` items are held)."""
    slots: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        slots.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            slots.put(_DONE)
        except BaseException as error:  # handed to the consumer
            slots.put(error)

    worker = threading.Thread(target=produce, name="clip-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            item = slots.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while worker.is_alive():  # unblock a producer waiting on a full queue
            with contextlib.suppress(queue.Empty):
                slots.get_nowait()
            worker.join(timeout=0.1)
        close = getattr(items, "close", None)
        if callable(close):
            close()
