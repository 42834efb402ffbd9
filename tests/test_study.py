"""`fineco study` end to end at test scale: the study.json schema, the ground truth behind its
selector numbers, the paired comparisons, and a rerun that is all cache hits."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from flows.cli import main
from pipeline.config.loading import load_config
from pipeline.study import SETS, run_study
from pipeline.study_plan import DEFAULT_VARIANTS, planned_study_calls

# The study preset at test scale: the same benchmark regime, few clips, a one-layer model.
SMALL = [
    "benchmark.train_clips=24",
    "benchmark.test_clips=12",
    "benchmark.pretrain_videos=8",
    "model.random_hidden=32",
    "model.random_heads=2",
    "model.random_layers=1",
    "model.random_intermediate=37",
    "model.video_layers=1",
    "pretrain.optim.epochs=1",
    "pretrain.optim.device=cpu",
    "finetune.optim.epochs=1",
    "finetune.optim.device=cpu",
    "evaluate.device=cpu",
]
METHODS = {"fineco-median", "fineco-median-sim-slr10-x", "baseline", "query-scored", "oracle"}


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, object]:
    artifacts = tmp_path_factory.mktemp("study")
    manifest = run_study(load_config("study", SMALL), artifacts, seeds=[0, 1])
    return artifacts, json.loads(manifest.output("study").read_text()), manifest


def test_study_json_has_every_set_method_and_seed(study: tuple[Path, dict, object]) -> None:
    _, document, _ = study
    assert set(document) == {
        *("benchmark", "seeds", "queries", "results", "comparisons", "selector"),
        *("epochs", "selection"),  # per-epoch validation and the kept epochs
        "long_vs_short",  # each method's gain on long minus its gain on short
    }
    assert document["seeds"] == [0, 1] and document["queries"] == {"long": 12, "short": 12}
    assert document["benchmark"]["chance_r1"] == pytest.approx(100 / 12)
    runs = {(r["set"], r["method"], r["seed"]) for r in document["results"]}
    assert runs == {(s, m, seed) for s in SETS for m in METHODS for seed in (0, 1)}
    for row in document["results"]:
        assert row["queries"] == 12 and 0 <= row["r1"] <= row["r5"] <= row["r10"] <= 100
        assert (row["selector_precision"] is not None) == row["method"].startswith("fineco")
    pairs = {(c["set"], c["a"], c["b"]) for c in document["comparisons"]}
    assert pairs == {(s, m, "baseline") for s in SETS for m in METHODS - {"baseline"}}
    for comparison in document["comparisons"]:
        low, high = comparison["ci95"]
        assert low <= comparison["r1_diff_mean"] <= high and 0 < comparison["p_value"] <= 1


def test_every_fine_tuning_run_is_validated_per_epoch(study: tuple[Path, dict, object]) -> None:
    """The preset holds out a tenth of the training videos: every run validates each epoch
    (R@1, selector precision against the truth, entropy) and keeps its best epoch."""
    _, document, manifest = study
    trained = METHODS - {"query-scored", "oracle"}
    rows = {(r["set"], r["method"], r["epoch"]): r for r in document["epochs"]}
    assert set(rows) == {(s, m, 0) for s in SETS for m in trained}  # one epoch at test scale
    for row in rows.values():
        assert row["seeds"] == 2 and 0 <= row["r1"] <= 100
        assert 0 <= row["selector_precision"] <= 1 and 0 < row["selector_entropy"] <= 1
    kept = {(r["set"], r["method"], r["seed"]) for r in document["selection"]}
    assert kept == {(s, m, seed) for s in SETS for m in trained for seed in (0, 1)}
    assert all(r["select"] == "best" and r["validation_pairs"] == 2 for r in document["selection"])
    assert "## During training (validation)" in manifest.output("markdown").read_text()


def test_selector_numbers_follow_the_ground_truth(study: tuple[Path, dict, object]) -> None:
    """The random expectation is the test clips' relevant share (first 256 s fed), read back
    from the benchmark's ground truth; the short set is all relevant."""
    artifacts, document, _ = study
    (benchmark,) = artifacts.glob("benchmark/*/benchmark.json")
    long = benchmark.parent / "long"
    truth = json.loads((long / "ground_truth.json").read_text())
    database = json.loads((long / "youcookii_annotations_trainval.json").read_text())["database"]
    shares = [
        len(t["seconds"]) / database[t["video_id"]]["duration"]
        for t in truth.values()
        if database[t["video_id"]]["subset"] == "validation"
    ]
    selector = document["selector"]
    assert selector["long"]["random"] == pytest.approx(np.mean(shares))
    assert selector["short"]["random"] == selector["short"]["oracle"] == 1.0
    assert 0 <= selector["long"]["trained"] <= 1 and selector["long"]["k"] == 5


def test_markdown_states_set_queries_seeds_and_chance(study: tuple[Path, dict, object]) -> None:
    _, _, manifest = study
    text = manifest.output("markdown").read_text()
    assert "## long set (12 queries, 2 seeds)" in text and "chance R@1 = 8.33 %" in text
    assert "paper" not in text.split("\n## ")[1]  # no paper numbers beside synthetic results


def test_cli_runs_the_study_again_from_cache(
    study: tuple[Path, dict, object], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    artifacts, _, manifest = study
    monkeypatch.setenv("FINECO_ARTIFACTS", str(artifacts))
    assert main(["study", "--seeds", "2", *SMALL]) == 0
    assert f"study: {manifest.output('study')}" in capsys.readouterr().out


def test_prefect_flow_runs_the_study_as_cached_tasks(
    study: tuple[Path, dict, object], prefect_server: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deployment fineco/study's flow: every stage call of the study is one task run (here all
    cache hits of the study above), and the same study.json comes back."""
    from prefect_runs import artifacts, task_states

    from flows.study_flow import fineco_study

    root, _, manifest = study
    monkeypatch.setenv("FINECO_ARTIFACTS", str(root))
    state = fineco_study(seeds=2, overrides=SMALL, return_state=True)
    assert state.is_completed(), state
    assert state.result() == str(manifest.output("study"))
    planned = planned_study_calls(2, ["median"], DEFAULT_VARIANTS)
    names = list(task_states(state.state_details.flow_run_id, expect=planned))
    keys = {key for key, _, _ in artifacts(state.state_details.flow_run_id)}
    assert len(names) == planned
    assert "study[study]" in names and "pretrain[seed 1]" in names
    assert "study" in keys  # study.md on the dashboard
