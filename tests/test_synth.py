"""pipeline/synth/ (HowTo100M, YouCookII sets): formats, durations, ground truth, determinism,
broken files."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from pipeline.config import SynthConfig
from pipeline.synth.concepts import CONCEPTS, MOTIONS, PATTERNS, TINTS
from pipeline.synth.howto_youcook import plan_synth
from pipeline.synth.render import Segment, VideoPlan, ffmpeg_command
from pipeline.synth.sets import SynthSummary, synthesize

# Odd, distinct sizes (even where yuv420p needs it) so a swapped width and height cannot pass.
TINY = SynthConfig(
    seed=3,
    width=72,
    height=46,
    fps=5,
    pretrain_videos=3,
    youcook_train_videos=2,
    youcook_val_videos=1,
    min_segments=2,
    max_segments=3,
    min_segment_s=2,
    max_segment_s=4,
    broken_videos=True,
    short_sets=(),  # the short-video sets: tests/test_synth_short.py
)
VIDEO_ID = re.compile(r"^[A-Za-z0-9_-]{11}$")


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> SynthSummary:
    return synthesize(TINY, tmp_path_factory.mktemp("synth"))


def load(path: Path) -> Any:
    return json.loads(path.read_text())


def ffprobe(path: Path, *extra: str) -> dict[str, Any]:
    result = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries",
         "format=duration:stream=codec_type,width,height,r_frame_rate,nb_read_frames",
         *extra, "-of", "json", str(path)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(result.stdout)


def mentions(text: str, words: tuple[str, ...]) -> bool:
    return any(re.search(rf"\b{re.escape(word)}\b", text) for word in words)


def broken_ids(synth: SynthSummary) -> set[str]:
    broken = load(synth.broken)
    return set(broken["truncated"]) | set(broken["corrupt"])


def test_catalog_has_at_least_twelve_distinct_concepts() -> None:
    assert len(CONCEPTS) >= 12
    triples = {(c.pattern, c.tint, c.motion) for c in CONCEPTS.values()}
    assert len(triples) == len(CONCEPTS)
    for name, concept in CONCEPTS.items():
        assert name == concept.name
        assert concept.pattern in PATTERNS and concept.tint in TINTS and concept.motion in MOTIONS
    # A synonym names one attribute value only, so a caption identifies its concept.
    for table in (PATTERNS, TINTS, MOTIONS):
        words = [word for attribute in table.values() for word in attribute.words]
        assert len(words) == len(set(words))


def test_every_concept_and_filler_renders(tmp_path: Path) -> None:
    segments = [Segment(i, i + 1, name, 5) for i, name in enumerate(CONCEPTS)]
    n = len(segments)
    segments += [Segment(n, n + 1, None, 0), Segment(n + 1, n + 2, None, 1)]
    plan = VideoPlan("allConcepts", tuple(segments))
    out = tmp_path / "all.mp4"
    subprocess.run(ffmpeg_command(plan, TINY, out), check=True, capture_output=True)
    assert float(ffprobe(out)["format"]["duration"]) == plan.duration


def test_howto_caption_format(synth: SynthSummary) -> None:
    captions = load(synth.howto100m.annotations)
    assert len(captions) == TINY.pretrain_videos == synth.howto100m.videos
    for vid, entry in captions.items():
        assert VIDEO_ID.match(vid)
        assert set(entry) == {"start", "end", "text"}
        assert len(entry["start"]) == len(entry["end"]) == len(entry["text"]) >= TINY.min_segments
        duration = float(
            ffprobe(synth.howto100m.root / "videos" / f"{vid}.mp4")["format"]["duration"]
        )
        assert entry["start"] == sorted(entry["start"])
        for start, end, text in zip(entry["start"], entry["end"], entry["text"], strict=True):
            assert isinstance(start, float) and isinstance(end, float)
            assert 0.0 <= start < end <= duration
            assert isinstance(text, str) and text == text.lower() and text.strip()


def test_youcook_annotation_format(synth: SynthSummary) -> None:
    database = load(synth.youcook2.annotations)["database"]
    n_videos = TINY.youcook_train_videos + TINY.youcook_val_videos + 2  # + truncated + corrupt
    assert len(database) == n_videos == synth.youcook2.videos
    subsets = [entry["subset"] for entry in database.values()]
    assert subsets.count("validation") == TINY.youcook_val_videos
    assert subsets.count("training") == TINY.youcook_train_videos + 2
    for vid, entry in database.items():
        assert VIDEO_ID.match(vid)
        assert set(entry) == {"duration", "subset", "recipe_type", "video_url", "annotations"}
        assert isinstance(entry["duration"], float) and entry["duration"].is_integer()
        assert isinstance(entry["recipe_type"], str)
        assert entry["video_url"] == f"https://www.youtube.com/watch?v={vid}"
        assert [a["id"] for a in entry["annotations"]] == list(range(len(entry["annotations"])))
        for annotation in entry["annotations"]:
            assert set(annotation) == {"id", "segment", "sentence"}
            start, end = annotation["segment"]
            assert isinstance(start, int) and isinstance(end, int)
            assert 0 <= start < end <= entry["duration"]
            assert isinstance(annotation["sentence"], str) and annotation["sentence"]


def test_durations_sizes_and_audio_match_ffprobe(synth: SynthSummary) -> None:
    database = load(synth.youcook2.annotations)["database"]
    corrupt = set(load(synth.broken)["corrupt"])
    howto_truth = load(synth.howto100m.ground_truth)
    with_audio = 0
    videos = sorted((synth.howto100m.root / "videos").glob("*.mp4"))
    videos += sorted((synth.youcook2.root / "videos").glob("*.mp4"))
    assert len(videos) == synth.howto100m.videos + synth.youcook2.videos
    for path in videos:
        if path.stem in corrupt:
            continue
        info = ffprobe(path)
        duration = float(info["format"]["duration"])
        assert duration.is_integer(), f"{path.name} lasts {duration} s"
        if path.stem in database:
            assert duration == database[path.stem]["duration"]
        else:  # HowTo100M: the last concept second lies inside the video
            last = max(
                max(t["seconds"]) for t in howto_truth.values() if t["video_id"] == path.stem
            )
            assert last < duration
        (video,) = [s for s in info["streams"] if s["codec_type"] == "video"]
        assert (video["width"], video["height"]) == (TINY.width, TINY.height)
        assert video["r_frame_rate"] == f"{TINY.fps}/1"
        with_audio += any(s["codec_type"] == "audio" for s in info["streams"])
    assert with_audio == 1
    seconds = synth.howto100m.video_seconds + synth.youcook2.video_seconds
    assert synth.total_video_seconds == seconds


def test_youcook_ground_truth_lies_inside_the_looser_window(synth: SynthSummary) -> None:
    database = load(synth.youcook2.annotations)["database"]
    truth = load(synth.youcook2.ground_truth)
    keys = {f"{vid}_{a['id']}" for vid, e in database.items() for a in e["annotations"]}
    assert set(truth) == keys
    for key, pair in truth.items():
        vid, index = key.rsplit("_", 1)
        annotation = database[vid]["annotations"][int(index)]
        start, end = annotation["segment"]
        seconds = pair["seconds"]
        assert pair["video_id"] == vid
        assert seconds == list(range(seconds[0], seconds[-1] + 1))
        assert start <= seconds[0] and seconds[-1] < end
        assert len(seconds) < database[vid]["duration"]  # only part of the video is relevant
        concept = CONCEPTS[pair["concept"]]
        sentence = annotation["sentence"]
        assert mentions(sentence, PATTERNS[concept.pattern].words), sentence
        assert mentions(sentence, TINTS[concept.tint].words), sentence
        assert mentions(sentence, MOTIONS[concept.motion].words), sentence


def test_howto_ground_truth_matches_captions(synth: SynthSummary) -> None:
    captions = load(synth.howto100m.annotations)
    truth = load(synth.howto100m.ground_truth)
    keys = {f"{vid}:{i}" for vid, entry in captions.items() for i in range(len(entry["text"]))}
    assert set(truth) == keys
    for key, pair in truth.items():
        vid, index = key.split(":")
        entry = captions[vid]
        start, end = entry["start"][int(index)], entry["end"][int(index)]
        seconds = pair["seconds"]
        assert seconds == list(range(seconds[0], seconds[-1] + 1))
        assert start < seconds[-1] + 1 and seconds[0] < end  # the caption overlaps its concept
        concept = CONCEPTS[pair["concept"]]
        text = entry["text"][int(index)]
        assert mentions(text, PATTERNS[concept.pattern].words), text


def test_plan_is_deterministic_and_written_as_planned(synth: SynthSummary) -> None:
    plan = plan_synth(TINY)
    assert plan == plan_synth(TINY)
    assert load(synth.howto100m.annotations) == plan.howto_captions
    assert load(synth.howto100m.ground_truth) == plan.howto_ground_truth
    assert load(synth.youcook2.annotations) == plan.youcook_annotations
    assert load(synth.youcook2.ground_truth) == plan.youcook_ground_truth
    other = plan_synth(dataclasses.replace(TINY, seed=4))
    assert other.howto_captions != plan.howto_captions
    assert not set(other.youcook_annotations["database"]) & set(
        plan.youcook_annotations["database"]
    )


def test_same_seed_writes_identical_json_and_videos(synth: SynthSummary, tmp_path: Path) -> None:
    again = synthesize(TINY, tmp_path)
    for name in ("caption.json", "ground_truth.json"):
        assert (again.howto100m.root / name).read_bytes() == (
            synth.howto100m.root / name
        ).read_bytes()
    for name in ("youcookii_annotations_trainval.json", "ground_truth.json", "broken.json"):
        assert (again.youcook2.root / name).read_bytes() == (
            synth.youcook2.root / name
        ).read_bytes()
    # Pixels too: every randomised source (noise, life, automata, gradients) is seeded.
    for dataset in ("howto100m", "youcook2"):
        for video in sorted((synth.out_dir / dataset / "videos").glob("*.mp4")):
            assert (again.out_dir / dataset / "videos" / video.name).read_bytes() == (
                video.read_bytes()
            ), f"{dataset}/{video.name} differs between two renders with one seed"


def test_demo_plan_shares_concepts_and_leaves_filler_uncaptioned() -> None:
    plan = plan_synth(SynthConfig())  # planning only: nothing is rendered
    videos = plan.howto_videos + plan.youcook_videos
    uses: dict[str, int] = {}
    for video in videos:
        names = [s.concept for s in video.concept_segments()]
        assert len(names) == len(set(names))  # a concept shows once per video
        assert SynthConfig().min_segments <= len(names) <= SynthConfig().max_segments
        for name in names:
            uses[name] = uses.get(name, 0) + 1
    assert max(uses.values()) >= 3  # concepts recur across videos
    fillers = {(v.video_id, s) for v in videos for s in v.segments if s.concept is None}
    assert fillers
    truth = {**plan.howto_ground_truth, **plan.youcook_ground_truth}
    described = {(t["video_id"], s) for t in truth.values() for s in t["seconds"]}
    filler_seconds = {(vid, s) for vid, seg in fillers for s in range(seg.start, seg.end)}
    assert not described & filler_seconds


def test_broken_files(synth: SynthSummary) -> None:
    broken = load(synth.broken)
    assert len(broken["truncated"]) == len(broken["corrupt"]) == 1
    database = load(synth.youcook2.annotations)["database"]
    for vid in broken_ids(synth):
        assert database[vid]["subset"] == "training" and database[vid]["annotations"]
    (truncated,) = broken["truncated"]
    path = synth.youcook2.root / "videos" / f"{truncated}.mp4"
    info = ffprobe(path, "-count_frames")  # the header still claims the full duration
    assert float(info["format"]["duration"]) == database[truncated]["duration"]
    frames = int(info["streams"][0]["nb_read_frames"])
    assert frames < database[truncated]["duration"] * TINY.fps
    (corrupt,) = broken["corrupt"]
    path = synth.youcook2.root / "videos" / f"{corrupt}.mp4"
    probe = subprocess.run(["ffprobe", "-v", "error", str(path)], capture_output=True, check=False)
    assert probe.returncode != 0
    assert plan_synth(dataclasses.replace(TINY, broken_videos=False)).broken is None


def test_rerun_reuses_videos_and_rerenders_a_damaged_one(synth: SynthSummary) -> None:
    videos = sorted((synth.howto100m.root / "videos").glob("*.mp4"))
    before = {p: p.stat().st_mtime_ns for p in videos}
    again = synthesize(TINY, synth.out_dir)
    assert again.howto100m.rendered == again.youcook2.rendered == 0
    assert {p: p.stat().st_mtime_ns for p in videos} == before
    videos[0].write_bytes(videos[0].read_bytes()[:1000])
    again = synthesize(TINY, synth.out_dir)
    assert (again.howto100m.rendered, again.youcook2.rendered) == (1, 0)
    assert float(ffprobe(videos[0])["format"]["duration"]).is_integer()


def test_config_errors_name_the_field() -> None:
    with pytest.raises(ValueError, match=r"synth\.max_segments: 26 distinct concepts per video"):
        plan_synth(dataclasses.replace(TINY, max_segments=len(CONCEPTS) + 1))
    with pytest.raises(ValueError, match="min_segment_s"):
        dataclasses.replace(TINY, min_segment_s=0)
