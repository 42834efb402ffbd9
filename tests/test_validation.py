"""Validation during fine-tuning (finetune.validation): the held-out videos, the per-epoch
records with the selector's precision against the ground truth, and the kept epoch."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from safetensors.torch import load_file
from tiny_model import TINY_MODEL

from pipeline.config import (
    BenchmarkConfig,
    ConfigError,
    DatasetConfig,
    EvaluateConfig,
    FinecoConfig,
    FinetuneConfig,
    OptimConfig,
    ValidationConfig,
)
from pipeline.config.loading import load_config
from pipeline.evaluate import EvaluateInputs, run_evaluate
from pipeline.evaluation.validation import (
    choose_temperature,
    holdout_videos,
    selector_entropy,
    validation_pairs,
)
from pipeline.feature_import import ImportInputs, run_import
from pipeline.finetune import FinetuneInputs, run_finetune
from pipeline.ingest import IngestInputs, run_ingest
from pipeline.reporting.tables import ds_label
from pipeline.stage import stage_key
from pipeline.synth.long_sparse import FEATURES, YOUCOOK_FILE, write_benchmark

MODEL = dataclasses.replace(TINY_MODEL, max_video_len=256)
HOLDOUT = ValidationConfig(holdout_share=0.25, select="best", precision_k=3)


def test_held_out_videos_are_a_stable_share_chosen_by_id() -> None:
    videos = [f"v{i:03d}" for i in range(40)]
    held = holdout_videos(videos, 0.1)
    assert len(held) == 4 and held == holdout_videos(reversed(videos), 0.1)
    assert held <= holdout_videos(videos, 0.3)  # a larger share only adds videos
    assert len(holdout_videos(videos[:3], 0.01)) == 1  # at least one ...
    assert len(holdout_videos(videos[:2], 0.5)) == 1  # ... and never every video
    assert holdout_videos(videos, 0.0) == holdout_videos(videos[:1], 0.5) == set()


def test_validation_pairs_keep_each_video_on_one_side() -> None:
    pairs = pd.DataFrame(
        {
            "pair_id": [f"p{i}" for i in range(30)],
            "video_id": [f"v{i % 10}" for i in range(30)],  # three captions per video
            "split": ["train"] * 24 + ["val"] * 6,
        }
    )
    train, held = validation_pairs(pairs, "train", ValidationConfig(holdout_share=0.25))
    assert held is not None and len(train) + len(held) == 24
    assert not set(train.video_id) & set(held.video_id)
    train, held = validation_pairs(pairs, "train", ValidationConfig(split="val"))
    assert len(train) == 24 and held is not None and set(held.split) == {"val"}
    train, held = validation_pairs(pairs, "train", ValidationConfig())
    assert len(train) == 24 and held is None


def test_selector_entropy_is_one_for_uniform_and_near_zero_for_one_frame() -> None:
    assert selector_entropy([np.zeros(8), np.zeros(3)]) == pytest.approx(1.0)
    assert selector_entropy([np.array([50.0, 0.0, 0.0, 0.0])]) < 1e-6
    assert selector_entropy([np.zeros(1)]) is None  # one frame: nothing to choose


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("finetune.validation.select=best", "select=best with holdout_share or split"),
        ("finetune.validation.holdout_share=0.7", "holdout_share: 0.7 is above the maximum 0.5"),
    ],
)
def test_validation_settings_are_checked(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config("tiny", [override])
    with pytest.raises(ConfigError, match="holdout_share or split, not both"):
        load_config(
            "tiny", ["finetune.validation.holdout_share=0.1", "finetune.validation.split=val"]
        )


@pytest.fixture(scope="module")
def long_set(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object, object, Path]:
    """A small long-sparse set, ingested and its features imported."""
    out = tmp_path_factory.mktemp("validation")
    write_benchmark(BenchmarkConfig(train_clips=24, test_clips=8, pretrain_videos=2), out)
    artifacts = out / "artifacts"
    dataset = DatasetConfig(
        adapter="youcook2", root=str(out / "long"), annotations=YOUCOOK_FILE, features=FEATURES
    )
    ingest = run_ingest(IngestInputs(artifacts=artifacts, dataset="long", config=dataset))
    extract = run_import(ImportInputs(artifacts=artifacts, dataset="long", ingest=ingest))
    return artifacts, ingest, extract, out / "long"


def finetune_inputs(long_set: tuple, validation: ValidationConfig) -> FinetuneInputs:
    artifacts, ingest, extract, _ = long_set
    config = FinetuneConfig(
        dataset="long",
        from_pretrain=False,
        baseline=False,
        fineco=FinecoConfig(strategy="median"),
        optim=OptimConfig(epochs=3, batch_size=6, warmup_steps=1, device="cpu", amp="off"),
        validation=validation,
    )
    return FinetuneInputs(
        artifacts=artifacts, variant="fineco", config=config, model=MODEL, ingest=ingest,
        extract=extract,
    )  # fmt: skip


def test_every_epoch_is_validated_and_the_best_one_kept(long_set: tuple) -> None:
    manifest = run_finetune(finetune_inputs(long_set, HOLDOUT))
    training = manifest.info.training
    assert training.items == 18  # 24 training clips, a quarter of the videos held out
    lines = [json.loads(line) for line in manifest.output("epochs").read_text().splitlines()]
    assert [line["epoch"] for line in lines] == [0, 1, 2]
    for line in lines:
        assert line["queries"] == line["clips"] == 6
        assert 0 <= line["r1"] <= line["r5"] <= 100 and 0 < line["selector_entropy"] <= 1
        assert 0 <= line["selector_precision"] <= 1 and 0 < line["selector_random"] <= 0.25
    scores = [line["r1"] for line in lines]
    selection = training.selection
    assert selection is not None and selection.select == "best"
    assert selection.best_epoch == selection.selected_epoch == scores.index(max(scores))
    assert selection.criterion == "validation R@1" and selection.validation_pairs == 6
    assert "25% of the 'train' videos held out" in selection.validation
    assert [line["best"] for line in lines][selection.best_epoch]
    assert manifest.output("weights").name == "best.safetensors"
    kept = load_file(manifest.output("weights"))
    best = json.loads((manifest.output("weights").parent / "best.json").read_text())
    assert best["epoch"] == selection.selected_epoch and set(kept)


def test_validation_on_the_training_split_is_refused(long_set: tuple) -> None:
    with pytest.raises(ValueError, match=r"finetune.validation.split = 'train' is finetune.split"):
        run_finetune(finetune_inputs(long_set, ValidationConfig(split="train", select="best")))


def test_select_last_keeps_the_last_weights_and_the_ground_truth_is_declared(
    long_set: tuple,
) -> None:
    inputs = finetune_inputs(long_set, dataclasses.replace(HOLDOUT, select="last"))
    assert "ground_truth" in inputs.files()
    assert "ground_truth" not in finetune_inputs(long_set, ValidationConfig()).files()
    manifest = run_finetune(inputs)
    selection = manifest.info.training.selection
    assert selection is not None and selection.selected_epoch == 2
    assert manifest.output("weights").name == "model.safetensors"
    truth = long_set[3] / "ground_truth.json"
    before = stage_key(inputs)
    original = truth.read_text()
    try:
        truth.write_text(original.replace('"seconds": [', '"seconds": [0, ', 1))
        assert stage_key(finetune_inputs(long_set, inputs.config.validation)) != before
    finally:
        truth.write_text(original)


def test_the_dual_softmax_temperature_is_the_best_on_validation_ties_to_the_larger() -> None:
    # query 1's clip loses on raw scores; DualSoftmax at a low T lifts it (clip 0 is claimed by
    # query 0), at a high T the order is the raw one again
    scores = np.array([[10.0, 1.0], [9.0, 8.5]])
    temperature, r1 = choose_temperature(scores, np.array([0, 1]), (0.1, 1.0, 100.0))
    assert r1 == {"0.1": 100.0, "1": 100.0, "100": 50.0} and temperature == 1.0
    assert ds_label({"dual_softmax_temperature": 1.0}) == "yes, T=1 (fixed)"
    chosen = {"dual_softmax_temperature": 0.3, "dual_softmax_choice": {"chosen_on": "validation"}}
    assert ds_label(chosen) == "yes, T=0.3 (val)"


def test_evaluate_chooses_the_temperature_on_the_runs_validation_pairs(long_set: tuple) -> None:
    artifacts, ingest, extract, _ = long_set
    config = EvaluateConfig(dataset="long", split="val", batch_size=8, device="cpu")
    for validation, chosen_on in ((HOLDOUT, "validation R@1 over 6 pairs"), (None, "not tuned")):
        finetune = run_finetune(finetune_inputs(long_set, validation or ValidationConfig()))
        assert ("validation_pairs" in finetune.outputs) == (validation is not None)
        scoring = EvaluateInputs(
            artifacts=artifacts, variant="fineco", config=config, model=MODEL,
            finetune=finetune, ingest=ingest, extract=extract,
        )  # fmt: skip
        evaluated = run_evaluate(scoring)
        metrics = json.loads(evaluated.output("metrics").read_text())
        assert chosen_on in metrics["dual_softmax_choice"]["chosen_on"]
        if validation is None:
            assert metrics["dual_softmax_temperature"] == config.dual_softmax_temperature
        else:
            r1 = metrics["dual_softmax_choice"]["validation_r1"]
            assert set(r1) == {f"{t:g}" for t in config.dual_softmax_grid}
            best = max(r1.values())
            assert r1[f"{metrics['dual_softmax_temperature']:g}"] == best


def test_the_temperature_stays_fixed_when_evaluating_another_dataset(long_set: tuple) -> None:
    """Validation pairs of `long` say nothing of `short`'s scores: T is the config's, and why."""
    artifacts, _, _, long_root = long_set
    dataset = DatasetConfig(
        adapter="youcook2",
        root=str(long_root.parent / "short"),
        annotations=YOUCOOK_FILE,
        features=FEATURES,
    )
    ingest = run_ingest(IngestInputs(artifacts=artifacts, dataset="short", config=dataset))
    extract = run_import(ImportInputs(artifacts=artifacts, dataset="short", ingest=ingest))
    finetune = run_finetune(finetune_inputs(long_set, HOLDOUT))
    assert "validation_pairs" in finetune.outputs
    config = EvaluateConfig(dataset="short", split="val", batch_size=8, device="cpu")
    scoring = EvaluateInputs(
        artifacts=artifacts, variant="fineco", config=config, model=MODEL,
        finetune=finetune, ingest=ingest, extract=extract,
    )  # fmt: skip
    metrics = json.loads(run_evaluate(scoring).output("metrics").read_text())
    assert metrics["dual_softmax_temperature"] == config.dual_softmax_temperature
    chosen_on = metrics["dual_softmax_choice"]["chosen_on"]
    assert "the validation pairs are of 'long', this evaluation of 'short'" in chosen_on
