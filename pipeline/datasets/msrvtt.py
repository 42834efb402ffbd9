"""MSR-VTT adapter: retrieval (train list + JSFusion 1k-A test), multiple choice and MSR-VTT-QA.

Formats (reference/videoclip-facts.md §2.7 "MSR-VTT", protocol §2.5):

    MSRVTT_data.json        {"videos": [{"video_id": "video0", ...}],
                             "sentences": [{"caption": "...", "video_id": "video0", "sen_id": 0}]}
    MSRVTT_train.9k.csv     column `video_id` (else MSRVTT_train.7k.csv, else MMPT's
                            MSRVTT_train.csv): the training videos
    MSRVTT_FULL_test.csv    optional, column `video_id`: the full 2,990-video test set
    MSRVTT_JSFUSION_test.csv  header `key,vid_key,video_id,sentence`, 1,000 rows (1k-A test)
    MSR_MC_test.csv         tab-separated `vid_key` (msrNNNN), `a1`..`a5`, `answer` (0-4)
    {train,val,test}_qa.json  [{"id": int, "video_id": int, "question": str, "answer": str}]

`load` builds the retrieval tables. The annotation files lie in `<root>/<config.annotations>`
(`""` = the root itself); video files `<video_id>.*` in `<root>/<config.videos>`, matched with
`find_video_files` / `match_video_files`.

- split "train": every video of the train list, one pair per `MSRVTT_data.json` sentence of that
  video, `pair_id = "<video_id>:<sen_id>"`. Only `sentences` is read from the data json (as MMPT
  does); a train video without sentences is dropped and counted (`no_annotations`). When
  `MSRVTT_FULL_test.csv` is present, its videos outside the JSFusion test join the training
  videos, as MMPT's `full_test_path` does (a 7k list becomes the usual 9k; with a 9k list, which
  holds them already, nothing changes); `extras["full_test_train_videos"]` counts the added ones.
  Multiple choice never adds them: its test videos are the full test set.
- split "test": one pair per JSFusion row, `pair_id = key` ("ret0"), `text = sentence`.
- Captions describe the whole video: `start_s = 0.0` and `end_s = WHOLE_VIDEO_END_S` (1e9, finite
  so the parquet tables and arithmetic stay finite). `PairClips` clips a pair to
  `[floor(start_s), min(ceil(end_s), n_seconds))`, so such a pair covers every second of its video.
- Videos without a file are dropped and counted (`missing_video_file`, and their pairs in
  `missing_video_file_pairs`); video files no annotation names are counted
  (`unannotated_video_file`).

`load` dispatches on `config.task` (`annotation_files` likewise names the files each task reads):

- "retrieval": the tables above.
- "qa" (MSR-VTT-QA): `{train,val,test}_qa.json` only. One pair per question, `pair_id =
  "qa<id>"`, `video_id = "video<N>"`, the whole video, `text` = the question, `split` = the
  file's split; task columns `answer` (str) and `answer_index` (int64, the answer's index in the
  vocabulary of the `config.answers` most frequent train answers, IGNORE_INDEX = -100 when out
  of it). A video asked about in two splits, or a question id used twice, is an AnnotationError.
  `extras = {"task": "qa", "answers": [vocabulary], "train_coverage", "test_coverage"}`
  (coverage = share of that split's questions, in the annotation files, whose answer is in the
  vocabulary; 0.0 for an empty split).
- "mc" (MSR-VTT multiple choice): the retrieval train pairs (data json + train list) and one
  test pair per MSR_MC_test.csv row, `pair_id = "mc<row index>"` (0-based, file order), `text` =
  the correct candidate; task columns `candidates` and `answer_index` (int64, 0-4; -100 on train
  rows). `candidates` is stored as the JSON text of the list of 5 strings (`"[]"` on train rows;
  `decode_candidates` turns it back into a list) because parquet round-trips a list column as
  numpy arrays, and as a null-typed column when every list is empty. An MC video that is also in
  the train list is an AnnotationError. `extras = {"task": "mc", "candidates": 5}`.

The files are parsed record by record in msrvtt_files.py. Every malformed file, record or field
raises `AnnotationError` naming the file, record and field.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any

from pipeline.config import DatasetConfig
from pipeline.datasets.msrvtt_files import (
    MC_CANDIDATES,
    QA_SPLITS,
    load_multiple_choice,
    load_qa,
    read_jsfusion,
    read_sentences,
    read_train_list,
)
from pipeline.datasets.tables import (
    PAIR_COLUMNS,
    WHOLE_VIDEO_END_S,
    AnnotationError,
    DatasetTables,
    match_video_files,
    media_files,
    pairs_table,
    videos_table,
)

log = logging.getLogger(__name__)

DATA_FILE = "MSRVTT_data.json"
# First one present wins; MSRVTT_train.csv is the name MMPT's configs use.
TRAIN_LISTS = ("MSRVTT_train.9k.csv", "MSRVTT_train.7k.csv", "MSRVTT_train.csv")
TEST_FILE = "MSRVTT_JSFUSION_test.csv"
FULL_TEST_FILE = "MSRVTT_FULL_test.csv"  # optional: MMPT adds its non-1k-A videos to training
MC_FILE = "MSR_MC_test.csv"

IGNORE_INDEX = -100  # answer_index of an answer outside the vocabulary (models.heads)
QA_COLUMNS: dict[str, str] = {"answer": "str", "answer_index": "int64"}
MC_COLUMNS: dict[str, str] = {"candidates": "str", "answer_index": "int64"}


# A pair before the tables are built: (pair_id, text, *task column values).
_Pair = tuple[Any, ...]


def annotation_folder(config: DatasetConfig, root: Path) -> Path:
    """`<root>/<config.annotations>`, the folder of the MSR-VTT annotation files (`""` = root)."""
    if config.annotations in ("", "."):
        return root
    return root / config.annotations


def train_list_path(folder: Path) -> Path:
    """The first of `TRAIN_LISTS` present; none is an error."""
    for name in TRAIN_LISTS:
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"no MSR-VTT train list in {folder}: expected one of {TRAIN_LISTS}")


def annotation_files(config: DatasetConfig, root: Path) -> list[Path]:
    """Every file whose content decides the tables of `config.task`."""
    folder = annotation_folder(config, root)
    if config.task == "qa":
        return [folder / f"{split}_qa.json" for split in QA_SPLITS]
    if config.task == "mc":
        return [folder / DATA_FILE, train_list_path(folder), folder / MC_FILE]
    files = [folder / DATA_FILE, train_list_path(folder), folder / TEST_FILE]
    return [*files, folder / FULL_TEST_FILE] if (folder / FULL_TEST_FILE).is_file() else files


def load(config: DatasetConfig, root: Path) -> DatasetTables:
    """Read and validate the annotations of `config.task`, match them to video files, build the
    tables (retrieval, qa or mc; see the module docstring)."""
    if config.task == "qa":
        return load_qa_tables(config, root)
    if config.task == "mc":
        return load_mc_tables(config, root)
    return load_retrieval(config, root)


def load_retrieval(config: DatasetConfig, root: Path) -> DatasetTables:
    """The retrieval tables: train-list captions (+ the full test set outside 1k-A, when its
    list is present) and the JSFusion 1k-A test."""
    data_path, train_path, test_path, *full_test = annotation_files(config, root)
    test_rows = read_jsfusion(test_path)
    train_ids = read_train_list(train_path)
    added: list[str] = []
    if full_test:
        known = {video_id for _, video_id, _ in test_rows} | set(train_ids)
        added = [video_id for video_id in read_train_list(full_test[0]) if video_id not in known]
    videos = _train_videos(data_path, [*train_ids, *added])
    for row_number, (key, video_id, sentence) in enumerate(test_rows):
        if video_id in videos and videos[video_id][0] == "train":
            raise AnnotationError(
                test_path,
                f"row {row_number + 1} (key {key!r})",
                "video_id",
                f"a video not in the train list {train_path.name}",
                repr(video_id),
            )
        videos.setdefault(video_id, ("test", []))[1].append((key, sentence))
    if not full_test:
        return _tables(config, root, videos, {}, {})
    log.info("msrvtt: %d training videos added from %s", len(added), full_test[0].name)
    extras = {"task": "retrieval", "full_test_train_videos": len(added)}
    return _tables(config, root, videos, {}, extras)


def load_mc_tables(config: DatasetConfig, root: Path) -> DatasetTables:
    """Multiple choice: the retrieval train pairs and one test pair per MSR_MC_test.csv row."""
    data_path, train_path, mc_path = annotation_files(config, root)
    no_candidates = json.dumps([])
    videos: dict[str, tuple[str, list[_Pair]]] = {
        video_id: (split, [(*pair, no_candidates, IGNORE_INDEX) for pair in pairs])
        for video_id, (split, pairs) in _train_videos(
            data_path, read_train_list(train_path)
        ).items()
    }
    table = load_multiple_choice(mc_path)
    rows = zip(table["video_id"], table["candidates"], table["answer"], strict=True)
    for index, (video_id, candidates, answer) in enumerate(rows):
        if video_id in videos and videos[video_id][0] == "train":
            raise AnnotationError(
                mc_path,
                f"row {index + 1} (vid_key 'msr{video_id.removeprefix('video')}')",
                "vid_key",
                f"a video not in the train list {train_path.name}",
                repr(video_id),
            )
        pair = (f"mc{index}", candidates[answer], json.dumps(candidates), int(answer))
        videos.setdefault(video_id, ("test", []))[1].append(pair)
    extras = {"task": "mc", "candidates": len(MC_CANDIDATES)}
    return _tables(config, root, videos, MC_COLUMNS, extras)


def decode_candidates(value: str) -> list[str]:
    """The candidate list of an mc pair from its stored `candidates` JSON text (`[]` = none)."""
    candidates = json.loads(value)
    if not isinstance(candidates, list) or not all(isinstance(c, str) for c in candidates):
        raise ValueError(f"candidates {value!r} is not the JSON text of a list of strings")
    return candidates


def load_qa_tables(config: DatasetConfig, root: Path) -> DatasetTables:
    """MSR-VTT-QA: one pair per question, with its answer's index in the answer vocabulary."""
    folder = annotation_folder(config, root)
    table, vocabulary, train_coverage = load_qa(folder, config.answers)
    index_of = {answer: position for position, answer in enumerate(vocabulary)}
    videos: dict[str, tuple[str, list[_Pair]]] = {}
    first_file: dict[str, str] = {}  # pair id -> split of the file that used it first
    items: Counter[str] = Counter()  # items seen per split (the item index within its file)
    for qa_id, video_id, question, answer, split in zip(
        table["id"],
        table["video_id"],
        table["question"],
        table["answer"],
        table["split"],
        strict=True,
    ):
        path = folder / f"{split}_qa.json"
        record = f"item {items[split]}"
        items[split] += 1
        pair_id = f"qa{qa_id}"
        if pair_id in first_file:
            found = f"{qa_id}, also an id in {first_file[pair_id]}_qa.json"
            raise AnnotationError(path, record, "id", "an id unique across the QA files", found)
        first_file[pair_id] = split
        if video_id in videos and videos[video_id][0] != split:
            found = f"{video_id!r}, a {videos[video_id][0]} video"
            raise AnnotationError(path, record, "video_id", f"a {split} video", found)
        pair = (pair_id, question, answer, index_of.get(answer, IGNORE_INDEX))
        videos.setdefault(video_id, (split, []))[1].append(pair)
    test_answers = table.loc[table["split"] == "test", "answer"]
    test_coverage = float(test_answers.isin(index_of).mean()) if len(test_answers) else 0.0
    log.info(
        "msrvtt qa %s: %d answers cover %.1f%% of train and %.1f%% of test questions",
        folder,
        len(vocabulary),
        100 * train_coverage,
        100 * test_coverage,
    )
    extras = {
        "task": "qa",
        "answers": vocabulary,
        "train_coverage": float(train_coverage),
        "test_coverage": test_coverage,
    }
    return _tables(config, root, videos, QA_COLUMNS, extras)


def _train_videos(data_path: Path, ids: list[str]) -> dict[str, tuple[str, list[_Pair]]]:
    """Every training video of `ids` with its (pair_id "<video>:<sen_id>", caption) pairs."""
    captions = read_sentences(data_path)
    return {
        video_id: (
            "train",
            [(f"{video_id}:{sen_id}", text) for sen_id, text in captions.get(video_id, [])],
        )
        for video_id in ids
    }


def _tables(
    config: DatasetConfig,
    root: Path,
    videos: dict[str, tuple[str, list[_Pair]]],
    task_dtypes: dict[str, str],
    extras: dict[str, Any],
) -> DatasetTables:
    """Match `videos` (video id -> (split, pairs)) to files, count what is dropped, build tables.

    Each pair is (pair_id, text, *values of the `task_dtypes` columns); every pair covers its
    whole video.
    """
    files = media_files(config, root)
    matched = match_video_files(videos, files)
    dropped: Counter[str] = Counter()
    kept: dict[str, Path] = {}
    for video_id, (_, pairs) in videos.items():
        if not pairs:
            dropped["no_annotations"] += 1
        elif video_id not in matched:
            dropped["missing_video_file"] += 1
            dropped["missing_video_file_pairs"] += len(pairs)
        else:
            kept[video_id] = matched[video_id]
    unannotated = len(files) - len(set(matched.values()))
    if unannotated:
        dropped["unannotated_video_file"] = unannotated

    columns: dict[str, list[Any]] = {name: [] for name in [*PAIR_COLUMNS, *task_dtypes]}
    for video_id in kept:
        split, pairs = videos[video_id]
        for pair_id, text, *values in pairs:
            columns["pair_id"].append(pair_id)
            columns["video_id"].append(video_id)
            columns["start_s"].append(0.0)
            columns["end_s"].append(WHOLE_VIDEO_END_S)
            columns["text"].append(text)
            columns["split"].append(split)
            for name, value in zip(task_dtypes, values, strict=True):
                columns[name].append(value)
    pairs_frame = pairs_table(columns, task_dtypes)
    splits = {video_id: videos[video_id][0] for video_id in kept}
    log.info(
        "msrvtt %s (%s): %d videos, %d pairs, dropped %s",
        annotation_folder(config, root),
        config.task,
        len(kept),
        len(pairs_frame),
        dict(dropped),
    )
    return DatasetTables(
        videos=videos_table(kept, splits),
        pairs=pairs_frame,
        dropped=dict(dropped),
        extras=extras,
    )
