"""The fine-tuned variants of a run: FineCo, the VideoCLIP baseline and the ablation sweep.

`fineco` is the preset's FineCo setting; `baseline` is the same run without FineCo's L1 (with a
canonical disabled FineCo section, so FineCo-only settings never change its cache key); every
`finetune.sweep` point (paper Table 6: positive-frame strategies, Table 7: fixed k) is one more
variant named after its resolved setting, e.g. `fineco-median`, `fineco-fixed_k-k10`,
`fineco-ratio-0.3`, `fineco-random-k50`. A point that resolves to the preset's own setting (or to
an earlier point) is the same run and is not repeated.
"""

from __future__ import annotations

import dataclasses

from pipeline.config import FinecoConfig, FinetuneConfig, SweepPoint

MAIN, BASELINE = "fineco", "baseline"


def sweep_fineco(base: FinecoConfig, point: SweepPoint) -> FinecoConfig:
    """The preset's FineCo section with a sweep point's non-empty fields replacing its own."""
    changes: dict[str, object] = {"enabled": True}
    if point.strategy:
        changes["strategy"] = point.strategy
    if point.k:
        changes["k"] = point.k
    if point.ratio:
        changes["ratio"] = point.ratio
    if point.positives:
        changes["positives"] = point.positives
    if point.selector_lr_scale:
        changes["selector_lr_scale"] = point.selector_lr_scale
    return dataclasses.replace(base, **changes)


def variant_name(fineco: FinecoConfig) -> str:
    """`fineco-<strategy>` plus the parameter that strategy reads, and `-sim` when positives
    are ranked by the frame-text similarity instead of the selector."""
    if fineco.strategy in ("fixed_k", "random"):
        name = f"fineco-{fineco.strategy}-k{fineco.k}"
    elif fineco.strategy == "ratio":
        name = f"fineco-ratio-{fineco.ratio:g}"
    else:
        name = f"fineco-{fineco.strategy}"
    if fineco.positives == "similarity":
        name += "-sim"
    if fineco.selector_lr_scale != 1.0:
        name += f"-slr{fineco.selector_lr_scale:g}"
    return name


def variant_settings(config: FinetuneConfig) -> dict[str, FinetuneConfig]:
    """Every variant a config asks for, in run order: fineco, the sweep, then the baseline."""
    settings: dict[str, FinetuneConfig] = {}
    seen: list[FinecoConfig] = []
    if config.fineco.enabled:
        settings[MAIN] = config
        seen.append(config.fineco)
    for point in config.sweep:
        fineco = sweep_fineco(config.fineco, point)
        if fineco in seen:
            continue
        seen.append(fineco)
        settings[variant_name(fineco)] = dataclasses.replace(config, fineco=fineco)
    if config.baseline or not config.fineco.enabled:
        settings[BASELINE] = dataclasses.replace(config, fineco=FinecoConfig(enabled=False))
    return settings
