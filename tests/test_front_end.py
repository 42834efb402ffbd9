"""Ingest → decode → extract on the tiny synthetic data (DESIGN.md §3 contracts)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from flows.cli import main
from pipeline.config import Config, DecodeConfig
from pipeline.config.loading import load_config
from pipeline.decode import DecodeStageError, check_bad_share
from pipeline.runner import FRONT_END, run_stages
from storage.features import FeatureStore
from storage.tables import read_table


@pytest.fixture
def artifacts(fresh_artifacts: Path) -> Path:
    """A fresh artifact root with a copy of the synthetic data (tests may add videos)."""
    return fresh_artifacts


@pytest.fixture
def shared(tiny_synth: Path, tiny_run: dict) -> Path:
    """The session root whose front end already ran (read-only tests, additive runs)."""
    return tiny_synth


def _youcook_truth(artifacts: Path) -> tuple[dict, dict]:
    root = artifacts / "synth" / "tiny" / "youcook2"
    database = json.loads((root / "youcookii_annotations_trainval.json").read_text())["database"]
    broken = json.loads((root / "broken.json").read_text())
    return database, broken


def test_features_have_one_row_per_whole_second(shared: Path) -> None:
    artifacts = shared
    config = load_config("tiny")
    results = run_stages(config, FRONT_END, artifacts)
    database, broken = _youcook_truth(artifacts)
    status = read_table(results["youcook2"]["decode"].output("decode")).set_index("video_id")
    store = FeatureStore(results["youcook2"]["extract"].output("index"))
    for video_id, entry in database.items():
        if video_id in broken["corrupt"]:
            assert status.loc[video_id, "status"] == "failed"
            assert "unreadable" in status.loc[video_id, "error"]
            assert video_id not in store
        elif video_id in broken["truncated"]:
            assert status.loc[video_id, "status"] == "truncated"
            assert 0 < store.n_seconds(video_id) < int(entry["duration"])
        else:
            assert status.loc[video_id, "status"] == "ok"
            features = store.features(video_id)
            assert features.shape == (int(np.floor(entry["duration"])), 512)
            assert features.dtype == np.float16
            norms = np.linalg.norm(features.astype(np.float32), axis=1)
            np.testing.assert_allclose(norms, 1.0, atol=2e-3)
    assert results["youcook2"]["extract"].info.random_init is True


def test_second_run_does_no_work(shared: Path) -> None:
    artifacts = shared
    config = load_config("tiny")
    first = run_stages(config, FRONT_END, artifacts)
    files = {p: p.stat().st_mtime_ns for p in artifacts.rglob("*") if p.is_file()}
    second = run_stages(config, FRONT_END, artifacts)
    assert second == first
    assert {p: p.stat().st_mtime_ns for p in artifacts.rglob("*") if p.is_file()} == files


def test_adding_a_video_extracts_only_the_new_one(artifacts: Path) -> None:
    config = load_config("tiny")
    first = run_stages(config, FRONT_END, artifacts)["howto100m"]
    root = artifacts / "synth" / "tiny" / "howto100m"
    captions = json.loads((root / "caption.json").read_text())
    old_id, new_id = next(iter(captions)), "copyOfVideo"
    shutil.copy(root / "videos" / f"{old_id}.mp4", root / "videos" / f"{new_id}.mp4")
    captions[new_id] = captions[old_id]
    (root / "caption.json").write_text(json.dumps(captions))

    second = run_stages(config, FRONT_END, artifacts)["howto100m"]
    assert second["extract"].path != first["extract"].path
    new_seconds = FeatureStore(second["extract"].output("index")).n_seconds(new_id)
    assert second["extract"].info.embedded_seconds == new_seconds
    assert second["decode"].info.videos == first["decode"].info.videos + 1


def test_too_many_bad_videos_fail_and_keep_finished_shards(artifacts: Path) -> None:
    config = load_config("tiny", ["decode.max_bad_share=0.1"])
    with pytest.raises(DecodeStageError, match=r"1 of 6 videos failed.*unreadable") as raised:
        run_stages(config, ["decode"], artifacts)
    message = str(raised.value)
    assert "statuses: failed 1, ok 4, truncated 1" in message
    assert "to go on without them: decode.max_bad_share=0.167" in message
    table = Path(message.split("every video's status and reason: ")[1].split(";")[0])
    assert sorted(read_table(table).status) == ["failed", "ok", "ok", "ok", "ok", "truncated"]
    pools = list((artifacts / "decode").glob("pool-*/frames-*.json"))
    assert pools, "finished shards are kept for the next run"
    relaxed = load_config("tiny", ["decode.max_bad_share=0.5"])
    decode = run_stages(relaxed, ["decode"], artifacts)["youcook2"]["decode"]
    assert decode.info.status_counts["failed"] == 1


def test_cli_runs_a_folder_of_videos(artifacts: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FINECO_ARTIFACTS", str(artifacts))
    videos = artifacts / "synth" / "tiny" / "howto100m" / "videos"
    code = main(["run", "--config", "tiny", "--videos", str(videos), "extract.batch_seconds=3"])
    assert code == 0
    index = read_table(next((artifacts / "extract").glob("*/index.parquet")))
    assert sorted(index.video_id) == sorted(p.stem for p in videos.glob("*.mp4"))


def test_cli_reports_config_errors(caplog: pytest.LogCaptureFixture) -> None:
    assert main(["run", "--config", "tiny", "decode.sise=4"]) == 2
    assert "decode.sise: unknown key" in caplog.text and "tiny.yaml" in caplog.text


def test_decord_backend_runs_the_stage(shared: Path) -> None:
    artifacts = shared
    config: Config = load_config("tiny", ["decode.backend=decord"])
    decode = run_stages(config, ["decode"], artifacts)["howto100m"]["decode"]
    assert decode.info.backend == "decord"
    assert decode.info.status_counts == {"ok": 2}


def test_without_kept_frames_features_match(artifacts: Path) -> None:
    """decode.keep_frames=false: no frame shards on disk, the same features (decoded again).
    A fresh root: on the shared one a preset's run may already hold these very stages."""
    kept = run_stages(load_config("tiny"), FRONT_END, artifacts)["youcook2"]
    streamed = run_stages(load_config("tiny", ["decode.keep_frames=false"]), FRONT_END, artifacts)
    streamed = streamed["youcook2"]
    status = read_table(streamed["decode"].output("decode"))
    assert set(status.shard) == {""}
    pools = {p.parent for p in (artifacts / "decode").glob("pool-*/frames-*.json")}
    assert len(pools) == 2 and sum(1 for p in pools if not list(p.glob("*.h5"))) == 1
    assert streamed["extract"].info.embedded_seconds == status.n_seconds.sum()
    assert streamed["decode"].info.status_counts == kept["decode"].info.status_counts
    kept_store = FeatureStore(kept["extract"].output("index"))
    streamed_store = FeatureStore(streamed["extract"].output("index"))
    assert sorted(streamed_store.video_ids) == sorted(kept_store.video_ids)
    for video_id in kept_store.video_ids:
        np.testing.assert_allclose(
            streamed_store.features(video_id).astype(np.float32),
            kept_store.features(video_id).astype(np.float32),
            atol=2e-3,
        )


def test_videos_under_a_second_are_excluded_not_counted_as_broken() -> None:
    table = pd.DataFrame(
        {
            "video_id": [f"v{i}" for i in range(10)],
            "status": ["ok"] * 6 + ["too_short"] * 3 + ["failed"],
            "error": [""] * 6 + ["too_short: the video lasts 0.52 s"] * 3 + ["unreadable: x"],
        }
    )
    config = DecodeConfig(max_bad_share=0.15)
    check_bad_share(table, config, "mine")  # 1 failed of 10: the 3 short ones do not count
    with pytest.raises(DecodeStageError, match=r"statuses: failed 1, ok 6, too_short 3"):
        check_bad_share(table, DecodeConfig(max_bad_share=0.05), "mine")
