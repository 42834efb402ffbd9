"""`fineco bench decode`: the ffmpeg and decord backends beside a bare `ffmpeg -f null` decode.

`bench_decode` times the three methods on one video, side by side in one run: repeats are
interleaved (ffmpeg, decord, bare, ffmpeg, ...) so drift of the machine hits all three alike,
and medians are reported; then each method runs in PROCESSES processes at once (scaling across
cores: 2 processes on 2 cores would ideally double the rate). Each measurement runs in a fresh
Python process (`process.run_job`), so its peak RSS (`getrusage` RUSAGE_SELF for our Python
process, RUSAGE_CHILDREN for the ffmpeg child) belongs to that method alone. The ratio to the
bare decode shows what sampling, scaling, colour conversion and the pipe cost on top of decoding
(reference/decode-storage.md §B measured 1.1–1.7× with one thread at 720p).

`make_bench_video` renders a stand-in for a real video when the user gives none.
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Literal

from pipeline.bench.process import run_job, table
from pipeline.config import DecodeConfig
from pipeline.video.decoders import clip_count, iter_clips
from pipeline.video.probe import VideoInfo, last_line, probe_video

Method = Literal["ffmpeg", "decord", "bare"]
METHODS: tuple[Method, ...] = ("ffmpeg", "decord", "bare")
PROCESSES = 2  # the scaling column: this many processes decoding at once
LABELS = {
    "ffmpeg": "ffmpeg pipe (backend)",
    "decord": "decord (backend)",
    "bare": "ffmpeg -f null (decode only)",
}


def bench_decode(video: Path, config: DecodeConfig, repeats: int = 3) -> dict[str, Any]:
    """Time both backends and a bare decode of `video` at config's F and S; medians of `repeats`.

    Returns plain data: the video's facts, and per method the median wall time, output frames
    per second, video seconds per second, peak RSS (MiB) of our process and of the ffmpeg
    child, and the wall-time ratio to the bare decode.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, found {repeats}")
    video = Path(video)
    info = probe_video(video)
    runs: dict[Method, list[dict[str, float]]] = {method: [] for method in METHODS}
    for _ in range(repeats):
        for method in METHODS:
            runs[method].append(_measure_in_fresh_process(method, video, info, config))
    # The same with two processes at once, each on its own copy of the work (scaling).
    pairs: dict[Method, list[float]] = {method: [] for method in METHODS}
    for _ in range(repeats):
        for method in METHODS:
            pairs[method].append(_concurrent_rate(method, video, info, config, PROCESSES))
    bare_wall = statistics.median(run["wall_s"] for run in runs["bare"])
    methods = {}
    for method, measured in runs.items():
        wall = statistics.median(run["wall_s"] for run in measured)
        methods[method] = {
            "label": LABELS[method],
            "wall_s": wall,
            "walls_s": [run["wall_s"] for run in measured],
            "frames": measured[0]["frames"],
            "frames_per_s": measured[0]["frames"] / wall,
            "video_s_per_s": measured[0]["video_s"] / wall,
            "rss_self_mib": max(run["rss_self_mib"] for run in measured),
            "rss_child_mib": max(run["rss_child_mib"] for run in measured),
            "vs_bare": wall / bare_wall,
            "video_s_per_s_2": statistics.median(pairs[method]),
        }
        methods[method]["scaling_2"] = (
            methods[method]["video_s_per_s_2"] / methods[method]["video_s_per_s"]
        )
    return {
        "video": str(video),
        "duration_s": info.duration_s,
        "width": info.width,
        "height": info.height,
        "codec": info.codec,
        "native_fps": info.native_fps,
        "frames_per_second": config.frames_per_second,
        "size": config.size,
        "repeats": repeats,
        "cpu_count": os.cpu_count(),
        "methods": methods,
    }


def _concurrent_rate(
    method: Method, video: Path, info: VideoInfo, config: DecodeConfig, processes: int
) -> float:
    """Video-seconds per second of `processes` fresh processes decoding at once (each the whole
    video): their seconds over the span from the first start to the last end."""
    with ThreadPoolExecutor(processes) as pool:
        runs = list(
            pool.map(
                lambda _: _measure_in_fresh_process(method, video, info, config), range(processes)
            )
        )
    span = max(run["ended_at"] for run in runs) - min(run["started_at"] for run in runs)
    return sum(run["video_s"] for run in runs) / span


def _measure_in_fresh_process(
    method: Method, video: Path, info: VideoInfo, config: DecodeConfig
) -> dict[str, float]:
    """Run `_measure` in a new interpreter (`python -m pipeline.bench`): RSS peaks of its own."""
    job = {"method": method, "video": str(video), "info": asdict(info), "config": asdict(config)}
    return run_job({"kind": "decode", **job})


def _measure(
    method: Method, video: Path, info: VideoInfo, config: DecodeConfig
) -> dict[str, float]:
    """One timed pass (run in a fresh process). Frames: output frames (decoded ones for bare)."""
    started_at = time.time()  # wall clock, to line up concurrent processes
    start = time.perf_counter()
    if method == "bare":
        _bare_decode(video, info)
        frames = info.n_frames or round(info.duration_s * info.native_fps)
        video_s = info.duration_s
    else:
        seconds = sum(1 for _ in iter_clips(video, info, replace(config, backend=method)))
        if seconds != clip_count(info):
            raise RuntimeError(f"{method} decoded {seconds} of {clip_count(info)} s of {video}")
        frames = seconds * config.frames_per_second
        video_s = float(seconds)
    wall = time.perf_counter() - start
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux → MiB
    child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {
        "wall_s": wall,
        "started_at": started_at,
        "ended_at": started_at + wall,
        "frames": frames,
        "video_s": video_s,
        "rss_self_mib": 0.0 if method == "bare" else own,  # bare: our process only waits
        "rss_child_mib": child,
    }


def _bare_decode(video: Path, info: VideoInfo) -> None:
    """`ffmpeg -threads 1 -i IN -map 0:<video> -f null -`: the decode floor, same stream."""
    command = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-threads", "1"]
    command += ["-i", str(video), "-map", f"0:{info.stream_index}", "-f", "null", "-"]
    result = subprocess.run(command, capture_output=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"ffmpeg -f null failed on {video}: {last_line(result.stderr)}")


def format_bench(result: dict[str, Any]) -> str:
    """An aligned text table of a `bench_decode` result."""
    head = (
        f"decode bench: {result['video']} ({result['duration_s']:.1f} s, "
        f"{result['width']}x{result['height']} {result['codec']} {result['native_fps']:.2f} fps)"
        f" → {result['frames_per_second']} frames/s at {result['size']}x{result['size']}; "
        f"median of {result['repeats']} interleaved runs, {result['cpu_count']} CPUs"
    )
    columns = ["method", "wall s", "frames/s", "video-s/s", "py MiB", "ffmpeg MiB", "× bare"]
    columns += [f"video-s/s, {PROCESSES} procs", "scaling"]
    rows = [columns]
    for method in result["methods"].values():
        rows.append(
            [
                method["label"],
                f"{method['wall_s']:.2f}",
                f"{method['frames_per_s']:.0f}",
                f"{method['video_s_per_s']:.1f}",
                f"{method['rss_self_mib']:.0f}" if method["rss_self_mib"] else "-",
                f"{method['rss_child_mib']:.0f}" if method["rss_child_mib"] else "-",
                f"{method['vs_bare']:.2f}",
                f"{method['video_s_per_s_2']:.1f}",
                f"{method['scaling_2']:.2f}×",
            ]
        )
    return table(head, rows)


def make_bench_video(path: Path, seconds: int, width: int, height: int, fps: int) -> Path:
    """Render an h264 + AAC mp4 that costs about what a real upload costs to decode.

    testsrc2 alone compresses to almost nothing; per-frame noise brings the bitrate to a
    realistic level (about 3 Mb/s at 720p, scaled by pixel count). libx264 veryfast, GOP 5 s.
    Written beside `path` and renamed, so a killed render leaves no half video behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    kbits = max(300, round(3000 * width * height / (1280 * 720)))
    partial = path.with_name(f".{path.name}.tmp")
    command = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y"]
    command += [
        "-f",
        "lavfi",
        "-i",
        f"testsrc2=size={width}x{height}:rate={fps},noise=alls=12:allf=t",
    ]
    command += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"]
    command += ["-t", str(seconds), "-c:v", "libx264", "-preset", "veryfast", "-crf", "23"]
    command += ["-maxrate", f"{kbits}k", "-bufsize", f"{2 * kbits}k", "-g", str(5 * fps)]
    command += ["-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "96k", "-shortest"]
    command += ["-movflags", "+faststart", "-f", "mp4", str(partial)]
    result = subprocess.run(command, capture_output=True, check=False)
    if result.returncode != 0:
        partial.unlink(missing_ok=True)
        raise RuntimeError(f"ffmpeg could not render {path}: {last_line(result.stderr)}")
    os.replace(partial, path)
    return path


def measure_decode(job: dict[str, Any]) -> dict[str, float]:
    """One decode measurement job (run in a fresh process by `python -m pipeline.bench`)."""
    info, config = VideoInfo(**job["info"]), DecodeConfig(**job["config"])
    return _measure(job["method"], Path(job["video"]), info, config)
