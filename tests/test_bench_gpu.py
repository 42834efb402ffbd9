"""`fineco bench gpu` runs on the CPU with the tiny config (the test the GPU run relies on)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.bench.gpu import bench_gpu, format_gpu_bench
from pipeline.config.loading import load_config


def test_gpu_bench_measures_extract_and_a_fine_tune_step_on_the_cpu(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FINECO_ARTIFACTS", str(tmp_path))
    config = load_config("tiny")
    clip = (config.decode.frames_per_second, config.decode.size)
    result = bench_gpu(config.extract, clip, config.model, config.finetune, 4, 1, peak_tflops=1.0)
    assert result["device"] == "cpu"
    runs = result["extract"]["runs"]
    assert set(runs) == {"fp32 (fp32)", "stage (fp32)"}  # auto precision is fp32 on the CPU
    assert all(run["video_s_per_s"] > 0 for run in runs.values())
    train = result["train"]
    assert train["attention"] == "sdpa"
    assert train["flops"] > 1e6 and train["step_s"] > 0
    assert train["mfu"] == pytest.approx(train["flops"] / train["step_s"] / 1e12)
    assert train["youcook_minutes"] == pytest.approx(15 * 2400 * train["step_s"] / 60)
    text = format_gpu_bench(result)
    assert "MFU (peak 1.0 TFLOP/s)" in text and "YouCookII fine-tune" in text
