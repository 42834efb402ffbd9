"""The long-sparse benchmark: its regime (lengths, sparse relevance, hard distractors), its files
in the real formats, and determinism."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from models.s3dg import EMBEDDING_DIM
from pipeline.config import BenchmarkConfig, DatasetConfig
from pipeline.datasets import load_dataset
from pipeline.synth.long_sparse import (
    FEATURES,
    HOWTO_FILE,
    YOUCOOK_FILE,
    all_concepts,
    benchmark_facts,
    plan_clips,
    shares_attribute,
    write_benchmark,
)

SMALL = BenchmarkConfig(train_clips=30, test_clips=20, pretrain_videos=6)


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("benchmark")
    return out, write_benchmark(SMALL, out)


@pytest.mark.parametrize("distractors", ["spare", "captions"])
def test_clips_are_long_sparse_with_distractors_sharing_attributes(distractors: str) -> None:
    """Distractors share an attribute with the caption; `spare` ones are no caption of the split
    (so no clip shows another query's concept), `captions` ones (v1) are other captions."""
    config = BenchmarkConfig(train_clips=60, test_clips=40, distractors=distractors)
    clips = plan_clips(config)
    for split in ("train", "test"):
        mine = [clip for clip in clips if clip.split == split]
        captions = {clip.concept for clip in mine}
        for clip in mine:
            assert 60 <= clip.length <= 256
            relevant = clip.relevant_seconds()
            assert 6 <= len(relevant) <= int(0.25 * clip.length)
            runs = [run for run in clip.runs if run.concept == clip.concept]
            assert 1 <= len(runs) <= 3 and all(run.stop - run.start >= 2 for run in runs)
            assert [r.start for r in clip.runs][1:] == [r.stop for r in clip.runs][:-1]  # tiles
            for run in clip.runs:
                if run.concept != clip.concept:  # a distractor, sharing an attribute
                    assert (run.concept in captions) == (distractors == "captions")
                    assert shares_attribute(run.concept, clip.concept)
    test = [clip.concept for clip in clips if clip.split == "test"]
    assert len(set(test)) == len(test)  # distinct test captions: one right clip per query
    assert len(all_concepts()) == 14 * 9 * 7
    lengths = {clip.video_id: len(clip.relevant_seconds()) for clip in clips}
    ambiguous = benchmark_facts(config, clips, lengths, 0)["ambiguous_queries"]
    assert (ambiguous == 0) == (distractors == "spare")


def test_files_hold_the_planned_features_and_truth(written: tuple[Path, dict]) -> None:
    out, described = written
    assert described["test_queries"] == 20 and described["chance_r1"] == 5.0
    assert described["long_relevant_share_max"] <= 0.25
    long_truth = json.loads((out / "long" / "ground_truth.json").read_text())
    short_truth = json.loads((out / "short" / "ground_truth.json").read_text())
    database = json.loads((out / "long" / YOUCOOK_FILE).read_text())["database"]
    assert len(database) == 50 and set(long_truth) == {f"{v}_0" for v in database}
    for pair, truth in long_truth.items():
        video = truth["video_id"]
        features = np.load(out / "long" / FEATURES / f"{video}.npy")
        assert features.shape == (int(database[video]["duration"]), EMBEDDING_DIM)
        assert features.dtype == np.float16
        np.testing.assert_allclose(
            np.linalg.norm(features.astype(np.float32), axis=1), 1, atol=3e-3
        )
        short = np.load(out / "short" / FEATURES / f"{video}.npy")
        np.testing.assert_array_equal(short, features[truth["seconds"]])  # cut, not redrawn
        assert short_truth[pair]["seconds"] == list(range(len(short)))


def test_relevant_seconds_are_closer_to_the_caption_concept(written: tuple[Path, dict]) -> None:
    """The features carry the truth: relevant seconds lie nearer each other than distractors."""
    out, _ = written
    for truth in json.loads((out / "long" / "ground_truth.json").read_text()).values():
        features = np.load(out / "long" / FEATURES / f"{truth['video_id']}.npy").astype(np.float32)
        relevant = np.zeros(len(features), bool)
        relevant[truth["seconds"]] = True
        centre = features[relevant].mean(axis=0)
        assert (features[relevant] @ centre).mean() > (features[~relevant] @ centre).mean()


def test_adapters_read_every_set(written: tuple[Path, dict]) -> None:
    out, _ = written
    for name in ("long", "short"):
        config = DatasetConfig(
            adapter="youcook2", root="x", annotations=YOUCOOK_FILE, features=FEATURES
        )
        tables = load_dataset(config, out / name)
        assert tables.dropped == {} and len(tables.pairs) == 50
        assert sorted(tables.pairs.split.unique()) == ["train", "val"]
    config = DatasetConfig(adapter="howto100m", root="x", annotations=HOWTO_FILE, features=FEATURES)
    assert len(load_dataset(config, out / "pretrain").videos) == 6


def test_the_same_seed_writes_the_same_files(written: tuple[Path, dict], tmp_path: Path) -> None:
    out, _ = written
    write_benchmark(SMALL, tmp_path)
    for path in sorted(out.rglob("*.*")):
        assert (tmp_path / path.relative_to(out)).read_bytes() == path.read_bytes(), path
    other = dataclasses.replace(SMALL, seed=1)
    assert plan_clips(other)[0].caption != plan_clips(SMALL)[0].caption or (
        plan_clips(other)[0].length != plan_clips(SMALL)[0].length
    )


def test_the_regime_is_checked() -> None:
    with pytest.raises(ValueError, match="max_relevant_share"):
        BenchmarkConfig(min_relevant_seconds=20)  # 20 > 60 × 0.25
    with pytest.raises(ValueError, match="less than or equal to 256"):
        BenchmarkConfig(max_seconds=300)
    with pytest.raises(ValueError, match="at most 882 distinct concepts"):
        plan_clips(BenchmarkConfig(test_clips=900))
