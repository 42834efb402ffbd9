"""ffprobe a video file into a `VideoInfo`, or say in a reason code why it cannot be decoded.

The decode stage (DESIGN.md §3) records bad videos in `decode.parquet` instead of failing; the
reason codes here are that record's machine-readable part:

    missing          the file does not exist
    empty            the file has 0 bytes
    unreadable       ffprobe fails on it (corrupt, truncated header, not a media file) or the
                     header gives no duration / frame size
    no_video_stream  only audio (or only cover art)
    too_short        the video stream lasts less than one second: not one feature step (§4)
"""

from __future__ import annotations

import json
import math
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

PROBE_TIMEOUT_S = 60.0  # a probe reads only headers (≪ 1 s); more means a hung filesystem

VideoErrorReason = Literal["missing", "empty", "unreadable", "no_video_stream", "too_short"]


class VideoError(ValueError):
    """A video that cannot be decoded: `reason` is a short code, `message` says what was found."""

    def __init__(self, reason: VideoErrorReason, path: Path, message: str) -> None:
        super().__init__(f"{path}: {message} ({reason})")
        self.reason = reason
        self.path = path
        self.message = message


@dataclass(frozen=True)
class VideoInfo:
    """What the decoders need to know about a video, read from its header."""

    duration_s: float  # of the video stream (the container's when the stream has none)
    native_fps: float  # avg_frame_rate (0.0 when the header gives none)
    codec: str  # e.g. "h264", "vp9", "av1"
    width: int  # display size: sample aspect ratio and rotation applied
    height: int
    rotation: int  # counter-clockwise degrees from the display matrix: 0, 90, 180 or 270
    start_s: float  # start_time of the video stream
    n_frames: int | None  # nb_frames when the container records it
    has_audio: bool
    stream_index: int  # index of the video stream in the file (cover art skipped)


def probe_video(path: Path) -> VideoInfo:
    """Read the header of `path` with ffprobe; raises VideoError for a file we cannot decode."""
    path = Path(path)
    if not path.is_file():
        raise VideoError("missing", path, "no such file")
    if path.stat().st_size == 0:
        raise VideoError("empty", path, "the file is empty (0 bytes)")
    probe = _run_ffprobe(path)
    streams = probe.get("streams", [])
    video = next((s for s in streams if _is_video(s)), None)
    if video is None:
        found = ", ".join(sorted({str(s.get("codec_type")) for s in streams})) or "no streams"
        raise VideoError("no_video_stream", path, f"no video stream (found: {found})")
    duration = _duration(video, probe.get("format", {}))
    if duration is None:
        raise VideoError("unreadable", path, "ffprobe reports no duration for the video stream")
    coded_width, coded_height = int(video.get("width") or 0), int(video.get("height") or 0)
    if coded_width <= 0 or coded_height <= 0:
        raise VideoError("unreadable", path, "ffprobe reports no frame size for the video stream")
    if duration < 1.0:
        raise VideoError(
            "too_short", path, f"the video lasts {duration:.2f} s, less than one second"
        )
    rotation = _rotation(video)
    width = round(coded_width * _sample_aspect(video))  # display width before rotation
    height = coded_height
    if rotation in (90, 270):
        width, height = height, width
    nb_frames = str(video.get("nb_frames", ""))
    return VideoInfo(
        duration_s=duration,
        native_fps=_rate(video.get("avg_frame_rate")) or _rate(video.get("r_frame_rate")),
        codec=str(video.get("codec_name", "")),
        width=width,
        height=height,
        rotation=rotation,
        start_s=_float(video.get("start_time")) or 0.0,
        n_frames=(int(nb_frames) or None) if nb_frames.isdigit() else None,  # "0": unknown
        has_audio=any(s.get("codec_type") == "audio" for s in streams),
        stream_index=int(video["index"]),
    )


def _run_ffprobe(path: Path) -> dict[str, Any]:
    command = ["ffprobe", "-v", "error", "-print_format", "json", "-show_format", "-show_streams"]
    try:
        result = subprocess.run(
            [*command, str(path)], capture_output=True, timeout=PROBE_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        raise VideoError(
            "unreadable", path, f"ffprobe did not answer within {PROBE_TIMEOUT_S:.0f} s"
        ) from None
    said = last_line(result.stderr)
    if result.returncode != 0:
        raise VideoError("unreadable", path, f"ffprobe failed: {said or 'no message'}")
    try:
        return json.loads(result.stdout)
    except json.JSONDecodeError:
        raise VideoError("unreadable", path, f"ffprobe gave no JSON: {said}") from None


def last_line(stderr: bytes) -> str:
    """The last non-empty line of a tool's stderr (where ffmpeg tools put the actual error)."""
    lines = [line.strip() for line in stderr.decode("utf-8", "replace").splitlines()]
    return next((line for line in reversed(lines) if line), "")


def _is_video(stream: dict[str, Any]) -> bool:
    """A video stream that is not cover art (m4a/mp3 album pictures are 'video' streams too)."""
    attached = stream.get("disposition", {}).get("attached_pic", 0)
    return stream.get("codec_type") == "video" and not attached


def _duration(video: dict[str, Any], container: dict[str, Any]) -> float | None:
    """Video stream duration; Matroska/WebM keep it in a DURATION tag; else the container's."""
    tagged = {key.lower(): value for key, value in video.get("tags", {}).items()}.get("duration")
    for value in (_float(video.get("duration")), _clock(tagged), _float(container.get("duration"))):
        if value is not None:
            return value
    return None


def _rotation(video: dict[str, Any]) -> int:
    """Counter-clockwise display rotation; ffmpeg and decord both apply it when decoding.

    Measured with ffmpeg 5.1: a display matrix with `rotation: -90` shows the frame turned 90°
    clockwise. Older ffprobe versions print a `rotate` tag instead, in clockwise degrees.
    """
    for side_data in video.get("side_data_list", []):
        if "rotation" in side_data:
            return round(float(side_data["rotation"]) / 90) * 90 % 360
    rotate = _float(video.get("tags", {}).get("rotate"))
    return round(-rotate / 90) * 90 % 360 if rotate is not None else 0


def _sample_aspect(video: dict[str, Any]) -> float:
    ratio = _rate(str(video.get("sample_aspect_ratio", "")).replace(":", "/"))
    return ratio if ratio > 0 else 1.0


def _rate(text: Any) -> float:
    """'30000/1001' → 29.97; '0/0', '' or None → 0.0."""
    numerator, _, denominator = str(text or "").partition("/")
    top, bottom = _float(numerator), _float(denominator or "1")
    return top / bottom if top is not None and bottom else 0.0


def _float(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _clock(text: str | None) -> float | None:
    """'00:01:02.500000000' → 62.5 (Matroska DURATION tags)."""
    if not text:
        return None
    parts = [_float(part) for part in text.split(":")]
    if not parts or any(part is None for part in parts):
        return None
    seconds = 0.0
    for part in parts:
        seconds = seconds * 60 + (part or 0.0)
    return seconds
