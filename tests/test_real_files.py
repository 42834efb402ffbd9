"""Annotation files as real copies come: a byte-order mark, a key written twice, empty ASR
lines, a segment in the video's last partial second, bytes that are not UTF-8, line separators
other than a line feed, digits other than ASCII's (the adapters' rules for real files)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_datasets import (
    HOWTO,
    YOUCOOK,
    howto_captions,
    howto_root,
    with_annotation,
    youcook_entry,
    youcook_root,
)

from pipeline.datasets import load_dataset
from pipeline.datasets.tables import AnnotationError


def test_a_utf8_byte_order_mark_is_accepted_in_every_text_format(tmp_path: Path) -> None:
    """Files saved by Windows tools start with a BOM; every reader decodes it away."""
    from pipeline.datasets.howto100m import SPLIT_LISTS, read_split_lists
    from pipeline.datasets.msrvtt_files import read_csv_rows
    from pipeline.datasets.msvd import read_splits
    from pipeline.datasets.tables import read_json

    bom = "\ufeff"
    (tmp_path / "a.json").write_text(bom + '{"database": {}}', encoding="utf-8")
    assert read_json(tmp_path / "a.json") == {"database": {}}
    (tmp_path / "a.csv").write_text(bom + "video_id,x\nvideo7,1\n", encoding="utf-8")
    assert read_csv_rows(tmp_path / "a.csv", ["video_id"]) == [
        (2, {"video_id": "video7", "x": "1"})
    ]
    (tmp_path / "train.txt").write_text(bom + "clip1\nclip2\n", encoding="utf-8")
    assert read_splits({"train": tmp_path / "train.txt"}) == {"clip1": "train", "clip2": "train"}
    split, name = next(iter(SPLIT_LISTS.items()))
    (tmp_path / name).write_text(bom + "vid1\n", encoding="utf-8")
    assert read_split_lists(tmp_path) == {"vid1": split}


def test_youcook2_a_segment_may_end_in_the_videos_last_partial_second(tmp_path: Path) -> None:
    """Duration 241.64 s: a whole-second end at 242 is the last partial second, not an error."""
    data = with_annotation("valVid00002", segment=[230, 242])
    pairs = load_dataset(YOUCOOK, youcook_root(tmp_path, data)).pairs
    assert pairs.set_index("pair_id").loc["valVid00002_0", "end_s"] == 242.0


def test_a_key_twice_in_one_object_is_an_error_not_a_lost_copy(tmp_path: Path) -> None:
    """json keeps the last of two equal keys: a video listed twice would lose a copy."""
    root = youcook_root(tmp_path)
    path = root / "youcookii_annotations_trainval.json"
    text = path.read_text()
    entry = json.dumps(youcook_entry("training", []))
    path.write_text(text.replace('"database": {', f'"database": {{"trainVid001": {entry}, ', 1))
    with pytest.raises(AnnotationError) as raised:
        load_dataset(YOUCOOK, root)
    assert (raised.value.record, raised.value.field) == ("key 'trainVid001'", "<key>")
    howto = howto_root(tmp_path / "h")
    caption = howto / "caption.json"
    caption.write_text(
        caption.read_text().replace(
            '"vidB": {', '"vidA": {"start": [], "end": [], "text": []}, "vidB": {', 1
        )
    )
    with pytest.raises(AnnotationError, match="key 'vidA' twice"):
        load_dataset(HOWTO, howto)


def test_howto100m_captions_with_empty_text_are_left_out_and_counted(tmp_path: Path) -> None:
    captions = howto_captions()
    captions["vidA"]["text"][1] = "   "
    tables = load_dataset(HOWTO, howto_root(tmp_path, captions))
    assert tables.dropped == {"empty_caption_text": 1}
    assert tables.pairs[tables.pairs.video_id == "vidA"].text.tolist() == ["crack eggs", "fry"]


def test_a_file_that_is_not_utf8_names_the_line_and_byte_of_its_first_bad_byte(
    tmp_path: Path,
) -> None:
    """A Latin-1 MSVD split list raised a bare UnicodeDecodeError; a csv's error named the byte
    within the decoder's 8 KiB chunk (4628 here), not within the file."""
    from pipeline.datasets.msrvtt_files import read_csv_rows
    from pipeline.datasets.msvd import read_splits

    (tmp_path / "train.txt").write_bytes(b"clip1\ncaf\xe9\n")
    with pytest.raises(AnnotationError) as raised:
        read_splits({"train": tmp_path / "train.txt"})
    assert (raised.value.record, raised.value.field) == ("line 2 (byte 9)", "<file>")
    text = b"\xef\xbb\xbfvideo_id\n" + b"video1\n" * 3000 + b"vid\xe9o\n"
    (tmp_path / "a.csv").write_bytes(text)
    with pytest.raises(AnnotationError) as raised:
        read_csv_rows(tmp_path / "a.csv", ["video_id"])
    assert raised.value.record == f"line 3002 (byte {len(text) - 3})"


def test_csv_errors_name_the_line(tmp_path: Path) -> None:
    """A field over csv's size limit was reported at record "csv"; a blank first line was
    called an empty file."""
    from pipeline.datasets.msrvtt_files import read_csv_rows

    (tmp_path / "a.csv").write_text("video_id\nvideo1\n" + "9" * 140_000 + "\n")
    with pytest.raises(AnnotationError) as raised:
        read_csv_rows(tmp_path / "a.csv", ["video_id"])
    assert (raised.value.record, raised.value.field) == ("line 3", "<file>")
    (tmp_path / "a.csv").write_text("\nvideo_id\nvideo1\n")
    with pytest.raises(AnnotationError, match="found a blank first line"):
        read_csv_rows(tmp_path / "a.csv", ["video_id"])


@pytest.mark.parametrize("answer", ["²", "٣"])
def test_a_multiple_choice_answer_in_other_digits_is_an_annotation_error(
    tmp_path: Path, answer: str
) -> None:
    """'²' passed str.isdigit() and then int() raised a plain ValueError ('٣' read as 3)."""
    from pipeline.datasets.msrvtt_files import load_multiple_choice

    path = tmp_path / "MSR_MC_test.csv"
    path.write_text(f"vid_key\ta1\ta2\ta3\ta4\ta5\tanswer\nmsr1\ta\tb\tc\td\te\t{answer}\n")
    with pytest.raises(AnnotationError) as raised:
        load_multiple_choice(path)
    assert (raised.value.record, raised.value.field) == ("line 2", "answer")


def test_msvd_text_files_split_lines_at_line_feeds_only(tmp_path: Path) -> None:
    """str.splitlines also cuts at U+0085 (a cp1252 '…' read as Latin-1), U+2028, U+001E...: a
    description lost its tail, which became a caption of a video named by its first word."""
    from test_msvd_didemo import _config, _msvd

    root = _msvd(tmp_path / "msvd")
    (root / "AllVideoDescriptions.txt").write_text(
        "vidB_1_9 a cat plays\u2028with a ball\n-4wsuPCjDBc_5_15 a man\x85 cooks\r\n"
    )
    tables = load_dataset(_config("msvd", "AllVideoDescriptions.txt"), root)
    assert tables.pairs["text"].tolist() == ["a man\x85 cooks", "a cat plays\u2028with a ball"]
    assert "no_split" not in tables.dropped
