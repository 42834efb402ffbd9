"""The `fineco` command line and the benches it runs, on tiny inputs."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.cli import main
from pipeline.bench.decode import bench_decode, format_bench, make_bench_video
from pipeline.config import DecodeConfig
from pipeline.video.probe import probe_video


def test_bench_extract_prints_a_table(capsys: pytest.CaptureFixture[str]) -> None:
    args = [
        "bench",
        "extract",
        "--config",
        "tiny",
        "--seconds",
        "2",
        "--repeats",
        "1",
        "--demo-only",
    ]
    assert main([*args, "extract.batch_seconds=2", "extract.threads=1"]) == 0
    out = capsys.readouterr().out
    assert "extract bench: S3D-G on cpu (1 threads), 2 one-second clips in batches of 2" in out
    assert "4 x 32px" in out and "30 x 224px" not in out


def test_bench_decode_accepts_overrides_after_options(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    video = make_bench_video(tmp_path / "v.mp4", 2, 128, 64, 10)  # decord: not 48 px wide
    monkeypatch.setenv("FINECO_ARTIFACTS", str(tmp_path))
    args = ["bench", "decode", "--config", "tiny", "--video", str(video), "--repeats", "1"]
    assert main([*args, "decode.frames_per_second=6"]) == 0
    out = capsys.readouterr().out
    assert "→ 6 frames/s at 32x32" in out and "ffmpeg -f null" in out


def test_unknown_stage_is_an_error(caplog: pytest.LogCaptureFixture) -> None:
    assert main(["run", "--config", "tiny", "--stages", "ingest,decod"]) == 2
    assert "unknown stage(s) ['decod']" in caplog.text


def test_bench_decode_times_all_three_methods(tmp_path: Path) -> None:
    video = make_bench_video(tmp_path / "bench.mp4", seconds=2, width=96, height=64, fps=10)
    info = probe_video(video)
    assert (info.duration_s, info.width, info.codec, info.has_audio) == (2.0, 96, "h264", True)
    config = DecodeConfig(backend="ffmpeg", frames_per_second=6, size=40)
    result = bench_decode(video, config, repeats=1)
    methods = result["methods"]
    assert set(methods) == {"ffmpeg", "decord", "bare"}
    assert methods["ffmpeg"]["frames"] == methods["decord"]["frames"] == 2 * 6
    assert methods["bare"]["vs_bare"] == 1.0
    assert methods["ffmpeg"]["rss_child_mib"] > 0 and methods["decord"]["rss_child_mib"] == 0
    table = format_bench(result).splitlines()
    assert len(table) == 6  # title, header, rule, three methods
