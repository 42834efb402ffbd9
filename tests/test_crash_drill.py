"""The crash drill (tests/crash_drill.py) with one run: a tiny run SIGKILLed at a random point of
fine-tuning, resumed, ends with the uninterrupted run's results (20 runs: see the README)."""

from __future__ import annotations

from pathlib import Path

from conftest import SYNTH_FOLDER
from crash_drill import drill, results


def test_one_drill_run_is_killed_and_resumes_to_the_reference(
    tiny_synth: Path, tmp_path: Path
) -> None:
    lines: list[str] = []
    (run,) = drill(1, 3, tmp_path, lines.append, tiny_synth / SYNTH_FOLDER, first_stage=2)
    assert run.stage == "finetune" and run.killed_in == "finetune", lines
    assert run.equal, run.differences
    assert lines[-1].endswith("killed in finetune; equal")


def test_results_differ_when_a_result_differs(tmp_path: Path) -> None:
    """The comparison can fail: a changed shard digest is a difference."""
    pool = tmp_path / "extract" / "pool-1"
    pool.mkdir(parents=True)
    (pool / "features-a.json").write_text('{"digest": "aa"}')
    before = results(tmp_path)
    (pool / "features-a.json").write_text('{"digest": "ab"}')
    assert results(tmp_path) != before
