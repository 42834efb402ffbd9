"""A synthetic MSR-VTT-format dataset: short videos whose captions cover (almost) all of them.

The contrast to the long YouCookII-format set (howto_youcook.py): each video lasts 4–10 s and
shows one concept (sometimes two, rarely preceded or followed by one second of filler), and each
caption describes the whole video's main content, as MSR-VTT's do. Videos are rendered with
render.py's helpers (`VideoPlan`, `Segment`, `render`); captions use its `describe`.

Outputs under `<out_dir>/msrvtt`, in the formats pipeline/datasets/msrvtt.py reads:
- `videos/video<N>.mp4`;
- `MSRVTT_data.json` {"videos": [{"video_id", "split", ...}], "sentences": [{"caption",
  "video_id", "sen_id"}]}, `CAPTIONS_PER_VIDEO` sentences per video;
- `MSRVTT_train.9k.csv` (column `video_id`, the training videos);
- `MSRVTT_JSFUSION_test.csv` (`key,vid_key,video_id,sentence`, one row per test video);
- `MSR_MC_test.csv` (tab-separated `vid_key`, `a1`..`a5`, `answer`; one row per test video, the
  true caption among four captions of concepts the video does not show);
- `{train,val,test}_qa.json` [{"id", "video_id": N, "question", "answer"}] from the main
  concept's tint and motion (val: the last training videos; test: the test videos);
- `ground_truth.json` {pair_id: {"video_id", "concept", "seconds"}}, keyed by the adapter's
  pair ids ("video<N>:<sen_id>" for training pairs, "ret<i>" for JSFusion rows, "mc<i>" for MC
  rows and "qa<id>" for questions).

Planning is pure and seeded by `random.Random` only, so a seed gives identical files.
"""

from __future__ import annotations

import csv
import io
import logging
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.config import SynthConfig
from pipeline.datasets.synthetic import GROUND_TRUTH_FILE, SYNTHETIC_SETS
from pipeline.synth.concepts import CONCEPTS, FILLERS, MOTIONS, TINTS
from pipeline.synth.render import Segment, VideoPlan, describe, render_into, truth_entry
from storage.atomic import atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)

DATASET_DIR = SYNTHETIC_SETS["msrvtt"].folder
CAPTIONS_PER_VIDEO = 5
MC_CANDIDATES = 5
MIN_VIDEO_S, MAX_VIDEO_S = 4, 10
TWO_SEGMENT_SHARE = 0.25  # videos showing two concepts; the rest show one
FILLER_SHARE = 0.2  # one-concept videos with one second of filler before or after
VAL_SHARE = 0.2  # share of training videos whose QA goes to val_qa.json

# QA answers are single words, as in MSR-VTT-QA; "natural" tints read as "colourful".
TINT_ANSWER = {name: ("colourful" if name == "natural" else name) for name in TINTS}
MOTION_ANSWER = {name: name for name in MOTIONS}
COLOUR_QUESTIONS = (
    "what colour is the pattern",
    "what colour is shown on the screen",
    "what colour are the shapes",
)
MOTION_QUESTIONS = (
    "what is the pattern doing",
    "how is the picture moving",
    "what does the pattern keep doing",
)


@dataclass(frozen=True)
class MsrvttPlan:
    videos: tuple[VideoPlan, ...]
    test_ids: tuple[str, ...]
    documents: dict[str, Any]  # file name -> JSON document
    tables: dict[str, str]  # file name -> csv text
    # video id -> its captions in sen_id order, each with the segment it describes (MSVD reuses)
    captions: dict[str, tuple[tuple[str, Segment], ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class MsrvttSummary:
    root: Path
    videos: int
    train_videos: int
    test_videos: int
    train_pairs: int  # MSRVTT_data.json sentences of training videos
    test_pairs: int  # JSFusion rows
    mc_rows: int
    qa: dict[str, int]  # split -> questions
    video_seconds: int
    rendered: int
    reused: int


def main_segment(plan: VideoPlan) -> Segment:
    """The longest concept segment (the first on a tie): what most captions describe."""
    return max(plan.concept_segments(), key=lambda s: (s.end - s.start, -s.start))


def plan_short_video(rng: random.Random, vid: str) -> VideoPlan:
    """4–10 s: one concept, or two distinct ones; one-concept videos may hold 1 s of filler."""
    total = rng.randint(MIN_VIDEO_S, MAX_VIDEO_S)
    names = sorted(CONCEPTS)
    if rng.random() < TWO_SEGMENT_SHARE:
        first, second = rng.sample(names, 2)
        cut = rng.randint(2, total - 2)
        segments = [
            Segment(0, cut, first, rng.randrange(1000)),
            Segment(cut, total, second, rng.randrange(1000)),
        ]
    else:
        name = rng.choice(names)
        if rng.random() < FILLER_SHARE:
            filler = rng.randrange(len(FILLERS))
            if rng.random() < 0.5:
                segments = [
                    Segment(0, 1, None, filler),
                    Segment(1, total, name, rng.randrange(1000)),
                ]
            else:
                segments = [
                    Segment(0, total - 1, name, rng.randrange(1000)),
                    Segment(total - 1, total, None, filler),
                ]
        else:
            segments = [Segment(0, total, name, rng.randrange(1000))]
    return VideoPlan(vid, tuple(segments))


def val_videos(n_train: int) -> int:
    """How many of `n_train` training videos (the last ones) form a val split: >= 1 when > 1."""
    return max(1, round(n_train * VAL_SHARE)) if n_train > 1 else 0


def _captions(rng: random.Random, plan: VideoPlan) -> list[tuple[str, Segment]]:
    """CAPTIONS_PER_VIDEO distinct captions; in two-concept videos the main one gets most."""
    segments = plan.concept_segments()
    main = main_segment(plan)
    chosen: list[tuple[str, Segment]] = []
    seen: set[str] = set()
    for attempt in range(CAPTIONS_PER_VIDEO * 20):
        seg = main if len(segments) == 1 or rng.random() < 0.7 else rng.choice(segments)
        text = describe(rng, CONCEPTS[seg.concept], full=attempt % 4 != 3)
        if text not in seen or attempt >= CAPTIONS_PER_VIDEO * 10:
            seen.add(text)
            chosen.append((text, seg))
        if len(chosen) == CAPTIONS_PER_VIDEO:
            break
    return chosen


def _csv(header: list[str], rows: list[list[Any]], delimiter: str = ",") -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def _qa(rng: random.Random, plans: list[VideoPlan], next_id: int) -> list[dict[str, Any]]:
    items = []
    for plan in plans:
        concept = CONCEPTS[main_segment(plan).concept]
        number = int(plan.video_id.removeprefix("video"))
        for questions, answer in (
            (COLOUR_QUESTIONS, TINT_ANSWER[concept.tint]),
            (MOTION_QUESTIONS, MOTION_ANSWER[concept.motion]),
        ):
            question = rng.choice(questions)
            items.append(
                {"id": next_id, "video_id": number, "question": question, "answer": answer}
            )
            next_id += 1
    return items


def plan_msrvtt(config: SynthConfig, videos: int = 12, test_videos: int = 4) -> MsrvttPlan:
    """Every video and file of the set; identical for identical arguments.

    `videos` counts all videos, `test_videos` of them (the highest ids) form the test split.
    """
    if not 1 <= test_videos < videos:
        raise ValueError(
            f"synth msrvtt: need 1 <= test_videos < videos, got {test_videos}/{videos}"
        )
    rng = random.Random(f"{config.seed}:msrvtt")
    plans = [plan_short_video(rng, f"video{n}") for n in range(videos)]
    n_train = videos - test_videos
    train, test = plans[:n_train], plans[n_train:]

    video_rows, sentences, truth = [], [], {}
    captions: dict[str, list[tuple[str, Segment]]] = {}
    sen_id = 0
    for n, plan in enumerate(plans):
        split = "train" if n < n_train else "test"
        category = sorted(CONCEPTS).index(main_segment(plan).concept) % 20
        video_rows.append({
            "category": category,
            "url": f"https://www.youtube.com/watch?v=synth{n:06d}",
            "video_id": plan.video_id,
            "start time": 0.0,
            "end time": float(plan.duration),
            "split": split,
            "id": n,
        })  # fmt: skip
        captions[plan.video_id] = _captions(rng, plan)
        for text, seg in captions[plan.video_id]:
            sentences.append({"caption": text, "video_id": plan.video_id, "sen_id": sen_id})
            if split == "train":
                truth[f"{plan.video_id}:{sen_id}"] = truth_entry(plan.video_id, seg)
            sen_id += 1

    jsfusion, mc = [], []
    for i, plan in enumerate(test):
        number = plan.video_id.removeprefix("video")
        main = main_segment(plan)
        text = next(t for t, seg in captions[plan.video_id] if seg == main)
        jsfusion.append([f"ret{i}", f"msr{number}", plan.video_id, text])
        truth[f"ret{i}"] = truth_entry(plan.video_id, main)
        # the MC test pair's text is the true caption
        truth[f"mc{i}"] = truth_entry(plan.video_id, main)
        shown = {seg.concept for seg in plan.concept_segments()}
        others = rng.sample(sorted(set(CONCEPTS) - shown), MC_CANDIDATES - 1)
        candidates = [describe(rng, CONCEPTS[name]) for name in others]
        answer = rng.randrange(MC_CANDIDATES)
        candidates.insert(answer, text)
        mc.append([f"msr{number}", *candidates, answer])

    n_val = val_videos(n_train)
    qa_train = _qa(rng, train[: n_train - n_val], 0)
    qa_val = _qa(rng, train[n_train - n_val :], len(qa_train))
    qa_test = _qa(rng, test, len(qa_train) + len(qa_val))
    by_number = {int(p.video_id.removeprefix("video")): p for p in plans}
    for item in qa_train + qa_val + qa_test:  # every question asks about the main concept
        plan = by_number[item["video_id"]]
        truth[f"qa{item['id']}"] = truth_entry(plan.video_id, main_segment(plan))

    documents = {
        "MSRVTT_data.json": {"videos": video_rows, "sentences": sentences},
        "train_qa.json": qa_train,
        "val_qa.json": qa_val,
        "test_qa.json": qa_test,
        GROUND_TRUTH_FILE: truth,
    }
    tables = {
        "MSRVTT_train.9k.csv": _csv(["video_id"], [[p.video_id] for p in train]),
        "MSRVTT_JSFUSION_test.csv": _csv(["key", "vid_key", "video_id", "sentence"], jsfusion),
        "MSR_MC_test.csv": _csv(
            ["vid_key", *(f"a{k + 1}" for k in range(MC_CANDIDATES)), "answer"], mc, "\t"
        ),
    }
    return MsrvttPlan(
        tuple(plans),
        tuple(p.video_id for p in test),
        documents,
        tables,
        {vid: tuple(pairs) for vid, pairs in captions.items()},
    )


def synthesize_msrvtt(
    config: SynthConfig, out_dir: Path, videos: int = 12, test_videos: int = 4
) -> MsrvttSummary:
    """Render the MSR-VTT-format set into `<out_dir>/msrvtt` and write its annotation files."""
    plan = plan_msrvtt(config, videos, test_videos)
    root = out_dir / DATASET_DIR
    written = render_into(plan.videos, root / "videos", config)
    for name, document in plan.documents.items():
        atomic_write_json(root / name, document)
    for name, text in plan.tables.items():
        atomic_write_text(root / name, text)
    test = set(plan.test_ids)
    sentences = plan.documents["MSRVTT_data.json"]["sentences"]
    summary = MsrvttSummary(
        root=root,
        videos=len(plan.videos),
        train_videos=len(plan.videos) - len(test),
        test_videos=len(test),
        train_pairs=sum(s["video_id"] not in test for s in sentences),
        test_pairs=len(test),
        mc_rows=len(test),
        qa={s: len(plan.documents[f"{s}_qa.json"]) for s in ("train", "val", "test")},
        video_seconds=sum(p.duration for p in plan.videos),
        rendered=sum(written),
        reused=len(written) - sum(written),
    )
    log.info(
        "synth %s: %d videos (%d rendered, %d reused), %d train / %d test pairs, %d video-seconds",
        root, summary.videos, summary.rendered, summary.reused, summary.train_pairs,
        summary.test_pairs, summary.video_seconds,
    )  # fmt: skip
    return summary
