"""DiDeMo adapter: `{train,val,test}_data.json` → paragraph-to-video pairs, plus the 21-moment
protocol of LocalizingMoments (Hendricks et al. 2017) that MMPT's `DiDeMoMetric` copies.

Format (reference/videoclip-facts.md §2.6, §2.7; LisaAnne/LocalizingMoments `data/*_data.json`):

    [{"annotation_id": 1234, "description": "the dog jumps", "video": "<flickr id>.mov",
      "times": [[2, 2], [2, 3], [2, 2], [1, 2]], "download_link": "...", "num_segments": 6}, ...]

`times` holds one [s, e] per annotator (usually 4): chunk indices 0..5 of 5-second chunks, both
ends inclusive, so moment (s, e) covers seconds [5s, 5(e+1)). Videos are truncated to 30 s.

Paragraph-to-video pairs (CLIP4Clip `dataloader_didemo_retrieval.py` protocol): one pair per
video, text = its descriptions in annotation order, exact duplicates (after stripping) removed,
joined with single spaces; the pair covers the whole video (`start_s = 0`,
`end_s = WHOLE_VIDEO_END_S`, a large finite end that `PairClips` clips to the video's length);
`pair_id` = `video_id`, the "video" field without its extension, whatever it is (`x.mov`,
`x.3g2`, `x.m2ts` → `x`; a bare trailing dot too, `x.` → `x`), as the public DiDeMo tools name
videos, so a file re-encoded to `x.mp4` still matches. One video listed under two names
(`x.mov` and `x.mp4`) is one video: its descriptions are joined and a warning names both. The
split is the data file the video comes from. The files are read from `<root>/<config.annotations>`
(a folder; "" = root): whichever of the three exist (the public repository lacks the train file),
at least one. Annotated videos without a file are dropped and counted, as in the other adapters.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pandas as pd

from pipeline.config import DatasetConfig
from pipeline.datasets.tables import (
    PAIR_COLUMNS,
    WHOLE_VIDEO_END_S,
    AnnotationError,
    DatasetTables,
    match_video_files,
    media_files,
    pairs_table,
    read_json,
    shown,
    videos_table,
    whole_seconds,
)

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
N_CHUNKS = 6  # 5-second chunks 0..5 of a (truncated) 30-second video
CHUNK_S = 5
MOMENT_COLUMNS = ["annotation_id", "video", "description", "times"]


@dataclass(frozen=True)
class Moment:
    """One validated annotation: a description and each annotator's (s, e) chunk interval."""

    annotation_id: Any
    video_id: str  # the "video" field without its extension
    description: str
    times: list[tuple[int, int]]
    video: str = ""  # the "video" field as written


def annotation_dir(config: DatasetConfig, root: Path) -> Path:
    """The folder holding `*_data.json`: `<root>/<config.annotations>` ("" or "." = root)."""
    return root if config.annotations in ("", ".") else root / config.annotations


def data_path(folder: Path, split: str) -> Path:
    return folder / f"{split}_data.json"


def annotation_files(config: DatasetConfig, root: Path) -> list[Path]:
    """Every file whose content decides the tables: the `*_data.json` files that exist (all
    three when none does, so that the missing ones are named)."""
    paths = [data_path(annotation_dir(config, root), split) for split in SPLITS]
    return [path for path in paths if path.is_file()] or paths


def video_id_of(video: str) -> str:
    """The "video" field without its extension (`a.mov`, `a.3g2` → `a`) or a bare trailing dot
    (`a.` → `a`); a name without a dot, or a dot file, is kept whole."""
    name = PurePosixPath(video).name
    stem, dot, _ = name.rpartition(".")
    return video[: len(video) - len(name)] + stem if dot and stem else video


def load(config: DatasetConfig, root: Path) -> DatasetTables:
    """Read the data files present, build one paragraph pair per video and match video files."""
    folder = annotation_dir(config, root)
    present = [split for split in SPLITS if data_path(folder, split).is_file()]
    if not present:
        wanted = ", ".join(data_path(folder, split).name for split in SPLITS)
        raise FileNotFoundError(f"didemo dataset at {root}: none of {wanted} is in {folder}")
    paragraphs: dict[str, list[str]] = {}
    splits: dict[str, str] = {}
    origin: dict[str, Path] = {}
    names: dict[str, set[str]] = {}  # video id -> the "video" names it is listed under
    annotations: dict[Any, tuple[Path, int]] = {}  # annotation_id -> where it was first seen
    for split in present:
        path = data_path(folder, split)
        for index, moment in enumerate(read_moments(path)):
            if moment.annotation_id in annotations:
                first, at = annotations[moment.annotation_id]
                found = f"{moment.annotation_id!r}, also annotation {at} of {first.name}"
                record = f"annotation {index}"
                raise AnnotationError(path, record, "annotation_id", "a unique id", found)
            annotations[moment.annotation_id] = (path, index)
            video_id = moment.video_id
            if video_id in splits and splits[video_id] != split:
                record = f"annotation {index} (id {moment.annotation_id!r})"
                found = f"{moment.video_id!r}, also in {origin[video_id]}"
                raise AnnotationError(path, record, "video", "a video in one split only", found)
            splits[video_id] = split
            origin[video_id] = path
            names.setdefault(video_id, set()).add(moment.video)
            texts = paragraphs.setdefault(video_id, [])
            if moment.description not in texts:
                texts.append(moment.description)
    for video_id, listed in sorted(names.items()):
        if len(listed) > 1:
            log.warning(
                "didemo: video %r is listed as %s: one video, its descriptions joined",
                video_id, " and ".join(sorted(listed)),
            )  # fmt: skip
    files = media_files(config, root)
    matched = match_video_files(paragraphs, files)
    dropped: Counter[str] = Counter()
    kept = {video_id: matched[video_id] for video_id in paragraphs if video_id in matched}
    missing = len(paragraphs) - len(kept)
    if missing:
        dropped["missing_video_file"] = missing
        dropped["missing_video_file_pairs"] = missing
    unannotated = len(files) - len(set(matched.values()))
    if unannotated:
        dropped["unannotated_video_file"] = unannotated
    kept_splits = {video_id: splits[video_id] for video_id in kept}
    columns: dict[str, list[Any]] = {name: [] for name in PAIR_COLUMNS}
    for video_id in sorted(kept):
        columns["pair_id"].append(video_id)
        columns["video_id"].append(video_id)
        columns["start_s"].append(0.0)
        columns["end_s"].append(WHOLE_VIDEO_END_S)
        columns["text"].append(" ".join(paragraphs[video_id]))
        columns["split"].append(splits[video_id])
    pairs = pairs_table(columns)
    log.info(
        "didemo %s (%s): %d videos, %d pairs, dropped %s",
        folder, "+".join(present), len(kept), len(pairs), dict(dropped),
    )  # fmt: skip
    return DatasetTables(videos=videos_table(kept, kept_splits), pairs=pairs, dropped=dict(dropped))


def read_moments(path: Path) -> list[Moment]:
    """One `*_data.json`, validated record by record."""
    data = read_json(path)
    if not isinstance(data, list):
        raise AnnotationError(path, "top level", "<file>", "a list of annotations", shown(data))
    return [_moment(path, index, item) for index, item in enumerate(data)]


def _moment(path: Path, index: int, item: Any) -> Moment:
    record = f"annotation {index}"
    if not isinstance(item, dict):
        expected = 'an object {"annotation_id", "description", "video", "times", ...}'
        raise AnnotationError(path, record, "<annotation>", expected, shown(item))
    for field in ("annotation_id", "description", "video", "times"):
        if field not in item:
            raise AnnotationError(path, record, field, "a value", "no such key")
    annotation_id = item["annotation_id"]
    if isinstance(annotation_id, bool) or not isinstance(annotation_id, int | str):
        raise AnnotationError(
            path, record, "annotation_id", "an integer or string", shown(annotation_id)
        )
    record = f"annotation {index} (id {annotation_id!r})"
    description = item["description"]
    if not isinstance(description, str) or not description.strip():
        raise AnnotationError(path, record, "description", "a non-empty string", shown(description))
    video = item["video"]
    if not isinstance(video, str) or not video.strip():
        raise AnnotationError(path, record, "video", "a non-empty file name", shown(video))
    raw_times = item["times"]
    expected = f"a non-empty list of [s, e] chunk indices, 0 <= s <= e <= {N_CHUNKS - 1}"
    if not isinstance(raw_times, list) or not raw_times:
        raise AnnotationError(path, record, "times", expected, shown(raw_times))
    times: list[tuple[int, int]] = []
    for pair in raw_times:
        bounds = [whole_seconds(v) for v in pair] if isinstance(pair, list) else []
        if len(bounds) != 2 or any(b is None for b in bounds):
            raise AnnotationError(path, record, "times", expected, shown(pair))
        start, end = bounds
        if not 0 <= start <= end < N_CHUNKS:
            raise AnnotationError(path, record, "times", expected, shown(pair))
        times.append((start, end))
    name = video.strip()
    return Moment(annotation_id, video_id_of(name), description.strip(), times, name)


def moment_annotations(root: Path, split: str) -> pd.DataFrame:
    """`<root>/<split>_data.json` for the 21-moment protocol, one row per annotation.

    Columns: annotation_id (as in the file), video (the video id, suffix removed as in the pairs
    table), description, times (list of (s, e) chunk intervals, one per annotator).
    """
    if split not in SPLITS:
        raise ValueError(f"split {split!r} is not one of {SPLITS}")
    moments = read_moments(data_path(Path(root), split))
    rows = {
        "annotation_id": [m.annotation_id for m in moments],
        "video": [m.video_id for m in moments],
        "description": [m.description for m in moments],
        "times": [m.times for m in moments],
    }
    return pd.DataFrame(rows, columns=MOMENT_COLUMNS)


def candidate_moments() -> list[tuple[int, int]]:
    """The 21 LocalizingMoments candidates: (s, s) for s = 0..5, then every (s, e) with s < e."""
    singles = [(s, s) for s in range(N_CHUNKS)]
    spans = [(s, e) for s in range(N_CHUNKS) for e in range(s + 1, N_CHUNKS)]
    return singles + spans


def moment_seconds(start: int, end: int) -> tuple[float, float]:
    """Seconds [5s, 5(e+1)) covered by the chunk interval (s, e)."""
    return float(CHUNK_S * start), float(CHUNK_S * (end + 1))


def moment_iou(a: Sequence[int], b: Sequence[int]) -> float:
    """IoU of two inclusive chunk intervals (LocalizingMoments `iou`).

    intersection = max(0, min(e_a, e_b) + 1 - max(s_a, s_b)); union = max(e_a, e_b) + 1 -
    min(s_a, s_b) (the hull, which equals the union whenever the intersection is not empty).
    """
    intersection = max(0, min(a[1], b[1]) + 1 - max(a[0], b[0]))
    union = max(a[1], b[1]) + 1 - min(a[0], b[0])
    return intersection / union


def rank_metrics(
    scores_per_annotation: Sequence[Sequence[float]],
    times_per_annotation: Sequence[Sequence[Sequence[int]]],
) -> dict[str, float]:
    """rank@1, rank@5 and mIoU of LocalizingMoments `eval_predictions` (MMPT `DiDeMoMetric`).

    `scores_per_annotation[i]` holds 21 scores in `candidate_moments()` order (higher = better);
    `times_per_annotation[i]` the annotators' (s, e) moments. Per annotation: the candidates are
    sorted by descending score (ties keep candidate order); each annotator moment gets its rank
    1..21 in that order; `avg_rank` = mean of the 3 smallest ranks (all of them if fewer than 3);
    `avg_iou` = mean of the 3 largest IoUs between the top-ranked candidate and the annotator
    moments. rank@k = fraction of annotations with avg_rank <= k; mIoU = mean of avg_iou.
    So with annotator moments ranked 1, 1, 2, 9 the avg_rank is 4/3: a rank@5 hit, not rank@1.
    """
    candidates = candidate_moments()
    if len(scores_per_annotation) != len(times_per_annotation):
        raise ValueError(
            f"{len(scores_per_annotation)} score rows but {len(times_per_annotation)} annotations"
        )
    if not len(scores_per_annotation):
        raise ValueError("no annotations to evaluate")
    avg_ranks: list[float] = []
    avg_ious: list[float] = []
    for index, (scores, times) in enumerate(zip(scores_per_annotation, times_per_annotation)):
        row = np.asarray(scores, dtype=float)
        if row.shape != (len(candidates),):
            raise ValueError(f"annotation {index}: expected 21 scores, got shape {row.shape}")
        order = np.argsort(-row, kind="stable")
        position = {candidates[c]: rank for rank, c in enumerate(order, start=1)}
        gold = [(int(t[0]), int(t[1])) for t in times]
        if not gold:
            raise ValueError(f"annotation {index}: no annotator moments")
        unknown = [t for t in gold if t not in position]
        if unknown:
            raise ValueError(f"annotation {index}: moments {unknown} are not candidates")
        top = candidates[order[0]]
        ranks = sorted(position[t] for t in gold)[:3]
        ious = sorted((moment_iou(top, t) for t in gold), reverse=True)[:3]
        avg_ranks.append(float(np.mean(ranks)))
        avg_ious.append(float(np.mean(ious)))
    ranks_array = np.asarray(avg_ranks)
    return {
        "rank@1": float(np.mean(ranks_array <= 1)),
        "rank@5": float(np.mean(ranks_array <= 5)),
        "mIoU": float(np.mean(avg_ious)),
    }
