"""Fuzzing the text-format adapters (hypothesis): MSR-VTT's csv files (train list, JSFusion 1k-A
test, full test list, multiple-choice csv) and MSVD's AllVideoDescriptions.txt, split lists and
captions pickle. Each line- or field-level mutation of a valid file either loads or fails with an
AnnotationError whose message names the mutated file, a record (line, row, byte or id) and a
field; no other exception gets out of an adapter.

What loads must be a valid table set, and the original tables where the mutation is harmless: a
UTF-8 byte-order mark, blank lines (a csv header line must stay the first line), CRLF line ends,
and trailing whitespace where the adapter strips the field (MSVD's lines, the csv id and answer
columns; not JSFusion's `sentence`, kept as written). A duplicated line is an error (a repeated
train id or JSFusion key), a no-op (a split list naming a video twice; a repeated csv header
names a train video without captions, dropped and counted) or, where one pair per line is the
documented rule (MSVD's descriptions, MSR-VTT multiple-choice rows), one more copy of a pair."""

from __future__ import annotations

import functools
import math
import pickle
import re
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from msrvtt_files import MC_CONFIG, mc_root
from test_fuzz_adapters import mutate
from test_msrvtt import CONFIG as RETRIEVAL
from test_msrvtt import msrvtt_root, write_video
from test_msvd_didemo import MSVD_CAPTIONS, _config, _msvd

from pipeline.config import DatasetConfig
from pipeline.datasets import load_dataset
from pipeline.datasets.tables import PAIR_COLUMNS, VIDEO_COLUMNS, AnnotationError, DatasetTables

# hypothesis warns when the global `random` moves during a draw (conftest's fixture)
pytestmark = pytest.mark.usefixtures("main_thread_owns_pythons_global_rng")
FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

HARMLESS = ("bom", "blank_lines", "crlf", "trailing_whitespace")
KINDS = (
    *HARMLESS,
    "delete_line",
    "duplicate_line",
    "delete_separator",
    "insert_separator",
    "replace_field",
    "swap_fields",
    "truncate",
    "not_utf8",
)
# a field's replacement: empty, whitespace, quotes, non-ASCII, digits int() or csv refuse, any text
FIELD_TEXT = (
    st.sampled_from(
        [
            "",
            " ",
            "\t",
            '"',
            '""',
            '"a, b"',
            "é",
            "视频",
            "\u00a0",
            "#",
            "²",
            "٣",
            "-1",
            "1e400",
            "nan",
            "\x85",
            "\u2028",
        ]
    )
    | st.text(max_size=8)
    | st.sampled_from([40, 140_000]).map(lambda n: "9" * n)
)
# a record: a csv line or row, a byte offset, an MSVD video id, a pickle key, the header
RECORD = re.compile(r"header|line \d+( \(byte \d+\))?|row \d+ \(.*\)|video .+|key .*")
# a field: a csv column, an MSVD description, caption or token, or the whole row or file
COLUMNS = {"video_id", "key", "vid_key", "sentence", "a1", "a2", "a3", "a4", "a5", "answer"}
FIELD = re.compile("|".join([*COLUMNS, "description", r"token \d+", r"<\w+>"]))
WHOLE_FILE_FIELDS = {"<file>"}  # only a whole-file error may name "top level" as its record


class Mutation(NamedTuple):
    data: bytes  # the mutated file
    kind: str  # one of KINDS
    line: int  # the index of the line changed (or before which blank lines went)
    field: int = -1  # replace_field: the index of the field replaced
    text: str = ""  # replace_field: its new text


def mutate_text(text: str, sep: str, draw: Callable[[Any], Any]) -> Mutation:
    """`text` (lines ending in "\\n") with one mutation."""
    lines = text.splitlines()
    field, new = -1, ""
    kind = draw(st.sampled_from(KINDS))
    index = draw(st.integers(0, len(lines) - 1))
    line = lines[index]
    if kind == "delete_line":
        del lines[index]
    elif kind == "duplicate_line":
        lines.insert(draw(st.integers(0, len(lines))), line)
    elif kind == "delete_separator":
        spots = [i for i, char in enumerate(line) if char == sep]
        if spots:
            spot = draw(st.sampled_from(spots))
            lines[index] = line[:spot] + line[spot + 1 :]
    elif kind == "insert_separator":
        spot = draw(st.integers(0, len(line)))
        lines[index] = line[:spot] + sep + line[spot:]
    elif kind == "replace_field":
        fields = line.split(sep)
        field, new = draw(st.integers(0, len(fields) - 1)), draw(FIELD_TEXT)
        fields[field] = new
        lines[index] = sep.join(fields)
    elif kind == "swap_fields":
        fields = line.split(sep)
        if len(fields) > 1:
            first, second = draw(
                st.lists(st.integers(0, len(fields) - 1), min_size=2, max_size=2, unique=True)
            )
            fields[first], fields[second] = fields[second], fields[first]
            lines[index] = sep.join(fields)
        else:  # one column: two lines change places
            other = draw(st.integers(0, len(lines) - 1))
            lines[index], lines[other] = lines[other], line
    elif kind == "trailing_whitespace":
        blanks = [s for s in (" ", "  ", "\t", " \t") if sep != "\t" or "\t" not in s]
        lines[index] = line + draw(st.sampled_from(blanks))  # a tab is a cell in a tab csv
    elif kind == "blank_lines":
        index = draw(st.integers(0, len(lines)))
        lines[index:index] = [""] * draw(st.integers(1, 3))
    text = "\n".join(lines) + "\n"
    if kind == "truncate":
        text = text[: draw(st.integers(0, len(text) - 1))]
    elif kind == "bom":
        text = "\ufeff" + text
    elif kind == "crlf":
        text = text.replace("\n", "\r\n")
    data = text.encode("utf-8")
    if kind == "not_utf8":  # a Latin-1 byte (or half a UTF-8 character) somewhere
        spot = draw(st.integers(0, len(data)))
        data = data[:spot] + draw(st.sampled_from([b"\xe9", b"\xff", b"\xc3"])) + data[spot:]
    return Mutation(data, kind, index, field, new)


def retrieval_root(folder: Path) -> Path:
    """MSR-VTT retrieval: data json, 9k train list, JSFusion test and the full test list."""
    root = msrvtt_root(folder)
    write_video(root / "videos" / "video2.mp4")
    (root / "MSRVTT_FULL_test.csv").write_text("video_id\nvideo9770\nvideo2\nvideo0\n")
    return root


def msvd_root(folder: Path) -> Path:
    """MSVD: the captions pickle, the split lists and the same captions as the corpus's text."""
    root = _msvd(folder / "msvd")
    lines = ["# MSVD descriptions, one per line", "#", ""]
    lines += [f"{video} {' '.join(c)}" for video, caps in MSVD_CAPTIONS.items() for c in caps]
    (root / "AllVideoDescriptions.txt").write_text("\n".join(lines) + "\n")
    return root


MSVD_TXT = _config("msvd", "AllVideoDescriptions.txt")
ROOTS: dict[str, Callable[[Path], Path]] = {
    "msrvtt": retrieval_root,
    "msrvtt_mc": mc_root,
    "msvd": msvd_root,
}


@dataclass(frozen=True)
class Target:
    root: str  # key of ROOTS
    config: DatasetConfig
    file: str  # the mutated file, relative to the root
    sep: str  # what separates the fields of a line
    header: bool = False  # line 0 is a csv header, which a blank line or whitespace may break
    strips: bool = True  # every field is stripped: trailing whitespace is harmless
    words: bool = False  # lines "<id> <free text>": any word after the id may be replaced
    copies: bool = False  # one pair per line: a duplicated line may add a copy of a pair


TARGETS: dict[str, Target] = {
    "msrvtt train list": Target("msrvtt", RETRIEVAL, "MSRVTT_train.9k.csv", ",", header=True),
    "msrvtt jsfusion": Target(
        "msrvtt", RETRIEVAL, "MSRVTT_JSFUSION_test.csv", ",", header=True, strips=False
    ),
    "msrvtt full test": Target("msrvtt", RETRIEVAL, "MSRVTT_FULL_test.csv", ",", header=True),
    "msrvtt mc": Target("msrvtt_mc", MC_CONFIG, "MSR_MC_test.csv", "\t", header=True, copies=True),
    "msvd descriptions": Target(
        "msvd", MSVD_TXT, "AllVideoDescriptions.txt", " ", words=True, copies=True
    ),
    "msvd train list": Target("msvd", MSVD_TXT, "train_list.txt", " "),
    "msvd test list": Target("msvd", MSVD_TXT, "test_list.txt", " "),
}


@pytest.fixture(scope="module")
def valid_roots(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return {name: make(tmp_path_factory.mktemp(name)) for name, make in ROOTS.items()}


@functools.cache
def original(root: Path, config: DatasetConfig) -> DatasetTables:
    """The tables of the unmutated files (a cache, not a fixture: hypothesis prints fixtures)."""
    return load_dataset(config, root)


def load_mutated(
    root: Path, config: DatasetConfig, relative: str, data: bytes
) -> DatasetTables | AnnotationError:
    """The tables of a copy of `root` with `relative` holding `data`, or the AnnotationError."""
    with tempfile.TemporaryDirectory() as scratch:
        copy = Path(scratch) / "root"
        shutil.copytree(root, copy)
        (copy / relative).write_bytes(data)
        try:
            return load_dataset(config, copy)
        except AnnotationError as error:
            return error


def assert_names_file_record_and_field(error: AnnotationError, relative: str) -> None:
    message = str(error)
    assert Path(relative).name in message, message  # a conflict names both files
    whole_file = error.record == "top level" and error.field in WHOLE_FILE_FIELDS
    assert whole_file or RECORD.fullmatch(error.record), message
    assert FIELD.fullmatch(error.field), message
    assert repr(error.field) in message and error.record in message, message


def assert_valid(tables: DatasetTables) -> None:
    """Unique non-empty ids, every pair on a listed video of its split, every video with pairs,
    non-empty texts, finite times."""
    videos, pairs = tables.videos, tables.pairs
    assert list(videos.columns) == VIDEO_COLUMNS
    assert list(pairs.columns[: len(PAIR_COLUMNS)]) == PAIR_COLUMNS
    for ids in (videos["video_id"], pairs["pair_id"]):
        assert ids.notna().all() and ids.is_unique and (ids.str.len() > 0).all()
    split_of = dict(zip(videos["video_id"], videos["split"], strict=True))
    assert set(split_of.values()) <= {"train", "val", "test"}
    assert set(pairs["video_id"]) == set(split_of)
    assert [split_of[video] for video in pairs["video_id"]] == pairs["split"].tolist()
    assert all(isinstance(text, str) and text.strip() for text in pairs["text"])
    assert all(math.isfinite(s) and s < e for s, e in zip(pairs.start_s, pairs.end_s, strict=True))
    assert all(isinstance(n, int) and n > 0 for n in tables.dropped.values())


def videos_of(tables: DatasetTables) -> pd.DataFrame:
    return tables.videos.drop(columns=["path", "mtime"])  # the copy lies elsewhere


def assert_same(tables: DatasetTables, original: DatasetTables) -> None:
    pd.testing.assert_frame_equal(videos_of(tables), videos_of(original))
    pd.testing.assert_frame_equal(tables.pairs, original.pairs)
    assert (tables.dropped, tables.extras) == (original.dropped, original.extras)


def assert_same_or_one_more_copy(
    tables: DatasetTables, original: DatasetTables, copies: bool
) -> None:
    """The original videos, and its pairs or (`copies`) one more copy of one (pair ids aside)."""
    pd.testing.assert_frame_equal(videos_of(tables), videos_of(original))

    def counted(t: DatasetTables) -> Counter[tuple[str, str, str]]:
        return Counter(zip(t.pairs["video_id"], t.pairs["text"], t.pairs["split"], strict=True))

    got, want = counted(tables), counted(original)
    extra = got - want
    assert not want - got and sum(extra.values()) <= copies and set(extra) <= set(want), extra


@pytest.mark.parametrize("target", sorted(TARGETS))
@FUZZ
@given(data=st.data())
def test_a_mutated_text_file_loads_or_names_file_record_and_field(
    valid_roots: dict[str, Path], target: str, data: st.DataObject
) -> None:
    spec = TARGETS[target]
    root = valid_roots[spec.root]
    mutation = mutate_text((root / spec.file).read_text(), spec.sep, data.draw)
    kind = mutation.kind
    result = load_mutated(root, spec.config, spec.file, mutation.data)
    # a blank line or whitespace at the csv header may break it: an error then, or no change
    at_header = (
        spec.header and mutation.line == 0 and kind in ("blank_lines", "trailing_whitespace")
    )
    # a word of an MSVD description replaced by text without a line feed: each line keeps its
    # video's caption (U+0085 or U+2028 once cut a description in two)
    a_word = spec.words and kind == "replace_field" and mutation.field > 0
    a_word = a_word and not {"\n", "\r"} & set(mutation.text)
    harmless = kind in HARMLESS and (spec.strips or kind != "trailing_whitespace")
    if isinstance(result, AnnotationError):
        assert_names_file_record_and_field(result, spec.file)
        assert not ((harmless and not at_header) or a_word), f"{kind}: {result}"
        return
    assert_valid(result)
    if harmless:
        assert_same(result, original(root, spec.config))
    elif kind == "duplicate_line":
        assert_same_or_one_more_copy(result, original(root, spec.config), spec.copies)
    elif a_word:
        before = original(root, spec.config).pairs["video_id"]
        assert Counter(result.pairs["video_id"]) == Counter(before), result.pairs


@FUZZ
@given(data=st.data())
def test_a_mutated_msvd_pickle_loads_or_names_file_record_and_field(
    valid_roots: dict[str, Path], data: st.DataObject
) -> None:
    """The pickle's content mutated as the JSON adapters' (tests/test_fuzz_adapters.py), or its
    bytes cut short."""
    if data.draw(st.booleans()):
        raw = pickle.dumps(mutate(MSVD_CAPTIONS, data.draw))
    else:
        whole = pickle.dumps(MSVD_CAPTIONS)
        raw = whole[: data.draw(st.integers(0, len(whole) - 1))]
    result = load_mutated(valid_roots["msvd"], _config("msvd"), "raw-captions.pkl", raw)
    if isinstance(result, AnnotationError):
        assert_names_file_record_and_field(result, "raw-captions.pkl")
    else:
        assert_valid(result)
