"""MSR-VTT adapter: retrieval tables from the real JSFusion csv, train lists, MC csv and QA json."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from pipeline.config import DatasetConfig
from pipeline.datasets import msrvtt, msrvtt_files
from pipeline.datasets.tables import PAIR_COLUMNS, VIDEO_COLUMNS, AnnotationError

# The real MSR-VTT 1k-A test csv (1,000 rows), kept in the repository so the test never skips.
REAL_JSFUSION = Path(__file__).parent / "data" / "MSRVTT_JSFUSION_test.csv"
CONFIG = DatasetConfig(adapter="msrvtt", root="unused")


def write_json(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def write_video(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\0" * 5)
    return path


def data_json() -> dict[str, Any]:
    return {
        "videos": [{"video_id": "video0"}, {"video_id": "video1"}, {"video_id": "video2"}],
        "sentences": [
            {"caption": "a car is shown", "video_id": "video0", "sen_id": 0},
            {"caption": "a red car drives", "video_id": "video0", "sen_id": 1},
            {"caption": "a man sings", "video_id": "video1", "sen_id": 2},
            {"caption": "not in the train list", "video_id": "video2", "sen_id": 3},
        ],
    }


JSFUSION_TINY = (
    "key,vid_key,video_id,sentence\n"
    "ret0,msr9770,video9770,a person is connecting something to system\n"
    'ret1,msr9771,video9771,"a girl, doing gymnastics"\n'
)


def msrvtt_root(
    tmp_path: Path,
    data: Any = None,
    train: str = "video_id\nvideo0\nvideo1\n",
    jsfusion: str = JSFUSION_TINY,
    train_name: str = "MSRVTT_train.9k.csv",
) -> Path:
    root = tmp_path / "msrvtt"
    write_json(root / "MSRVTT_data.json", data if data is not None else data_json())
    (root / train_name).write_text(train)
    (root / "MSRVTT_JSFUSION_test.csv").write_text(jsfusion)
    for video_id in ("video0", "video1", "video9770", "video9771"):
        write_video(root / "videos" / f"{video_id}.mp4")
    return root


def test_real_jsfusion_csv_gives_1000_test_pairs(tmp_path: Path) -> None:
    if not REAL_JSFUSION.is_file():
        pytest.skip(f"{REAL_JSFUSION} not available")
    root = msrvtt_root(tmp_path)
    shutil.copy(REAL_JSFUSION, root / "MSRVTT_JSFUSION_test.csv")
    with REAL_JSFUSION.open(newline="") as handle:
        ids = [row["video_id"] for row in csv.DictReader(handle)]
    for video_id in ids[2:]:  # video9770, video9771 written by msrvtt_root
        write_video(root / "videos" / f"{video_id}.mp4")
    tables = msrvtt.load(CONFIG, root)
    test = tables.pairs[tables.pairs["split"] == "test"].reset_index(drop=True)
    assert len(test) == 1000
    assert test["pair_id"].nunique() == 1000
    first = test.iloc[0]
    assert (first.pair_id, first.video_id, first.text) == (
        "ret0",
        "video9770",
        "a person is connecting something to system",
    )
    assert set(test["start_s"]) == {0.0} and set(test["end_s"]) == {msrvtt.WHOLE_VIDEO_END_S}
    assert (tables.videos["split"] == "test").sum() == 1000
    assert tables.dropped == {}

    # Remove three test videos: their pairs are dropped and counted.
    for video_id in ids[-3:]:
        (root / "videos" / f"{video_id}.mp4").unlink()
    tables = msrvtt.load(CONFIG, root)
    assert (tables.pairs["split"] == "test").sum() == 997
    assert tables.dropped == {"missing_video_file": 3, "missing_video_file_pairs": 3}


def test_train_and_test_pairs(tmp_path: Path) -> None:
    root = msrvtt_root(tmp_path)
    write_video(root / "videos" / "stray.mp4")
    tables = msrvtt.load(CONFIG, root)
    assert list(tables.videos.columns) == VIDEO_COLUMNS
    assert list(tables.pairs.columns) == PAIR_COLUMNS
    assert dict(zip(tables.videos["video_id"], tables.videos["split"], strict=True)) == {
        "video0": "train",
        "video1": "train",
        "video9770": "test",
        "video9771": "test",
    }
    assert tables.pairs["pair_id"].tolist() == ["video0:0", "video0:1", "video1:2", "ret0", "ret1"]
    assert tables.pairs["text"].tolist()[2:] == [
        "a man sings",
        "a person is connecting something to system",
        "a girl, doing gymnastics",
    ]
    assert tables.pairs["split"].tolist() == ["train"] * 3 + ["test"] * 2
    assert str(tables.pairs["end_s"].dtype) == "float64"
    assert tables.dropped == {"unannotated_video_file": 1}
    assert [path.name for path in msrvtt.annotation_files(CONFIG, root)] == [
        "MSRVTT_data.json",
        "MSRVTT_train.9k.csv",
        "MSRVTT_JSFUSION_test.csv",
    ]


def test_7k_list_missing_video_and_annotation_folder(tmp_path: Path) -> None:
    root = msrvtt_root(
        tmp_path, train="video_id\nvideo0\nvideo1\nvideo5\n", train_name="MSRVTT_train.7k.csv"
    )
    (root / "videos" / "video1.mp4").unlink()
    tables = msrvtt.load(CONFIG, root)
    assert tables.pairs["pair_id"].tolist() == ["video0:0", "video0:1", "ret0", "ret1"]
    assert tables.dropped == {
        "missing_video_file": 1,
        "missing_video_file_pairs": 1,
        "no_annotations": 1,  # video5 has no sentences
    }
    config = DatasetConfig(adapter="msrvtt", root="unused", annotations="ann")
    with pytest.raises(FileNotFoundError, match="train list"):
        msrvtt.annotation_files(config, root)


def test_full_test_list_adds_its_non_1k_a_videos_to_training(tmp_path: Path) -> None:
    """MMPT's `full_test_path`: the full test set's videos outside the JSFusion test train too;
    a video already in the train list is not added twice; multiple choice ignores the file."""
    root = msrvtt_root(tmp_path, train_name="MSRVTT_train.7k.csv")
    write_video(root / "videos" / "video2.mp4")
    (root / "MSRVTT_FULL_test.csv").write_text("video_id\nvideo9770\nvideo2\nvideo0\n")
    tables = msrvtt.load(CONFIG, root)
    train = tables.pairs[tables.pairs["split"] == "train"]
    assert train["pair_id"].tolist() == ["video0:0", "video0:1", "video1:2", "video2:3"]
    assert tables.extras == {"task": "retrieval", "full_test_train_videos": 1}
    assert msrvtt.annotation_files(CONFIG, root)[-1].name == "MSRVTT_FULL_test.csv"
    (root / "MSRVTT_FULL_test.csv").write_text("video_id\nvideo2\nvideo2\n")
    with pytest.raises(AnnotationError, match=r"MSRVTT_FULL_test\.csv.*line 3"):
        msrvtt.load(CONFIG, root)
    (root / "MSR_MC_test.csv").write_text(MC_HEADER + "msr9770\ta\tb\tc\td\te\t0\n")
    mc = msrvtt.load(DatasetConfig(adapter="msrvtt", root="unused", task="mc"), root)
    assert "video2" not in set(mc.pairs["video_id"])


BAD_RETRIEVAL: dict[str, tuple[dict[str, Any], str, str]] = {
    "train list without video_id column": (
        {"train": "vid\nvideo0\n"},
        "MSRVTT_train.9k.csv",
        "video_id",
    ),
    "repeated train id": (
        {"train": "video_id\nvideo0\nvideo0\n"},
        "MSRVTT_train.9k.csv",
        "video_id",
    ),
    "jsfusion without sentence": (
        {"jsfusion": "key,vid_key,video_id\nret0,msr1,video1\n"},
        "MSRVTT_JSFUSION_test.csv",
        "sentence",
    ),
    "jsfusion empty sentence": (
        {"jsfusion": "key,vid_key,video_id,sentence\nret0,msr9770,video9770,\n"},
        "MSRVTT_JSFUSION_test.csv",
        "sentence",
    ),
    "jsfusion vid_key disagrees": (
        {"jsfusion": "key,vid_key,video_id,sentence\nret0,msr1,video9770,x\n"},
        "MSRVTT_JSFUSION_test.csv",
        "video_id",
    ),
    "jsfusion repeated key": (
        {"jsfusion": JSFUSION_TINY.replace("ret1", "ret0")},
        "MSRVTT_JSFUSION_test.csv",
        "key",
    ),
    "test video in train list": (
        {"train": "video_id\nvideo0\nvideo9770\n"},
        "MSRVTT_JSFUSION_test.csv",
        "video_id",
    ),
    "sentence without caption": (
        {"data": {"sentences": [{"video_id": "video0", "sen_id": 0}]}},
        "MSRVTT_data.json",
        "caption",
    ),
    "string sen_id": (
        {"data": {"sentences": [{"caption": "c", "video_id": "video0", "sen_id": "0"}]}},
        "MSRVTT_data.json",
        "sen_id",
    ),
    "no sentences": ({"data": {"videos": []}}, "MSRVTT_data.json", "sentences"),
}


@pytest.mark.parametrize("case", BAD_RETRIEVAL, ids=list(BAD_RETRIEVAL))
def test_malformed_retrieval_annotations(tmp_path: Path, case: str) -> None:
    changes, file_name, field = BAD_RETRIEVAL[case]
    with pytest.raises(AnnotationError) as raised:
        msrvtt.load(CONFIG, msrvtt_root(tmp_path, **changes))
    assert raised.value.file.name == file_name
    assert raised.value.field == field
    assert file_name in str(raised.value) and repr(field) in str(raised.value)


# --- multiple choice ----------------------------------------------------------------------------

MC_HEADER = "vid_key\ta1\ta2\ta3\ta4\ta5\tanswer\n"


def test_multiple_choice_tab_separated(tmp_path: Path) -> None:
    path = tmp_path / "MSR_MC_test.csv"
    path.write_text(
        MC_HEADER
        + "msr7020\ta man, talking\tb\tc\td\te\t0\n"
        + "msr9999\tv\tw\tx\ty\tthe right one\t4\n"
    )
    table = msrvtt_files.load_multiple_choice(path)
    assert list(table.columns) == ["video_id", "candidates", "answer"]
    assert table["video_id"].tolist() == ["video7020", "video9999"]
    assert table["candidates"].iloc[0] == ["a man, talking", "b", "c", "d", "e"]
    assert table["answer"].tolist() == [0, 4]
    assert str(table["answer"].dtype) == "int64"
    row = table.iloc[1]
    assert row.candidates[row.answer] == "the right one"


@pytest.mark.parametrize(
    ("text", "field"),
    [
        (MC_HEADER + "msr1\ta\tb\tc\td\te\t5\n", "answer"),
        (MC_HEADER + "msr1\ta\tb\tc\td\te\tx\n", "answer"),
        (MC_HEADER + "video1\ta\tb\tc\td\te\t1\n", "vid_key"),
        ("vid_key\ta1\ta2\ta3\ta4\ta5\nmsr1\ta\tb\tc\td\te\n", "answer"),
        (MC_HEADER.replace("\t", ",") + "msr1,a,b,c,d,e,1\n", "vid_key"),  # not tab-separated
    ],
    ids=["answer 5", "answer x", "bad vid_key", "no answer column", "comma-separated"],
)
def test_multiple_choice_malformed(tmp_path: Path, text: str, field: str) -> None:
    path = tmp_path / "MSR_MC_test.csv"
    path.write_text(text)
    with pytest.raises(AnnotationError) as raised:
        msrvtt_files.load_multiple_choice(path)
    assert raised.value.file == path and raised.value.field == field
    assert "MSR_MC_test.csv" in str(raised.value)


# --- MSR-VTT-QA ---------------------------------------------------------------------------------


def qa(qa_id: int, video: int, answer: str) -> dict[str, Any]:
    return {"id": qa_id, "video_id": video, "question": f"what is {qa_id}?", "answer": answer}


def qa_folder(tmp_path: Path, train: Any = None) -> Path:
    folder = tmp_path / "qa"
    answers = ["man"] * 4 + ["dog"] * 2 + ["cat"] * 2 + ["ball"] + ["zebra"]
    default = [qa(index, 100 + index, answer) for index, answer in enumerate(answers)]
    write_json(folder / "train_qa.json", train if train is not None else default)
    write_json(folder / "val_qa.json", [qa(50, 6600, "man")])
    write_json(folder / "test_qa.json", [qa(60, 7010, "unknown"), qa(61, 7011, "dog")])
    return folder


def test_qa_vocabulary_and_coverage(tmp_path: Path) -> None:
    table, vocabulary, coverage = msrvtt_files.load_qa(qa_folder(tmp_path), top_answers=3)
    assert list(table.columns) == ["id", "video_id", "question", "answer", "split"]
    assert table["split"].tolist() == ["train"] * 10 + ["val"] + ["test"] * 2
    assert table["video_id"].iloc[0] == "video100" and table["video_id"].iloc[-1] == "video7011"
    assert str(table["id"].dtype) == "int64"
    assert vocabulary == ["man", "cat", "dog"]  # cat and dog tie at 2: alphabetical
    assert coverage == pytest.approx(0.8)
    _, vocabulary, coverage = msrvtt_files.load_qa(qa_folder(tmp_path), top_answers=4)
    assert vocabulary == ["man", "cat", "dog", "ball"]  # ball and zebra tie at 1
    assert coverage == pytest.approx(0.9)
    _, vocabulary, coverage = msrvtt_files.load_qa(qa_folder(tmp_path))  # default 1500
    assert len(vocabulary) == 5 and coverage == 1.0


@pytest.mark.parametrize(
    ("train", "field"),
    [
        ([{"id": 0, "video_id": 1, "question": "q?"}], "answer"),
        ([{"id": 0, "video_id": "clip1", "question": "q?", "answer": "a"}], "video_id"),
        ([qa(0, 1, "a"), qa(0, 2, "b")], "id"),
        ([qa(0, 1, "")], "answer"),
        ({"id": 0}, "<file>"),
    ],
    ids=["missing answer", "video_id naming no video", "repeated id", "empty answer", "not a list"],
)
def test_qa_malformed(tmp_path: Path, train: Any, field: str) -> None:
    with pytest.raises(AnnotationError) as raised:
        msrvtt_files.load_qa(qa_folder(tmp_path, train))
    assert raised.value.file.name == "train_qa.json" and raised.value.field == field
    assert "train_qa.json" in str(raised.value)
