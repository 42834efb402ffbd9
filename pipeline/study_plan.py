"""What `fineco study` runs: its sets, FineCo variants, seeds and sizes (pipeline/study.py wires
the stages; the CLI and the Prefect flow `fineco/study` both start here).

- `study_settings`: the preset with overrides (and `--quick`'s smaller benchmark) and the seeds;
- `study_config` / `seeded`: the datasets pointed at the benchmark's sets; one seed's config;
- `study_methods`: method name → fine-tuning section and model, for each strategy and variant;
- `planned_study_calls`: how many stage calls the study makes (for progress bars).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.config import Config, DatasetConfig, FinecoConfig, FinetuneConfig, ModelConfig
from pipeline.config.loading import load_config
from pipeline.synth.long_sparse import FEATURES, HOWTO_FILE, YOUCOOK_FILE
from pipeline.training.variants import BASELINE, variant_name

PRETRAIN, SETS = "pretrain", ("long", "short")


@dataclass(frozen=True)
class FinecoVariant:
    positives: str  # fineco.positives: "selector" (the paper) or "similarity"
    selector_lr_scale: float  # fineco.selector_lr_scale
    interaction: bool  # model.selector_interaction (method name suffix "-x")


# FineCo as the paper states it ("paper"); the same with a selector learning rate that can move
# it within the fine-tuning budget ("paper-slr10", an ablation); our variant, whose selector also
# sees h_k ⊙ t and learns the ranking of <h_k, t> ("sim"; README, "What the selector learns
# from"). Fixed before any result; the study runs DEFAULT_VARIANTS unless asked for others.
FINECO_VARIANTS = {
    "paper": FinecoVariant("selector", 1.0, interaction=False),
    "paper-slr10": FinecoVariant("selector", 10.0, interaction=False),
    "sim": FinecoVariant("similarity", 10.0, interaction=True),
}
DEFAULT_VARIANTS = ("paper", "sim")
# `--quick`: one seed on a smaller benchmark (the same regime, the same schedules).
QUICK_OVERRIDES = (
    "benchmark.train_clips=300",
    "benchmark.test_clips=150",
    "benchmark.pretrain_videos=120",
)


def study_config(config: Config, benchmark: Path) -> Config:
    """`config` with its datasets pointed at the benchmark's three sets."""

    def features_set(adapter: Any, name: str, annotations: str) -> DatasetConfig:
        root = str(benchmark / name)
        return DatasetConfig(adapter=adapter, root=root, annotations=annotations, features=FEATURES)

    datasets = {
        PRETRAIN: features_set("howto100m", PRETRAIN, HOWTO_FILE),
        **{name: features_set("youcook2", name, YOUCOOK_FILE) for name in SETS},
    }
    pretrain = dataclasses.replace(config.pretrain, dataset=PRETRAIN)
    finetune = dataclasses.replace(config.finetune, from_pretrain=True, init_checkpoint="")
    return dataclasses.replace(config, datasets=datasets, pretrain=pretrain, finetune=finetune)


def seeded(config: Config, seed: int) -> Config:
    """The same study with training seed and weight-init seed `seed`."""
    model = dataclasses.replace(config.model, init_seed=seed)
    pretrain = dataclasses.replace(
        config.pretrain, optim=dataclasses.replace(config.pretrain.optim, seed=seed)
    )
    finetune = dataclasses.replace(
        config.finetune, optim=dataclasses.replace(config.finetune.optim, seed=seed)
    )
    return dataclasses.replace(config, model=model, pretrain=pretrain, finetune=finetune)


def study_methods(
    config: Config, strategies: Sequence[str], variants: Sequence[str] = DEFAULT_VARIANTS
) -> dict[str, tuple[FinetuneConfig, ModelConfig]]:
    """method name → its fine-tuning section and model: each strategy in each FineCo variant
    (FINECO_VARIANTS), then the baseline (no L1, the plain model)."""
    unknown = [name for name in variants if name not in FINECO_VARIANTS]
    if unknown:
        known = ", ".join(FINECO_VARIANTS)
        raise ValueError(f"unknown FineCo variant(s) {unknown}; variants: {known}")
    methods = {}
    for strategy in strategies:
        for variant in (FINECO_VARIANTS[name] for name in variants):
            fineco = dataclasses.replace(
                config.finetune.fineco,
                enabled=True,
                strategy=strategy,
                positives=variant.positives,
                selector_lr_scale=variant.selector_lr_scale,
            )
            model = dataclasses.replace(config.model, selector_interaction=variant.interaction)
            name = variant_name(fineco) + ("-x" if variant.interaction else "")
            finetune = dataclasses.replace(config.finetune, fineco=fineco, baseline=False, sweep=())
            methods[name] = (finetune, model)
    baseline = dataclasses.replace(
        config.finetune, fineco=FinecoConfig(enabled=False), baseline=True, sweep=()
    )
    methods[BASELINE] = (baseline, config.model)
    return methods


def study_settings(
    config: str, overrides: Sequence[str], seeds: int, quick: bool
) -> tuple[Config, list[int]]:
    """The study's config (preset name or YAML path, then `overrides`) and its seeds 0..N-1;
    `quick`: one seed on the smaller benchmark of QUICK_OVERRIDES (explicit overrides win)."""
    if seeds < 1:
        raise ValueError(f"seeds must be at least 1, got {seeds}")
    settings = load_config(config, [*(QUICK_OVERRIDES if quick else ()), *overrides])
    return settings, [0] if quick else list(range(seeds))


def planned_study_calls(seeds: int, strategies: Sequence[str], variants: Sequence[str]) -> int:
    """Stage calls of `run_study`: the benchmark, ingest + import of its three sets, then per seed
    one pretraining and a fine-tune + evaluate per set and method, and the study stage."""
    methods = len(strategies) * len(variants) + 1  # + the baseline
    return 1 + 2 * (1 + len(SETS)) + seeds * (1 + len(SETS) * methods * 2) + 1
