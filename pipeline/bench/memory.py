"""`fineco bench memory`: peak RSS of decode + extract on a short and a long video, side by side.

Each video is decoded and embedded in one streaming pass in a fresh process, as the extract stage
does for `decode.keep_frames=false`: the ffmpeg backend reads one second at a time from its pipe,
`clip_batches` holds at most one batch of `extract.batch_seconds` clips, and the S3D-G backbone
(random weights: memory does not depend on their values) embeds each batch. The features go to a
feature-shard writer in a temporary folder, as in the stage. Peak RSS is `getrusage`'s of the
Python process (our buffers, torch, h5py); if anything held a video's seconds, the long video's
peak would grow with its length (6× the seconds for 60 against 10 minutes). The ffmpeg child is
left out: RUSAGE_CHILDREN counts the forked Python's pages before exec (torch's ~450 MB); `fineco
bench decode` measures ffmpeg alone (a constant ~70 MB, one second of frames in its pipe).

The videos are rendered once into `<artifacts>/bench/` (`make_bench_video`, small frames so a
60-minute render takes about a minute).
"""

from __future__ import annotations

import contextlib
import resource
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.bench.decode import make_bench_video
from pipeline.bench.process import run_job, table
from pipeline.config import DecodeConfig, ExtractConfig

WIDTH, HEIGHT, FPS = 320, 180, 25  # the rendered videos: decoding them costs what 180p costs


def bench_memory(
    minutes: list[float], decode: DecodeConfig, extract: ExtractConfig, folder: Path
) -> dict[str, Any]:
    """Render (once) and measure a video of each length in `minutes`; plain data back."""
    runs = []
    for length in minutes:
        video = folder / f"memory-{length:g}min-{WIDTH}x{HEIGHT}.mp4"
        if not video.is_file():
            make_bench_video(video, round(length * 60), WIDTH, HEIGHT, FPS)
        job = {
            "kind": "memory",
            "video": str(video),
            "decode": asdict(decode),
            "extract": {**asdict(extract), "weights": ""},
        }
        runs.append({"minutes": length, **run_job(job)})
    shortest = min(runs, key=lambda run: run["minutes"])
    for run in runs:
        run["vs_shortest"] = run["rss_self_mib"] / shortest["rss_self_mib"]
    return {
        "frames_per_second": decode.frames_per_second,
        "size": decode.size,
        "batch_seconds": extract.batch_seconds,
        "runs": runs,
    }


def format_memory_bench(result: dict[str, Any]) -> str:
    head = (
        f"decode + extract in one streaming pass, {result['frames_per_second']} frames × "
        f"{result['size']} px per second, batches of {result['batch_seconds']} s; peak RSS"
    )
    rows = [["video", "seconds", "wall s", "video-s/s", "peak RSS MiB", "× shortest"]]
    for run in result["runs"]:
        rows.append(
            [
                f"{run['minutes']:g} min",
                str(run["seconds"]),
                f"{run['wall_s']:.1f}",
                f"{run['seconds'] / run['wall_s']:.1f}",
                f"{run['rss_self_mib']:.0f}",
                f"{run['vs_shortest']:.2f}",
            ]
        )
    return table(head, rows)


def measure_memory(job: dict[str, Any]) -> dict[str, Any]:
    """One streaming decode + extract pass over a video (in a fresh process): the extract
    stage's loop for one video, into a feature shard in a temporary folder."""
    from models.s3dg import EMBEDDING_DIM
    from pipeline.video.backbone import embed_clips, load_backbone, weights_identity
    from pipeline.video.clips import PREFETCH_BATCHES, clip_batches, prefetch, stream_clips
    from pipeline.video.decoders import clip_count
    from pipeline.video.probe import probe_video
    from storage.shards import FeatureShardWriter

    decode, extract = DecodeConfig(**job["decode"]), ExtractConfig(**job["extract"])
    video = Path(job["video"])
    seconds = clip_count(probe_video(video))
    videos = pd.DataFrame([{"video_id": video.stem, "path": str(video), "n_seconds": seconds}])
    embedded = 0
    with tempfile.TemporaryDirectory() as scratch:
        identity = weights_identity(extract, decode.frames_per_second, decode.size, Path(scratch))
        backbone = load_backbone(extract, identity)
        start = time.perf_counter()
        with FeatureShardWriter(Path(scratch) / "features.h5", EMBEDDING_DIM, {}) as writer:
            writer.begin_video(video.stem)
            batches = prefetch(
                clip_batches(stream_clips(videos, decode), extract.batch_seconds),
                PREFETCH_BATCHES,
            )
            with contextlib.closing(batches):
                for clips, _ in batches:
                    writer.append_rows(embed_clips(backbone, clips))  # (B, 512)
                    embedded += len(clips)
            writer.end_video()
            writer.commit()
        wall = time.perf_counter() - start
    if embedded != seconds:
        raise RuntimeError(f"embedded {embedded} of {seconds} seconds of {video}")
    return {
        "seconds": seconds,
        "wall_s": wall,
        "rss_self_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
