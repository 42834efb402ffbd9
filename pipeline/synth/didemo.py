"""A synthetic DiDeMo-format dataset: 30 s videos of six 5-second chunks, moments on whole chunks.

Each video lasts `N_CHUNKS * CHUNK_S` = 30 s. It shows 2–4 distinct concepts, each over 1–2 whole
chunks (a moment (s, e) = chunks s..e, both ends inclusive, seconds [5s, 5(e+1))), with filler
(grey card or noise) on the other chunks, at least one. Each concept segment gets one
description (render.py's `describe`) and `ANNOTATORS` annotator intervals: most are the true
(s, e); in about half of the moments one annotator is off by one chunk at one end (clipped to
chunks 0..5, s <= e kept), as human annotators of DiDeMo disagree at the edges. Every interval
is one of the 21 candidates of pipeline/datasets/didemo.py `candidate_moments`.

Outputs under `<out_dir>/didemo`, in the LocalizingMoments format pipeline/datasets/didemo.py reads:
- `videos/<id>.mp4` (flickr-like ids, `<8 digits>@N<2 digits>_<10 digits>_<10 hex>`);
- `{train,val,test}_data.json` [{"annotation_id": int, "description", "video": "<id>.mp4",
  "times": [[s, e] x ANNOTATORS], "download_link", "num_segments": 6}], in video then time order;
  test = the last `test_videos` videos, val = the `val_videos` before them, train = the rest;
- `ground_truth.json` {"<video id>": {"video_id", "concept", "seconds"}}, keyed by the adapter's
  paragraph pair ids (the video id); concept = the described concepts joined with " + ", seconds
  = every second that shows one of them (the filler seconds are left out).

Read it with DatasetConfig(adapter="didemo", root="<out_dir>/didemo", annotations="",
videos="videos"). Planning is pure and seeded by `random.Random` only, so a seed gives identical
files.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.config import SynthConfig
from pipeline.datasets.didemo import CHUNK_S, N_CHUNKS
from pipeline.datasets.synthetic import GROUND_TRUTH_FILE, SYNTHETIC_SETS
from pipeline.synth.concepts import CONCEPTS, FILLERS
from pipeline.synth.render import DatasetSummary, Segment, VideoPlan, describe, render_into
from storage.atomic import atomic_write_json

log = logging.getLogger(__name__)

DATASET_DIR = SYNTHETIC_SETS["didemo"].folder
SPLITS = ("train", "val", "test")
ANNOTATORS = 4  # intervals per description, as in DiDeMo
MIN_MOMENTS, MAX_MOMENTS = 2, 4  # described concept segments per video
MAX_MOMENT_CHUNKS = 2  # a moment covers 1 or 2 chunks
MIN_FILLER_CHUNKS = 1  # so no paragraph describes the whole video
OFF_SHARE = 0.5  # moments where one annotator is off by one chunk at one end
VAL_SHARE = 0.2  # share of the non-test videos in val (at least one)
_HEX = "0123456789abcdef"

Chunks = tuple[int, int]  # (s, e): chunk indices 0..N_CHUNKS-1, both inclusive


@dataclass(frozen=True)
class DidemoPlan:
    videos: tuple[VideoPlan, ...]  # each N_CHUNKS * CHUNK_S seconds long
    documents: dict[str, list[dict[str, Any]]]  # "<split>_data.json" -> annotations
    ground_truth: dict[str, Any]  # video id -> {"video_id", "concept", "seconds"}


def flickr_id(rng: random.Random, taken: set[str]) -> str:
    """A fresh id shaped like DiDeMo's `<user>@N<nn>_<photo id>_<secret>`."""
    while True:
        secret = "".join(rng.choice(_HEX) for _ in range(10))
        user, node, photo = rng.randrange(10**7, 10**8), rng.randrange(100), rng.randrange(10**10)
        candidate = f"{user}@N{node:02d}_{photo:010d}_{secret}"
        if candidate not in taken:
            taken.add(candidate)
            return candidate


def chunks_of(seg: Segment) -> Chunks:
    """The chunk interval (s, e) of a segment that starts and ends on chunk boundaries."""
    return seg.start // CHUNK_S, seg.end // CHUNK_S - 1


def plan_didemo_video(rng: random.Random, vid: str) -> VideoPlan:
    """2–4 distinct concepts of 1–2 chunks each, in order; the >= 1 filler chunks spread around."""
    count = rng.randint(MIN_MOMENTS, MAX_MOMENTS)
    lengths = [rng.randint(1, MAX_MOMENT_CHUNKS) for _ in range(count)]  # in chunks
    while sum(lengths) > N_CHUNKS - MIN_FILLER_CHUNKS:
        lengths[rng.choice([i for i, n in enumerate(lengths) if n > 1])] -= 1
    gaps = [0] * (count + 1)  # filler chunks before each concept, and after the last
    for _ in range(N_CHUNKS - sum(lengths)):
        gaps[rng.randrange(count + 1)] += 1
    names = rng.sample(sorted(CONCEPTS), count)
    segments, now = [], 0  # now: the next chunk
    for name, length, gap in zip(names, lengths, gaps[:count], strict=True):
        if gap:
            segments.append(_chunk_segment(now, gap, None, rng.randrange(len(FILLERS))))
            now += gap
        segments.append(_chunk_segment(now, length, name, rng.randrange(1000)))
        now += length
    if gaps[-1]:
        segments.append(_chunk_segment(now, gaps[-1], None, rng.randrange(len(FILLERS))))
    return VideoPlan(vid, tuple(segments))


def _chunk_segment(first: int, chunks: int, concept: str | None, variant: int) -> Segment:
    return Segment(first * CHUNK_S, (first + chunks) * CHUNK_S, concept, variant)


def annotator_times(rng: random.Random, truth: Chunks) -> list[Chunks]:
    """ANNOTATORS intervals: the truth, except maybe one annotator off by one chunk at one end."""
    times = [truth] * ANNOTATORS
    if rng.random() < OFF_SHARE:
        s, e = truth
        options = [(s - 1, e), (s + 1, e), (s, e - 1), (s, e + 1)]
        valid = [(a, b) for a, b in options if 0 <= a <= b < N_CHUNKS]  # never empty
        times[rng.randrange(ANNOTATORS)] = rng.choice(valid)
    return times


def _split_sizes(videos: int, test_videos: int) -> tuple[int, int, int]:
    """(train, val, test) video counts; val and train get at least one video each."""
    if not 1 <= test_videos <= videos - 2:
        raise ValueError(
            "synth.didemo_test_videos: need 1 <= didemo_test_videos <= didemo_videos - 2 "
            f"(train and val need a video each), got {test_videos} of {videos}"
        )
    rest = videos - test_videos
    val = min(rest - 1, max(1, round(rest * VAL_SHARE)))
    return rest - val, val, test_videos


def plan_didemo(config: SynthConfig, videos: int = 10, test_videos: int = 4) -> DidemoPlan:
    """Every video and file of the set; identical for identical arguments."""
    n_train, n_val, n_test = _split_sizes(videos, test_videos)
    rng = random.Random(f"{config.seed}:didemo")
    taken: set[str] = set()
    plans = [plan_didemo_video(rng, flickr_id(rng, taken)) for _ in range(videos)]
    splits = ["train"] * n_train + ["val"] * n_val + ["test"] * n_test
    documents: dict[str, list[dict[str, Any]]] = {f"{s}_data.json": [] for s in SPLITS}
    truth: dict[str, Any] = {}
    annotation_id = 0
    for plan, split in zip(plans, splits, strict=True):
        photo = plan.video_id.split("_")[1]
        for seg in plan.concept_segments():
            documents[f"{split}_data.json"].append({
                "annotation_id": annotation_id,
                "description": describe(rng, CONCEPTS[seg.concept]),
                "video": f"{plan.video_id}.mp4",
                "times": [list(t) for t in annotator_times(rng, chunks_of(seg))],
                "download_link": f"https://www.flickr.com/video_download.gne?id={photo}",
                "num_segments": N_CHUNKS,
            })  # fmt: skip
            annotation_id += 1
        shown = plan.concept_segments()
        truth[plan.video_id] = {
            "video_id": plan.video_id,
            "concept": " + ".join(str(seg.concept) for seg in shown),
            "seconds": [t for seg in shown for t in range(seg.start, seg.end)],
        }
    return DidemoPlan(tuple(plans), documents, truth)


def synthesize_didemo(
    config: SynthConfig, out_dir: Path, videos: int = 10, test_videos: int = 4
) -> DatasetSummary:
    """Render the DiDeMo-format set into `<out_dir>/didemo` and write its annotation files."""
    plan = plan_didemo(config, videos, test_videos)
    root = out_dir / DATASET_DIR
    written = render_into(plan.videos, root / "videos", config)
    for name, document in plan.documents.items():
        atomic_write_json(root / name, document)
    atomic_write_json(root / GROUND_TRUTH_FILE, plan.ground_truth)
    summary = DatasetSummary(
        root=root,
        annotations=root,  # the folder of the three *_data.json (the adapter's annotations "")
        ground_truth=root / GROUND_TRUTH_FILE,
        videos=len(plan.videos),
        pairs=len(plan.ground_truth),  # paragraph pairs, one per video
        video_seconds=sum(p.duration for p in plan.videos),
        rendered=sum(written),
        reused=len(written) - sum(written),
    )
    log.info(
        "synth %s: %d videos (%d rendered, %d reused), moments %s, %d video-seconds",
        root, summary.videos, summary.rendered, summary.reused,
        {name: len(doc) for name, doc in plan.documents.items()}, summary.video_seconds,
    )  # fmt: skip
    return summary
