"""`fineco bench memory` on two short videos: the streaming pass embeds every second."""

from __future__ import annotations

from pathlib import Path

from pipeline.bench.memory import bench_memory, format_memory_bench
from pipeline.config.loading import load_config


def test_memory_bench_measures_each_length_in_a_fresh_process(tmp_path: Path) -> None:
    config = load_config("tiny")
    result = bench_memory([0.1, 0.2], config.decode, config.extract, tmp_path)
    first, second = result["runs"]
    assert (first["seconds"], second["seconds"]) == (6, 12)
    assert first["vs_shortest"] == 1.0
    assert second["rss_self_mib"] > 100  # torch alone is more; a real measurement
    assert "0.2 min" in format_memory_bench(result)
