"""Video → one-second uint8 clips (DESIGN.md §4): one interface, two backends, always streaming.

Each clip is (F, S, S, 3) uint8 RGB: F = `frames_per_second` frames of one second of video, the
short side scaled to S = `size` (bilinear, aspect kept, the long side rounded to an even number)
and centre-cropped to S × S. A video gives K = ⌊duration_s⌋ clips: every feature step is a full
second of real frames and the partial last second is dropped.

Frame choice: second i, frame j shows the video at t = start + i + j/F. Both backends take the
frame that ffmpeg's `fps` filter takes, which is not the nearest one: measured with ffmpeg 5.1,
`fps=1` on a 30 fps video gives frame 14 (0.467 s) for t = 0. The filter keeps the last frame that
starts before the middle of the 1/F slot, i.e. before t + 0.5/F; the decord backend does the same.
Both then scale with libswscale bilinear (decord's FFmpeg 4.1 by libavfilter's default flags), and
their clips were byte-identical on every test video (h264, VP9, rotated, 640×360 at S = 112, 224).

Backends (reference/decode-storage.md §B):
- `ffmpeg` (default): one `ffmpeg -threads 1` subprocess per video, read from a rawvideo pipe one
  second at a time, so a 2-hour video never sits in memory (~70 MB for ffmpeg + one clip here).
- `decord`: `VideoReader(..., num_threads=1)` (decord 0.6 fails on VP9 WebM with more threads),
  `get_batch` one second at a time (one batch for the whole video costs GBs). decord reads the
  whole packet index on open, so it cannot open a truncated file at all; ffmpeg decodes what is
  there. decord 0.6 also fails for output widths of 16, 24, 48 and 72 pixels (a row-alignment
  bug, raised as DecordSizeError); the sizes used in practice (≥ 80) are unaffected.

`decode_video` drives a backend into a frame shard writer and never raises for a bad video: it
returns a `DecodeOutcome` with status "ok", "truncated" (fewer seconds than the header promises)
or "failed" (reason code and message in `error`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import subprocess
import threading
from collections import deque
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal, Protocol

import ffmpeg
import numpy as np

from pipeline.config import DecodeConfig
from pipeline.video.probe import VideoError, VideoInfo, probe_video

log = logging.getLogger(__name__)

MAX_PADDED_FRAMES = 2  # a last second this many frames short is padded with its last frame
STDERR_LINES = 20  # ffmpeg stderr lines kept for the error message
EXIT_WAIT_S = 10.0  # how long an ffmpeg that closed its output may take to exit
SLOT_EPSILON_S = 1e-3  # decord timestamps are float32 (0.5 ms steps after 2 hours)

# (F, S, S, 3) uint8 clips; the return value is why the stream stopped early ("" if it did not).
ClipStream = Generator[np.ndarray, None, str]


class ClipWriter(Protocol):
    """The part of storage.shards.FrameShardWriter that decode_video uses."""

    def begin_video(self, video_id: str) -> None: ...
    def append_second(self, clip: np.ndarray) -> None: ...
    def end_video(self) -> int: ...
    def discard_video(self) -> None: ...


@dataclass(frozen=True)
class DecodeOutcome:
    """One row of decode.parquet. Unknown facts of a video that failed to probe are NaN / ""."""

    video_id: str
    status: Literal["ok", "truncated", "failed", "too_short", "probed"]
    error: str  # "" when ok; "<reason>: <message>" when failed
    duration_s: float
    native_fps: float
    codec: str
    n_seconds: int


@dataclass(frozen=True)
class Geometry:
    """Scale the display frame to width × height, then crop size × size at (x, y)."""

    width: int
    height: int
    x: int
    y: int
    size: int


def clip_count(info: VideoInfo) -> int:
    """K = ⌊duration_s⌋: only full seconds become clips; the partial last second is dropped."""
    return math.floor(info.duration_s)


def geometry(info: VideoInfo, size: int) -> Geometry:
    """Short side → `size`, long side → nearest even number ≥ `size`, centred crop."""
    if info.width >= info.height:  # landscape: scale the height to `size`
        width, height = _even_long_side(info.width, info.height, size), size
    else:  # portrait: scale the width
        width, height = size, _even_long_side(info.height, info.width, size)
    return Geometry(width, height, (width - size) // 2, (height - size) // 2, size)


def _even_long_side(long: int, short: int, size: int) -> int:
    return max(size, 2 * round(long * size / (2 * short)))


def iter_clips(path: Path, info: VideoInfo, config: DecodeConfig) -> ClipStream:
    """Stream at most K = ⌊info.duration_s⌋ clips of (F, S, S, 3) uint8 from `path`.

    K counts full seconds only: the partial last second is dropped. A last clip one or two
    frames short is padded with its last frame. When the decoder fails or the stream ends
    before K clips the stream just stops; the generator's return value says why. Closing the
    generator early stops the decoder (the ffmpeg process is killed and reaped).
    """
    if config.backend == "ffmpeg":
        return _ffmpeg_clips(path, info, config)
    elif config.backend == "decord":
        return _decord_clips(path, info, config)
    raise ValueError(f"unknown decode backend {config.backend!r}; expected 'ffmpeg' or 'decord'")


def _ffmpeg_clips(path: Path, info: VideoInfo, config: DecodeConfig) -> ClipStream:
    """`ffmpeg -threads 1 -i IN -map 0:<video> fps,scale,crop -f rawvideo -pix_fmt rgb24 pipe:`.

    ffmpeg applies the display rotation itself (autorotate), so `geometry` uses display sizes.
    """
    shape = geometry(info, config.size)
    process = _start_ffmpeg(path, info.stream_index, config.frames_per_second, shape)
    stderr_tail: deque[str] = deque(maxlen=STDERR_LINES)
    drain = threading.Thread(target=_drain, args=(process.stderr, stderr_tail), daemon=True)
    drain.start()
    expected = clip_count(info)
    produced = 0
    try:
        produced = yield from _read_clips(process.stdout, expected, config)
    finally:
        # Finished or closed early: kill at once. Output ended: let ffmpeg exit and report.
        _stop(process, EXIT_WAIT_S if process.stdout.closed else 0.0)
        drain.join()
    if produced == expected:
        return ""
    said = stderr_tail[-1] if stderr_tail else "no error message"
    return f"ffmpeg output ended (exit code {process.returncode}): {said}"


def _start_ffmpeg(path: Path, stream_index: int, frames: int, shape: Geometry) -> subprocess.Popen:
    stream = (
        ffmpeg.input(str(path), threads=1)[str(stream_index)]  # -map 0:<index>, no audio
        .filter("fps", fps=frames)
        .filter("scale", shape.width, shape.height, flags="bilinear")
        .filter("format", "rgb24")  # convert while scaling, so the crop is exact per pixel
        .crop(shape.x, shape.y, shape.size, shape.size)
        .output("pipe:", format="rawvideo", pix_fmt="rgb24")
        .global_args("-nostdin", "-hide_banner", "-nostats", "-loglevel", "error")
    )
    return stream.run_async(pipe_stdout=True, pipe_stderr=True)


def _read_clips(stdout: IO[bytes], expected: int, config: DecodeConfig) -> ClipStream:
    """Read one second (F·S·S·3 bytes) at a time; returns the number of clips yielded."""
    frames, size = config.frames_per_second, config.size
    frame_bytes = size * size * 3
    for produced in range(expected):
        clip = np.empty((frames, size, size, 3), dtype=np.uint8)  # (F, S, S, 3)
        got = _read_into(stdout, memoryview(clip).cast("B"))
        if got < clip.nbytes:
            stdout.close()  # the output ended: tells the caller ffmpeg is exiting on its own
            complete = got // frame_bytes
            if complete > 0 and frames - complete <= MAX_PADDED_FRAMES:
                clip[complete:] = clip[complete - 1]
                yield clip
                return produced + 1
            return produced
        yield clip
    return expected


def _read_into(stream: IO[bytes], buffer: memoryview) -> int:
    """Fill `buffer` from a pipe; returns the bytes read (fewer only at end of stream)."""
    filled = 0
    while filled < len(buffer):
        count = stream.readinto(buffer[filled:])  # type: ignore[attr-defined]
        if not count:
            break
        filled += count
    return filled


def _drain(stream: IO[bytes], tail: deque[str]) -> None:
    """Keep the last stderr lines; reading them keeps ffmpeg from blocking on a full pipe."""
    for line in iter(stream.readline, b""):
        text = line.decode("utf-8", "replace").strip()
        if text:
            tail.append(text)
    stream.close()


def _stop(process: subprocess.Popen, wait_s: float) -> None:
    """Wait up to `wait_s` for ffmpeg to exit, then kill it; always reap it (no zombies)."""
    try:
        process.wait(timeout=wait_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    if not process.stdout.closed:
        process.stdout.close()


class DecordSizeError(RuntimeError):
    """decord 0.6 returns wrong-sized frames for some output widths (16, 24, 48, 72 measured)."""

    def __init__(self, shape: Geometry) -> None:
        super().__init__(
            f"decord 0.6 cannot scale frames to {shape.width}x{shape.height} (a row-alignment "
            f"bug at some widths); choose another decode.size than {shape.size} or use the "
            "ffmpeg backend"
        )


def _decord_clips(path: Path, info: VideoInfo, config: DecodeConfig) -> ClipStream:
    """decord.VideoReader at the scaled display size, one `get_batch` per second, crop in numpy.

    decord 0.6 applies the display rotation itself and takes the display width and height.
    """
    import decord  # imported here: the default ffmpeg path never loads decord's bundled FFmpeg

    shape = geometry(info, config.size)
    expected = clip_count(info)
    try:
        reader = decord.VideoReader(
            str(path), ctx=decord.cpu(0), width=shape.width, height=shape.height, num_threads=1
        )
        times = reader.get_frame_timestamp(np.arange(len(reader)))  # (N, 2) start, end in s
    except decord.DECORDError as error:
        return f"decord could not open the video: {_first_line(error)}"
    if len(times) == 0:
        return "decord found no frames"
    indices = frame_indices(times, config.frames_per_second)  # (seconds available, F)
    x, y, size = shape.x, shape.y, shape.size
    for second in range(min(expected, len(indices))):
        try:
            batch = reader.get_batch(indices[second].tolist()).asnumpy()  # (F, height, width, 3)
        except decord.DECORDError as error:
            if "DECORDArrayCopyFromTo" in str(error):  # decord's bug, not the video's fault
                raise DecordSizeError(shape) from error
            return f"decord failed at second {second}: {_first_line(error)}"
        if batch.shape[1:] != (shape.height, shape.width, 3):
            raise DecordSizeError(shape)
        yield np.ascontiguousarray(batch[:, y : y + size, x : x + size])  # (F, S, S, 3)
    if len(indices) < expected:
        return f"the frames last {len(indices)} full seconds, the header says {expected}"
    return ""


def frame_indices(times: np.ndarray, frames_per_second: int) -> np.ndarray:
    """Frame index per output slot, as ffmpeg's `fps` filter picks them: (seconds, F) int64.

    times: (N, 2) start and end of each frame in seconds, in presentation order. Slot n sits
    at t0 + n/F and takes the last frame starting before t0 + (n + 0.5)/F. There are
    round((end - t0)·F) slots, grouped into full seconds; a last second at most
    MAX_PADDED_FRAMES short is padded with its last frame.
    """
    starts = times[:, 0].astype(np.float64)  # (N,)
    first, end = starts[0], float(times[-1, 1])
    n_slots = round((end - first) * frames_per_second)
    middles = first + (np.arange(n_slots) + 0.5) / frames_per_second  # (n_slots,)
    slots = np.searchsorted(starts, middles - SLOT_EPSILON_S, side="left") - 1
    slots = np.clip(slots, 0, len(starts) - 1)
    n_seconds, short = divmod(n_slots, frames_per_second)
    if short and frames_per_second - short <= MAX_PADDED_FRAMES:
        padding = np.full(frames_per_second - short, slots[-1])
        slots = np.concatenate([slots, padding])
        n_seconds += 1
    return slots[: n_seconds * frames_per_second].reshape(n_seconds, frames_per_second)


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def probe_outcome(path: Path, video_id: str) -> DecodeOutcome:
    """The header's facts without decoding (`decode.streaming`): status "probed" with the
    header's K seconds, or "failed" / "too_short" as `decode_video` would say."""
    try:
        info = probe_video(path)
    except VideoError as error:
        return _probe_failure(video_id, error)
    return DecodeOutcome(
        video_id, "probed", "", info.duration_s, info.native_fps, info.codec, clip_count(info)
    )


def _probe_failure(video_id: str, error: VideoError) -> DecodeOutcome:
    log.warning("decode %s: %s", video_id, error)
    nan = float("nan")
    # Under one second is no feature step: excluded as too short, not counted as broken.
    status = "too_short" if error.reason == "too_short" else "failed"
    return DecodeOutcome(video_id, status, f"{error.reason}: {error.message}", nan, nan, "", 0)


def decode_video(
    path: Path, video_id: str, writer: ClipWriter, config: DecodeConfig
) -> DecodeOutcome:
    """Probe `path`, decode it into `writer` as video `video_id`, and say how it went.

    A bad video (VideoError from the probe, or a decode that yields no clip) is discarded from
    the writer and comes back as status "failed"; a video that ends before its header's K
    seconds keeps what decoded, status "truncated". Errors of our own code or of the writer
    propagate (the video is discarded first).
    """
    try:
        info = probe_video(path)
    except VideoError as error:
        return _probe_failure(video_id, error)
    expected = clip_count(info)
    writer.begin_video(video_id)
    try:
        with contextlib.closing(iter_clips(path, info, config)) as clips:
            n_seconds, why = _append_all(clips, writer)
    except BaseException:
        writer.discard_video()
        raise

    def outcome(status: Literal["ok", "truncated", "failed"], error: str) -> DecodeOutcome:
        return DecodeOutcome(
            video_id, status, error, info.duration_s, info.native_fps, info.codec, n_seconds
        )

    if n_seconds == 0:
        writer.discard_video()
        error = f"undecodable: {config.backend} decoded 0 of {expected} seconds: {why}"
        log.warning("decode %s (%s): %s", video_id, path, error)
        return outcome("failed", error)
    writer.end_video()
    if n_seconds < expected:
        error = f"decoded {n_seconds} of {expected} seconds: {why}"
        log.warning("decode %s (%s): truncated, %s", video_id, path, error)
        return outcome("truncated", error)
    return outcome("ok", "")


def _append_all(clips: ClipStream, writer: ClipWriter) -> tuple[int, str]:
    """Append every clip; returns (clips appended, why the stream stopped early or "")."""
    appended = 0
    while True:
        try:
            clip = next(clips)
        except StopIteration as stop:
            return appended, stop.value or ""
        writer.append_second(clip)
        appended += 1
