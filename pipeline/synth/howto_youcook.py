"""The synthetic HowTo100M- and YouCookII-format sets (the demo's pretraining and retrieval data).

Outputs under `out_dir`, in the real file formats (videoclip-facts.md §2.3, §2.7):
- `howto100m/videos/<id>.mp4`, `howto100m/caption.json` {id: {"start", "end", "text"}},
  `howto100m/ground_truth.json` {"<id>:<caption index>": {"video_id", "concept", "seconds"}};
- `youcook2/videos/<id>.mp4`, `youcook2/youcookii_annotations_trainval.json` {"database": ...},
  `youcook2/ground_truth.json` {"<id>_<annotation id>": {...}}, and with `broken_videos`
  `youcook2/broken.json` {"truncated": [id], "corrupt": [id]}.

Planning (`plan_synth`) is pure and seeded by `random.Random` only; both sets render in one pool.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.config import SynthConfig
from pipeline.datasets.synthetic import SYNTHETIC_SETS
from pipeline.synth.concepts import ASR_LEADS, CONCEPTS
from pipeline.synth.render import (
    DatasetSummary,
    VideoPlan,
    describe,
    plan_video,
    render_all,
    truth_entry,
    video_id,
    write_dataset,
)
from storage.atomic import atomic_write_json, remove_stale_temporaries

HOWTO, YOUCOOK = SYNTHETIC_SETS["howto100m"], SYNTHETIC_SETS["youcook2"]


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
    truth = [truth_entry(plan.video_id, r[3]) for r in rows]
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
        truth.append(truth_entry(plan.video_id, seg))
    entry = {
        "duration": float(plan.duration),
        "subset": subset,
        "recipe_type": str(101 + sorted(CONCEPTS).index(plan.concept_segments()[0].concept)),
        "video_url": f"https://www.youtube.com/watch?v={plan.video_id}",
        "annotations": annotations,
    }
    return entry, truth


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
    """What the config's own validation cannot know: the size of the concept pool."""
    if config.max_segments > len(CONCEPTS):
        raise ValueError(
            f"synth.max_segments: {config.max_segments} distinct concepts per video, but the "
            f"concept pool holds {len(CONCEPTS)}"
        )


def synthesize_howto_youcook(
    config: SynthConfig, out_dir: Path
) -> tuple[DatasetSummary, DatasetSummary, Path | None]:
    """Render both sets into `out_dir/howto100m` and `out_dir/youcook2` (one pool for both, so
    neither waits for the other) and write their files; the summaries and `broken.json`'s path."""
    plan = plan_synth(config)
    howto_root, youcook_root = out_dir / HOWTO.folder, out_dir / YOUCOOK.folder
    howto_videos, youcook_videos = howto_root / HOWTO.videos, youcook_root / YOUCOOK.videos
    jobs = [(p, howto_videos / f"{p.video_id}.mp4") for p in plan.howto_videos]
    jobs += [(p, youcook_videos / f"{p.video_id}.mp4") for p in plan.youcook_videos]
    for folder in (howto_videos, youcook_videos):
        folder.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(folder)
    written = render_all(jobs, config)
    n_howto = len(plan.howto_videos)
    howto = write_dataset(
        howto_root / HOWTO.annotations, plan.howto_captions, plan.howto_ground_truth,
        plan.howto_videos, written[:n_howto],
    )  # fmt: skip
    youcook = write_dataset(
        youcook_root / YOUCOOK.annotations, plan.youcook_annotations,
        plan.youcook_ground_truth, plan.youcook_videos, written[n_howto:],
    )  # fmt: skip
    broken_path = None
    if plan.broken is not None:
        broken_path = youcook_root / "broken.json"
        atomic_write_json(broken_path, plan.broken)
    return howto, youcook, broken_path
