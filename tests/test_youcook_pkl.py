"""YouCookII with MMPT's clip lists `youcook_{train,val}.pkl` (videoclip-facts.md §2.7)."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import pytest

from pipeline.config import DatasetConfig
from pipeline.datasets import annotation_files, load_dataset
from pipeline.datasets.tables import AnnotationError

YOUCOOK = DatasetConfig(adapter="youcook2", root="unused")
JSON = "youcookii_annotations_trainval.json"


def steps(count: int) -> list[dict[str, Any]]:
    return [
        {"id": i, "segment": [10 * i, 10 * i + 5], "sentence": f"step {i}"} for i in range(count)
    ]


def entry(subset: str, count: int) -> dict[str, Any]:
    return {"duration": 100.0, "subset": subset, "recipe_type": "101", "annotations": steps(count)}


def make_root(tmp_path: Path, train: Any = None, val: Any = None) -> Path:
    """Json with an underscore YouTube id; pickles written only when given."""
    root = tmp_path / "youcook"
    (root / "videos").mkdir(parents=True)
    database = {
        "ab_cd-EF_1": entry("training", 3),  # YouTube ids may contain underscores
        "trainVid002": entry("training", 2),
        "valVid00003": entry("validation", 2),
        "valVid00004": entry("validation", 1),
    }
    (root / JSON).write_text(json.dumps({"database": database}))
    for video_id in database:
        (root / "videos" / f"{video_id}.mp4").write_bytes(b"\0" * 7)
    for name, data in (("youcook_train.pkl", train), ("youcook_val.pkl", val)):
        if data is not None:
            (root / name).write_bytes(pickle.dumps(data, protocol=2))
    return root


def rec(clip_id: Any, caption: str = "cut onion") -> dict[str, Any]:
    return {"id": clip_id, "caption": caption}


TRAIN = [rec("ab_cd-EF_1_0"), rec("ab_cd-EF_1_2"), rec("trainVid002_1")]
VAL = [rec("valVid00003_0"), rec("valVid00003_1")]


def test_clip_lists_decide_splits(tmp_path: Path) -> None:
    root = make_root(tmp_path, TRAIN, VAL)
    tables = load_dataset(YOUCOOK, root)
    pairs = dict(zip(tables.pairs["pair_id"], tables.pairs["split"], strict=True))
    assert pairs == {
        "ab_cd-EF_1_0": "train",
        "ab_cd-EF_1_2": "train",
        "trainVid002_1": "train",
        "valVid00003_0": "val",
        "valVid00003_1": "val",
    }
    assert set(tables.pairs.loc[tables.pairs["pair_id"] == "ab_cd-EF_1_2", "video_id"]) == {
        "ab_cd-EF_1"
    }
    assert tables.pairs.loc[tables.pairs["pair_id"] == "ab_cd-EF_1_2", "start_s"].item() == 20.0
    assert dict(zip(tables.videos["video_id"], tables.videos["split"], strict=True)) == {
        "ab_cd-EF_1": "train",
        "trainVid002": "train",
        "valVid00003": "val",
    }
    # ab_cd-EF_1_1, trainVid002_0 and valVid00004_0 are in neither list
    assert tables.dropped == {"not_in_clip_lists": 3}
    files = [p.name for p in annotation_files(YOUCOOK, root)]
    assert files == [JSON, "youcook_train.pkl", "youcook_val.pkl"]


def test_list_split_overrides_json_subset(tmp_path: Path) -> None:
    root = make_root(tmp_path, [rec("valVid00004_0")], [rec("trainVid002_0")])
    tables = load_dataset(YOUCOOK, root)
    assert dict(zip(tables.pairs["pair_id"], tables.pairs["split"], strict=True)) == {
        "trainVid002_0": "val",
        "valVid00004_0": "train",
    }
    assert tables.dropped == {"not_in_clip_lists": 6}


def test_only_val_list_keeps_json_train(tmp_path: Path) -> None:
    root = make_root(tmp_path, val=VAL)
    tables = load_dataset(YOUCOOK, root)
    assert tables.pairs.groupby("split").size().to_dict() == {"train": 5, "val": 2}
    assert tables.dropped == {"not_in_clip_lists": 1}
    assert [p.name for p in annotation_files(YOUCOOK, root)] == [JSON, "youcook_val.pkl"]


def test_no_lists_uses_json_subsets(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    tables = load_dataset(YOUCOOK, root)
    assert len(tables.pairs) == 8 and tables.dropped == {}
    assert [p.name for p in annotation_files(YOUCOOK, root)] == [JSON]


BAD_IDS = {
    "unknown video": "zzzzzzzzzzz_0",
    "clip index past the annotations": "trainVid002_2",
    "no clip index": "trainVid002",
    "non-numeric clip index": "ab_cd-EF_1_x",
    "not a string": 7,
    "listed twice": "trainVid002_1",
}


@pytest.mark.parametrize("case", BAD_IDS, ids=list(BAD_IDS))
def test_bad_list_id(tmp_path: Path, case: str) -> None:
    train = [rec("trainVid002_1"), rec("ab_cd-EF_1_0"), rec(BAD_IDS[case])]
    root = make_root(tmp_path, train, [rec("valVid00003_1")])
    with pytest.raises(AnnotationError) as raised:
        load_dataset(YOUCOOK, root)
    error = raised.value
    assert error.file.name == "youcook_train.pkl"
    assert error.record == "list index 2" and error.field == "id"
    assert "youcook_train.pkl: list index 2, field 'id'" in str(error)


def test_video_in_both_lists(tmp_path: Path) -> None:
    root = make_root(tmp_path, [rec("valVid00003_0")], [rec("valVid00004_0"), rec("valVid00003_1")])
    with pytest.raises(AnnotationError, match=r"youcook_val\.pkl: list index 1, field 'id'.*train"):
        load_dataset(YOUCOOK, root)


class Custom:
    pass


MALFORMED = {
    "dict at top": ({"id": "trainVid002_0"}, "top level", "<file>"),
    "record not a dict": ([rec("trainVid002_0"), "trainVid002_1"], "list index 1", "<record>"),
    "record without id": ([rec("trainVid002_0"), {"caption": "x"}], "list index 1", "id"),
    "class instance": ([Custom()], "top level", "<file>"),
}


@pytest.mark.parametrize("case", MALFORMED, ids=list(MALFORMED))
def test_malformed_clip_list(tmp_path: Path, case: str) -> None:
    data, record, field = MALFORMED[case]
    root = make_root(tmp_path, VAL, data)  # the val list is the bad one
    with pytest.raises(AnnotationError) as raised:
        load_dataset(YOUCOOK, root)
    error = raised.value
    assert error.file.name == "youcook_val.pkl"
    assert (error.record, error.field) == (record, field)


def test_not_a_pickle(tmp_path: Path) -> None:
    root = make_root(tmp_path, TRAIN)
    (root / "youcook_train.pkl").write_bytes(b"not a pickle")
    with pytest.raises(AnnotationError, match=r"youcook_train\.pkl: top level, field '<file>'"):
        load_dataset(YOUCOOK, root)


def test_numpy_features_are_ignored(tmp_path: Path) -> None:
    np = pytest.importorskip("numpy")
    train = [{"id": "trainVid002_0", "caption": "x", "2d": np.zeros(4), "3d": np.float32(1)}]
    root = make_root(tmp_path, train)
    tables = load_dataset(YOUCOOK, root)
    assert "trainVid002_0" in set(tables.pairs["pair_id"])
