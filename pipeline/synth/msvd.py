"""A synthetic MSVD-format dataset over the videos of the synthetic MSR-VTT-format set.

MSVD and MSR-VTT are both sets of short clips with several whole-video captions each, so this set
renders no videos of its own: it writes MSVD's files for the videos and captions that
pipeline/synth/msrvtt.py plans for the same config (`plan_msrvtt`), and makes sure those videos
exist in `<out_dir>/msrvtt/videos` (already rendered files are kept).

Outputs under `<out_dir>/msvd`, in the formats pipeline/datasets/msvd.py reads:
- `raw-captions.pkl`: a pickled dict {video_id: [[token, ...], ...]}, the msrvtt plan's captions
  of each video (`CAPTIONS_PER_VIDEO` of them, in sen_id order) as lower-case word tokens;
- `train_list.txt`, `val_list.txt`, `test_list.txt`: one video id per line; test = the msrvtt
  test videos, val = the last `val_videos(n_train)` msrvtt training videos, train = the rest;
- `ground_truth.json` {"<video_id>:<i>": {"video_id", "concept", "seconds"}}, keyed by the
  adapter's pair ids (i = the caption's index in the video's list), seconds = [start, end) of
  the segment the caption describes.

Read it with DatasetConfig(adapter="msvd", root="<out_dir>/msvd", annotations="raw-captions.pkl",
videos="../msrvtt/videos"). Planning is pure and seeded by `random.Random` only (through
`plan_msrvtt`), so a seed gives identical files.
"""

from __future__ import annotations

import logging
import pickle
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.config import SynthConfig
from pipeline.datasets.synthetic import GROUND_TRUTH_FILE, SYNTHETIC_SETS
from pipeline.synth.msrvtt import plan_msrvtt, val_videos
from pipeline.synth.render import DatasetSummary, VideoPlan, render_into, truth_entry
from storage.atomic import (
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
)

log = logging.getLogger(__name__)

SET = SYNTHETIC_SETS["msvd"]  # folder, annotation file, videos (msrvtt's, relative to it)
SPLITS = ("train", "val", "test")
_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")  # a word, with an apostrophe suffix ("it's")


@dataclass(frozen=True)
class MsvdPlan:
    videos: tuple[VideoPlan, ...]  # the msrvtt plan's videos, rendered into msrvtt/videos
    captions: dict[str, list[list[str]]]  # video id -> captions, each a list of tokens
    lists: dict[str, tuple[str, ...]]  # split -> video ids, in video order
    ground_truth: dict[str, Any]  # "<video_id>:<i>" -> {"video_id", "concept", "seconds"}


def tokens(text: str) -> list[str]:
    """Lower-case word tokens, as in MSVD's `raw-captions.pkl` ("A red grid" → a, red, grid)."""
    return _TOKEN.findall(text.lower())


def plan_msvd(config: SynthConfig, videos: int = 12, test_videos: int = 4) -> MsvdPlan:
    """The MSVD files for `plan_msrvtt(config, videos, test_videos)`; pure."""
    msrvtt = plan_msrvtt(config, videos, test_videos)
    test = set(msrvtt.test_ids)
    train = [p.video_id for p in msrvtt.videos if p.video_id not in test]
    n_val = val_videos(len(train))
    lists = {
        "train": tuple(train[: len(train) - n_val]),
        "val": tuple(train[len(train) - n_val :]),
        "test": msrvtt.test_ids,
    }
    captions: dict[str, list[list[str]]] = {}
    truth: dict[str, Any] = {}
    for plan in msrvtt.videos:
        captions[plan.video_id] = []
        for index, (text, seg) in enumerate(msrvtt.captions[plan.video_id]):
            captions[plan.video_id].append(tokens(text))
            truth[f"{plan.video_id}:{index}"] = truth_entry(plan.video_id, seg)
    return MsvdPlan(msrvtt.videos, captions, lists, truth)


def synthesize_msvd(
    config: SynthConfig, out_dir: Path, videos: int = 12, test_videos: int = 4
) -> DatasetSummary:
    """Write the MSVD-format set into `<out_dir>/msvd`, rendering any missing msrvtt video."""
    plan = plan_msvd(config, videos, test_videos)
    root = out_dir / SET.folder
    video_dir = root / SET.videos
    written = render_into(plan.videos, video_dir, config)
    annotations = root / SET.annotations
    atomic_write_bytes(annotations, pickle.dumps(plan.captions, protocol=4))
    for split in SPLITS:
        atomic_write_text(root / f"{split}_list.txt", "".join(f"{v}\n" for v in plan.lists[split]))
    atomic_write_json(root / GROUND_TRUTH_FILE, plan.ground_truth)
    summary = DatasetSummary(
        root=root,
        annotations=annotations,
        ground_truth=root / GROUND_TRUTH_FILE,
        videos=len(plan.videos),
        pairs=len(plan.ground_truth),
        video_seconds=sum(p.duration for p in plan.videos),
        rendered=sum(written),
        reused=len(written) - sum(written),
    )
    log.info(
        "synth %s: %d videos in %s (%d rendered, %d reused), %d captions, splits %s",
        root, summary.videos, video_dir, summary.rendered, summary.reused, summary.pairs,
        {split: len(ids) for split, ids in plan.lists.items()},
    )  # fmt: skip
    return summary
