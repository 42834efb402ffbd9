"""`fineco bench extract`: S3D-G forward passes over one-second clips, figures not tests.

The config's frames/size beside the paper's 30 frames at 224 px, interleaved in one run, each in
a fresh process (peak RSS of its own; on a GPU also the peak of allocated device memory).
"""

from __future__ import annotations

import resource
import statistics
import time
from dataclasses import asdict
from typing import Any

from pipeline.bench.process import run_job, table
from pipeline.config import ExtractConfig


def bench_extract(
    config: ExtractConfig, settings: list[tuple[int, int]], seconds: int, repeats: int = 3
) -> dict[str, Any]:
    """Embed `seconds` random one-second clips per (frames_per_second, size) setting; medians.

    Weights are random (speed does not depend on their values); the input is uint8 noise
    converted exactly as the extract stage converts decoded clips.
    """
    if repeats < 1 or seconds < 1:
        raise ValueError(f"repeats and seconds must be >= 1, found {repeats} and {seconds}")
    runs: dict[str, list[dict[str, float]]] = {f"{f}x{s}": [] for f, s in settings}
    for _ in range(repeats):
        for frames, size in settings:
            job = {"kind": "extract", "config": asdict(config), "frames": frames, "size": size}
            runs[f"{frames}x{size}"].append(run_job({**job, "seconds": seconds}))
    results = {}
    for name, measured in runs.items():
        wall = statistics.median(run["wall_s"] for run in measured)
        frames = measured[0]["frames_per_second"]
        results[name] = {
            "frames_per_second": frames,
            "size": measured[0]["size"],
            "wall_s": wall,
            "video_s_per_s": seconds / wall,
            "frames_per_s": seconds * frames / wall,
            "rss_mib": max(run["rss_mib"] for run in measured),
            "gpu_peak_mib": max(run["gpu_peak_mib"] for run in measured),
        }
    first = runs[next(iter(runs))][0]
    return {
        "device": first["device"],
        "threads": first["threads"],
        "batch_seconds": config.batch_seconds,
        "seconds": seconds,
        "repeats": repeats,
        "settings": results,
    }


def format_extract_bench(result: dict[str, Any]) -> str:
    head = (
        f"extract bench: S3D-G on {result['device']} ({result['threads']} threads), "
        f"{result['seconds']} one-second clips in batches of {result['batch_seconds']}; "
        f"median of {result['repeats']} interleaved runs"
    )
    columns = ["frames x size", "wall s", "video-s/s", "frames/s", "peak RSS MiB", "GPU MiB"]
    rows = [columns]
    for row in result["settings"].values():
        rows.append(
            [
                f"{row['frames_per_second']} x {row['size']}px",
                f"{row['wall_s']:.2f}",
                f"{row['video_s_per_s']:.2f}",
                f"{row['frames_per_s']:.0f}",
                f"{row['rss_mib']:.0f}",
                f"{row['gpu_peak_mib']:.0f}" if row["gpu_peak_mib"] else "-",
            ]
        )
    return table(head, rows)


def measure_extract(job: dict[str, Any]) -> dict[str, Any]:
    """One timed extract pass (in a fresh process): a warm-up batch, then `seconds` clips."""
    # Imported here so decode measurements (same module, fresh processes) never load torch,
    # whose ~350 MB would otherwise show in their peak RSS.
    import numpy as np
    import torch

    from pipeline.video.backbone import embed_clips, load_backbone, weights_identity
    from storage.layout import artifact_root

    config = ExtractConfig(**{**job["config"], "weights": ""})
    frames, size, batch = job["frames"], job["size"], config.batch_seconds
    identity = weights_identity(config, frames, size, artifact_root())  # random: no file
    backbone = load_backbone(config, identity)
    clips = np.random.default_rng(0).integers(0, 256, (batch, frames, size, size, 3), np.uint8)
    embed_clips(backbone, clips)  # warm-up: allocator, kernels, threads
    if backbone.device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for first in range(0, job["seconds"], batch):
        embed_clips(backbone, clips[: min(batch, job["seconds"] - first)])
    if backbone.device.type == "cuda":
        torch.cuda.synchronize()
    wall = time.perf_counter() - start
    gpu = torch.cuda.max_memory_allocated() / 2**20 if backbone.device.type == "cuda" else 0.0
    return {
        "wall_s": wall,
        "frames_per_second": frames,
        "size": size,
        "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "gpu_peak_mib": gpu,
        "device": str(backbone.device),
        "threads": torch.get_num_threads(),
    }
