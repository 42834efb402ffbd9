"""The ingest stage: cached by its inputs, idempotent, tables with the documented columns."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.config import DatasetConfig
from pipeline.datasets.tables import PAIR_COLUMNS, VIDEO_COLUMNS
from pipeline.ingest import IngestInputs, run_ingest
from pipeline.stage import IngestInfo
from storage.layout import Manifest
from storage.tables import read_table

CAPTIONS = {
    "vidA": {"start": [0.0, 2.0, 5.0], "end": [2.0, 5.0, 7.0], "text": ["one", "two", "three"]},
    "vidB": {"start": [1.0, 3.0, 4.0], "end": [2.0, 4.0, 9.0], "text": ["four", "five", "six"]},
}


@pytest.fixture
def artifacts(tmp_path: Path) -> Path:
    """An artifact root holding a HowTo100M-format dataset under `{artifacts}/how2`."""
    root = tmp_path / "artifacts"
    dataset = root / "how2"
    (dataset / "videos").mkdir(parents=True)
    (dataset / "caption.json").write_text(json.dumps(CAPTIONS))
    (dataset / "how2_s3d_train.lst").write_text("vidA\n")
    (dataset / "how2_s3d_val.lst").write_text("vidB\n")
    for video_id in CAPTIONS:
        (dataset / "videos" / f"{video_id}.mp4").write_bytes(b"\0" * 9)
    return root


CONFIG = DatasetConfig(adapter="howto100m", root="{artifacts}/how2")


def ingest(name: str, config: DatasetConfig, artifacts: Path) -> Manifest[IngestInfo]:
    return run_ingest(IngestInputs(artifacts=artifacts, dataset=name, config=config))


def test_second_run_is_cached(artifacts: Path) -> None:
    first = ingest("how2", CONFIG, artifacts)
    videos_path = first.output("videos")
    written = videos_path.stat().st_mtime_ns
    second = ingest("how2", CONFIG, artifacts)
    assert second.cache_key == first.cache_key
    assert second == first
    assert videos_path.stat().st_mtime_ns == written
    assert len(list((artifacts / "ingest").iterdir())) == 1


def test_manifest_info(artifacts: Path) -> None:
    manifest = ingest("how2", CONFIG, artifacts)
    assert manifest.stage == "ingest"
    assert manifest.info.dataset == "how2"
    assert manifest.info.adapter == "howto100m"
    assert manifest.info.root == str(artifacts / "how2")
    assert (manifest.info.videos, manifest.info.pairs) == (2, 6)
    assert manifest.info.splits == {
        "train": {"videos": 1, "pairs": 3},
        "val": {"videos": 1, "pairs": 3},
    }
    assert manifest.info.dropped == {}


def test_tables_have_documented_columns(artifacts: Path) -> None:
    manifest = ingest("how2", CONFIG, artifacts)
    videos = read_table(manifest.output("videos"))
    pairs = read_table(manifest.output("pairs"))
    assert list(videos.columns) == VIDEO_COLUMNS
    assert list(pairs.columns) == PAIR_COLUMNS
    assert str(videos["bytes"].dtype) == "int64" and str(pairs["start_s"].dtype) == "float64"
    assert videos["path"].tolist() == [
        str(artifacts / "how2" / "videos" / f"{video_id}.mp4") for video_id in ("vidA", "vidB")
    ]
    assert pairs["pair_id"].tolist()[:2] == ["vidA:0", "vidA:1"]


def test_new_video_changes_the_key(artifacts: Path) -> None:
    first = ingest("how2", CONFIG, artifacts)
    (artifacts / "how2" / "videos" / "extra.mp4").write_bytes(b"\0" * 3)
    second = ingest("how2", CONFIG, artifacts)
    assert second.cache_key != first.cache_key
    assert second.info.dropped == {"unannotated_video_file": 1}


def test_edited_annotations_change_the_key(artifacts: Path) -> None:
    first = ingest("how2", CONFIG, artifacts)
    edited = {**CAPTIONS, "vidB": {"start": [1.0], "end": [2.0], "text": ["four"]}}
    (artifacts / "how2" / "caption.json").write_text(json.dumps(edited))
    second = ingest("how2", CONFIG, artifacts)
    assert second.cache_key != first.cache_key
    assert second.info.pairs == 4


def test_missing_root_is_named(tmp_path: Path) -> None:
    config = DatasetConfig(adapter="folder", root="{artifacts}/nowhere")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        ingest("clips", config, tmp_path)
