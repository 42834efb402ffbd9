"""The synthetic MSR-VTT-format set (pipeline/synth/msrvtt.py), read back by its adapter."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.config import DatasetConfig, SynthConfig
from pipeline.datasets import msrvtt, msrvtt_files
from pipeline.synth.concepts import CONCEPTS
from pipeline.synth.msrvtt import (
    CAPTIONS_PER_VIDEO,
    MAX_VIDEO_S,
    MIN_VIDEO_S,
    MOTION_ANSWER,
    TINT_ANSWER,
    MsrvttSummary,
    main_segment,
    plan_msrvtt,
    synthesize_msrvtt,
)
from pipeline.synth.render import probe

TINY = SynthConfig(seed=5, width=48, height=32, fps=4)
VIDEOS, TEST_VIDEOS = 6, 2
JSON_FILES = ("MSRVTT_data.json", "train_qa.json", "val_qa.json", "test_qa.json",
              "ground_truth.json")  # fmt: skip
CSV_FILES = ("MSRVTT_train.9k.csv", "MSRVTT_JSFUSION_test.csv", "MSR_MC_test.csv")


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> MsrvttSummary:
    return synthesize_msrvtt(TINY, tmp_path_factory.mktemp("msrvtt"), VIDEOS, TEST_VIDEOS)


def test_adapter_loads_the_set(synth: MsrvttSummary) -> None:
    config = DatasetConfig(adapter="msrvtt", root=str(synth.root))
    tables = msrvtt.load(config, synth.root)
    assert tables.dropped == {}
    assert len(tables.videos) == VIDEOS
    pairs = tables.pairs
    train, test = pairs[pairs["split"] == "train"], pairs[pairs["split"] == "test"]
    n_train = VIDEOS - TEST_VIDEOS
    assert len(train) == n_train * CAPTIONS_PER_VIDEO == synth.train_pairs
    assert len(test) == TEST_VIDEOS == synth.test_pairs
    assert set(test["pair_id"]) == {f"ret{i}" for i in range(TEST_VIDEOS)}
    assert set(test["video_id"]) == {f"video{n}" for n in range(n_train, VIDEOS)}
    truth = json.loads((synth.root / "ground_truth.json").read_text())
    retrieval_truth = {key for key in truth if not key.startswith(("mc", "qa"))}
    assert retrieval_truth == set(pairs["pair_id"])
    for pair_id, video in zip(pairs["pair_id"], pairs["video_id"], strict=True):
        assert truth[pair_id]["video_id"] == video
        assert truth[pair_id]["concept"] in CONCEPTS


def test_videos_are_short_and_mostly_captioned(synth: MsrvttSummary) -> None:
    plan = plan_msrvtt(TINY, VIDEOS, TEST_VIDEOS)
    truth = json.loads((synth.root / "ground_truth.json").read_text())
    for video in plan.videos:
        assert MIN_VIDEO_S <= video.duration <= MAX_VIDEO_S
        assert 1 <= len(video.concept_segments()) <= 2
        found = probe(synth.root / "videos" / f"{video.video_id}.mp4")
        assert found is not None and abs(found[0] - video.duration) < 0.5
    for item in truth.values():
        duration = next(p.duration for p in plan.videos if p.video_id == item["video_id"])
        assert item["seconds"] == list(range(item["seconds"][0], item["seconds"][-1] + 1))
        assert item["seconds"][-1] < duration
    # One-concept videos (most of them) are covered but for at most one second of filler.
    for video in plan.videos:
        if len(video.concept_segments()) == 1:
            seg = main_segment(video)
            assert seg.end - seg.start >= video.duration - 1


def test_multiple_choice_points_at_the_true_caption(synth: MsrvttSummary) -> None:
    mc = msrvtt_files.load_multiple_choice(synth.root / "MSR_MC_test.csv")
    assert len(mc) == TEST_VIDEOS == synth.mc_rows
    jsfusion = {video: text for _, video, text in
                msrvtt_files.read_jsfusion(synth.root / "MSRVTT_JSFUSION_test.csv")}  # fmt: skip
    for video, candidates, answer in zip(
        mc["video_id"], mc["candidates"], mc["answer"], strict=True
    ):
        assert len(candidates) == 5
        assert candidates[answer] == jsfusion[video]
        assert candidates.count(jsfusion[video]) == 1


def test_qa_vocabulary_covers_the_answers(synth: MsrvttSummary) -> None:
    table, vocabulary, coverage = msrvtt_files.load_qa(synth.root)
    assert vocabulary and coverage == 1.0
    assert set(table["answer"]) <= set(TINT_ANSWER.values()) | set(MOTION_ANSWER.values())
    counts = table["split"].value_counts().to_dict()
    assert counts == {split: n for split, n in synth.qa.items() if n}
    assert all(n > 0 for n in synth.qa.values())
    assert table["id"].is_unique
    test_videos = {f"video{n}" for n in range(VIDEOS - TEST_VIDEOS, VIDEOS)}
    assert set(table.loc[table["split"] == "test", "video_id"]) == test_videos


def test_same_seed_writes_identical_files(synth: MsrvttSummary, tmp_path: Path) -> None:
    for name in (*JSON_FILES, *CSV_FILES):
        again = plan_msrvtt(TINY, VIDEOS, TEST_VIDEOS)
        written = (synth.root / name).read_text()
        if name in again.documents:
            assert json.loads(written) == again.documents[name]
        else:
            assert written == again.tables[name]
    other = plan_msrvtt(SynthConfig(seed=6, width=48, height=32, fps=4), VIDEOS, TEST_VIDEOS)
    assert other.documents["MSRVTT_data.json"] != json.loads(
        (synth.root / "MSRVTT_data.json").read_text()
    )


def test_rerun_reuses_the_videos(synth: MsrvttSummary) -> None:
    before = {n: (synth.root / n).read_bytes() for n in (*JSON_FILES, *CSV_FILES)}
    again = synthesize_msrvtt(TINY, synth.root.parent, VIDEOS, TEST_VIDEOS)
    assert again.rendered == 0 and again.reused == VIDEOS
    assert {n: (synth.root / n).read_bytes() for n in before} == before


def test_bad_sizes_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="test_videos"):
        plan_msrvtt(TINY, 3, 3)


def test_ground_truth_covers_mc_rows_and_questions() -> None:
    from pipeline.config import SynthConfig
    from pipeline.synth.msrvtt import plan_msrvtt

    plan = plan_msrvtt(SynthConfig(), videos=6, test_videos=2)
    truth = plan.documents["ground_truth.json"]
    questions = [
        item for split in ("train", "val", "test") for item in plan.documents[f"{split}_qa.json"]
    ]
    assert {f"mc{i}" for i in range(2)} <= set(truth)
    assert {f"qa{item['id']}" for item in questions} <= set(truth)
    for item in questions:
        assert truth[f"qa{item['id']}"]["video_id"] == f"video{item['video_id']}"
    assert truth["mc0"] == truth["ret0"]
