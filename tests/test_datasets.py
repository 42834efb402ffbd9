"""Dataset adapters on tiny fixtures written in the real formats (videoclip-facts §2.3, §2.7).

Video files are a few bytes each: adapters never read video content.
"""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path
from typing import Any

import pytest

from pipeline.config import DatasetConfig
from pipeline.datasets import load_dataset
from pipeline.datasets.tables import (
    PAIR_COLUMNS,
    VIDEO_COLUMNS,
    AnnotationError,
    find_video_files,
)

VIDEO_DTYPES = {
    "video_id": "str",
    "path": "str",
    "bytes": "int64",
    "mtime": "float64",
    "split": "str",
}
PAIR_DTYPES = {
    "pair_id": "str",
    "video_id": "str",
    "start_s": "float64",
    "end_s": "float64",
    "text": "str",
    "split": "str",
}


def write_video(path: Path, size: int = 7) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\0" * size)
    return path


def write_json(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def assert_dtypes(frame, expected: dict[str, str]) -> None:
    assert {name: str(frame[name].dtype) for name in expected} == expected


# --- HowTo100M caption.json ---------------------------------------------------------------------


def howto_captions() -> dict[str, Any]:
    return {
        "vidA": {
            "start": [0.0, 2.5, 6],
            "end": [2.5, 6.0, 9.75],
            "text": ["crack eggs", "whisk", "fry"],
        },
        "vidB": {"start": [1.0, 4.0, 8.0], "end": [3.0, 7.5, 8.0], "text": ["a", "b", "c"]},
    }


def howto_root(tmp_path: Path, captions: dict[str, Any] | None = None) -> Path:
    root = tmp_path / "how2"
    write_json(root / "caption.json", captions if captions is not None else howto_captions())
    write_video(root / "videos" / "vidA.mp4", size=11)
    write_video(root / "videos" / "vidB.WEBM", size=13)
    return root


HOWTO = DatasetConfig(adapter="howto100m", root="unused")


def test_howto100m_two_videos_three_captions(tmp_path: Path) -> None:
    root = howto_root(tmp_path)
    tables = load_dataset(HOWTO, root)
    assert list(tables.videos.columns) == VIDEO_COLUMNS
    assert list(tables.pairs.columns) == PAIR_COLUMNS
    assert_dtypes(tables.videos, VIDEO_DTYPES)
    assert_dtypes(tables.pairs, PAIR_DTYPES)
    assert tables.videos["video_id"].tolist() == ["vidA", "vidB"]
    assert tables.videos["bytes"].tolist() == [11, 13]
    assert all(Path(path).is_absolute() for path in tables.videos["path"])
    assert set(tables.videos["split"]) == {"train"}
    assert tables.pairs["pair_id"].tolist() == [f"vid{v}:{i}" for v in "AB" for i in range(3)]
    assert tables.pairs["start_s"].tolist() == [0.0, 2.5, 6.0, 1.0, 4.0, 8.0]
    assert tables.pairs["end_s"].tolist() == [2.5, 6.0, 9.75, 3.0, 7.5, 8.0]
    assert tables.pairs["text"].tolist()[:3] == ["crack eggs", "whisk", "fry"]
    assert tables.dropped == {}


def test_howto100m_raw_caption_json_and_split_lists(tmp_path: Path) -> None:
    root = howto_root(tmp_path)
    (root / "caption.json").rename(root / "raw_caption.json")
    (root / "how2_s3d_train.lst").write_text("vidA\n\n")
    (root / "how2_s3d_val.lst").write_text("vidB\n")
    tables = load_dataset(HOWTO, root)
    assert dict(zip(tables.videos["video_id"], tables.videos["split"], strict=True)) == {
        "vidA": "train",
        "vidB": "val",
    }
    assert tables.pairs.groupby("split").size().to_dict() == {"train": 3, "val": 3}


class _Runs:
    """Pickles as a call of os.system: a caption pickle must never run it."""

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        import os

        return (os.system, ("touch should-not-exist",))


def test_howto100m_mmpt_dedup_pickle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """MMPT's raw_caption_dedup.pkl ({video: JSON text}) gives the tables caption.json gives;
    a pickle that names a function is refused unrun; bad JSON text names its video."""
    root = howto_root(tmp_path)
    (root / "caption.json").unlink()
    dedup = {video: json.dumps(entry) for video, entry in howto_captions().items()}
    (root / "raw_caption_dedup.pkl").write_bytes(pickle.dumps(dedup))
    from_pickle = load_dataset(HOWTO, root)
    write_json(root / "caption.json", howto_captions())
    from_json = load_dataset(HOWTO, root)
    assert from_pickle.pairs.equals(from_json.pairs)
    config = DatasetConfig(adapter="howto100m", root="unused", annotations="raw_caption_dedup.pkl")
    (root / "raw_caption_dedup.pkl").write_bytes(pickle.dumps({"vidA": _Runs()}))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(AnnotationError, match=r"raw_caption_dedup\.pkl.*names posix\.system"):
        load_dataset(config, root)
    assert not (tmp_path / "should-not-exist").exists()
    (root / "raw_caption_dedup.pkl").write_bytes(pickle.dumps({"vidA": "{not json"}))
    with pytest.raises(AnnotationError, match="video 'vidA'"):
        load_dataset(config, root)


def test_howto100m_missing_files_dropped_and_counted(tmp_path: Path) -> None:
    captions = {**howto_captions(), "vidC": {"start": [0], "end": [1], "text": ["x"]}}
    root = howto_root(tmp_path, captions)
    write_video(root / "videos" / "orphan.mp4")
    tables = load_dataset(HOWTO, root)
    assert tables.videos["video_id"].tolist() == ["vidA", "vidB"]
    assert "vidC" not in set(tables.pairs["video_id"])
    assert tables.dropped == {
        "missing_video_file": 1,
        "missing_video_file_pairs": 1,
        "unannotated_video_file": 1,
    }


def with_video(captions: dict[str, Any], video_id: str, **changes: Any) -> dict[str, Any]:
    entry = {**captions[video_id], **changes}
    return {**captions, video_id: {k: v for k, v in entry.items() if v is not None}}


BAD_CAPTIONS = {
    "missing field": (with_video(howto_captions(), "vidB", text=None), "vidB", "text"),
    "unequal lengths": (with_video(howto_captions(), "vidA", end=[1.0, 2.0]), "vidA", "end"),
    "start after end": (with_video(howto_captions(), "vidB", start=[1.0, 9.0, 8.0]), "vidB", "end"),
    "negative start": (with_video(howto_captions(), "vidA", start=[-1, 2.5, 6]), "vidA", "start"),
    "string time": (with_video(howto_captions(), "vidA", end=["2.5", 6.0, 9.75]), "vidA", "end"),
    "text not a string": (with_video(howto_captions(), "vidB", text=["a", 3, "c"]), "vidB", "text"),
    "not a mapping": ([1, 2], "top level", "<file>"),
}


@pytest.mark.parametrize("case", BAD_CAPTIONS, ids=list(BAD_CAPTIONS))
def test_howto100m_malformed_captions(tmp_path: Path, case: str) -> None:
    captions, record, field = BAD_CAPTIONS[case]
    root = howto_root(tmp_path, captions)
    with pytest.raises(AnnotationError) as raised:
        load_dataset(HOWTO, root)
    message = str(raised.value)
    assert "caption.json" in message and record in message and repr(field) in message


def test_not_json_names_file_and_position(tmp_path: Path) -> None:
    root = howto_root(tmp_path)
    (root / "caption.json").write_text("vidA,0,2.5,crack eggs\n")
    with pytest.raises(AnnotationError, match=r"caption\.json: line 1 column 1.*JSON"):
        load_dataset(HOWTO, root)


def test_annotation_error_survives_pickling() -> None:
    error = AnnotationError(Path("a.json"), "video 'x'", "end", "a number", "'1' (string)")
    copy = pickle.loads(pickle.dumps(error))
    assert str(copy) == str(error) and copy.field == "end"


# --- YouCookII youcookii_annotations_trainval.json ----------------------------------------------


def youcook_entry(subset: str, annotations: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "duration": 241.64,
        "subset": subset,
        "recipe_type": "212",
        "video_url": "https://www.youtube.com/watch?v=x",
        "annotations": annotations,
    }


def youcook_database() -> dict[str, Any]:
    steps = [
        {"id": 0, "segment": [25, 37], "sentence": "cut the onion in half and dice"},
        {"id": 1, "segment": [40.0, 52.0], "sentence": "fry the onion"},
    ]
    return {
        "database": {
            "trainVid001": youcook_entry("training", steps),
            "valVid00002": youcook_entry("validation", steps[:1]),
            "missingVid03": youcook_entry("validation", steps),
        }
    }


def youcook_root(tmp_path: Path, data: Any = None) -> Path:
    root = tmp_path / "youcook"
    write_json(root / "youcookii_annotations_trainval.json", data or youcook_database())
    write_video(root / "videos" / "trainVid001.mp4")
    write_video(root / "videos" / "validation" / "212" / "valVid00002.mkv")  # official raw layout
    return root


YOUCOOK = DatasetConfig(adapter="youcook2", root="unused")


def test_youcook2_training_and_validation(tmp_path: Path) -> None:
    tables = load_dataset(YOUCOOK, youcook_root(tmp_path))
    assert list(tables.videos.columns) == VIDEO_COLUMNS
    assert list(tables.pairs.columns) == [*PAIR_COLUMNS, "recipe_type", "duration_s"]
    assert_dtypes(tables.videos, VIDEO_DTYPES)
    assert_dtypes(tables.pairs, {**PAIR_DTYPES, "recipe_type": "str", "duration_s": "float64"})
    assert dict(zip(tables.videos["video_id"], tables.videos["split"], strict=True)) == {
        "trainVid001": "train",
        "valVid00002": "val",
    }
    assert tables.videos["path"].iloc[1].endswith("validation/212/valVid00002.mkv")
    assert tables.pairs["pair_id"].tolist() == ["trainVid001_0", "trainVid001_1", "valVid00002_0"]
    assert tables.pairs["start_s"].tolist() == [25.0, 40.0, 25.0]
    assert tables.pairs["end_s"].tolist() == [37.0, 52.0, 37.0]
    assert tables.pairs["split"].tolist() == ["train", "train", "val"]
    assert set(tables.pairs["recipe_type"]) == {"212"}
    assert set(tables.pairs["duration_s"]) == {241.64}
    assert tables.dropped == {"missing_video_file": 1, "missing_video_file_pairs": 2}


def with_annotation(video_id: str, **changes: Any) -> dict[str, Any]:
    data = youcook_database()
    entry = data["database"][video_id]
    annotation = {**entry["annotations"][0], **changes}
    entry["annotations"][0] = {k: v for k, v in annotation.items() if v is not None}
    return data


def with_entry(video_id: str, **changes: Any) -> dict[str, Any]:
    data = youcook_database()
    data["database"][video_id].update(changes)
    return data


BAD_YOUCOOK = {
    "non-integer segment": (with_annotation("valVid00002", segment=[25.5, 37]), "segment"),
    "segment start after end": (with_annotation("valVid00002", segment=[37, 25]), "segment"),
    "negative segment": (with_annotation("valVid00002", segment=[-1, 25]), "segment"),
    "three-number segment": (with_annotation("valVid00002", segment=[1, 2, 3]), "segment"),
    "empty sentence": (with_annotation("valVid00002", sentence="  "), "sentence"),
    "missing sentence": (with_annotation("valVid00002", sentence=None), "sentence"),
    "unknown subset": (with_entry("valVid00002", subset="val"), "subset"),
    "string duration": (with_entry("valVid00002", duration="241"), "duration"),
    "segment past the video": (with_annotation("valVid00002", segment=[25, 250]), "segment"),
    "segment of 1e30 s": (with_annotation("valVid00002", segment=[0, 1e30]), "segment"),
    "segment after the video": (with_annotation("valVid00002", segment=[242, 243]), "segment"),
}


@pytest.mark.parametrize("case", BAD_YOUCOOK, ids=list(BAD_YOUCOOK))
def test_youcook2_malformed_annotations(tmp_path: Path, case: str) -> None:
    data, field = BAD_YOUCOOK[case]
    with pytest.raises(AnnotationError) as raised:
        load_dataset(YOUCOOK, youcook_root(tmp_path, data))
    message = str(raised.value)
    assert "youcookii_annotations_trainval.json" in message
    assert "valVid00002" in message and repr(field) in message
    if field in ("segment", "sentence"):
        assert "annotation 0" in message


def test_youcook2_duplicate_annotation_ids(tmp_path: Path) -> None:
    data = with_annotation("trainVid001", id=1)
    with pytest.raises(AnnotationError, match=r"'trainVid001' annotation 1, field 'id'"):
        load_dataset(YOUCOOK, youcook_root(tmp_path, data))


@pytest.mark.parametrize("data", [{"videos": {}}, [1], {"database": [1]}], ids=str)
def test_youcook2_missing_database(tmp_path: Path, data: Any) -> None:
    with pytest.raises(AnnotationError, match=r"trainval\.json: top level, field 'database'"):
        load_dataset(YOUCOOK, youcook_root(tmp_path, data))


def test_youcook2_not_json(tmp_path: Path) -> None:
    root = youcook_root(tmp_path)
    (root / "youcookii_annotations_trainval.json").write_text('{"database": {"x": ')
    with pytest.raises(AnnotationError, match=r"trainval\.json: line 1 column \d+, field '<file>'"):
        load_dataset(YOUCOOK, root)


def test_youcook2_missing_annotation_file(tmp_path: Path) -> None:
    root = youcook_root(tmp_path)
    config = DatasetConfig(adapter="youcook2", root="unused", annotations="other.json")
    with pytest.raises(FileNotFoundError, match=r"other\.json"):
        load_dataset(config, root)


# --- folder -------------------------------------------------------------------------------------


def test_folder_nested_videos(tmp_path: Path) -> None:
    root = tmp_path / "clips"
    write_video(root / "top.mp4")
    write_video(root / "kitchen" / "day1" / "clip.MOV", size=5)
    write_video(root / "kitchen" / "notes.txt")
    write_video(root / ".cache" / "hidden.mp4")
    config = DatasetConfig(adapter="folder", root="unused", videos="", split="test")
    tables = load_dataset(config, root)
    assert tables.videos["video_id"].tolist() == ["kitchen/day1/clip", "top"]
    assert tables.videos["bytes"].tolist() == [5, 7]
    assert set(tables.videos["split"]) == {"test"}
    assert_dtypes(tables.videos, VIDEO_DTYPES)
    assert list(tables.pairs.columns) == PAIR_COLUMNS and tables.pairs.empty
    assert_dtypes(tables.pairs, PAIR_DTYPES)


def test_folder_empty_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "readme.txt").write_text("no videos here")
    config = DatasetConfig(adapter="folder", root="unused")
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "videos"))):
        load_dataset(config, tmp_path)


def test_duplicate_video_id_names_both_files(tmp_path: Path) -> None:
    write_video(tmp_path / "a" / "clip.mp4")
    write_video(tmp_path / "a" / "clip.webm")
    with pytest.raises(ValueError, match=r"'a/clip'.*clip\.mp4.*clip\.webm"):
        find_video_files(tmp_path)


@pytest.mark.parametrize("adapter", ["howto100m", "youcook2", "msrvtt", "msvd", "didemo"])
def test_every_adapter_is_reachable_from_a_config(tmp_path: Path, adapter: str) -> None:
    """load_dataset dispatches each `adapter` name to its module; a missing file is named."""
    config = DatasetConfig(adapter=adapter, root=str(tmp_path))  # type: ignore[arg-type]
    with pytest.raises((FileNotFoundError, AnnotationError)) as caught:
        load_dataset(config, tmp_path)
    assert str(tmp_path) in str(caught.value)
