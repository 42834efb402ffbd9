"""Shared primitives of the synthetic datasets: video plans, captions, ffmpeg rendering, files.

DESIGN.md §7: each video is a sequence of segments, each showing one *concept* (a lavfi pattern ×
a colour tint × a motion, `concepts.py`), with short unrelated filler (grey card or noise)
between some segments. Captions are generated from the concept's attributes with varied
templates and synonyms, so a caption describes only part of its video (FineCo's weak
correspondence); each set's ground-truth file records the seconds that truly show the concept.

The per-format modules (`howto_youcook`, `msrvtt`, `msvd`, `didemo`) plan their videos with these
types and render them here: one single-threaded ffmpeg per video, as many at once as there are
CPU cores. A video whose file already has the planned duration and render fingerprint is kept,
so a rerun is quick. This module imports none of them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import re
import subprocess
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pipeline.config import SynthConfig
from pipeline.datasets.synthetic import GROUND_TRUTH_FILE
from pipeline.synth.concepts import (
    CONCEPTS,
    FILLERS,
    FULL_TEMPLATES,
    MOTIONS,
    PARTIAL_TEMPLATES,
    PATTERNS,
    TINTS,
    Concept,
    concept_named,
)
from storage.atomic import (
    atomic_output,
    atomic_write_bytes,
    atomic_write_json,
    remove_stale_temporaries,
)

log = logging.getLogger(__name__)

ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
TRUNCATE_SHARE = 0.6  # the truncated video keeps this share of its bytes
FINGERPRINT_PREFIX = "fineco-synth:"


@dataclass(frozen=True)
class Segment:
    """Seconds [start, end) of a video showing a concept, or filler when `concept` is None."""

    start: int
    end: int
    concept: str | None
    variant: int  # seed of randomised sources, or the filler's index in FILLERS


@dataclass(frozen=True)
class VideoPlan:
    video_id: str
    segments: tuple[Segment, ...]
    audio: bool = False  # add a sine audio track
    broken: Literal["", "truncated", "corrupt"] = ""

    @property
    def duration(self) -> int:
        return self.segments[-1].end

    def concept_segments(self) -> list[Segment]:
        return [s for s in self.segments if s.concept is not None]


@dataclass(frozen=True)
class DatasetSummary:
    root: Path
    annotations: Path
    ground_truth: Path
    videos: int
    pairs: int  # captions (HowTo100M) or annotations (YouCookII)
    video_seconds: int
    rendered: int  # videos written by this call
    reused: int  # videos already on disk with the planned duration and fingerprint


def video_id(rng: random.Random, taken: set[str]) -> str:
    """A fresh YouTube-like id: 11 characters of [A-Za-z0-9_-]."""
    while True:
        candidate = "".join(rng.choice(ID_ALPHABET) for _ in range(11))
        if candidate not in taken:
            taken.add(candidate)
            return candidate


def plan_video(rng: random.Random, config: SynthConfig, vid: str) -> VideoPlan:
    """Distinct concepts from the shared pool, with 1–2 s of filler between some of them."""
    count = rng.randint(config.min_segments, config.max_segments)
    names = rng.sample(sorted(CONCEPTS), count)
    segments, now = [], 0
    for i, name in enumerate(names):
        if i > 0 and rng.random() < 0.5:
            length = rng.randint(1, 2)
            segments.append(Segment(now, now + length, None, rng.randrange(len(FILLERS))))
            now += length
        length = rng.randint(config.min_segment_s, config.max_segment_s)
        segments.append(Segment(now, now + length, name, rng.randrange(1000)))
        now += length
    return VideoPlan(vid, tuple(segments))


def describe(rng: random.Random, concept: Concept, full: bool = True) -> str:
    """A caption about the concept: all three attributes when `full`, else the pattern and one."""
    words = {
        "c": rng.choice(TINTS[concept.tint].words),
        "p": rng.choice(PATTERNS[concept.pattern].words),
        "m": rng.choice(MOTIONS[concept.motion].words),
    }
    template = rng.choice(FULL_TEMPLATES if full else PARTIAL_TEMPLATES)
    return re.sub(r"\ba (?=[aeiou]|rgb)", "an ", template.format(**words))


def truth_entry(vid: str, seg: Segment) -> dict[str, Any]:
    return {"video_id": vid, "concept": seg.concept, "seconds": list(range(seg.start, seg.end))}


def ffmpeg_command(plan: VideoPlan, config: SynthConfig, out: Path) -> list[str]:
    """One ffmpeg call: a trimmed lavfi chain per segment, concatenated, libx264 into mp4.

    The comment tag carries a digest of the rest of the command, so a rerun can tell whether a
    file on disk is this very render.
    """
    args = _render_args(plan, config)
    return [*args, "-metadata", f"comment={_fingerprint(args)}", "-f", "mp4", str(out)]


def _fingerprint(args: list[str]) -> str:
    return FINGERPRINT_PREFIX + hashlib.sha256(json.dumps(args).encode()).hexdigest()[:16]


def _render_args(plan: VideoPlan, config: SynthConfig) -> list[str]:
    size = {"w": config.width, "h": config.height, "fps": config.fps}
    chains, labels = [], []
    for i, seg in enumerate(plan.segments):
        if seg.concept is None:
            parts = [list(FILLERS.values())[seg.variant]]
        else:
            concept = concept_named(seg.concept)
            parts = [
                PATTERNS[concept.pattern].chain,
                TINTS[concept.tint].chain,
                MOTIONS[concept.motion].chain,
            ]
        parts = [p.format(seed=seg.variant, **size) for p in parts if p]
        trim = f"trim=duration={seg.end - seg.start},setpts=PTS-STARTPTS"
        tail = f"scale={config.width}:{config.height},setsar=1,format=yuv420p"
        chains.append(",".join([parts[0], trim, *parts[1:], tail]) + f"[v{i}]")
        labels.append(f"[v{i}]")
    chains.append("".join(labels) + f"concat=n={len(labels)}:v=1:a=0[video]")
    maps = ["-map", "[video]"]
    if plan.audio:
        sine = f"sine=frequency=440:sample_rate=48000,atrim=duration={plan.duration}[audio]"
        chains.append(sine)
        maps += ["-map", "[audio]", "-c:a", "aac", "-b:a", "48k"]
    return [
        "ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
        "-filter_complex_threads", "1", "-filter_complex", ";".join(chains), *maps,
        "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
        "-g", str(2 * config.fps), "-threads", "1", "-movflags", "+faststart",
    ]  # fmt: skip


def probe(path: Path) -> tuple[float, str] | None:
    """(container duration in seconds, comment tag), or None where ffprobe cannot read `path`."""
    result = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration:format_tags=comment",
         "-of", "json", str(path)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        return None
    fmt = json.loads(result.stdout).get("format", {})
    if "duration" not in fmt:
        return None
    return float(fmt["duration"]), fmt.get("tags", {}).get("comment", "")


def render(plan: VideoPlan, config: SynthConfig, path: Path) -> bool:
    """Write `path` for `plan` unless it is already there; True when it was written."""
    if plan.broken == "corrupt":  # random bytes named .mp4; the same bytes for the same plan
        rng = random.Random(f"corrupt:{plan.video_id}")
        data = rng.randbytes(rng.randint(20_000, 60_000))
        if path.is_file() and path.read_bytes() == data:
            return False
        atomic_write_bytes(path, data)
        return True
    # The truncated file keeps its header (faststart), so its probe still reads as complete.
    expected = (float(plan.duration), _fingerprint(_render_args(plan, config)))
    if path.is_file() and probe(path) == expected:
        return False
    with atomic_output(path) as tmp:
        command = ffmpeg_command(plan, config, tmp)
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(
                f"ffmpeg failed to render synthetic video {plan.video_id} into {path}: "
                f"exit {result.returncode}: {result.stderr.strip()[-2000:]}"
            )
        if plan.broken == "truncated":  # an interrupted download
            data = tmp.read_bytes()
            tmp.write_bytes(data[: int(len(data) * TRUNCATE_SHARE)])
    return True


def render_all(plans: list[tuple[VideoPlan, Path]], config: SynthConfig) -> list[bool]:
    """Render (plan, file) jobs, one single-threaded ffmpeg per CPU core (the threads only wait
    on ffmpeg); True where a file was written, False where a matching one was kept."""
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        return list(pool.map(lambda item: render(item[0], config, item[1]), plans))


def render_into(plans: Sequence[VideoPlan], video_dir: Path, config: SynthConfig) -> list[bool]:
    """Render each plan to `<video_dir>/<video_id>.mp4` (the folder made, stale temporaries of an
    interrupted run removed); True where a file was written, False where a matching one was kept."""
    video_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(video_dir)
    return render_all([(p, video_dir / f"{p.video_id}.mp4") for p in plans], config)


def write_dataset(
    annotations: Path,
    document: dict[str, Any],
    truth: dict[str, Any],
    videos: tuple[VideoPlan, ...],
    written: list[bool],
) -> DatasetSummary:
    """Write one dataset's annotation file and ground truth (its videos are already rendered)."""
    root = annotations.parent
    atomic_write_json(annotations, document)
    atomic_write_json(root / GROUND_TRUTH_FILE, truth)
    summary = DatasetSummary(
        root=root,
        annotations=annotations,
        ground_truth=root / GROUND_TRUTH_FILE,
        videos=len(videos),
        pairs=len(truth),
        video_seconds=sum(p.duration for p in videos),
        rendered=sum(written),
        reused=len(written) - sum(written),
    )
    log.info(
        "synth %s: %d videos (%d rendered, %d reused), %d pairs, %d video-seconds",
        root, summary.videos, summary.rendered, summary.reused, summary.pairs,
        summary.video_seconds,
    )  # fmt: skip
    return summary
