"""The synthetic MSVD- and DiDeMo-format sets (pipeline/synth/msvd.py, synth_didemo.py) and their
wiring into `synthesize`, read back by the real adapters."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from pipeline.config import DatasetConfig, SynthConfig
from pipeline.datasets import didemo, msvd
from pipeline.synth.concepts import CONCEPTS
from pipeline.synth.didemo import ANNOTATORS, chunks_of, plan_didemo
from pipeline.synth.msrvtt import CAPTIONS_PER_VIDEO, plan_msrvtt
from pipeline.synth.msvd import plan_msvd, tokens
from pipeline.synth.render import DatasetSummary, probe
from pipeline.synth.sets import summary_lines, synthesize, synthesize_short_sets

TINY = SynthConfig(
    seed=7, width=32, height=32, fps=4,
    short_videos=5, short_test_videos=2, didemo_videos=4, didemo_test_videos=2,
)  # fmt: skip
SHORT = (TINY.short_videos, TINY.short_test_videos)
DIDEMO = (TINY.didemo_videos, TINY.didemo_test_videos)


@pytest.fixture(scope="module")
def out_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("short")
    summaries = synthesize_short_sets(TINY, out)
    assert list(summaries) == ["msrvtt", "msvd", "didemo"]
    msvd_summary = summaries["msvd"]
    assert isinstance(msvd_summary, DatasetSummary)
    assert (msvd_summary.rendered, msvd_summary.reused) == (0, TINY.short_videos)  # shared
    return out


def msvd_tables(out: Path) -> Any:
    config = DatasetConfig(
        adapter="msvd", root=str(out / "msvd"), annotations="raw-captions.pkl",
        videos="../msrvtt/videos",
    )  # fmt: skip
    return msvd.load(config, out / "msvd")


def didemo_tables(out: Path) -> Any:
    config = DatasetConfig(adapter="didemo", root=str(out / "didemo"), annotations="")
    return didemo.load(config, out / "didemo")


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def test_plans_are_deterministic_for_a_seed() -> None:
    assert plan_msvd(TINY, *SHORT) == plan_msvd(TINY, *SHORT)
    assert plan_didemo(TINY, *DIDEMO) == plan_didemo(TINY, *DIDEMO)
    other = dataclasses.replace(TINY, seed=8)
    assert plan_msvd(other, *SHORT).captions != plan_msvd(TINY, *SHORT).captions
    assert not {p.video_id for p in plan_didemo(other, *DIDEMO).videos} & {
        p.video_id for p in plan_didemo(TINY, *DIDEMO).videos
    }


def test_msvd_files_parse_with_the_adapter(out_dir: Path) -> None:
    tables = msvd_tables(out_dir)
    assert tables.dropped == {}
    msrvtt = plan_msrvtt(TINY, *SHORT)
    assert list(tables.videos["video_id"]) == [p.video_id for p in msrvtt.videos]
    splits = dict(zip(tables.videos["video_id"], tables.videos["split"], strict=True))
    assert {v for v, s in splits.items() if s == "test"} == set(msrvtt.test_ids)
    assert list(splits.values()).count("val") >= 1 and "train" in splits.values()
    pairs = tables.pairs
    assert (pairs.groupby("video_id").size() == CAPTIONS_PER_VIDEO).all()
    assert CAPTIONS_PER_VIDEO >= 5
    sentences = read_json(out_dir / "msrvtt" / "MSRVTT_data.json")["sentences"]
    expected = {}  # the msrvtt captions, tokenised: "<video>:<index in the video>" -> text
    for s in sentences:
        index = sum(key.startswith(f"{s['video_id']}:") for key in expected)
        expected[f"{s['video_id']}:{index}"] = " ".join(tokens(s["caption"]))
    assert dict(zip(pairs["pair_id"], pairs["text"], strict=True)) == expected
    assert all(text == text.lower() for text in pairs["text"])
    truth = read_json(out_dir / "msvd" / "ground_truth.json")
    assert set(truth) == set(pairs["pair_id"])
    for pair_id, video in zip(pairs["pair_id"], pairs["video_id"], strict=True):
        assert truth[pair_id]["video_id"] == video and truth[pair_id]["concept"] in CONCEPTS


def test_didemo_files_parse_with_the_adapter(out_dir: Path) -> None:
    tables = didemo_tables(out_dir)
    assert tables.dropped == {}
    plan = plan_didemo(TINY, *DIDEMO)
    ids = [p.video_id for p in plan.videos]
    splits = dict(zip(tables.videos["video_id"], tables.videos["split"], strict=True))
    assert [splits[v] for v in ids] == ["train", "val", "test", "test"]  # test = the last ones
    truth = read_json(out_dir / "didemo" / "ground_truth.json")
    pairs = tables.pairs
    assert set(truth) == set(pairs["pair_id"]) == set(ids)
    for split in ("train", "val", "test"):
        moments = didemo.moment_annotations(out_dir / "didemo", split)
        assert set(moments["video"]) == {v for v in ids if splits[v] == split}
        for video, group in moments.groupby("video"):
            paragraph = pairs.loc[pairs["pair_id"] == video, "text"].item()
            assert paragraph == " ".join(group["description"])
    documents = [read_json(out_dir / "didemo" / f"{s}_data.json") for s in ("train", "val", "test")]
    ids_seen = [m["annotation_id"] for doc in documents for m in doc]
    assert len(ids_seen) == len(set(ids_seen))
    for moment in (m for doc in documents for m in doc):
        assert moment["video"].endswith(".mp4") and moment["num_segments"] == 6
        assert moment["download_link"].startswith("https://")


def test_ground_truth_seconds_lie_inside_the_videos(out_dir: Path) -> None:
    durations = {p.video_id: p.duration for p in plan_msrvtt(TINY, *SHORT).videos}
    durations |= {p.video_id: p.duration for p in plan_didemo(TINY, *DIDEMO).videos}
    folders = {"msvd": out_dir / "msrvtt" / "videos", "didemo": out_dir / "didemo" / "videos"}
    for name, folder in folders.items():
        videos = set()
        for item in read_json(out_dir / name / "ground_truth.json").values():
            duration = durations[item["video_id"]]
            assert item["seconds"] and 0 <= min(item["seconds"]) <= max(item["seconds"]) < duration
            videos.add(item["video_id"])
        for video in videos:  # the rendered files last as long as planned
            found = probe(folder / f"{video}.mp4")
            assert found is not None and abs(found[0] - durations[video]) < 0.5
    assert set(durations[v] for v in read_json(out_dir / "didemo" / "ground_truth.json")) == {30}


def test_didemo_annotators_pick_valid_candidate_moments(out_dir: Path) -> None:
    candidates = set(didemo.candidate_moments())
    plan = plan_didemo(TINY, *DIDEMO)
    for split in ("train", "val", "test"):
        moments = didemo.moment_annotations(out_dir / "didemo", split)
        for times in moments["times"]:
            assert len(times) == ANNOTATORS and set(times) <= candidates
    check_moments(plan)


def test_didemo_plan_shape_over_many_videos() -> None:
    plan = plan_didemo(TINY, 120, 4)  # planning only: nothing is rendered
    assert check_moments(plan) > 0  # some annotators disagree
    for video in plan.videos:
        concept = video.concept_segments()
        assert video.duration == 30 and 2 <= len(concept) <= 4
        assert len({s.concept for s in concept}) == len(concept)
        assert all(s.start % 5 == 0 and s.end % 5 == 0 for s in video.segments)
        assert all(1 <= chunks_of(s)[1] - chunks_of(s)[0] + 1 <= 2 for s in concept)
        assert any(s.concept is None for s in video.segments)  # at least one filler chunk
        seconds = plan.ground_truth[video.video_id]["seconds"]
        assert seconds == [t for s in concept for t in range(s.start, s.end)]


def check_moments(plan: Any) -> int:
    """Each video's moments follow its concept segments: the true (s, e) for all but at most
    one annotator, who is off by one chunk at one end. Returns the number of off annotators."""
    candidates = set(didemo.candidate_moments())
    moments: dict[str, list[dict[str, Any]]] = {}
    for doc in plan.documents.values():
        for moment in doc:
            moments.setdefault(moment["video"].removesuffix(".mp4"), []).append(moment)
    off = 0
    for video in plan.videos:
        segments = video.concept_segments()
        assert len(moments[video.video_id]) == len(segments)
        for moment, seg in zip(moments[video.video_id], segments, strict=True):
            true = chunks_of(seg)
            times = [tuple(t) for t in moment["times"]]
            assert len(times) == ANNOTATORS and set(times) <= candidates
            assert times.count(true) >= ANNOTATORS - 1
            for s, e in times:
                assert (s, e) == true or abs(s - true[0]) + abs(e - true[1]) == 1
                off += (s, e) != true
    return off


def test_unknown_short_set_and_bad_counts_are_rejected_by_the_config() -> None:
    with pytest.raises(ValueError, match=r"short_sets\.1\n.*'msrvtt', 'msvd' or 'didemo'"):
        dataclasses.replace(TINY, short_sets=("msrvtt", "bogus"))
    with pytest.raises(ValueError, match=r"didemo_test_videos <= didemo_videos - 2"):
        dataclasses.replace(TINY, didemo_videos=3, didemo_test_videos=2)
    with pytest.raises(ValueError, match=r"short_test_videos < short_videos, found 5 of"):
        dataclasses.replace(TINY, short_sets=("msvd",), short_test_videos=5)


def test_synthesize_renders_the_named_short_sets(tmp_path: Path) -> None:
    config = dataclasses.replace(
        TINY, pretrain_videos=1, youcook_train_videos=1, youcook_val_videos=1,
        broken_videos=False, min_segments=1, max_segments=1, min_segment_s=1, max_segment_s=2,
        short_sets=("msvd",),
    )  # fmt: skip
    summary = synthesize(config, tmp_path)
    assert list(summary.short) == ["msvd"]
    assert summary.short["msvd"].rendered == TINY.short_videos  # msvd renders msrvtt's videos
    assert not (tmp_path / "msrvtt" / "MSRVTT_data.json").exists()
    assert not (tmp_path / "didemo").exists()
    assert msvd_tables(tmp_path).dropped == {}
    lines = summary_lines(summary)
    assert [line.split()[0] for line in lines] == ["howto100m", "youcook2", "msvd", "total"]
