"""MSR-VTT adapter: retrieval (train list + JSFusion 1k-A test), multiple choice and MSR-VTT-QA.

Formats (reference/videoclip-facts.md §2.7 "MSR-VTT", protocol §2.5):

    MSRVTT_data.json        {"videos": [{"video_id": "video0", ...}],
                             "sentences": [{"caption": "...", "video_id": "video0", "sen_id": 0}]}
    MSRVTT_train.9k.csv     column `video_id` (else MSRVTT_train.7k.csv): the training videos
    MSRVTT_JSFUSION_test.csv  header `key,vid_key,video_id,sentence`, 1,000 rows (1k-A test)
    MSR_MC_test.csv         tab-separated `vid_key` (msrNNNN), `a1`..`a5`, `answer` (0-4)
    {train,val,test}_qa.json  [{"id": int, "video_id": int, "question": str, "answer": str}]

`load` builds the retrieval tables. The annotation files lie in `<root>/<config.annotations>`
(`""` = the root itself); video files `<video_id>.*` in `<root>/<config.videos>`, matched with
`find_video_files` / `match_video_files`.

- split "train": every video of the train list, one pair per `MSRVTT_data.json` sentence of that
  video, `pair_id = "<video_id>:<sen_id>"`. Only `sentences` is read from the data json (as MMPT
  does); a train video without sentences is dropped and counted (`no_annotations`). The 7k list is
  used as is (MMPT's appending of the non-JSFusion `MSRVTT_FULL_test.csv` ids is not done here).
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

`load_multiple_choice` and `load_qa` parse the MC and QA files into plain DataFrames. Every
malformed file, record or field raises `AnnotationError` naming the file, record and field.
"""

from __future__ import annotations

import csv
import json
import logging
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.config import DatasetConfig
from pipeline.datasets.tables import (
    PAIR_COLUMNS,
    WHOLE_VIDEO_END_S,
    AnnotationError,
    DatasetTables,
    find_video_files,
    match_video_files,
    pairs_table,
    read_json,
    shown,
    video_folder,
    videos_table,
    whole_seconds,
)

log = logging.getLogger(__name__)

DATA_FILE = "MSRVTT_data.json"
TRAIN_LISTS = ("MSRVTT_train.9k.csv", "MSRVTT_train.7k.csv")  # first one present wins
TEST_FILE = "MSRVTT_JSFUSION_test.csv"
MC_FILE = "MSR_MC_test.csv"
QA_SPLITS = ("train", "val", "test")
MC_CANDIDATES = ("a1", "a2", "a3", "a4", "a5")
TOP_ANSWERS = 1500  # FineCo / ClipBERT open-ended QA vocabulary size

IGNORE_INDEX = -100  # answer_index of an answer outside the vocabulary (models.heads)
QA_COLUMNS: dict[str, str] = {"answer": "str", "answer_index": "int64"}
MC_COLUMNS: dict[str, str] = {"candidates": "str", "answer_index": "int64"}

_MSR_KEY = re.compile(r"msr(\d+)")

# A pair before the tables are built: (pair_id, text, *task column values).
_Pair = tuple[Any, ...]


def annotation_folder(config: DatasetConfig, root: Path) -> Path:
    """`<root>/<config.annotations>`, the folder of the MSR-VTT annotation files (`""` = root)."""
    if config.annotations in ("", "."):
        return root
    return root / config.annotations


def train_list_path(folder: Path) -> Path:
    """`MSRVTT_train.9k.csv` if present, else `MSRVTT_train.7k.csv`; neither is an error."""
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
    return [folder / DATA_FILE, train_list_path(folder), folder / TEST_FILE]


def load(config: DatasetConfig, root: Path) -> DatasetTables:
    """Read and validate the annotations of `config.task`, match them to video files, build the
    tables (retrieval, qa or mc; see the module docstring)."""
    if config.task == "qa":
        return load_qa_tables(config, root)
    if config.task == "mc":
        return load_mc_tables(config, root)
    return load_retrieval(config, root)


def load_retrieval(config: DatasetConfig, root: Path) -> DatasetTables:
    """The retrieval tables: train-list captions and the JSFusion 1k-A test."""
    data_path, train_path, test_path = annotation_files(config, root)
    videos = _train_videos(data_path, train_path)
    for row_number, (key, video_id, sentence) in enumerate(read_jsfusion(test_path)):
        if video_id in videos and videos[video_id][0] == "train":
            raise AnnotationError(
                test_path,
                f"row {row_number + 1} (key {key!r})",
                "video_id",
                f"a video not in the train list {train_path.name}",
                repr(video_id),
            )
        videos.setdefault(video_id, ("test", []))[1].append((key, sentence))
    return _tables(config, root, videos, {}, {})


def load_mc_tables(config: DatasetConfig, root: Path) -> DatasetTables:
    """Multiple choice: the retrieval train pairs and one test pair per MSR_MC_test.csv row."""
    data_path, train_path, mc_path = annotation_files(config, root)
    no_candidates = json.dumps([])
    videos: dict[str, tuple[str, list[_Pair]]] = {
        video_id: (split, [(*pair, no_candidates, IGNORE_INDEX) for pair in pairs])
        for video_id, (split, pairs) in _train_videos(data_path, train_path).items()
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


def _train_videos(data_path: Path, train_path: Path) -> dict[str, tuple[str, list[_Pair]]]:
    """Every train-list video with its (pair_id "<video>:<sen_id>", caption) pairs."""
    captions = read_sentences(data_path)
    return {
        video_id: (
            "train",
            [(f"{video_id}:{sen_id}", text) for sen_id, text in captions.get(video_id, [])],
        )
        for video_id in read_train_list(train_path)
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
    files = find_video_files(video_folder(config, root))
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


# --- MSRVTT_data.json ---------------------------------------------------------------------------


def read_sentences(path: Path) -> dict[str, list[tuple[int, str]]]:
    """`sentences` of MSRVTT_data.json: video id -> [(sen_id, caption)] in file order."""
    data = read_json(path)
    expected = 'a top-level object with a "sentences" list'
    if not isinstance(data, dict):
        raise AnnotationError(path, "top level", "sentences", expected, shown(data))
    if "sentences" not in data:
        raise AnnotationError(path, "top level", "sentences", expected, "no such key")
    sentences = data["sentences"]
    if not isinstance(sentences, list):
        raise AnnotationError(path, "top level", "sentences", "a list", shown(sentences))
    captions: dict[str, list[tuple[int, str]]] = {}
    seen: dict[tuple[str, int], int] = {}
    for index, item in enumerate(sentences):
        record = f"sentence {index}"
        if not isinstance(item, dict):
            expected = 'an object {"caption", "video_id", "sen_id"}'
            raise AnnotationError(path, record, "<sentence>", expected, shown(item))
        for field in ("caption", "video_id", "sen_id"):
            if field not in item:
                raise AnnotationError(path, record, field, "a value", "no such key")
        video_id = item["video_id"]
        if not isinstance(video_id, str) or not video_id.strip():
            raise AnnotationError(
                path, record, "video_id", "a non-empty string such as 'video0'", shown(video_id)
            )
        sen_id = whole_seconds(item["sen_id"])
        if sen_id is None or sen_id < 0:
            raise AnnotationError(path, record, "sen_id", "an integer >= 0", shown(item["sen_id"]))
        caption = item["caption"]
        if not isinstance(caption, str) or not caption.strip():
            raise AnnotationError(path, record, "caption", "a non-empty string", shown(caption))
        if (video_id, sen_id) in seen:
            found = f"{sen_id}, also the sen_id of sentence {seen[video_id, sen_id]}"
            raise AnnotationError(path, record, "sen_id", "unique within its video", found)
        seen[video_id, sen_id] = index
        captions.setdefault(video_id, []).append((sen_id, caption))
    return captions


# --- csv files ----------------------------------------------------------------------------------


def read_csv_rows(
    path: Path, required: Sequence[str], delimiter: str = ","
) -> list[tuple[int, dict[str, str]]]:
    """The rows of a csv file with a header holding `required`, as (line number, row) pairs.

    Every required field of every row must be a non-empty string.
    """
    if not path.is_file():
        raise FileNotFoundError(f"annotation file {path} does not exist")
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle, delimiter=delimiter)
            header = reader.fieldnames or []
            for field in required:
                if field not in header:
                    found = f"header {header!r}" if header else "an empty file"
                    expected = f"a column {field!r} ({delimiter!r}-separated)"
                    raise AnnotationError(path, "header", field, expected, found)
            rows = [(reader.line_num, row) for row in reader]
    except csv.Error as error:
        raise AnnotationError(path, "csv", "<file>", "csv text", str(error)) from error
    except UnicodeDecodeError as error:
        record = f"byte {error.start}"
        raise AnnotationError(path, record, "<file>", "UTF-8 csv text", error.reason) from error
    for line, row in rows:
        if None in row:  # more cells than header columns
            found = f"{len(header) + len(row[None])} cells"
            raise AnnotationError(path, f"line {line}", "<row>", f"{len(header)} cells", found)
        for field in required:
            value = row[field]
            if value is None or not value.strip():
                raise AnnotationError(path, f"line {line}", field, "a non-empty value", repr(value))
    return rows


def read_train_list(path: Path) -> list[str]:
    """The `video_id` column of a train list, in order; a repeated id is an error."""
    ids: list[str] = []
    first_line: dict[str, int] = {}
    for line, row in read_csv_rows(path, ["video_id"]):
        video_id = row["video_id"].strip()
        if video_id in first_line:
            found = f"{video_id!r}, also on line {first_line[video_id]}"
            raise AnnotationError(path, f"line {line}", "video_id", "a unique video id", found)
        first_line[video_id] = line
        ids.append(video_id)
    return ids


def read_jsfusion(path: Path) -> list[tuple[str, str, str]]:
    """(key, video_id, sentence) per row of MSRVTT_JSFUSION_test.csv; keys are unique and each
    `vid_key` msrNNNN agrees with its `video_id` videoNNNN."""
    rows: list[tuple[str, str, str]] = []
    first_line: dict[str, int] = {}
    for line, row in read_csv_rows(path, ["key", "vid_key", "video_id", "sentence"]):
        record = f"line {line}"
        key, video_id = row["key"].strip(), row["video_id"].strip()
        if key in first_line:
            found = f"{key!r}, also on line {first_line[key]}"
            raise AnnotationError(path, record, "key", "a unique key", found)
        first_line[key] = line
        expected_video = video_of_msr_key(path, record, row["vid_key"])
        if video_id != expected_video:
            expected = f"{expected_video!r} (from vid_key {row['vid_key']!r})"
            raise AnnotationError(path, record, "video_id", expected, repr(video_id))
        rows.append((key, video_id, row["sentence"]))
    return rows


def video_of_msr_key(path: Path, record: str, vid_key: str) -> str:
    """`msrNNNN` -> `videoNNNN`; anything else is an AnnotationError on field `vid_key`."""
    match = _MSR_KEY.fullmatch(vid_key.strip())
    if match is None:
        raise AnnotationError(path, record, "vid_key", "'msr<N>' such as 'msr9770'", repr(vid_key))
    return f"video{match.group(1)}"


# --- multiple choice ----------------------------------------------------------------------------


def load_multiple_choice(path: Path) -> pd.DataFrame:
    """MSR_MC_test.csv (tab-separated `vid_key`, `a1`..`a5`, `answer`) as a DataFrame.

    Columns: `video_id` (str, msrNNNN -> videoNNNN), `candidates` (list of the 5 sentences),
    `answer` (int64, index 0-4 of the correct candidate). Rows keep the file order.
    """
    columns: dict[str, list[Any]] = {"video_id": [], "candidates": [], "answer": []}
    for line, row in read_csv_rows(path, ["vid_key", *MC_CANDIDATES, "answer"], delimiter="\t"):
        record = f"line {line}"
        columns["video_id"].append(video_of_msr_key(path, record, row["vid_key"]))
        columns["candidates"].append([row[name] for name in MC_CANDIDATES])
        text = row["answer"].strip()
        if not (text.isdigit() and 0 <= int(text) < len(MC_CANDIDATES)):
            expected = f"an integer 0-{len(MC_CANDIDATES) - 1}"
            raise AnnotationError(path, record, "answer", expected, repr(row["answer"]))
        columns["answer"].append(int(text))
    return pd.DataFrame(
        {
            "video_id": pd.Series(columns["video_id"], dtype="str"),
            "candidates": pd.Series(columns["candidates"], dtype="object"),
            "answer": pd.Series(columns["answer"], dtype="int64"),
        }
    )


# --- MSR-VTT-QA ---------------------------------------------------------------------------------


def load_qa(folder: Path, top_answers: int = TOP_ANSWERS) -> tuple[pd.DataFrame, list[str], float]:
    """MSR-VTT-QA `{train,val,test}_qa.json` in `folder`.

    Returns the QA table (columns `id` int64, `video_id` "video<N>", `question`, `answer`,
    `split`; train, then val, then test, each in file order), the answer vocabulary (the
    `top_answers` most frequent train answers, most frequent first, ties broken alphabetically)
    and its coverage: the share of train QA whose answer is in the vocabulary (0.0 when there are
    no train QA).
    """
    if top_answers < 1:
        raise ValueError(f"top_answers must be >= 1, got {top_answers}")
    columns: dict[str, list[Any]] = {
        name: [] for name in ("id", "video_id", "question", "answer", "split")
    }
    for split in QA_SPLITS:
        path = folder / f"{split}_qa.json"
        for item in _qa_items(path):
            columns["id"].append(item[0])
            columns["video_id"].append(item[1])
            columns["question"].append(item[2])
            columns["answer"].append(item[3])
            columns["split"].append(split)
    table = pd.DataFrame(
        {
            "id": pd.Series(columns["id"], dtype="int64"),
            "video_id": pd.Series(columns["video_id"], dtype="str"),
            "question": pd.Series(columns["question"], dtype="str"),
            "answer": pd.Series(columns["answer"], dtype="str"),
            "split": pd.Series(columns["split"], dtype="str"),
        }
    )
    train_answers = table.loc[table["split"] == "train", "answer"].tolist()
    counts = Counter(train_answers)
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    vocabulary = [answer for answer, _ in ranked[:top_answers]]
    covered = sum(counts[answer] for answer in vocabulary)
    coverage = covered / len(train_answers) if train_answers else 0.0
    return table, vocabulary, coverage


def _qa_items(path: Path) -> list[tuple[int, str, str, str]]:
    data = read_json(path)
    if not isinstance(data, list):
        expected = 'a list of {"id", "video_id", "question", "answer"}'
        raise AnnotationError(path, "top level", "<file>", expected, shown(data))
    items: list[tuple[int, str, str, str]] = []
    first_index: dict[int, int] = {}
    for index, item in enumerate(data):
        record = f"item {index}"
        if not isinstance(item, dict):
            expected = 'an object {"id", "video_id", "question", "answer"}'
            raise AnnotationError(path, record, "<item>", expected, shown(item))
        for field in ("id", "video_id", "question", "answer"):
            if field not in item:
                raise AnnotationError(path, record, field, "a value", "no such key")
        qa_id = whole_seconds(item["id"])
        if qa_id is None:
            raise AnnotationError(path, record, "id", "an integer", shown(item["id"]))
        if qa_id in first_index:
            found = f"{qa_id}, also the id of item {first_index[qa_id]}"
            raise AnnotationError(path, record, "id", "an id unique within the file", found)
        first_index[qa_id] = index
        video = whole_seconds(item["video_id"])
        if video is None or video < 0:
            raise AnnotationError(
                path, record, "video_id", "an integer >= 0 (video<N>)", shown(item["video_id"])
            )
        for field in ("question", "answer"):
            value = item[field]
            if not isinstance(value, str) or not value.strip():
                raise AnnotationError(path, record, field, "a non-empty string", shown(value))
        items.append((qa_id, f"video{video}", item["question"], item["answer"]))
    return items
