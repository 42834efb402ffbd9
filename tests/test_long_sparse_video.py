"""The long-sparse benchmark's `video` level: the features level's plan rendered as videos, read by
the real adapters, and run through every stage (decode, S3D-G extract, training, evaluation with
ground truth, report strips)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from pipeline.config import STAGES, DecodeConfig
from pipeline.config.loading import load_config
from pipeline.datasets.synthetic import GROUND_TRUTH_FILE
from pipeline.runner import run_stages
from pipeline.synth.long_sparse import (
    HOWTO_FILE,
    YOUCOOK_FILE,
    benchmark_facts,
    clip_truth,
    howto_documents,
    plan_clips,
    plan_pretrain,
)
from pipeline.synth.long_sparse_video import FACTS_FILE, SHORT_FOLDER
from pipeline.synth.render import probe
from pipeline.synth.sets import SynthSummary, summary_lines, synthesize
from pipeline.video.decoders import iter_clips
from pipeline.video.probe import probe_video
from storage.layout import expand_path

BENCH = "{train_clips: 3, test_clips: 2, min_seconds: 24, max_seconds: 30, pretrain_videos: 2}"
OVERRIDES = [f"synth.long_sparse={BENCH}", "synth.short_sets=[]", "model.max_video_len=30"]
CONFIG = load_config("tiny", OVERRIDES)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SynthSummary]:
    root = tmp_path_factory.mktemp("long-sparse-video")
    return root, synthesize(CONFIG.synth, expand_path(CONFIG.synth.out_dir, root))


def read(path: Path) -> dict:
    return json.loads(path.read_text())


def test_the_videos_are_the_features_levels_plan(rendered: tuple[Path, SynthSummary]) -> None:
    _, summary = rendered
    bench = CONFIG.synth.long_sparse
    assert bench is not None
    clips = plan_clips(bench)
    long_truth, short_truth = clip_truth(clips)
    youcook = summary.youcook2.root
    database = read(youcook / YOUCOOK_FILE)["database"]
    broken = read(youcook / "broken.json")
    damaged = {video for videos in broken.values() for video in videos}
    assert len(damaged) == 2 and all(database[v]["subset"] == "training" for v in damaged)
    truth = read(youcook / GROUND_TRUTH_FILE)
    assert {k: v for k, v in truth.items() if v["video_id"] not in damaged} == long_truth
    for clip in clips:
        entry = database[clip.video_id]
        assert entry["annotations"] == [
            {"id": 0, "segment": [0, clip.length], "sentence": clip.caption}
        ]
        duration, _ = probe(youcook / "videos" / f"{clip.video_id}.mp4")
        assert duration == pytest.approx(clip.length, abs=0.01)
        short = summary.youcook2_short
        assert short is not None
        duration, _ = probe(short.root / "videos" / f"{clip.video_id}.mp4")
        assert duration == pytest.approx(len(clip.relevant_seconds()), abs=0.01)
    assert summary.youcook2_short is not None and summary.youcook2_short.root.name == SHORT_FOLDER
    assert read(summary.youcook2_short.root / GROUND_TRUTH_FILE) == short_truth
    captions, howto_truth = howto_documents(plan_pretrain(bench))
    assert read(summary.howto100m.root / HOWTO_FILE) == captions
    assert read(summary.howto100m.root / GROUND_TRUTH_FILE) == howto_truth
    lengths = {c.video_id: len(c.relevant_seconds()) for c in clips}
    facts = {"level": "video", **benchmark_facts(bench, clips, lengths, len(captions))}
    assert read(summary.out_dir / FACTS_FILE) == json.loads(json.dumps(facts))
    assert summary.long_sparse == facts
    assert any(
        line.strip().startswith("long-sparse  2 test clips") for line in summary_lines(summary)
    )


def test_a_short_second_shows_what_the_long_clips_relevant_second_shows(
    rendered: tuple[Path, SynthSummary],
) -> None:
    """Same source, same seed: the short video's seconds are the long clip's relevant seconds
    (up to compression), and unlike its distractor seconds."""
    _, summary = rendered
    assert summary.youcook2_short is not None
    decode = DecodeConfig(frames_per_second=4, size=32)
    for pair, truth in read(summary.youcook2.root / GROUND_TRUTH_FILE).items():
        long_path = summary.youcook2.root / "videos" / f"{truth['video_id']}.mp4"
        short_path = summary.youcook2_short.root / "videos" / f"{truth['video_id']}.mp4"
        if not short_path.exists():  # a damaged training video has no short copy
            continue
        long = np.stack(list(iter_clips(long_path, probe_video(long_path), decode)))
        short = np.stack(list(iter_clips(short_path, probe_video(short_path), decode)))
        long, short = long.astype(np.float32), short.astype(np.float32)  # (K, F, S, S, 3)
        relevant = truth["seconds"]
        others = [s for s in range(len(long)) if s not in relevant]
        same = np.abs(short - long[relevant]).mean(axis=(1, 2, 3, 4))  # (R,)
        for index, second in enumerate(relevant):
            other = np.abs(long[others] - long[second]).mean(axis=(1, 2, 3, 4)).min()
            assert same[index] < min(4.0, other), (pair, second, same[index], other)


def test_every_stage_runs_on_the_video_level(rendered: tuple[Path, SynthSummary]) -> None:
    root, summary = rendered
    results = run_stages(CONFIG, STAGES, root)
    assert results["youcook2"]["decode"].info.status_counts == {
        "ok": 5,
        "failed": 1,
        "truncated": 1,
    }
    metrics = json.loads(results["fineco"]["evaluate"].output("metrics").read_text())
    assert metrics["frame_precision"]["pairs"] == 2  # both test clips, scored against the truth
    share = summary.long_sparse["long_relevant_share_mean"]  # type: ignore[index]
    assert metrics["frame_precision"]["random_expectation"] == pytest.approx(share)
    report = results["report"]["report"].output("report").read_text()
    assert re.findall(r"seconds \d+–\d+ \(clip of (\d+) s\)", report) == ["24", "29"]
    assert len(re.findall(r"its top \d+ seconds: \d+ relevant", report)) == 2
