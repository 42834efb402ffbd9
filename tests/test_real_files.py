"""Annotation files as real copies come: a byte-order mark, a key written twice, empty ASR
lines, a segment in the video's last partial second (the adapters' rules for real files)."""

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
