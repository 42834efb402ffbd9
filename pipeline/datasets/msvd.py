"""MSVD adapter: `raw-captions.pkl` + `{train,val,test}_list.txt` → videos and pairs tables.

Format (reference/videoclip-facts.md §2.7, "MSVD"; CLIP4Clip `dataloader_msvd_retrieval.py`):

    raw-captions.pkl   a pickled dict {video_id: [[tok, tok, ...], ...]}  (~40 captions per video)
    train_list.txt     one video id per line (collaborative-experts split 1200 / 100 / 670)
    val_list.txt
    test_list.txt

The pickle is `<root>/<config.annotations or "raw-captions.pkl">`; the three list files sit next
to it. The corpus's own `AllVideoDescriptions.txt` (the file most copies have) is read instead
when `annotations` names a `.txt` file: lines `<video_id> <description>` (video id = the clip's
file name, `-4wsuPCjDBc_5_15`), `#` comment lines and blank lines skipped, captions in file
order. One pair per caption: text = the tokens joined with single spaces,
`pair_id = "<video_id>:<i>"` with i the caption's index in the video's list; every pair covers the
whole video (`start_s = 0`, `end_s = WHOLE_VIDEO_END_S`, a large finite end that `PairClips`
clips to the video's length). The split of a video is the list file naming it.

Safety: the pickle is the user's own dataset file, and only such a file should be given here.
It is still read with a restricted unpickler that refuses every global (class or function), so
only plain containers, strings and numbers can come out of it; anything else is an
AnnotationError. The content is then type-checked record by record.

Dropped and counted: annotated videos without a video file (`missing_video_file`, pairs in
`missing_video_file_pairs`), annotated videos in no list file (`no_split`), videos with an empty
caption list (`no_annotations`), listed videos without captions (`listed_without_captions`) and
video files no annotation names (`unannotated_video_file`).
"""

from __future__ import annotations

import io
import logging
import pickle
from collections import Counter
from pathlib import Path
from typing import Any

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
    shown,
    text_lines,
    videos_table,
)

log = logging.getLogger(__name__)

ANNOTATION_FILE = "raw-captions.pkl"
SPLITS = ("train", "val", "test")


class _PlainUnpickler(pickle.Unpickler):
    """Unpickles plain data only: any class or function reference is refused."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")


def annotation_path(config: DatasetConfig, root: Path) -> Path:
    """`<root>/<config.annotations or ANNOTATION_FILE>`."""
    return root / (config.annotations or ANNOTATION_FILE)


def list_path(config: DatasetConfig, root: Path, split: str) -> Path:
    """`<split>_list.txt` next to the captions pickle."""
    return annotation_path(config, root).parent / f"{split}_list.txt"


def annotation_files(config: DatasetConfig, root: Path) -> list[Path]:
    """Every file whose content decides the tables: the pickle and the three list files."""
    return [annotation_path(config, root), *(list_path(config, root, s) for s in SPLITS)]


def load(config: DatasetConfig, root: Path) -> DatasetTables:
    """Read and validate the captions and split lists, match video files, build the tables."""
    path = annotation_path(config, root)
    captions = read_descriptions(path) if path.suffix.lower() == ".txt" else read_captions(path)
    splits = read_splits({split: list_path(config, root, split) for split in SPLITS})
    files = media_files(config, root)
    matched = match_video_files(captions, files)
    dropped: Counter[str] = Counter()
    kept: dict[str, Path] = {}
    for video_id, texts in captions.items():
        if not texts:
            dropped["no_annotations"] += 1
        elif video_id not in splits:
            dropped["no_split"] += 1
        elif video_id not in matched:
            dropped["missing_video_file"] += 1
            dropped["missing_video_file_pairs"] += len(texts)
        else:
            kept[video_id] = matched[video_id]
    listed_without = sum(1 for video_id in splits if video_id not in captions)
    if listed_without:
        dropped["listed_without_captions"] = listed_without
    unannotated = len(files) - len(set(matched.values()))
    if unannotated:
        dropped["unannotated_video_file"] = unannotated
    kept_splits = {video_id: splits[video_id] for video_id in kept}
    pairs = _pairs({video_id: captions[video_id] for video_id in kept}, kept_splits)
    log.info("msvd %s: %d videos, %d pairs, dropped %s", path, len(kept), len(pairs), dict(dropped))
    return DatasetTables(videos=videos_table(kept, kept_splits), pairs=pairs, dropped=dict(dropped))


def read_captions(path: Path) -> dict[str, list[str]]:
    """The captions pickle, validated: video id → captions (tokens joined with spaces)."""
    if not path.is_file():
        raise FileNotFoundError(f"annotation file {path} does not exist")
    try:
        data = _PlainUnpickler(io.BytesIO(path.read_bytes())).load()
    except Exception as error:  # any unpickling failure is a malformed file
        found = f"data that does not unpickle to plain values ({type(error).__name__}: {error})"
        raise AnnotationError(path, "top level", "<file>", "a pickled dict", found) from error
    if not isinstance(data, dict):
        expected = "a dict {video_id: [[token, ...], ...]}"
        raise AnnotationError(path, "top level", "<file>", expected, shown(data))
    captions: dict[str, list[str]] = {}
    for video_id, entry in data.items():
        if not isinstance(video_id, str) or not video_id:
            raise AnnotationError(
                path, f"key {video_id!r}", "<key>", "a video id string", shown(video_id)
            )
        record = f"video {video_id!r}"
        if not isinstance(entry, list | tuple):
            expected = "a list of captions, each a list of tokens"
            raise AnnotationError(path, record, "<captions>", expected, shown(entry))
        captions[video_id] = [_caption(path, video_id, i, c) for i, c in enumerate(entry)]
    return captions


def read_descriptions(path: Path) -> dict[str, list[str]]:
    """`AllVideoDescriptions.txt`: video id → its descriptions, in file order."""
    if not path.is_file():
        raise FileNotFoundError(f"annotation file {path} does not exist")
    captions: dict[str, list[str]] = {}
    for line_no, line in enumerate(text_lines(path), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        video_id, _, description = stripped.partition(" ")
        if not description.strip():
            expected = "a video id and a description after it"
            raise AnnotationError(path, f"line {line_no}", "description", expected, shown(line))
        captions.setdefault(video_id, []).append(description.strip())
    if not captions:
        expected = "lines '<video_id> <description>'"
        raise AnnotationError(path, "top level", "<file>", expected, "no description line")
    return captions


def _caption(path: Path, video_id: str, index: int, tokens: Any) -> str:
    record = f"video {video_id!r} caption {index}"
    if not isinstance(tokens, list | tuple) or not tokens:
        expected = "a non-empty list of token strings"
        raise AnnotationError(path, record, "<tokens>", expected, shown(tokens))
    for position, token in enumerate(tokens):
        if not isinstance(token, str) or not token.strip():
            expected = "a non-empty string"
            raise AnnotationError(path, record, f"token {position}", expected, shown(token))
    return " ".join(token.strip() for token in tokens)


def read_splits(paths: dict[str, Path]) -> dict[str, str]:
    """Video id → split from the list files; a video listed in two splits is an error."""
    splits: dict[str, str] = {}
    where: dict[str, tuple[Path, int]] = {}
    for split, path in paths.items():
        if not path.is_file():
            raise FileNotFoundError(f"split list {path} does not exist")
        for line_no, line in enumerate(text_lines(path), start=1):
            video_id = line.strip()
            if not video_id:
                continue
            if video_id in splits and splits[video_id] != split:
                first, first_line = where[video_id]
                found = f"{video_id!r}, also listed in {first} line {first_line}"
                raise AnnotationError(
                    path, f"line {line_no}", "<video_id>", "a video in one split only", found
                )
            splits[video_id] = split
            where.setdefault(video_id, (path, line_no))
    return splits


def _pairs(captions: dict[str, list[str]], splits: dict[str, str]) -> pd.DataFrame:
    columns: dict[str, list[Any]] = {name: [] for name in PAIR_COLUMNS}
    for video_id in sorted(captions):
        for index, text in enumerate(captions[video_id]):
            columns["pair_id"].append(f"{video_id}:{index}")
            columns["video_id"].append(video_id)
            columns["start_s"].append(0.0)
            columns["end_s"].append(WHOLE_VIDEO_END_S)
            columns["text"].append(text)
            columns["split"].append(splits[video_id])
    return pairs_table(columns)
