"""Tests for pipeline/video/probe.py and pipeline/video/decoders.py on tiny lavfi videos.

Sizes are distinct (F = 6 frames per second, S = 40, 96×64 sources at 10 fps lasting 3.5 s, so
K = 3; DecodeConfig wants F and S even) so a swapped axis or a rounding slip cannot pass.

Backend tolerance: the ffmpeg and decord backends agree to within a mean absolute difference of
MAX_BACKEND_MAD = 0.5 (uint8 levels) per clip. Measured here: 0.0, byte-identical on testsrc2,
testsrc2 + noise, VP9 and 640×360 h264 at S = 112 and 224, because both pick the same frames
(decoders.frame_indices copies ffmpeg's fps rule) and both scale with libswscale bilinear and
BT.601 (decord's bundled FFmpeg 4.1 through libavfilter's default scale flags). The bound leaves
room for ±1 rounding of another FFmpeg build's SIMD paths, and still fails on the mistakes it
is there to catch, measured on the testsrc2 video: frames one source frame late (MAD 6.2), a
bicubic scaler (3.7), nearest-to-t frame choice instead of ffmpeg's (2.5).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from pipeline.config import DecodeConfig
from pipeline.video.decoders import (
    DecordSizeError,
    _read_clips,
    clip_count,
    decode_video,
    frame_indices,
    geometry,
    iter_clips,
)
from pipeline.video.probe import VideoError, VideoInfo, probe_video

FRAMES = 6  # F
SIZE = 40  # S
MAX_BACKEND_MAD = 0.5
FFMPEG = DecodeConfig(backend="ffmpeg", frames_per_second=FRAMES, size=SIZE)
DECORD = DecodeConfig(backend="decord", frames_per_second=FRAMES, size=SIZE)
GOOD_VIDEOS = ["landscape.mp4", "portrait.mp4", "rotated.mp4", "vp9.webm"]


TESTSRC = "-f lavfi -i testsrc2=size={}:rate=10"  # 10 fps
SINE = "-f lavfi -i sine=frequency=440:sample_rate=16000"
H264 = "-c:v libx264 -preset veryfast -pix_fmt yuv420p"


def _ffmpeg(*parts: str | Path) -> None:
    """Run ffmpeg; strings are split on spaces, paths are kept whole."""
    args = [
        arg for part in parts for arg in ([str(part)] if isinstance(part, Path) else part.split())
    ]
    command = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args]
    subprocess.run(command, check=True, capture_output=True)


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny videos, good and bad, made once for the module."""
    folder = tmp_path_factory.mktemp("videos")
    landscape, portrait = TESTSRC.format("96x64"), TESTSRC.format("64x96")
    _ffmpeg(landscape, SINE, "-t 3.5 -c:a aac", H264, folder / "landscape.mp4")
    _ffmpeg(portrait, "-t 3.5", H264, folder / "portrait.mp4")
    # A phone-style file: coded 96×64 with a display matrix that turns it by 90°.
    rotate = "-map 0:v -c copy -metadata:s:v:0 rotate=90"
    _ffmpeg("-i", folder / "landscape.mp4", rotate, folder / "rotated.mp4")
    vp9 = "-c:v libvpx-vp9 -deadline realtime -cpu-used 8 -b:v 200k"
    _ffmpeg(landscape, "-t 3.5", vp9, folder / "vp9.webm")
    _ffmpeg(landscape, "-t 6 -g 10 -movflags +faststart", H264, folder / "long.mp4")
    _ffmpeg(landscape, "-t 0.5", H264, folder / "short.mp4")
    _ffmpeg(SINE, "-t 2 -c:a aac", folder / "audio.m4a")
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "random.mp4").write_bytes(np.random.default_rng(7).bytes(20_000))
    # A cut download: the header (moov first, faststart) promises 6 s, half the bytes are there.
    data = (folder / "long.mp4").read_bytes()
    (folder / "truncated.mp4").write_bytes(data[: len(data) // 2])
    return folder


def _frame_index_video(path: Path, n_frames: int, fps: int) -> None:
    """Lossless RGB video whose frame k is flat grey 3·k, so a decoded pixel names its frame."""
    frames = np.repeat(np.arange(n_frames, dtype=np.uint8) * 3, 64 * 64 * 3)  # (N·64·64·3,)
    command = ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "rawvideo"]
    command += ["-pix_fmt", "rgb24", "-s", "64x64", "-r", str(fps), "-i", "pipe:"]
    command += ["-c:v", "libx264rgb", "-qp", "0", str(path)]
    subprocess.run(command, input=frames.tobytes(), check=True, capture_output=True)


def _ffmpeg_children() -> list[tuple[int, str]]:
    """(pid, state) of this process's ffmpeg children, zombies included."""
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        state, parent = stat[stat.rindex(")") + 2 :].split()[:2]
        if int(parent) == os.getpid() and name == "ffmpeg":
            children.append((int(entry.name), state))
    return children


def _all_clips(path: Path, config: DecodeConfig) -> np.ndarray:
    return np.stack(list(iter_clips(path, probe_video(path), config)))  # (K, F, S, S, 3)


class RecordingWriter:
    """Stands in for storage.shards.FrameShardWriter: records calls and keeps the clips."""

    def __init__(self, fail_on_append: bool = False) -> None:
        self.calls: list[str] = []
        self.videos: dict[str, list[np.ndarray]] = {}
        self.fail_on_append = fail_on_append
        self._current: str | None = None

    def begin_video(self, video_id: str) -> None:
        assert self._current is None
        self.calls.append(f"begin {video_id}")
        self._current = video_id
        self.videos[video_id] = []

    def append_second(self, clip: np.ndarray) -> None:
        assert self._current is not None
        assert clip.shape == (FRAMES, SIZE, SIZE, 3) and clip.dtype == np.uint8
        if self.fail_on_append:
            raise OSError("disk full")
        self.calls.append("append")
        self.videos[self._current].append(clip)

    def end_video(self) -> int:
        assert self._current is not None
        self.calls.append("end")
        count = len(self.videos[self._current])
        self._current = None
        return count

    def discard_video(self) -> None:
        assert self._current is not None
        self.calls.append("discard")
        del self.videos[self._current]
        self._current = None


# --- probe -----------------------------------------------------------------------------------


def test_probe_reads_the_video_stream(videos: Path) -> None:
    info = probe_video(videos / "landscape.mp4")
    assert info == VideoInfo(
        duration_s=3.5,
        native_fps=10.0,
        codec="h264",
        width=96,
        height=64,
        rotation=0,
        start_s=0.0,
        n_frames=35,
        has_audio=True,
        stream_index=0,
    )


def test_probe_gives_the_display_size(videos: Path) -> None:
    portrait = probe_video(videos / "portrait.mp4")
    assert (portrait.width, portrait.height, portrait.rotation) == (64, 96, 0)
    rotated = probe_video(videos / "rotated.mp4")
    assert (rotated.width, rotated.height) == (64, 96)  # coded 96×64, shown turned
    assert rotated.rotation in (90, 270)


def test_probe_webm_takes_the_matroska_duration(videos: Path) -> None:
    info = probe_video(videos / "vp9.webm")
    assert (info.codec, info.duration_s, info.native_fps) == ("vp9", 3.5, 10.0)
    assert info.n_frames is None  # WebM does not record a frame count
    assert not info.has_audio


@pytest.mark.parametrize(
    ("name", "reason", "says"),
    [
        ("absent.mp4", "missing", "no such file"),
        ("empty.mp4", "empty", "0 bytes"),
        ("random.mp4", "unreadable", "Invalid data found"),  # ffprobe's own last line
        ("audio.m4a", "no_video_stream", "found: audio"),
        ("short.mp4", "too_short", "0.50 s"),
    ],
)
def test_probe_rejects_bad_files(videos: Path, name: str, reason: str, says: str) -> None:
    with pytest.raises(VideoError) as caught:
        probe_video(videos / name)
    assert caught.value.reason == reason
    assert says in caught.value.message
    assert name in str(caught.value)


# --- geometry and frame choice ---------------------------------------------------------------


def test_geometry_scales_the_short_side_and_centres_the_crop() -> None:
    def info(width: int, height: int) -> VideoInfo:
        return VideoInfo(60.0, 30.0, "h264", width, height, 0, 0.0, None, False, 0)

    # reference/decode-storage.md §B: 1280×720 → 398×224, crop at x = 87.
    assert geometry(info(1280, 720), 224) == geometry(info(640, 360), 224)
    shape = geometry(info(640, 360), 224)
    assert (shape.width, shape.height, shape.x, shape.y) == (398, 224, 87, 0)
    shape = geometry(info(360, 640), 224)  # portrait: the width is scaled
    assert (shape.width, shape.height, shape.x, shape.y) == (224, 398, 0, 87)
    shape = geometry(info(99, 100), 40)  # the long side never ends below S
    assert (shape.width, shape.height) == (40, 40)


def test_frame_indices_follow_the_ffmpeg_fps_filter() -> None:
    starts = np.arange(60) / 30  # 2 s at 30 fps
    times = np.stack([starts, starts + 1 / 30], axis=1)  # (N, 2)
    # Measured with ffmpeg 5.1 `-vf fps=F` on a video whose frames carry their index.
    assert frame_indices(times, 1).tolist() == [[14], [44]]
    assert frame_indices(times, 4).tolist() == [[3, 11, 18, 26], [33, 41, 48, 56]]
    assert frame_indices(times - 0.023, 4).tolist()[0] == [3, 11, 18, 26]  # start offset


def test_frame_indices_pad_a_last_second_two_frames_short() -> None:
    def seconds(duration_s: float) -> np.ndarray:
        starts = np.arange(round(duration_s * 30)) / 30
        return frame_indices(np.stack([starts, starts + 1 / 30], axis=1), 10)  # (K, 10)

    padded = seconds(2.8)  # 28 slots: the third second has 8 of 10 frames
    assert padded.shape == (3, 10)
    assert padded[2, -3:].tolist() == [padded[2, 7]] * 3
    assert seconds(2.7).shape == (2, 10)  # 7 of 10: dropped


def test_ffmpeg_backend_takes_the_frames_frame_indices_names(tmp_path: Path) -> None:
    path = tmp_path / "indexed.mp4"
    _frame_index_video(path, n_frames=75, fps=30)  # 2.5 s
    config = DecodeConfig(frames_per_second=4, size=32)
    clips = _all_clips(path, config)  # (2, 4, 32, 32, 3)
    decoded = clips[:, :, 16, 16, 0].astype(int) // 3  # (K, F) frame numbers
    starts = np.arange(75) / 30
    expected = frame_indices(np.stack([starts, starts + 1 / 30], axis=1), 4)[:2]
    assert decoded.tolist() == expected.tolist()


def test_read_clips_pads_a_clip_two_frames_short() -> None:
    import io

    frame_bytes = SIZE * SIZE * 3
    data = np.arange(2 * FRAMES - 2, dtype=np.uint8).repeat(frame_bytes)  # 1 s + 4 frames
    stream = _read_clips(io.BytesIO(data.tobytes()), expected=3, config=FFMPEG)
    clips = list(stream)
    assert len(clips) == 2
    assert clips[1][:, 0, 0, 0].tolist() == [6, 7, 8, 9, 9, 9]
    short = np.zeros((FRAMES + 3) * frame_bytes, np.uint8)  # 1 s + 3 frames: dropped
    assert len(list(_read_clips(io.BytesIO(short.tobytes()), expected=3, config=FFMPEG))) == 1


# --- backends --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", GOOD_VIDEOS)
def test_ffmpeg_backend_yields_floor_duration_clips(videos: Path, name: str) -> None:
    info = probe_video(videos / name)
    stream = iter_clips(videos / name, info, FFMPEG)
    clips = []
    with pytest.raises(StopIteration) as stopped:
        while True:
            clips.append(next(stream))
    assert len(clips) == clip_count(info) == 3  # ⌊3.5⌋
    assert stopped.value.value == ""  # not stopped early
    for clip in clips:
        assert clip.shape == (FRAMES, SIZE, SIZE, 3) and clip.dtype == np.uint8
    assert not _ffmpeg_children()


@pytest.mark.parametrize("name", GOOD_VIDEOS)
def test_decord_backend_matches_ffmpeg(videos: Path, name: str) -> None:
    reference = _all_clips(videos / name, FFMPEG).astype(np.int16)  # (K, F, S, S, 3)
    clips = _all_clips(videos / name, DECORD).astype(np.int16)
    assert clips.shape == reference.shape == (3, FRAMES, SIZE, SIZE, 3)
    mad = np.abs(clips - reference).mean(axis=(1, 2, 3, 4))  # (K,)
    assert mad.max() <= MAX_BACKEND_MAD, f"{name}: per-second MAD {mad.round(2).tolist()}"


def test_rotated_video_is_decoded_as_displayed(videos: Path) -> None:
    """The rotated file holds the landscape frames; its clips must show them turned."""
    landscape = _all_clips(
        videos / "landscape.mp4", DecodeConfig(frames_per_second=FRAMES, size=64)
    )
    rotated = _all_clips(videos / "rotated.mp4", DecodeConfig(frames_per_second=FRAMES, size=64))
    turns = probe_video(videos / "rotated.mp4").rotation // 90
    # Crop of the landscape (96 → 64 wide, x = 16) turned as the display matrix says.
    expected = np.rot90(landscape, k=turns, axes=(2, 3))  # (K, F, 64, 64, 3)
    assert np.abs(rotated.astype(int) - expected.astype(int)).mean() < 1.0


def test_decord_reports_its_width_bug(videos: Path) -> None:
    small = DecodeConfig(backend="decord", frames_per_second=FRAMES, size=32)  # 96×64 → 48×32
    with pytest.raises(DecordSizeError, match="48x32"):
        list(iter_clips(videos / "landscape.mp4", probe_video(videos / "landscape.mp4"), small))


def test_closing_the_stream_early_kills_ffmpeg(videos: Path) -> None:
    path = videos / "long.mp4"
    big = DecodeConfig(frames_per_second=FRAMES, size=96)  # 166 kB a second: > a 64 kB pipe
    stream = iter_clips(path, probe_video(path), big)
    next(stream)
    assert [state != "Z" for _, state in _ffmpeg_children()] == [True]  # still decoding
    stream.close()
    assert _ffmpeg_children() == []  # killed and reaped: no zombie either


# --- decode_video ----------------------------------------------------------------------------


@pytest.mark.parametrize("config", [FFMPEG, DECORD], ids=["ffmpeg", "decord"])
def test_decode_video_writes_every_second(videos: Path, config: DecodeConfig) -> None:
    writer = RecordingWriter()
    outcome = decode_video(videos / "landscape.mp4", "v1", writer, config)
    assert (outcome.status, outcome.error, outcome.n_seconds) == ("ok", "", 3)
    assert (outcome.duration_s, outcome.native_fps, outcome.codec) == (3.5, 10.0, "h264")
    assert writer.calls == ["begin v1", "append", "append", "append", "end"]


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("absent.mp4", "missing"),
        ("empty.mp4", "empty"),
        ("random.mp4", "unreadable"),
        ("audio.m4a", "no_video_stream"),
        ("short.mp4", "too_short"),
    ],
)
def test_decode_video_records_bad_files(videos: Path, name: str, reason: str) -> None:
    writer = RecordingWriter()
    outcome = decode_video(videos / name, "bad", writer, FFMPEG)
    assert outcome.status == ("too_short" if reason == "too_short" else "failed")
    assert outcome.error.startswith(f"{reason}: ")
    assert outcome.n_seconds == 0 and outcome.codec == "" and np.isnan(outcome.duration_s)
    assert writer.calls == []  # nothing begun for a file that failed its probe


def test_decode_video_keeps_the_seconds_of_a_truncated_file(videos: Path) -> None:
    writer = RecordingWriter()
    outcome = decode_video(videos / "truncated.mp4", "cut", writer, FFMPEG)
    assert outcome.status == "truncated"
    assert 0 < outcome.n_seconds < 6
    assert outcome.error.startswith(f"decoded {outcome.n_seconds} of 6 seconds")
    assert writer.calls[-1] == "end" and len(writer.videos["cut"]) == outcome.n_seconds
    assert not _ffmpeg_children()


def test_decode_video_fails_a_file_decord_cannot_open(videos: Path) -> None:
    writer = RecordingWriter()
    outcome = decode_video(videos / "truncated.mp4", "cut", writer, DECORD)
    assert outcome.status == "failed"
    assert outcome.error.startswith("undecodable: decord decoded 0 of 6 seconds")
    assert writer.calls == ["begin cut", "discard"]


def test_decode_video_propagates_writer_errors(videos: Path) -> None:
    writer = RecordingWriter(fail_on_append=True)
    with pytest.raises(OSError, match="disk full"):
        decode_video(videos / "long.mp4", "v", writer, FFMPEG)
    assert writer.calls == ["begin v", "discard"]
    assert not _ffmpeg_children()


def test_decode_video_into_a_frame_shard(videos: Path, tmp_path: Path) -> None:
    from storage.shards import FrameShardReader, FrameShardWriter

    path = tmp_path / "frames-00000.h5"
    writer = FrameShardWriter(path, FRAMES, SIZE, {"backend": "ffmpeg"})
    statuses = {
        video_id: decode_video(videos / name, video_id, writer, FFMPEG).status
        for video_id, name in [("a", "landscape.mp4"), ("b", "random.mp4"), ("c", "vp9.webm")]
    }
    writer.commit()
    assert statuses == {"a": "ok", "b": "failed", "c": "ok"}
    with FrameShardReader(path) as reader:
        assert reader.video_ids == ["a", "c"]
        assert (reader.frames_per_second, reader.size, reader.n_seconds("c")) == (FRAMES, SIZE, 3)
        np.testing.assert_array_equal(reader.clips("c"), _all_clips(videos / "vp9.webm", FFMPEG))
