"""MSR-VTT QA and multiple-choice files written by tests (a few videos, hand-picked answers)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipeline.config import DatasetConfig


def write_json(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def write_video(root: Path, video_id: str) -> None:
    path = root / "videos" / f"{video_id}.mp4"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\0" * 5)


def qa(qa_id: int, video: int, answer: str) -> dict[str, Any]:
    return {"id": qa_id, "video_id": video, "question": f"what is in {qa_id}?", "answer": answer}


TRAIN_QA = [
    qa(0, 1, "man"),
    qa(1, 1, "man"),
    qa(2, 2, "dog"),
    qa(3, 2, "man"),
    qa(4, 3, "cat"),
    qa(5, 3, "dog"),
    qa(6, 4, "ball"),  # out of a 3-answer vocabulary
    qa(7, 5, "man"),  # video5 has no file
]
VAL_QA = [qa(20, 6, "dog")]
TEST_QA = [qa(30, 7, "man"), qa(31, 7, "zebra"), qa(32, 8, "cat")]


def qa_root(tmp_path: Path, train: list[dict[str, Any]] | None = None) -> Path:
    root = tmp_path / "msrvtt-qa"
    write_json(root / "train_qa.json", TRAIN_QA if train is None else train)
    write_json(root / "val_qa.json", VAL_QA)
    write_json(root / "test_qa.json", TEST_QA)
    for number in (1, 2, 3, 4, 6, 7, 8):
        write_video(root, f"video{number}")
    return root


QA_CONFIG = DatasetConfig(adapter="msrvtt", root="unused", task="qa", answers=3)
MC_CONFIG = DatasetConfig(adapter="msrvtt", root="unused", task="mc")
MC_HEADER = "vid_key\ta1\ta2\ta3\ta4\ta5\tanswer\n"
MC_ROWS = "msr7020\ta man, talking\tb\tc\td\te\t0\nmsr9999\tv\tw\tx\ty\tthe right one\t4\n"


def mc_root(tmp_path: Path, mc: str = MC_HEADER + MC_ROWS) -> Path:
    root = tmp_path / "msrvtt-mc"
    data = {
        "videos": [{"video_id": "video0"}, {"video_id": "video1"}],
        "sentences": [
            {"caption": "a car is shown", "video_id": "video0", "sen_id": 0},
            {"caption": "a red car drives", "video_id": "video0", "sen_id": 1},
            {"caption": "a man sings", "video_id": "video1", "sen_id": 2},
        ],
    }
    write_json(root / "MSRVTT_data.json", data)
    (root / "MSRVTT_train.9k.csv").write_text("video_id\nvideo0\nvideo1\n")
    (root / "MSR_MC_test.csv").write_text(mc)
    for video_id in ("video0", "video1", "video7020", "video9999"):
        write_video(root, video_id)
    return root
