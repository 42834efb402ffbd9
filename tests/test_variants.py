"""Fine-tuned variants: FineCo, the ablation sweep points and the baseline."""

from __future__ import annotations

import pytest

from pipeline.config import ConfigError, FinecoConfig
from pipeline.config.loading import load_config
from pipeline.training.variants import variant_settings


def test_table6_preset_expands_into_one_variant_per_strategy() -> None:
    config = load_config("youcook2_table6").finetune
    settings = variant_settings(config)
    names = list(settings)
    assert names[0] == "fineco" and names[-1] == "baseline"
    # k = 50 is the preset's own setting: listed in the sweep, run once.
    assert "fineco-fixed_k-k50" not in names
    assert names[1:-1] == [
        "fineco-fixed_k-k1",
        "fineco-fixed_k-k10",
        "fineco-fixed_k-k30",
        "fineco-fixed_k-k100",
        "fineco-fixed_k-k256",
        "fineco-median",
        "fineco-ratio-0.3",
        "fineco-ratio-0.5",
        "fineco-ratio-0.8",
        "fineco-random-k50",
    ]
    median = settings["fineco-median"].fineco
    assert (median.strategy, median.k, median.enabled) == ("median", 50, True)
    ratio = settings["fineco-ratio-0.3"].fineco
    assert (ratio.strategy, ratio.ratio) == ("ratio", 0.3)


def test_baseline_ignores_fineco_and_sweep_settings() -> None:
    one = load_config("tiny", ["finetune.fineco.k=3"]).finetune
    two = load_config("tiny", ["finetune.fineco.k=7", "finetune.sweep=[{k: 2}]"]).finetune
    baseline = variant_settings(one)["baseline"].fineco
    assert baseline == FinecoConfig(enabled=False)
    assert baseline == variant_settings(two)["baseline"].fineco
    assert list(variant_settings(two)) == ["fineco", "fineco-fixed_k-k2", "baseline"]


def test_disabled_fineco_keeps_the_sweep_and_the_baseline() -> None:
    config = load_config(
        "tiny", ["finetune.fineco.enabled=false", "finetune.sweep=[{strategy: median}]"]
    ).finetune
    assert list(variant_settings(config)) == ["fineco-median", "baseline"]


def test_bad_sweep_point_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"finetune\.sweep\[0\]\.strategy: .top. is not one of"):
        load_config("tiny", ["finetune.sweep=[{strategy: top}]"])
    with pytest.raises(ConfigError, match=r"finetune\.sweep\[0\]\.size: unknown key"):
        load_config("tiny", ["finetune.sweep=[{size: 3}]"])


def test_init_checkpoint_and_from_pretrain_are_exclusive() -> None:
    with pytest.raises(ConfigError, match="init_checkpoint only with from_pretrain=false"):
        load_config("tiny", ["finetune.init_checkpoint=/x.pt", "finetune.from_pretrain=true"])
