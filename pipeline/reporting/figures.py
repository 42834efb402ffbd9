"""Figures of the report: training-loss curves and frame strips (paper Figure 3 in spirit).

A strip shows the 1-fps thumbnails of a test clip with the frame selector's probability of each
second as a bar underneath and the ground-truth relevant seconds framed. Thumbnails come from the
frame shards, or are decoded from the video when frames were not kept; a thumbnail that cannot be
read is drawn as a grey placeholder.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from pipeline.config import DecodeConfig
from pipeline.video.decoders import iter_clips
from pipeline.video.probe import probe_video
from storage.atomic import atomic_output
from storage.shards import FrameShardReader

matplotlib.use("Agg")  # files only, no display; figures are built without pyplot's global state
log = logging.getLogger(__name__)

THUMBNAIL_DECODE = DecodeConfig(frames_per_second=2, size=112)  # decode-from-video fallback
SHARE_PART = "all_positive_share"  # a share in [0, 1], plotted apart from the loss terms
Curve = tuple[str, np.ndarray, np.ndarray]  # (label, steps (N,), values (N,))


def loss_panels(
    pretrain: pd.DataFrame | None, finetune: dict[str, pd.DataFrame | None]
) -> list[tuple[str, str, list[Curve]]]:
    """(title, y label, curves) of each panel: pretrain, fine-tune, FineCo terms, FineCo share."""

    def curve(label: str, frame: pd.DataFrame, column: str) -> Curve:
        values = pd.to_numeric(frame[column], errors="coerce")
        keep = values.notna().to_numpy()
        return label, frame.step.to_numpy()[keep], values.to_numpy(dtype=float)[keep]

    panels = []
    if pretrain is not None:
        panels.append(("pretrain", "loss", [curve("loss", pretrain, "loss")]))
    logged = {variant: frame for variant, frame in finetune.items() if frame is not None}
    if logged:
        curves = [curve(variant, frame, "loss") for variant, frame in logged.items()]
        panels.append(("fine-tune", "loss", curves))
    fineco = logged.get("fineco")
    if fineco is not None:
        parts = [c for c in fineco.columns if c.startswith("part:") and c != f"part:{SHARE_PART}"]
        terms = [curve(part_label(c), fineco, c) for c in sorted(parts)]
        if terms:
            panels.append(("fineco loss terms", "loss", terms))
        if f"part:{SHARE_PART}" in fineco.columns:
            share = [curve("all positive", fineco, f"part:{SHARE_PART}")]
            panels.append(("fineco: rows whose positives are all frames", "share", share))
    return panels


def part_label(column: str) -> str:
    name = column.removeprefix("part:")
    return name.upper() if len(name) <= 3 else name  # l1 → L1, l2 → L2


def smoothed(values: np.ndarray) -> np.ndarray:
    """Trailing moving average over ~1/25 of the run (the raw curve is drawn faintly beside it)."""
    window = max(1, len(values) // 25)
    return pd.Series(values).rolling(window, min_periods=1).mean().to_numpy()


def plot_loss_curves(
    pretrain: pd.DataFrame | None, finetune: dict[str, pd.DataFrame | None], path: Path
) -> None:
    panels = loss_panels(pretrain, finetune)
    figure = Figure(figsize=(4.4 * max(1, len(panels)), 3.4), layout="constrained")
    axes = figure.subplots(1, max(1, len(panels)), squeeze=False)[0]
    if not panels:
        axes[0].text(0.5, 0.5, "no training logs", ha="center", va="center")
        axes[0].set_axis_off()
    for ax, (title, ylabel, curves) in zip(axes, panels):
        for index, (label, steps, values) in enumerate(curves):
            color = f"C{index}"
            ax.plot(steps, values, color=color, alpha=0.3, linewidth=0.8)
            ax.plot(steps, smoothed(values), color=color, linewidth=1.6, label=label)
        ax.set(title=title, xlabel="step", ylabel=ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    save_figure(figure, path)


def save_figure(figure: Figure, path: Path) -> None:
    with atomic_output(path) as tmp:
        figure.savefig(tmp, format="png", dpi=100)


@dataclass(frozen=True)
class Strip:
    """One test pair's strip: the first seconds of its clip with the selector's probabilities."""

    title: str  # the caption
    subtitle: str  # pair, video, seconds shown, selector
    seconds: list[int]  # (N,) video seconds shown
    probabilities: np.ndarray  # (N,) selector softmax over the whole clip, these seconds' share
    clip_length: int  # K, seconds in the clip (the softmax's support)
    thumbnails: list[np.ndarray | None]  # (N,) (S, S, 3) uint8 first frame of each second; None
    relevant: set[int] | None  # ground-truth relevant video seconds; None when unknown


def strip_window(
    probabilities: np.ndarray, relevant: set[int] | None, start: int, width: int
) -> tuple[int, int]:
    """Video seconds [first, stop) a strip shows: the whole clip when it fits in `width`, else
    the `width` consecutive seconds holding the most ground-truth relevant seconds plus the
    selector's top seconds (as many as are relevant; the top 1 without ground truth), the
    earliest such window on ties. `probabilities` (K,) cover the clip's seconds from `start`."""
    count = len(probabilities)
    if count <= width:
        return start, start + count
    marked = np.zeros(count)  # (K,) 1 per relevant second, +1 per top-selected second
    inside = [s - start for s in relevant or () if start <= s < start + count]
    marked[inside] += 1
    marked[np.argsort(-probabilities, kind="stable")[: max(len(inside), 1)]] += 1
    first = start + int(np.argmax(np.convolve(marked, np.ones(width), mode="valid")))
    return first, first + width


def top_relevant(probabilities: np.ndarray, relevant: set[int], start: int) -> tuple[int, int]:
    """(how many of the selector's top-R seconds are relevant, R): R = the clip's relevant
    seconds, so R-precision; `probabilities` (K,) cover the clip's seconds from `start`."""
    count = len(probabilities)
    inside = {s - start for s in relevant if start <= s < start + count}
    top = np.argsort(-probabilities, kind="stable")[: len(inside)]
    return sum(int(i) in inside for i in top), len(inside)


def load_thumbnails(
    video: dict[str, Any] | None, video_id: str, decode_folder: Path | None, start: int, stop: int
) -> tuple[list[np.ndarray | None], str]:
    """First frame of each second in [start, stop): (S, S, 3) uint8, or None where unreadable.

    From the frame shard when the video's frames were kept, else decoded from the video file.
    The second value says why thumbnails are missing ("" when none is).
    """
    count = stop - start
    if video is None:
        return [None] * count, f"video {video_id!r} is not in decode.parquet"
    try:
        if video.get("shard"):
            frames = shard_thumbnails(decode_folder / video["shard"], video_id, start, stop)
        else:
            frames = decoded_thumbnails(Path(video["path"]), start, stop)
    except Exception as error:  # a thumbnail never fails the report
        log.warning("report: no thumbnails for video %r: %s", video_id, error)
        return [None] * count, f"video {video_id!r}: {error}"
    missing = count - len(frames)
    problem = f"video {video_id!r}: {missing} of {count} seconds unreadable" if missing else ""
    return [*frames, *[None] * missing], problem


def shard_thumbnails(path: Path, video_id: str, start: int, stop: int) -> list[np.ndarray]:
    with FrameShardReader(path) as reader:
        if video_id not in reader.video_ids:  # also opens the file: n_seconds needs its index
            raise KeyError(f"video {video_id!r} is not in frame shard {path}")
        stop = min(stop, reader.n_seconds(video_id))
        if stop <= start:
            return []
        return list(reader.clips(video_id, start, stop)[:, 0])  # (n, S, S, 3) first frames


def decoded_thumbnails(path: Path, start: int, stop: int) -> list[np.ndarray]:
    info = probe_video(path)
    with contextlib.closing(iter_clips(path, info, THUMBNAIL_DECODE)) as clips:  # stops ffmpeg
        return [clip[0].copy() for clip in itertools.islice(clips, start, stop)]  # (S, S, 3)


def plot_frame_strip(strip: Strip, path: Path) -> None:
    """Thumbnails in a row, the selector probability as a bar under each; relevant ones framed."""
    count = len(strip.seconds)
    unit = max(0.8, 4.0 / max(count, 1))  # inches per second: thumbnails about square
    width = 0.9 + unit * count
    title = textwrap.fill(strip.title, width=max(40, int(width * 11)))
    title_lines = title.count("\n") + 1
    top = 0.35 + 0.22 * title_lines  # inches for the title and subtitle
    height = top + unit + 1.5
    figure = Figure(figsize=(width, height))
    left, right = 0.7 / width, 1 - 0.2 / width  # axes width = unit × count: square thumbnails
    images = figure.add_axes((left, 1.5 / height, right - left, unit / height))
    bars = figure.add_axes((left, 0.45 / height, right - left, 1.0 / height), sharex=images)
    draw_thumbnails(images, strip)
    draw_probabilities(bars, strip)
    figure.suptitle(title, y=1 - 0.08 / height, va="top", fontsize=10)
    figure.text(0.5, 1 - (0.12 + 0.2 * title_lines) / height, strip.subtitle, ha="center",
                va="top", fontsize=7, color="dimgray")  # fmt: skip
    save_figure(figure, path)


def draw_thumbnails(ax: Any, strip: Strip) -> None:
    for j, (second, thumbnail) in enumerate(zip(strip.seconds, strip.thumbnails, strict=True)):
        extent = (j - 0.45, j + 0.45, 0.0, 0.9)
        if thumbnail is None:
            ax.imshow(np.full((8, 8, 3), 160, np.uint8), extent=extent)
            ax.text(j, 0.45, "n/a", ha="center", va="center", fontsize=7, color="white")
        else:
            ax.imshow(thumbnail, extent=extent, interpolation="bilinear")
        if strip.relevant is not None and second in strip.relevant:
            ax.add_patch(Rectangle((j - 0.47, -0.02), 0.94, 0.94, fill=False, lw=2.5,
                                   edgecolor="tab:green"))  # fmt: skip
    ax.set_xlim(-0.5, len(strip.seconds) - 0.5)
    ax.set_ylim(-0.05, 0.95)
    ax.set_aspect("auto")
    ax.set_axis_off()


def draw_probabilities(ax: Any, strip: Strip) -> None:
    relevant = strip.relevant or set()
    colors = ["tab:green" if s in relevant else "tab:blue" for s in strip.seconds]
    positions = np.arange(len(strip.seconds))
    ax.bar(positions, strip.probabilities, width=0.8, color=colors)
    ax.axhline(1.0 / max(strip.clip_length, 1), color="black", linestyle="--", linewidth=0.8)
    ax.set_xticks(positions, [f"{s}s" for s in strip.seconds], fontsize=7)
    ax.set_ylabel("selector p", fontsize=8)
    ax.tick_params(axis="y", labelsize=7)
    ax.set_ylim(0, max(float(np.max(strip.probabilities, initial=0.0)) * 1.15, 1e-6))
    ax.spines[["top", "right"]].set_visible(False)
