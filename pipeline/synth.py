"""Synthetic HowTo100M- and YouCookII-format datasets rendered with ffmpeg's lavfi sources.

DESIGN.md §7: each video is a sequence of segments, each showing one *concept* (a lavfi pattern ×
a colour tint × a motion), with short unrelated filler (grey card or noise) between some segments.
Captions are generated from the concept's attributes with varied templates and synonyms, so a
caption describes only part of its video (FineCo's weak correspondence), and `ground_truth.json`
records the seconds that truly show the concept — a frame-selector precision no real set offers.

Outputs under `out_dir`, in the real file formats (videoclip-facts.md §2.3, §2.7):
- `howto100m/videos/<id>.mp4`, `howto100m/caption.json` {id: {"start", "end", "text"}},
  `howto100m/ground_truth.json` {"<id>:<caption index>": {"video_id", "concept", "seconds"}};
- `youcook2/videos/<id>.mp4`, `youcook2/youcookii_annotations_trainval.json` {"database": ...},
  `youcook2/ground_truth.json` {"<id>_<annotation id>": {...}}, and with `broken_videos`
  `youcook2/broken.json` {"truncated": [id], "corrupt": [id]};
- the short-video sets named in `config.short_sets` (`SHORT_SETS`): `msrvtt/` (synth_msrvtt.py,
  `short_videos` videos), `msvd/` (synth_msvd.py: MSVD files over the msrvtt videos) and
  `didemo/` (synth_didemo.py, `didemo_videos` videos of 30 s); each module's docstring gives its
  files.

Planning (`plan_synth`) is pure and seeded by `random.Random` only; rendering runs one
single-threaded ffmpeg per video, as many at once as there are CPU cores. A video whose file
already has the planned duration and render fingerprint is kept, so a rerun is quick.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pipeline.config import SynthConfig
from pipeline.synth_concepts import (
    ASR_LEADS,
    CONCEPTS,
    FILLERS,
    FULL_TEMPLATES,
    MOTIONS,
    PARTIAL_TEMPLATES,
    PATTERNS,
    TINTS,
    Concept,
)
from storage.atomic import (
    atomic_output,
    atomic_write_bytes,
    atomic_write_json,
    remove_stale_temporaries,
)

if TYPE_CHECKING:  # the short-set modules import this one
    from pipeline.synth_msrvtt import MsrvttSummary

log = logging.getLogger(__name__)

ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
TRUNCATE_SHARE = 0.6  # the truncated video keeps this share of its bytes
FINGERPRINT_PREFIX = "fineco-synth:"
GROUND_TRUTH_FILE = "ground_truth.json"  # beside the annotations: relevant seconds per pair
SHORT_SETS = ("msrvtt", "msvd", "didemo")  # the names `synth.short_sets` may hold, in render order


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
class SynthPlan:
    """Everything `synthesize` writes, before any rendering: videos and JSON documents."""

    howto_videos: tuple[VideoPlan, ...]
    youcook_videos: tuple[VideoPlan, ...]
    howto_captions: dict[str, Any]
    howto_ground_truth: dict[str, Any]
    youcook_annotations: dict[str, Any]
    youcook_ground_truth: dict[str, Any]
    broken: dict[str, list[str]] | None


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


@dataclass(frozen=True)
class SynthSummary:
    out_dir: Path
    howto100m: DatasetSummary
    youcook2: DatasetSummary
    broken: Path | None  # youcook2/broken.json, when broken videos were requested
    concepts: tuple[str, ...]
    total_video_seconds: int  # of every video file written or kept (msvd shares msrvtt's)
    # The sets of `config.short_sets`, in SHORT_SETS order: name -> its summary.
    short: dict[str, MsrvttSummary | DatasetSummary] = field(default_factory=dict)


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


def howto_entry(rng: random.Random, plan: VideoPlan) -> tuple[dict[str, list], list[dict]]:
    """ASR-like captions: 1–3 per segment over sub-spans, ±0.25 s timing noise, sorted by start."""
    rows = []
    for seg in plan.concept_segments():
        length = seg.end - seg.start
        count = rng.randint(1, min(3, length))
        cuts = sorted(rng.sample(range(1, length), count - 1))
        bounds = [0.0, *(c + rng.uniform(-0.2, 0.2) for c in cuts), float(length)]
        for k in range(count):
            start = max(0.0, seg.start + bounds[k] + rng.uniform(-0.25, 0.25))
            end = min(float(plan.duration), seg.start + bounds[k + 1] + rng.uniform(-0.25, 0.25))
            text = rng.choice(ASR_LEADS) + describe(rng, CONCEPTS[seg.concept], full=k == 0)
            rows.append((round(start, 2), round(end, 2), text, seg))
    rows.sort(key=lambda row: row[0])
    entry = {
        "start": [r[0] for r in rows],
        "end": [r[1] for r in rows],
        "text": [r[2] for r in rows],
    }
    truth = [_truth(plan.video_id, r[3]) for r in rows]
    return entry, truth


def youcook_entry(
    rng: random.Random, plan: VideoPlan, subset: str
) -> tuple[dict[str, Any], list[dict]]:
    """One annotation per concept segment; the window is widened 0–3 s into each neighbour."""
    annotations, truth = [], []
    for index, seg in enumerate(plan.concept_segments()):
        start = max(0, seg.start - rng.randint(0, 3))
        end = min(plan.duration, seg.end + rng.randint(0, 3))
        sentence = describe(rng, CONCEPTS[seg.concept])
        annotations.append({"id": index, "segment": [start, end], "sentence": sentence})
        truth.append(_truth(plan.video_id, seg))
    entry = {
        "duration": float(plan.duration),
        "subset": subset,
        "recipe_type": str(101 + sorted(CONCEPTS).index(plan.concept_segments()[0].concept)),
        "video_url": f"https://www.youtube.com/watch?v={plan.video_id}",
        "annotations": annotations,
    }
    return entry, truth


def _truth(vid: str, seg: Segment) -> dict[str, Any]:
    return {"video_id": vid, "concept": seg.concept, "seconds": list(range(seg.start, seg.end))}


def plan_synth(config: SynthConfig) -> SynthPlan:
    """The videos and JSON documents for `config`; identical for identical configs."""
    _check(config)
    taken: set[str] = set()
    rng = random.Random(f"{config.seed}:howto100m")
    howto = [plan_video(rng, config, video_id(rng, taken)) for _ in range(config.pretrain_videos)]
    if howto:  # one pretraining video carries an audio track, as real downloads do
        howto[0] = VideoPlan(howto[0].video_id, howto[0].segments, audio=True)
    captions, howto_truth = {}, {}
    for plan in howto:
        captions[plan.video_id], truth = howto_entry(rng, plan)
        howto_truth.update({f"{plan.video_id}:{i}": t for i, t in enumerate(truth)})

    rng = random.Random(f"{config.seed}:youcook2")
    broken_kinds = ["truncated", "corrupt"] if config.broken_videos else []
    train = config.youcook_train_videos + len(broken_kinds)  # broken files join `training`
    subsets = ["training"] * train + ["validation"] * config.youcook_val_videos
    kinds = [""] * config.youcook_train_videos + broken_kinds + [""] * config.youcook_val_videos
    youcook, database, youcook_truth = [], {}, {}
    for subset, kind in zip(subsets, kinds, strict=True):
        plan = plan_video(rng, config, video_id(rng, taken))
        plan = VideoPlan(plan.video_id, plan.segments, broken=kind)
        youcook.append(plan)
        database[plan.video_id], truth = youcook_entry(rng, plan, subset)
        youcook_truth.update({f"{plan.video_id}_{i}": t for i, t in enumerate(truth)})
    broken = None
    if config.broken_videos:
        broken = {k: [p.video_id for p in youcook if p.broken == k] for k in broken_kinds}
    return SynthPlan(
        tuple(howto), tuple(youcook), captions, howto_truth, {"database": database},
        youcook_truth, broken,
    )  # fmt: skip


def _check(config: SynthConfig) -> None:
    problems = []
    if not 1 <= config.min_segments <= config.max_segments <= len(CONCEPTS):
        problems.append(
            f"need 1 <= min_segments <= max_segments <= {len(CONCEPTS)} (the concept pool), "
            f"found {config.min_segments}..{config.max_segments}"
        )
    if not 1 <= config.min_segment_s <= config.max_segment_s:
        problems.append(
            "need 1 <= min_segment_s <= max_segment_s, "
            f"found {config.min_segment_s}..{config.max_segment_s}"
        )
    if min(config.width, config.height, config.fps) < 1 or config.width % 2 or config.height % 2:
        problems.append(
            f"need a positive even width and height and fps >= 1 (yuv420p), found "
            f"{config.width}x{config.height} at {config.fps} fps"
        )
    problems += _short_set_problems(config)
    if problems:
        raise ValueError("synth config: " + "; ".join(problems))


def _short_set_problems(config: SynthConfig) -> list[str]:
    problems = []
    unknown = [name for name in config.short_sets if name not in SHORT_SETS]
    if unknown:
        problems.append(
            f"synth.short_sets: unknown set(s) {', '.join(map(repr, unknown))}; "
            f"known: {', '.join(SHORT_SETS)}"
        )
    if {"msrvtt", "msvd"} & set(config.short_sets) and not (
        1 <= config.short_test_videos < config.short_videos
    ):
        problems.append(
            "synth.short_test_videos: need 1 <= short_test_videos < short_videos, found "
            f"{config.short_test_videos} of {config.short_videos}"
        )
    if "didemo" in config.short_sets and not (
        1 <= config.didemo_test_videos <= config.didemo_videos - 2
    ):
        problems.append(
            "synth.didemo_test_videos: need 1 <= didemo_test_videos <= didemo_videos - 2 "
            f"(train and val need a video each), found {config.didemo_test_videos} of "
            f"{config.didemo_videos}"
        )
    return problems


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
            concept = CONCEPTS[seg.concept]
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


def synthesize(config: SynthConfig, out_dir: Path) -> SynthSummary:
    """Render both synthetic datasets into `out_dir` and write their annotation files."""
    plan = plan_synth(config)
    howto_root, youcook_root = out_dir / "howto100m", out_dir / "youcook2"
    jobs = [(p, howto_root / "videos" / f"{p.video_id}.mp4") for p in plan.howto_videos]
    jobs += [(p, youcook_root / "videos" / f"{p.video_id}.mp4") for p in plan.youcook_videos]
    for root in (howto_root, youcook_root):
        (root / "videos").mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(root / "videos")
    written = render_all(jobs, config)
    n_howto = len(plan.howto_videos)

    howto = _write_dataset(
        howto_root / "caption.json", plan.howto_captions, plan.howto_ground_truth,
        plan.howto_videos, written[:n_howto],
    )  # fmt: skip
    youcook = _write_dataset(
        youcook_root / "youcookii_annotations_trainval.json", plan.youcook_annotations,
        plan.youcook_ground_truth, plan.youcook_videos, written[n_howto:],
    )  # fmt: skip
    broken_path = None
    if plan.broken is not None:
        broken_path = youcook_root / "broken.json"
        atomic_write_json(broken_path, plan.broken)
    short = synthesize_short_sets(config, out_dir)
    short_seconds = sum(
        s.video_seconds for name, s in short.items() if not (name == "msvd" and "msrvtt" in short)
    )
    return SynthSummary(
        out_dir=out_dir,
        howto100m=howto,
        youcook2=youcook,
        broken=broken_path,
        concepts=tuple(CONCEPTS),
        total_video_seconds=howto.video_seconds + youcook.video_seconds + short_seconds,
        short=short,
    )


def synthesize_short_sets(
    config: SynthConfig, out_dir: Path
) -> dict[str, MsrvttSummary | DatasetSummary]:
    """Render the sets of `config.short_sets` (in SHORT_SETS order) under `out_dir`."""
    problems = _short_set_problems(config)
    if problems:
        raise ValueError("synth config: " + "; ".join(problems))
    # Imported here: these modules import this one.
    from pipeline.synth_didemo import synthesize_didemo
    from pipeline.synth_msrvtt import synthesize_msrvtt
    from pipeline.synth_msvd import synthesize_msvd

    short_sizes = (config.short_videos, config.short_test_videos)
    didemo_sizes = (config.didemo_videos, config.didemo_test_videos)
    summaries: dict[str, MsrvttSummary | DatasetSummary] = {}
    for name in SHORT_SETS:
        if name not in config.short_sets:
            continue
        if name == "msrvtt":
            summaries[name] = synthesize_msrvtt(config, out_dir, *short_sizes)
        elif name == "msvd":
            summaries[name] = synthesize_msvd(config, out_dir, *short_sizes)
        else:
            summaries[name] = synthesize_didemo(config, out_dir, *didemo_sizes)
    return summaries


def summary_lines(summary: SynthSummary) -> list[str]:
    """One line per dataset: root, videos (rendered/reused), pairs, video-seconds."""
    sets: dict[str, MsrvttSummary | DatasetSummary] = {
        "howto100m": summary.howto100m,
        "youcook2": summary.youcook2,
        **summary.short,
    }
    lines = []
    for name, s in sets.items():
        if isinstance(s, DatasetSummary):
            pairs = f"{s.pairs} pairs"
        else:  # MsrvttSummary
            pairs = f"{s.train_pairs} train / {s.test_pairs} test pairs, QA {s.qa}"
        lines.append(
            f"{name:>10}  {s.root}: {s.videos} videos ({s.rendered} rendered, {s.reused} reused),"
            f" {pairs}, {s.video_seconds} video-s"
        )
    lines.append(f"{'total':>10}  {summary.total_video_seconds} video-s")
    return lines


def _write_dataset(
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
