"""Every stage on tiny synthetic data: ingest → … → report, caching and targeted reruns."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pipeline.config import STAGES
from pipeline.config.loading import load_config
from pipeline.datasets.synthetic import GROUND_TRUTH_FILE
from pipeline.runner import run_stages
from storage.tables import read_table


@pytest.fixture
def artifacts(tiny_synth: Path) -> Path:
    return tiny_synth


@pytest.fixture
def first_run(tiny_run: dict) -> dict:
    return tiny_run


def test_all_stages_write_their_outputs(first_run: dict) -> None:
    assert set(first_run) == {"howto100m", "youcook2", "pretrain", "fineco", "baseline", "report"}
    metrics = json.loads(first_run["fineco"]["evaluate"].output("metrics").read_text())
    for block in ("plain", "dual_softmax", "mmpt", "mmpt_dual_softmax"):
        assert set(metrics[block]) == {"R@1", "R@5", "R@10", "MedR", "MeanR"}
    assert metrics["frame_precision"]["pairs"] > 0
    assert metrics["s3d_random_init"] is True
    assert first_run["fineco"]["finetune"].info.started_from.endswith(
        first_run["pretrain"]["pretrain"].cache_key
    )
    baseline = first_run["baseline"]["finetune"].info
    assert baseline.fineco["enabled"] is False
    log = first_run["fineco"]["finetune"].output("metrics").read_text().splitlines()
    assert "l1" in json.loads(log[-1])["parts"]
    report = first_run["report"]["report"].output("report").read_text()
    assert "randomly initialised" in report and "| ours: fineco (fixed_k, k=2) | no |" in report
    assert "| ours: baseline (VideoCLIP, no L1) | yes, T=1 (fixed) |" in report


def test_second_run_is_all_cache_hits(artifacts: Path, first_run: dict) -> None:
    files = {p: p.stat().st_mtime_ns for p in artifacts.rglob("*") if p.is_file()}
    assert run_stages(load_config("tiny"), STAGES, artifacts) == first_run
    assert {p: p.stat().st_mtime_ns for p in artifacts.rglob("*") if p.is_file()} == files


def test_strategy_change_reruns_only_the_fineco_branch(artifacts: Path, first_run: dict) -> None:
    config = load_config("tiny", ["finetune.fineco.strategy=median"])
    second = run_stages(config, STAGES, artifacts)
    unchanged = ["howto100m", "youcook2", "pretrain", "baseline"]
    assert {group: second[group] for group in unchanged} == {g: first_run[g] for g in unchanged}
    for stage in ("finetune", "evaluate"):
        assert second["fineco"][stage].path != first_run["fineco"][stage].path
    assert second["report"]["report"].path != first_run["report"]["report"].path


def test_killed_finetune_resumes_from_its_checkpoint(artifacts: Path, first_run: dict) -> None:
    """A stage folder without a manifest (killed run) resumes from its last checkpoint. The
    session's folder is put back afterwards (its metrics log has other timings)."""
    done = first_run["fineco"]["finetune"]
    folder = Path(done.path)
    kept = folder.parent / "complete-copy"
    shutil.copytree(folder, kept)
    try:
        (folder / "manifest.json").unlink()
        checkpoints = sorted((folder / "checkpoints").glob("checkpoint-*"))
        shutil.rmtree(checkpoints[-1])  # as if killed after the previous checkpoint
        (folder / "checkpoints" / "latest").write_text(checkpoints[-2].name)
        again = run_stages(load_config("tiny"), ["finetune"], artifacts)["fineco"]["finetune"]
    finally:
        shutil.rmtree(folder)
        kept.rename(folder)
    assert again.info.training.resumed_from_step is not None
    weights = again.output_digests["weights"]
    assert weights == done.output_digests["weights"]  # bit-for-bit the same weights


def test_editing_the_ground_truth_reruns_exactly_the_stages_that_read_it(
    artifacts: Path, first_run: dict
) -> None:
    """The ground truth is a declared input of evaluate and report only: no other stage reruns,
    and the evaluation sees the edit (one test pair's truth removed: one pair fewer scored)."""
    truth_path = artifacts / "synth" / "tiny" / "youcook2" / GROUND_TRUTH_FILE
    original = truth_path.read_bytes()
    pairs = read_table(first_run["youcook2"]["ingest"].output("pairs"))
    truth = json.loads(original)
    removed = next(pair for pair in pairs[pairs.split == "val"].pair_id if pair in truth)
    del truth[removed]
    try:
        truth_path.write_text(json.dumps(truth))
        edited = run_stages(load_config("tiny"), STAGES, artifacts)
    finally:
        truth_path.write_bytes(original)
    unchanged = ("howto100m", "youcook2", "pretrain")
    assert {group: edited[group] for group in unchanged} == {g: first_run[g] for g in unchanged}
    for variant in ("fineco", "baseline"):
        assert edited[variant]["finetune"] == first_run[variant]["finetune"]
        assert edited[variant]["evaluate"].path != first_run[variant]["evaluate"].path
    assert edited["report"]["report"].path != first_run["report"]["report"].path

    def precision_pairs(results: dict) -> int:
        metrics = json.loads(results["fineco"]["evaluate"].output("metrics").read_text())
        return metrics["frame_precision"]["pairs"]

    assert precision_pairs(edited) == precision_pairs(first_run) - 1
    assert run_stages(load_config("tiny"), STAGES, artifacts) == first_run  # restored: cached
