"""MSR-VTT's annotation files read record by record (formats: msrvtt.py's docstring).

`read_sentences` (MSRVTT_data.json), `read_train_list`, `read_jsfusion` (the 1k-A test csv),
`load_multiple_choice` (MSR_MC_test.csv) and `load_qa` (`{train,val,test}_qa.json`) return plain
Python data or DataFrames; every malformed file, record or field raises `AnnotationError` naming
the file, the record and the field. Matching to video files and the pairs tables are msrvtt.py's.
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.datasets.tables import AnnotationError, not_utf8, read_json, shown, whole_seconds

QA_SPLITS = ("train", "val", "test")
MC_CANDIDATES = ("a1", "a2", "a3", "a4", "a5")
TOP_ANSWERS = 1500  # FineCo / ClipBERT open-ended QA vocabulary size
_MSR_KEY = re.compile(r"msr(\d+)")


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
    reader: csv.DictReader[str] | None = None
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.DictReader(handle, delimiter=delimiter)
            header = reader.fieldnames or []
            for field in required:
                if field not in header:
                    blank = "a blank first line" if reader.line_num else "an empty file"
                    found = f"header {header!r}" if header else blank
                    expected = f"a column {field!r} ({delimiter!r}-separated)"
                    raise AnnotationError(path, "header", field, expected, found)
            rows = [(reader.line_num, row) for row in reader]
    except csv.Error as error:
        # the csv reader's own count: DictReader's stays at the last row it returned
        record = f"line {reader.reader.line_num if reader is not None else 1}"
        raise AnnotationError(path, record, "<file>", "csv text", str(error)) from error
    except UnicodeDecodeError as error:
        raise not_utf8(path, "UTF-8 csv text") from error
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
        if not (text.isascii() and text.isdigit() and 0 <= int(text) < len(MC_CANDIDATES)):
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
        video = _qa_video_number(item["video_id"])
        if video is None:
            expected = 'an integer >= 0 or "video<N>"'
            raise AnnotationError(path, record, "video_id", expected, shown(item["video_id"]))
        for field in ("question", "answer"):
            value = item[field]
            if not isinstance(value, str) or not value.strip():
                raise AnnotationError(path, record, field, "a non-empty string", shown(value))
        items.append((qa_id, f"video{video}", item["question"], item["answer"]))
    return items


def _qa_video_number(value: Any) -> int | None:
    """N of a QA item's video: the number (MSR-VTT-QA's files) or "video<N>" (some re-exports),
    or None for anything else."""
    if isinstance(value, str):
        match = re.fullmatch(r"\s*video(\d+)\s*", value)
        return int(match.group(1)) if match else None
    number = whole_seconds(value)
    return number if number is not None and number >= 0 else None
