"""MSVD and DiDeMo adapters on tiny fixtures in the real formats (videoclip-facts §2.6, §2.7),
and the DiDeMo 21-moment helpers and LocalizingMoments rank metrics on hand-computed cases."""

from __future__ import annotations

import collections
import json
import pickle
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from pipeline.config import DatasetConfig
from pipeline.datasets import didemo, msvd
from pipeline.datasets.tables import PAIR_COLUMNS, VIDEO_COLUMNS, AnnotationError


def _touch(folder: Path, *names: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"not really a video")


def _config(adapter: str, annotations: str = "") -> DatasetConfig:
    return DatasetConfig(adapter=adapter, root=".", annotations=annotations)


# ---------------------------------------------------------------- MSVD


MSVD_CAPTIONS: dict[str, Any] = {
    "-4wsuPCjDBc_5_15": [["a", "man", "cooks"], ["someone", "is", "cooking"]],
    "vidB_1_9": [["a", "cat", "plays"]],
    "vidC_0_4": [["no", "file", "here"]],
    "vidD_0_3": [],
}


def _msvd(root: Path, captions: Any = None, raw: bytes | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    data = raw if raw is not None else pickle.dumps(MSVD_CAPTIONS if captions is None else captions)
    (root / "raw-captions.pkl").write_bytes(data)
    (root / "train_list.txt").write_text("-4wsuPCjDBc_5_15\nvidC_0_4\n\n")
    (root / "val_list.txt").write_text("vidB_1_9\n")
    (root / "test_list.txt").write_text("vidD_0_3\nvidE_2_7\n")
    _touch(root / "videos", "-4wsuPCjDBc_5_15.avi", "vidB_1_9.avi", "extra.avi")
    return root


def test_msvd_pairs_per_caption(tmp_path: Path) -> None:
    root = _msvd(tmp_path / "msvd")
    tables = msvd.load(_config("msvd"), root)
    assert list(tables.videos.columns) == VIDEO_COLUMNS
    assert list(tables.pairs.columns) == PAIR_COLUMNS
    assert tables.videos.video_id.tolist() == ["-4wsuPCjDBc_5_15", "vidB_1_9"]
    assert tables.videos.split.tolist() == ["train", "val"]
    pairs = tables.pairs
    assert pairs.pair_id.tolist() == ["-4wsuPCjDBc_5_15:0", "-4wsuPCjDBc_5_15:1", "vidB_1_9:0"]
    assert pairs.text.tolist() == ["a man cooks", "someone is cooking", "a cat plays"]
    assert pairs.split.tolist() == ["train", "train", "val"]
    assert (pairs.start_s == 0.0).all() and (pairs.end_s == msvd.WHOLE_VIDEO_END_S).all()
    assert tables.dropped == {
        "missing_video_file": 1,
        "missing_video_file_pairs": 1,
        "no_annotations": 1,
        "listed_without_captions": 1,
        "unannotated_video_file": 1,
    }
    assert [p.name for p in msvd.annotation_files(_config("msvd"), root)] == [
        "raw-captions.pkl",
        "train_list.txt",
        "val_list.txt",
        "test_list.txt",
    ]


@pytest.mark.parametrize(
    ("captions", "record", "field"),
    [
        (["not", "a", "dict"], "top level", "<file>"),
        ({"vidB_1_9": "a cat plays"}, "video 'vidB_1_9'", "<captions>"),
        ({"vidB_1_9": [["a", 3]]}, "video 'vidB_1_9' caption 0", "token 1"),
        ({"vidB_1_9": [["ok"], []]}, "video 'vidB_1_9' caption 1", "<tokens>"),
        ({7: [["a"]]}, "key 7", "<key>"),
    ],
)
def test_msvd_malformed(tmp_path: Path, captions: Any, record: str, field: str) -> None:
    root = _msvd(tmp_path / "msvd", captions=captions)
    with pytest.raises(AnnotationError) as caught:
        msvd.load(_config("msvd"), root)
    assert caught.value.file == root / "raw-captions.pkl"
    assert (caught.value.record, caught.value.field) == (record, field)
    assert "raw-captions.pkl" in str(caught.value) and record in str(caught.value)


@pytest.mark.parametrize(
    "raw", [pickle.dumps(collections.OrderedDict(a=[["x"]])), b"garbage, not a pickle"]
)
def test_msvd_refuses_globals_and_garbage(tmp_path: Path, raw: bytes) -> None:
    root = _msvd(tmp_path / "msvd", raw=raw)
    with pytest.raises(AnnotationError) as caught:
        msvd.load(_config("msvd"), root)
    assert (caught.value.record, caught.value.field) == ("top level", "<file>")


def test_msvd_video_in_two_lists(tmp_path: Path) -> None:
    root = _msvd(tmp_path / "msvd")
    (root / "test_list.txt").write_text("vidB_1_9\n")
    with pytest.raises(AnnotationError) as caught:
        msvd.load(_config("msvd"), root)
    assert caught.value.file == root / "test_list.txt"
    assert caught.value.record == "line 1"


def test_msvd_all_video_descriptions_txt_gives_the_pickles_tables(tmp_path: Path) -> None:
    """The corpus's own text file (with its comment header and blank lines) reads into the
    same tables as the pickle of the same captions."""
    root = _msvd(tmp_path / "msvd")
    lines = ["# MSVD descriptions, one per line", "#", ""]
    lines += [f"{v} {' '.join(c)}" for v, caps in MSVD_CAPTIONS.items() for c in caps]
    (root / "AllVideoDescriptions.txt").write_text("\n".join(lines) + "\n")
    from_pickle = msvd.load(_config("msvd"), root)
    from_text = msvd.load(_config("msvd", "AllVideoDescriptions.txt"), root)
    pd.testing.assert_frame_equal(from_text.pairs, from_pickle.pairs)
    pd.testing.assert_frame_equal(from_text.videos, from_pickle.videos)
    assert msvd.annotation_files(_config("msvd", "AllVideoDescriptions.txt"), root)[0].name == (
        "AllVideoDescriptions.txt"
    )


@pytest.mark.parametrize(
    ("text", "record"),
    [("vidB_1_9 a cat\nlonely_id\n", "line 2"), ("# only a header\n", "top level")],
)
def test_msvd_all_video_descriptions_errors_name_the_line(
    tmp_path: Path, text: str, record: str
) -> None:
    root = _msvd(tmp_path / "msvd")
    (root / "AllVideoDescriptions.txt").write_text(text)
    with pytest.raises(AnnotationError) as raised:
        msvd.load(_config("msvd", "AllVideoDescriptions.txt"), root)
    assert raised.value.record == record and raised.value.file.name == "AllVideoDescriptions.txt"


# ---------------------------------------------------------------- DiDeMo


def _record(annotation_id: int, video: str, description: str, times: Any = None) -> dict:
    return {
        "annotation_id": annotation_id,
        "description": description,
        "video": video,
        "times": times if times is not None else [[0, 0], [0, 1], [0, 0], [1, 1]],
        "download_link": "https://example.org/" + video,
        "num_segments": 6,
    }


def _didemo(root: Path, train: list | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    if train is None:
        train = [
            _record(1, "vid1.mov", "a dog runs"),
            _record(2, "vid2.mp4", "a car"),
            _record(3, "vid1.mov", "the dog jumps "),
            _record(4, "vid1.mov", "a dog runs"),
        ]
    val = [_record(5, "vid3.mov", "a bird", [[2, 3]] * 4)]
    test = [_record(6, "vid4.avi", "nobody has this video")]
    for split, data in (("train", train), ("val", val), ("test", test)):
        (root / f"{split}_data.json").write_text(json.dumps(data))
    _touch(root / "videos", "vid1.mp4", "vid2.mp4", "vid3.mp4")
    return root


def test_didemo_paragraph_pairs(tmp_path: Path) -> None:
    root = _didemo(tmp_path / "didemo")
    tables = didemo.load(_config("didemo"), root)
    assert tables.videos.video_id.tolist() == ["vid1", "vid2", "vid3"]
    assert tables.videos.split.tolist() == ["train", "train", "val"]
    pairs = tables.pairs
    assert list(pairs.columns) == PAIR_COLUMNS
    assert pairs.pair_id.tolist() == ["vid1", "vid2", "vid3"]
    assert pairs.text.tolist() == ["a dog runs the dog jumps", "a car", "a bird"]
    assert pairs.split.tolist() == ["train", "train", "val"]
    assert (pairs.start_s == 0.0).all() and (pairs.end_s == didemo.WHOLE_VIDEO_END_S).all()
    assert tables.dropped == {"missing_video_file": 1, "missing_video_file_pairs": 1}


@pytest.mark.parametrize(
    ("video", "expected"),
    [
        ("a.mov", "a"),
        ("a.MP4", "a"),
        ("3659@N08_50_f5.3g2", "3659@N08_50_f5"),
        ("a.m2ts", "a"),
        ("a.mts", "a"),
        ("a.", "a"),
        ("a", "a"),
        ("sub.dir/a.avi", "sub.dir/a"),
        (".hidden", ".hidden"),
    ],
)
def test_didemo_ids_drop_any_extension_and_a_bare_dot(video: str, expected: str) -> None:
    assert didemo.video_id_of(video) == expected


def test_didemo_reads_real_names_and_any_subset_of_split_files(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The public repository has val and test only; its names end in .mts, .3g2, .m2ts or a
    bare dot; a video listed under two names is one video, with a warning."""
    root = tmp_path / "didemo"
    root.mkdir()
    val = [
        _record(1, "cam.mts", "a boat"),
        _record(2, "phone.3g2", "a cat"),
        _record(3, "phone.mp4", "the cat sleeps"),
        _record(4, "odd.", "a kite"),
    ]
    test = [_record(5, "disc.m2ts", "a train")]
    (root / "val_data.json").write_text(json.dumps(val))
    (root / "test_data.json").write_text(json.dumps(test))
    _touch(root / "videos", "cam.mts", "phone.mp4", "odd.mp4", "disc.m2ts")
    config = _config("didemo")
    assert didemo.annotation_files(config, root) == [
        root / "val_data.json",
        root / "test_data.json",
    ]
    with caplog.at_level("WARNING", logger="pipeline.datasets.didemo"):
        tables = didemo.load(config, root)
    assert tables.dropped == {}
    assert tables.pairs.pair_id.tolist() == ["cam", "disc", "odd", "phone"]
    assert tables.pairs.split.tolist() == ["val", "test", "val", "val"]
    assert tables.pairs.text.tolist()[3] == "a cat the cat sleeps"
    assert "'phone' is listed as phone.3g2 and phone.mp4" in caplog.text


def test_didemo_an_annotation_id_twice_is_an_error_naming_both(tmp_path: Path) -> None:
    root = _didemo(
        tmp_path / "didemo", train=[_record(1, "vid1.mov", "a"), _record(5, "vid2.mp4", "b")]
    )
    with pytest.raises(AnnotationError) as raised:  # 5 is also val's first annotation
        didemo.load(_config("didemo"), root)
    assert raised.value.file.name == "val_data.json" and raised.value.field == "annotation_id"
    assert "also annotation 1 of train_data.json" in str(raised.value)


def test_didemo_without_any_split_file_names_them(tmp_path: Path) -> None:
    (tmp_path / "videos").mkdir()
    with pytest.raises(FileNotFoundError, match=r"none of train_data\.json, val_data\.json, test"):
        didemo.load(_config("didemo"), tmp_path)
    assert len(didemo.annotation_files(_config("didemo"), tmp_path)) == 3


def test_didemo_moment_annotations(tmp_path: Path) -> None:
    root = _didemo(tmp_path / "didemo")
    frame = didemo.moment_annotations(root, "val")
    assert list(frame.columns) == ["annotation_id", "video", "description", "times"]
    assert frame.annotation_id.tolist() == [5]
    assert frame.video.tolist() == ["vid3"]
    assert frame.times.tolist() == [[(2, 3)] * 4]
    with pytest.raises(ValueError):
        didemo.moment_annotations(root, "dev")


@pytest.mark.parametrize(
    ("record", "field", "expected_record"),
    [
        ({"annotation_id": 9, "video": "v.mov", "times": [[0, 0]]}, "description", "annotation 1"),
        (_record(9, "v.mov", "x", [[2, 6]]), "times", "annotation 1 (id 9)"),
        (_record(9, "v.mov", "x", [[3, 2]]), "times", "annotation 1 (id 9)"),
        (_record(9, "v.mov", "x", [[1]]), "times", "annotation 1 (id 9)"),
        (_record(9, "v.mov", "x", []), "times", "annotation 1 (id 9)"),
        (_record(9, "v.mov", ""), "description", "annotation 1 (id 9)"),
        # vid3 is also in val_data.json: the error names the later file's record
        (_record(9, "vid3.mov", "x"), "video", "val_data.json: annotation 0 (id 5)"),
    ],
)
def test_didemo_malformed(tmp_path: Path, record: dict, field: str, expected_record: str) -> None:
    root = _didemo(tmp_path / "didemo", train=[_record(1, "vid1.mov", "ok"), record])
    with pytest.raises(AnnotationError) as caught:
        didemo.load(_config("didemo"), root)
    error = caught.value
    name, _, expected_record = expected_record.rpartition(": ")
    assert error.file == root / (name or "train_data.json")
    assert (error.field, error.record) == (field, expected_record)
    assert str(error.file) in str(error) and expected_record in str(error)


def test_didemo_top_level_not_list(tmp_path: Path) -> None:
    root = _didemo(tmp_path / "didemo")
    (root / "val_data.json").write_text('{"a": 1}')
    with pytest.raises(AnnotationError) as caught:
        didemo.load(_config("didemo"), root)
    assert caught.value.file == root / "val_data.json"


# ---------------------------------------------------------------- moment helpers and metrics


def test_candidate_moments() -> None:
    moments = didemo.candidate_moments()
    assert len(moments) == 21 == len(set(moments))
    assert moments[:6] == [(s, s) for s in range(6)]
    assert moments[6:11] == [(0, 1), (0, 2), (0, 3), (0, 4), (0, 5)]
    assert moments[-1] == (4, 5)
    assert all(0 <= s <= e <= 5 for s, e in moments)


def test_moment_seconds_and_iou() -> None:
    assert didemo.moment_seconds(0, 0) == (0.0, 5.0)
    assert didemo.moment_seconds(2, 3) == (10.0, 20.0)
    assert didemo.moment_seconds(0, 5) == (0.0, 30.0)
    assert didemo.moment_iou((2, 3), (2, 3)) == 1.0
    assert didemo.moment_iou((0, 1), (1, 3)) == pytest.approx(1 / 4)
    assert didemo.moment_iou((1, 4), (2, 3)) == pytest.approx(2 / 4)
    assert didemo.moment_iou((2, 2), (2, 3)) == pytest.approx(1 / 2)
    assert didemo.moment_iou((0, 0), (2, 2)) == 0.0


def _scores(order: list[tuple[int, int]]) -> list[float]:
    """21 scores ranking `order` first (in that order), then the rest in candidate order."""
    candidates = didemo.candidate_moments()
    scores = [-float(i) for i in range(21)]  # default: candidate order
    for rank, moment in enumerate(order):
        scores[candidates.index(moment)] = 100.0 - rank
    return scores


def test_rank_metrics_perfect_agreeing() -> None:
    metrics = didemo.rank_metrics([_scores([(2, 3)])], [[(2, 3)] * 4])
    assert metrics == {"rank@1": 1.0, "rank@5": 1.0, "mIoU": 1.0}


def test_rank_metrics_hand_computed() -> None:
    # Annotation A: gold (2,2),(2,2),(2,3),(0,0); ranking (2,2), (2,3), then (0,0) third.
    #   ranks 1,1,2,3 → best three 1,1,2 → avg 4/3: rank@1 miss, rank@5 hit.
    #   top-1 (2,2): IoUs 1, 1, 1/2, 0 → best three mean 5/6.
    # Annotation B: all gold (2,3), ranked first → avg rank 1, IoU 1.
    # Annotation C: all gold (5,5) ranked last (21) → misses; top-1 (0,0): IoU 0.
    scores = [_scores([(2, 2), (2, 3)]), _scores([(2, 3)]), _scores([(0, 0)])]
    scores[2][5] = -1000.0  # (5,5) last
    times = [[(2, 2), (2, 2), (2, 3), (0, 0)], [(2, 3)] * 4, [(5, 5)] * 4]
    metrics = didemo.rank_metrics(scores, times)
    assert metrics["rank@1"] == pytest.approx(1 / 3)
    assert metrics["rank@5"] == pytest.approx(2 / 3)
    assert metrics["mIoU"] == pytest.approx((5 / 6 + 1 + 0) / 3)


def test_rank_metrics_disagreeing_rank5_boundary() -> None:
    # Gold ranks 1, 5, 9, 9 → best three 1, 5, 9 → avg 5: a rank@5 hit (<= 5), rank@1 miss.
    order = [(0, 0), (1, 1), (2, 2), (3, 3), (1, 2), (4, 4), (5, 5), (0, 1), (2, 3)]
    times = [(0, 0), (1, 2), (2, 3), (2, 3)]
    metrics = didemo.rank_metrics([_scores(order)], [times])
    assert metrics["rank@1"] == 0.0 and metrics["rank@5"] == 1.0
    # top-1 (0,0): IoUs 1, 0, 0, 0 → best three mean 1/3.
    assert metrics["mIoU"] == pytest.approx(1 / 3)


def test_rank_metrics_ties_keep_candidate_order() -> None:
    metrics = didemo.rank_metrics([[0.0] * 21], [[(0, 0)] * 4])
    assert metrics["rank@1"] == 1.0


def test_rank_metrics_bad_input() -> None:
    with pytest.raises(ValueError):
        didemo.rank_metrics([[0.0] * 20], [[(0, 0)]])
    with pytest.raises(ValueError):
        didemo.rank_metrics([[0.0] * 21], [[(3, 1)]])
    with pytest.raises(ValueError):
        didemo.rank_metrics([[0.0] * 21], [])
