"""A dataset of pre-extracted features (`datasets.<name>.features`): no video files, no decode;
extract imports the `.npy` files and every later stage runs as on decoded videos."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from models.s3dg import EMBEDDING_DIM
from pipeline.config import STAGES, Config
from pipeline.config.loading import load_config
from pipeline.runner import run_stages
from storage.features import FeatureStore

SECONDS = {"trainA": 9, "trainB": 7, "trainC": 8, "valA": 6, "valB": 10}


def write_dataset(root: Path) -> Path:
    """A YouCookII-format annotation file and one (seconds, 512) float16 `.npy` per video."""
    database = {
        video: {
            "duration": float(seconds),
            "subset": "training" if video.startswith("train") else "validation",
            "recipe_type": "101",
            "annotations": [
                {"id": 0, "segment": [0, seconds // 2], "sentence": f"first part of {video}"},
                {"id": 1, "segment": [seconds // 2, seconds], "sentence": f"the rest of {video}"},
            ],
        }
        for video, seconds in SECONDS.items()
    }
    (root / "features").mkdir(parents=True)
    (root / "annotations.json").write_text(json.dumps({"database": database}))
    generator = np.random.default_rng(0)
    for video, seconds in SECONDS.items():
        features = generator.standard_normal((seconds, EMBEDDING_DIM)).astype(np.float16)
        np.save(root / "features" / f"{video}.npy", features)
    return root


def config_for(root: Path) -> Config:
    """The tiny preset on this one dataset; fine-tuning starts from BERT (no pretraining)."""
    config = load_config(
        "tiny",
        [
            f"datasets.youcook2.root={root}",
            "datasets.youcook2.annotations=annotations.json",
            "datasets.youcook2.features=features",
            "finetune.from_pretrain=false",
        ],
    )
    return dataclasses.replace(config, datasets={"youcook2": config.datasets["youcook2"]})


def test_every_stage_runs_on_imported_features(tmp_path: Path) -> None:
    root = write_dataset(tmp_path / "dataset")
    artifacts = tmp_path / "artifacts"
    results = run_stages(config_for(root), STAGES, artifacts)
    front = results["youcook2"]
    assert set(front) == {"ingest", "extract"}  # no decode
    assert front["ingest"].info.features and front["extract"].info.imported
    store = FeatureStore(front["extract"].output("index"))
    assert {video: store.n_seconds(video) for video in store.video_ids} == SECONDS
    expected = np.load(root / "features" / "valB.npy")
    np.testing.assert_array_equal(store.features("valB"), expected)  # float16 kept exactly
    report = results["report"]["report"].output("report").read_text()
    assert "Video features: imported" in report.split("## ")[0]
    assert not (artifacts / "decode").exists()


def test_a_changed_feature_file_is_imported_again(tmp_path: Path) -> None:
    root = write_dataset(tmp_path / "dataset")
    artifacts = tmp_path / "artifacts"
    config = config_for(root)
    first = run_stages(config, ["extract"], artifacts)["youcook2"]["extract"]
    np.save(root / "features" / "valA.npy", np.ones((4, EMBEDDING_DIM), np.float16))
    second = run_stages(config, ["extract"], artifacts)["youcook2"]["extract"]
    assert second.path != first.path
    assert FeatureStore(second.output("index")).n_seconds("valA") == 4


@pytest.mark.parametrize(
    ("array", "problem"),
    [
        (np.zeros((5, 7), np.float32), r"shape \(5, 7\); expected \(seconds >= 1, 512\)"),
        (np.zeros((0, EMBEDDING_DIM), np.float32), r"shape \(0, 512\)"),
        (np.full((3, EMBEDDING_DIM), np.nan, np.float32), "NaN or infinite"),
        (np.zeros((3, EMBEDDING_DIM), np.int64), "holds int64, not floats"),
    ],
)
def test_a_bad_feature_file_is_named(tmp_path: Path, array: np.ndarray, problem: str) -> None:
    root = write_dataset(tmp_path / "dataset")
    np.save(root / "features" / "trainB.npy", array)
    with pytest.raises(ValueError, match=rf"video 'trainB': .*trainB\.npy.*{problem}"):
        run_stages(config_for(root), ["extract"], tmp_path / "artifacts")
