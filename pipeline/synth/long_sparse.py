"""The long-sparse benchmark: long clips in which only a few seconds match the caption.

FineCo's claim (paper §1, §5.2) is about exactly this regime: in a YouCookII clip of up to 256 s
roughly 20 % of the seconds show what the text says. Each clip here lasts `min_seconds` to
`max_seconds` at one feature per second; its caption's concept fills at most `max_relevant_share`
of it, in 1 to `max_runs` runs at random positions; every other second shows a *distractor*:
a concept that shares one or two attributes (pattern, tint, motion) with it, so a mean over the
whole clip resembles other captions. Distractors are `spare` concepts, none of which is a
caption of the split, so no other query's concept appears in a clip and the ground truth (the
relevant seconds, and the one clip a caption belongs to) is unambiguous. `captions` draws them
from the split's own captions, as the first version did: there, for about half the test queries
another clip showed the query's concept for at least as long as its own clip did (counted in
`benchmark.json` as `ambiguous_queries`).

The **short** set has the same captions with each clip cut to its relevant seconds (the same
feature rows, in order), so the two differ only in the distractors. The **pretrain** corpus is
HowTo100M-format: videos of 3–8 s concept segments, each with an ASR-like caption, over the same
attribute vocabulary.

This is the `features` level of the benchmark: per-second 512-d vectors written as one
`<video_id>.npy` per video (float16), imported by the extract stage (`datasets.<n>.features`).
A concept's vector is the normalised sum of one random unit vector per attribute value; a second's
feature is that vector plus Gaussian noise of norm ≈ `noise`, L2-normalised as S3D-G's
`video_embedding` is. Everything is drawn from `seed` alone: a seed gives identical files.

Outputs under `out_dir`: `benchmark.json` (the parameters and counts), and per set
`<set>/<annotation file>`, `<set>/features/<id>.npy`, `<set>/ground_truth.json`.
"""

from __future__ import annotations

import dataclasses
import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.s3dg import EMBEDDING_DIM
from pipeline.config import BenchmarkConfig
from pipeline.datasets.synthetic import GROUND_TRUTH_FILE, SYNTHETIC_SETS
from pipeline.synth.concepts import ASR_LEADS, MOTIONS, PATTERNS, TINTS, Concept, all_concepts
from pipeline.synth.render import describe, video_id
from storage.atomic import atomic_output, atomic_write_json

log = logging.getLogger(__name__)

SETS = ("long", "short", "pretrain")
FEATURES = "features"  # each set's feature folder (datasets.<name>.features)
YOUCOOK_FILE = SYNTHETIC_SETS["youcook2"].annotations
HOWTO_FILE = SYNTHETIC_SETS["howto100m"].annotations
SUBSETS = {"train": "training", "test": "validation"}  # YouCookII's names for the two splits


@dataclass(frozen=True)
class Run:
    """Seconds [start, stop) of a clip showing one concept (the caption's, or a distractor)."""

    start: int
    stop: int
    concept: Concept


@dataclass(frozen=True)
class Clip:
    video_id: str
    split: str  # "train" | "test"
    concept: Concept  # the caption's concept
    caption: str
    runs: tuple[Run, ...]  # cover [0, length) in order

    @property
    def length(self) -> int:
        return self.runs[-1].stop

    def relevant_seconds(self) -> list[int]:
        return [
            second
            for run in self.runs
            if run.concept == self.concept
            for second in range(run.start, run.stop)
        ]


def shares_attribute(a: Concept, b: Concept) -> bool:
    """Two different concepts with the same pattern, tint or motion."""
    return a != b and (a.pattern == b.pattern or a.tint == b.tint or a.motion == b.motion)


def plan_clips(config: BenchmarkConfig) -> list[Clip]:
    """The long clips of both splits: test concepts are distinct, train concepts may repeat."""
    rng = random.Random(f"{config.seed}:long-sparse")
    concepts = all_concepts()
    if config.test_clips > len(concepts):
        raise ValueError(
            f"benchmark.test_clips = {config.test_clips}: at most {len(concepts)} distinct "
            "concepts exist for test captions"
        )
    taken: set[str] = set()
    clips = []
    for split, count in (("train", config.train_clips), ("test", config.test_clips)):
        targets = (
            rng.sample(concepts, count)
            if split == "test"
            else [rng.choice(concepts) for _ in range(count)]
        )
        captions = set(targets)
        if config.distractors == "captions":
            pool = sorted(captions, key=lambda c: c.name)
        else:  # concepts that no caption of this split has
            pool = [concept for concept in concepts if concept not in captions]
        for concept in targets:
            runs = plan_runs(rng, config, concept, pool)
            caption = describe(rng, concept)
            clips.append(Clip(video_id(rng, taken), split, concept, caption, tuple(runs)))
    return clips


def plan_runs(
    rng: random.Random, config: BenchmarkConfig, concept: Concept, pool: list[Concept]
) -> list[Run]:
    """Relevant runs at random positions, the rest filled with distractor runs."""
    length = rng.randint(config.min_seconds, config.max_seconds)
    relevant = rng.randint(
        config.min_relevant_seconds,
        max(config.min_relevant_seconds, int(length * config.max_relevant_share)),
    )
    count = rng.randint(1, max(1, min(config.max_runs, relevant // config.min_run_seconds)))
    sizes = _split(rng, relevant, count, config.min_run_seconds)
    gaps = _split(rng, length - relevant, count + 1, 0)  # distractor seconds around the runs
    distractors = [c for c in pool if shares_attribute(c, concept)] or [
        c for c in pool if c != concept
    ]
    runs, now = [], 0
    for index in range(count + 1):
        gap_end = now + gaps[index]
        while now < gap_end:  # distractor runs of 3-15 s, each another concept
            stop = min(gap_end, now + rng.randint(*config.distractor_run_seconds))
            runs.append(Run(now, stop, rng.choice(distractors)))
            now = stop
        if index < count:
            runs.append(Run(now, now + sizes[index], concept))
            now += sizes[index]
    return runs


def _split(rng: random.Random, total: int, parts: int, minimum: int) -> list[int]:
    """`total` as `parts` non-negative sizes of at least `minimum`, at random."""
    spare = total - parts * minimum
    cuts = sorted(rng.randint(0, spare) for _ in range(parts - 1))
    return [minimum + b - a for a, b in zip([0, *cuts], [*cuts, spare], strict=True)]


class FeatureMaker:
    """Per-second features: a concept's vector (normalised sum of its attributes' unit vectors)
    plus Gaussian noise, L2-normalised, float16."""

    def __init__(self, config: BenchmarkConfig) -> None:
        generator = np.random.default_rng([config.seed, 512])
        names = [*sorted(PATTERNS), *sorted(TINTS), *sorted(MOTIONS)]
        kinds = ["pattern"] * len(PATTERNS) + ["tint"] * len(TINTS) + ["motion"] * len(MOTIONS)
        vectors = generator.standard_normal((len(names), EMBEDDING_DIM))
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        self.attribute = {(k, n): v for k, n, v in zip(kinds, names, vectors, strict=True)}
        self.noise = config.noise

    def concept_vector(self, concept: Concept) -> np.ndarray:  # (512,)
        total = (
            self.attribute[("pattern", concept.pattern)]
            + self.attribute[("tint", concept.tint)]
            + self.attribute[("motion", concept.motion)]
        )
        return total / np.linalg.norm(total)

    def seconds(
        self, runs: list[Run] | tuple[Run, ...], generator: np.random.Generator
    ) -> np.ndarray:
        """(n_seconds, 512) float16 features of consecutive runs."""
        rows = np.concatenate(
            [np.tile(self.concept_vector(r.concept), (r.stop - r.start, 1)) for r in runs]
        )
        noise = generator.standard_normal(rows.shape) * (self.noise / np.sqrt(EMBEDDING_DIM))
        rows = rows + noise
        rows /= np.linalg.norm(rows, axis=1, keepdims=True)
        return rows.astype(np.float16)


def youcook_document(clips: list[Clip], lengths: dict[str, int]) -> dict[str, Any]:
    """YouCookII's annotation format: one video per clip, one annotation covering it."""
    database = {}
    for clip in clips:
        length = lengths[clip.video_id]
        database[clip.video_id] = {
            "duration": float(length),
            "subset": SUBSETS[clip.split],
            "recipe_type": "0",
            "video_url": "",
            "annotations": [{"id": 0, "segment": [0, length], "sentence": clip.caption}],
        }
    return {"database": database}


def write_benchmark(config: BenchmarkConfig, out_dir: Path) -> dict[str, Any]:
    """Write the long, short and pretrain sets into `out_dir`; returns `benchmark.json`."""
    clips = plan_clips(config)
    maker = FeatureMaker(config)
    generator = np.random.default_rng([config.seed, 1])
    for clip in clips:
        features = maker.seconds(clip.runs, generator)  # (length, 512)
        _save(out_dir / "long" / FEATURES / f"{clip.video_id}.npy", features)
        short = features[clip.relevant_seconds()]
        _save(out_dir / "short" / FEATURES / f"{clip.video_id}.npy", short)
    long_truth, short_truth = clip_truth(clips)
    short_lengths = {clip.video_id: len(clip.relevant_seconds()) for clip in clips}
    long_lengths = {clip.video_id: clip.length for clip in clips}
    for name, truth, lengths in (
        ("long", long_truth, long_lengths),
        ("short", short_truth, short_lengths),
    ):
        atomic_write_json(out_dir / name / YOUCOOK_FILE, youcook_document(clips, lengths))
        atomic_write_json(out_dir / name / GROUND_TRUTH_FILE, truth)
    pretrain_videos = _write_pretrain(config, maker, out_dir / "pretrain")
    return benchmark_facts(config, clips, short_lengths, pretrain_videos)


def clip_truth(clips: list[Clip]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ground truth of the long and the short set: each caption's relevant seconds."""
    long_truth, short_truth = {}, {}
    for clip in clips:
        relevant = clip.relevant_seconds()
        truth = {"video_id": clip.video_id, "concept": clip.concept.name}
        long_truth[f"{clip.video_id}_0"] = {**truth, "seconds": relevant}
        short_truth[f"{clip.video_id}_0"] = {**truth, "seconds": list(range(len(relevant)))}
    return long_truth, short_truth


@dataclass(frozen=True)
class PretrainVideo:
    """A HowTo100M-format video: consecutive concept runs, one ASR-like caption per run."""

    video_id: str
    runs: tuple[Run, ...]
    captions: tuple[str, ...]


def plan_pretrain(config: BenchmarkConfig) -> list[PretrainVideo]:
    """`pretrain_videos` videos of 4-8 runs of 3-8 s over every concept."""
    rng = random.Random(f"{config.seed}:pretrain")
    concepts, taken = all_concepts(), set()
    videos = []
    for _ in range(config.pretrain_videos):
        vid = video_id(rng, taken)
        runs, now = [], 0
        for _ in range(rng.randint(4, 8)):
            length = rng.randint(3, 8)
            runs.append(Run(now, now + length, rng.choice(concepts)))
            now += length
        texts = tuple(rng.choice(ASR_LEADS) + describe(rng, run.concept) for run in runs)
        videos.append(PretrainVideo(vid, tuple(runs), texts))
    return videos


def howto_documents(videos: list[PretrainVideo]) -> tuple[dict[str, Any], dict[str, Any]]:
    """HowTo100M's caption.json {id: {start, end, text}} and the ground truth of each caption."""
    captions, truth = {}, {}
    for video in videos:
        captions[video.video_id] = {
            "start": [float(run.start) for run in video.runs],
            "end": [float(run.stop) for run in video.runs],
            "text": list(video.captions),
        }
        for index, run in enumerate(video.runs):
            truth[f"{video.video_id}:{index}"] = {
                "video_id": video.video_id,
                "concept": run.concept.name,
                "seconds": list(range(run.start, run.stop)),
            }
    return captions, truth


def _write_pretrain(config: BenchmarkConfig, maker: FeatureMaker, root: Path) -> int:
    """The pretraining corpus at the features level."""
    videos = plan_pretrain(config)
    generator = np.random.default_rng([config.seed, 2])
    for video in videos:
        _save(root / FEATURES / f"{video.video_id}.npy", maker.seconds(video.runs, generator))
    captions, truth = howto_documents(videos)
    atomic_write_json(root / HOWTO_FILE, captions)
    atomic_write_json(root / GROUND_TRUTH_FILE, truth)
    return len(captions)


def _save(path: Path, features: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as tmp, tmp.open("wb") as handle:
        np.save(handle, features)


def benchmark_facts(
    config: BenchmarkConfig, clips: list[Clip], short_lengths: dict[str, int], pretrain: int
) -> dict[str, Any]:
    """The parameters and what they produced (for benchmark.json, the study and the report)."""
    test = [clip for clip in clips if clip.split == "test"]
    share = [len(c.relevant_seconds()) / c.length for c in test]
    shown: dict[Concept, int] = {}  # longest time any test clip shows a concept as a distractor
    for clip in test:
        for concept, seconds in _distractor_seconds(clip).items():
            shown[concept] = max(shown.get(concept, 0), seconds)
    return {
        "parameters": dataclasses.asdict(config),
        "train_clips": sum(clip.split == "train" for clip in clips),
        "test_queries": len(test),
        "chance_r1": 100.0 / len(test),
        "long_mean_seconds": float(np.mean([c.length for c in test])),
        "long_relevant_share_mean": float(np.mean(share)),
        "long_relevant_share_max": float(np.max(share)),
        "short_mean_seconds": float(np.mean([short_lengths[c.video_id] for c in test])),
        "pretrain_videos": pretrain,
        # test queries whose concept another test clip shows at least as long as their own
        "ambiguous_queries": sum(
            shown.get(c.concept, 0) >= len(c.relevant_seconds()) for c in test
        ),
    }


def _distractor_seconds(clip: Clip) -> dict[Concept, int]:
    """Seconds of each distractor concept in a clip."""
    seconds: dict[Concept, int] = {}
    for run in clip.runs:
        if run.concept != clip.concept:
            seconds[run.concept] = seconds.get(run.concept, 0) + run.stop - run.start
    return seconds
