"""The `fineco` command line: argument wiring and the bench commands on tiny inputs."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.cli import main


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
    from pipeline.bench.decode import make_bench_video

    video = make_bench_video(tmp_path / "v.mp4", 2, 128, 64, 10)  # decord: not 48 px wide
    monkeypatch.setenv("FINECO_ARTIFACTS", str(tmp_path))
    args = ["bench", "decode", "--config", "tiny", "--video", str(video), "--repeats", "1"]
    assert main([*args, "decode.frames_per_second=6"]) == 0
    out = capsys.readouterr().out
    assert "→ 6 frames/s at 32x32" in out and "ffmpeg -f null" in out


def test_unknown_stage_is_an_error(caplog: pytest.LogCaptureFixture) -> None:
    assert main(["run", "--config", "tiny", "--stages", "ingest,decod"]) == 2
    assert "unknown stage(s) ['decod']" in caplog.text
