"""Tests for storage/shards.py: round trips, abort, errors, fork safety and a SIGKILLed writer."""

from __future__ import annotations

import multiprocessing
import os
import re
import select
import signal
import subprocess
import sys
import time
from multiprocessing.queues import Queue
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from storage.atomic import remove_stale_temporaries
from storage.digests import file_digest
from storage.shards import (
    FeatureShardReader,
    FeatureShardWriter,
    FrameShardReader,
    FrameShardWriter,
    ShardFormatError,
)

ROOT = Path(__file__).resolve().parents[1]
CHILD = Path(__file__).with_name("shard_writer_child.py")
FRAMES_PER_SECOND = 5  # F; odd, distinct sizes so a swapped axis cannot pass
SIZE = 7  # S
DIM = 37  # D
ATTRS = {"decoder": "ffmpeg", "seed": 3, "scale": 0.5, "flag": True, "crop": [7, 7], "extra": None}


def random_clips(seconds: int, seed: int) -> np.ndarray:
    shape = (seconds, FRAMES_PER_SECOND, SIZE, SIZE, 3)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)  # (n, F, S, S, 3)


def random_rows(rows: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((rows, DIM)).astype(np.float32)  # (k, D)


def write_frames(path: Path, videos: dict[str, np.ndarray]) -> str:
    with FrameShardWriter(path, FRAMES_PER_SECOND, SIZE, attrs=ATTRS) as writer:
        for video_id, clips in videos.items():
            writer.begin_video(video_id)
            for clip in clips:
                writer.append_second(clip)
            assert writer.end_video() == len(clips)
        return writer.commit()


def write_features(path: Path, videos: dict[str, np.ndarray]) -> str:
    with FeatureShardWriter(path, dim=DIM, attrs=ATTRS) as writer:
        for video_id, rows in videos.items():
            writer.add(video_id, rows)
        return writer.commit()


@pytest.fixture()
def frame_videos() -> dict[str, np.ndarray]:
    return {"youtube/a/one.mp4": random_clips(4, seed=1), "vidéo 2": random_clips(9, seed=2)}


@pytest.fixture()
def feature_videos() -> dict[str, np.ndarray]:
    # 300 rows cross a (256, D) chunk boundary
    return {"x/1": random_rows(3, 1), "x/2": random_rows(300, 2), "x/3": random_rows(1, 3)}


def test_frame_round_trip(tmp_path: Path, frame_videos: dict[str, np.ndarray]) -> None:
    path = tmp_path / "frames-00000.h5"
    digest = write_frames(path, frame_videos)
    assert digest == file_digest(path)
    assert [entry.name for entry in tmp_path.iterdir()] == [path.name]  # no temporary left
    with FrameShardReader(path) as reader:
        assert reader.video_ids == list(frame_videos)
        assert (reader.frames_per_second, reader.size) == (FRAMES_PER_SECOND, SIZE)
        assert reader.attrs == {
            **ATTRS,
            "frames_per_second": FRAMES_PER_SECOND,
            "size": SIZE,
            "format_version": 1,
            "shard_kind": "frames",
        }
        for video_id, clips in frame_videos.items():
            assert reader.n_seconds(video_id) == len(clips)
            np.testing.assert_array_equal(reader.clips(video_id), clips)
        middle = reader.clips("vidéo 2", 3, 6)  # (3, F, S, S, 3)
        assert middle.dtype == np.uint8
        np.testing.assert_array_equal(middle, frame_videos["vidéo 2"][3:6])
        with pytest.raises(IndexError, match="vidéo 2"):
            reader.clips("vidéo 2", 5, 10)
    with h5py.File(path, "r") as file:  # one chunk per second, resizable along seconds
        clips = file["clips/000001"]
        assert clips.chunks == (1, FRAMES_PER_SECOND, SIZE, SIZE, 3)
        assert clips.maxshape == (None, FRAMES_PER_SECOND, SIZE, SIZE, 3)
        assert list(file["n_seconds"][()]) == [4, 9]


def test_fresh_readers_answer_lengths_first(
    tmp_path: Path, frame_videos: dict[str, np.ndarray], feature_videos: dict[str, np.ndarray]
) -> None:
    """n_seconds may be the first call on a reader (it opens the file itself)."""
    write_frames(tmp_path / "frames.h5", frame_videos)
    write_features(tmp_path / "features.h5", feature_videos)
    with FrameShardReader(tmp_path / "frames.h5") as reader:
        assert reader.n_seconds("vidéo 2") == 9
    with FeatureShardReader(tmp_path / "features.h5") as reader:
        assert reader.n_seconds("x/2") == 300


def test_frame_discard_and_empty_video(tmp_path: Path) -> None:
    path = tmp_path / "frames-00001.h5"
    with FrameShardWriter(path, FRAMES_PER_SECOND, SIZE) as writer:
        writer.begin_video("broken")
        writer.append_second(random_clips(1, seed=0)[0])
        writer.discard_video()  # its decode failed half-way
        writer.begin_video("empty")
        with pytest.raises(ValueError, match="'empty' has no seconds"):
            writer.end_video()
        writer.begin_video("broken")  # a discarded id is free again
        writer.append_second(random_clips(1, seed=1)[0])
        writer.end_video()
        writer.commit()
    with FrameShardReader(path) as reader:
        assert reader.video_ids == ["broken"]
        np.testing.assert_array_equal(reader.clips("broken"), random_clips(1, seed=1))


def test_append_second_validates(tmp_path: Path) -> None:
    with FrameShardWriter(tmp_path / "frames-00002.h5", FRAMES_PER_SECOND, SIZE) as writer:
        clip = random_clips(1, seed=0)[0]  # (F, S, S, 3)
        with pytest.raises(RuntimeError, match="no video begun"):
            writer.append_second(clip)
        writer.begin_video("v")
        with pytest.raises(ValueError, match=r"video 'v'.*uint8.*\(5, 7, 7, 3\).*float32"):
            writer.append_second(clip.astype(np.float32))
        with pytest.raises(ValueError, match=r"got uint8 \(5, 7, 3, 7\)"):
            writer.append_second(clip.transpose(0, 1, 3, 2))


def test_feature_round_trip(tmp_path: Path, feature_videos: dict[str, np.ndarray]) -> None:
    path = tmp_path / "features-00000.h5"
    digest = write_features(path, feature_videos)
    assert digest == file_digest(path)
    with h5py.File(path, "r") as file:
        assert file["feats"].dtype == np.float16
        assert file["feats"].chunks == (256, DIM)
        assert file["feats"].compression is None
        assert list(file["offsets"][()]) == [0, 3, 303, 304]
        assert list(file["ids"].asstr()[()]) == ["x/1", "x/2", "x/3"]
    with FeatureShardReader(path) as reader:
        assert reader.video_ids == list(feature_videos)
        assert reader.dim == DIM
        assert reader.attrs["seed"] == 3 and reader.attrs["crop"] == [7, 7]
        for position, (video_id, rows) in enumerate(feature_videos.items()):
            assert reader.row(video_id) == position
            assert reader.n_seconds(video_id) == len(rows)
            stored = reader.features(video_id)  # (k, D)
            assert stored.dtype == np.float16
            np.testing.assert_array_equal(stored, rows.astype(np.float16))
        middle = reader.features("x/2", 100, 260)
        np.testing.assert_array_equal(middle, feature_videos["x/2"][100:260].astype(np.float16))


def test_feature_rows_streamed_and_checked(tmp_path: Path) -> None:
    """Rows arrive in pieces; an empty, mis-shaped or non-finite video is left out (ValueError)."""
    path = tmp_path / "features-00001.h5"
    rows = random_rows(5, seed=0)
    with FeatureShardWriter(path, dim=DIM) as writer:
        writer.begin_video("pieces")
        writer.append_rows(rows[:2])
        writer.append_rows(rows[2:].astype(np.float16))
        assert writer.end_video() == 5
        with pytest.raises(ValueError, match="'empty' has no seconds"):
            writer.add("empty", np.zeros((0, DIM), np.float32))
        with pytest.raises(ValueError, match=r"'wide'.*\(k, 37\)"):
            writer.add("wide", random_rows(2, seed=1).repeat(2, axis=1))
        with pytest.raises(ValueError, match="'nan'"):
            writer.add("nan", np.full((2, DIM), np.nan, np.float32))
        writer.add("wide", rows[:1])  # a video left out can be added again
        writer.commit()
    with FeatureShardReader(path) as reader:
        assert reader.video_ids == ["pieces", "wide"]
        np.testing.assert_array_equal(reader.features("pieces"), rows.astype(np.float16))
        np.testing.assert_array_equal(reader.features("wide"), rows[:1].astype(np.float16))


def test_empty_shard(tmp_path: Path) -> None:
    path = tmp_path / "features-00002.h5"
    write_features(path, {})
    with FeatureShardReader(path) as reader:
        assert reader.video_ids == []


@pytest.mark.parametrize("kind", ["frames", "features"])
def test_abort_leaves_nothing(tmp_path: Path, kind: str) -> None:
    path = tmp_path / f"{kind}-00000.h5"
    with pytest.raises(RuntimeError, match="decoder crashed"), make_writer(kind, path) as writer:
        append_some(writer)
        raise RuntimeError("decoder crashed")
    assert list(tmp_path.iterdir()) == []
    with make_writer(kind, path) as writer:  # leaving without commit() aborts as well
        append_some(writer)
        writer.end_video()
    assert list(tmp_path.iterdir()) == []


def make_writer(kind: str, path: Path) -> FrameShardWriter | FeatureShardWriter:
    if kind == "frames":
        return FrameShardWriter(path, FRAMES_PER_SECOND, SIZE)
    return FeatureShardWriter(path, dim=DIM)


def append_some(writer: FrameShardWriter | FeatureShardWriter) -> None:
    writer.begin_video("v")
    if isinstance(writer, FrameShardWriter):
        writer.append_second(random_clips(1, seed=0)[0])
    else:
        writer.append_rows(random_rows(2, seed=0))


def test_duplicate_id(tmp_path: Path) -> None:
    with FeatureShardWriter(tmp_path / "features-00000.h5", dim=DIM) as writer:
        writer.add("a/b", random_rows(2, seed=0))
        with pytest.raises(ValueError, match=r"features-00000\.h5: duplicate video id 'a/b'"):
            writer.add("a/b", random_rows(2, seed=1))
    with FrameShardWriter(tmp_path / "frames-00000.h5", FRAMES_PER_SECOND, SIZE) as writer:
        writer.begin_video("a/b")
        writer.append_second(random_clips(1, seed=0)[0])
        writer.end_video()
        with pytest.raises(ValueError, match="duplicate video id 'a/b'"):
            writer.begin_video("a/b")


def test_unknown_id_and_wrong_files(tmp_path: Path, feature_videos: dict[str, np.ndarray]) -> None:
    path = tmp_path / "features-00000.h5"
    write_features(path, feature_videos)
    with pytest.raises(KeyError, match=rf"'missing/id'.*{re.escape(str(path))}"):
        FeatureShardReader(path).features("missing/id")
    with pytest.raises(
        ShardFormatError, match=rf"{re.escape(path.name)} is not a complete frames shard"
    ):
        FrameShardReader(path).clips("x/1")
    text = tmp_path / "notes.h5"
    text.write_text("not hdf5")
    with pytest.raises(ShardFormatError, match=r"notes\.h5 is not an HDF5 file"):
        _ = FeatureShardReader(text).video_ids
    with pytest.raises(FileNotFoundError, match=r"nothing\.h5"):
        _ = FeatureShardReader(tmp_path / "nothing.h5").video_ids


def read_in_child(
    frames: FrameShardReader, features: FeatureShardReader, results: Queue[Any]
) -> None:
    clips = frames.clips("vidéo 2", 2, 5)
    rows = features.features("x/2", 10, 20)
    reopened = frames._pid == features._pid == os.getpid()
    results.put((clips, rows, reopened))


@pytest.mark.skipif(
    "fork" not in multiprocessing.get_all_start_methods(), reason="needs the fork start method"
)
def test_reader_in_forked_child(
    tmp_path: Path, frame_videos: dict[str, np.ndarray], feature_videos: dict[str, np.ndarray]
) -> None:
    write_frames(tmp_path / "frames-00000.h5", frame_videos)
    write_features(tmp_path / "features-00000.h5", feature_videos)
    frames = FrameShardReader(tmp_path / "frames-00000.h5")
    features = FeatureShardReader(tmp_path / "features-00000.h5")
    frames.clips("youtube/a/one.mp4")  # the parent opens its handles before the fork
    features.features("x/1")
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    child = context.Process(target=read_in_child, args=(frames, features, results))
    child.start()
    clips, rows, reopened = results.get(timeout=30)
    child.join(timeout=30)
    assert child.exitcode == 0 and reopened
    np.testing.assert_array_equal(clips, frame_videos["vidéo 2"][2:5])
    np.testing.assert_array_equal(rows, feature_videos["x/2"][10:20].astype(np.float16))
    np.testing.assert_array_equal(frames.clips("vidéo 2"), frame_videos["vidéo 2"])  # parent
    frames.close()
    features.close()


@pytest.mark.parametrize(
    ("kind", "reader_type"), [("frames", FrameShardReader), ("features", FeatureShardReader)]
)
def test_killed_writer_leaves_no_shard(tmp_path: Path, kind: str, reader_type: type) -> None:
    """A writer SIGKILLed in the middle of a video leaves only a temporary file, never `path`."""
    folder, log = tmp_path / "shards", tmp_path / "child.log"
    path = folder / f"{kind}-00000.h5"
    python_path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    command = [sys.executable, str(CHILD), kind, str(path)]
    with (
        log.open("w") as stderr,
        subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env={**os.environ, "PYTHONPATH": python_path},
        ) as child,
    ):
        try:
            assert child.stdout is not None
            ready, _, _ = select.select([child.stdout], [], [], 30)
            assert ready and child.stdout.readline().strip() == "started", log.read_text()
            [temporary] = folder.glob(f".{path.name}.tmp-*")
            time.sleep(0.2)  # the second video is being appended (HDF5 may still cache it)
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    assert not path.exists()
    with pytest.raises(FileNotFoundError):
        _ = reader_type(path).video_ids
    assert list(folder.iterdir()) == [temporary]
    with pytest.raises(ShardFormatError, match=re.escape(temporary.name)):
        _ = reader_type(temporary).video_ids
    assert remove_stale_temporaries(folder) == 1
    assert list(folder.iterdir()) == []
