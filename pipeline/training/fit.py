"""Run the training loop for a stage and describe its outputs (shared by pretrain and finetune)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from models.videoclip import VideoCLIP
from pipeline.config import OptimConfig
from pipeline.stage import TrainingFacts
from pipeline.training.data import make_loader
from pipeline.training.loop import train
from pipeline.training.objectives import Objective

CHECKPOINTS = "checkpoints"
# The code a training stage runs (with the stage's own module): part of its cache key.
TRAINING_MODULES = (
    "pipeline.training.fit",
    "pipeline.training.objectives",
    "pipeline.training.loop",
    "pipeline.training.schedule",
    "pipeline.training.checkpoints",
    "pipeline.training.data",
    "pipeline.training.model_factory",
    "pipeline.devices",
    "models",
    "storage",
)
SCHEDULING_FIELDS = ("device", "num_workers")  # change where it runs, not what it learns


def optim_section(optim: OptimConfig) -> dict[str, Any]:
    """The optimiser settings that belong in a cache key."""
    section = asdict(optim)
    for name in SCHEDULING_FIELDS:
        section.pop(name)
    return section


@dataclass(frozen=True)
class Fitted:
    """A finished training run: the stage's outputs and what the loop did."""

    outputs: dict[str, str]  # "weights" (model.safetensors) and "metrics" (metrics.jsonl)
    training: TrainingFacts


def fit(
    model: VideoCLIP,
    objective: Objective,
    dataset: Dataset,
    optim: OptimConfig,
    folder: Path,
    lr_scales: Mapping[str, float] | None = None,
) -> Fitted:
    """Train `model` on `dataset` into `folder/checkpoints` (resuming a killed run); the final
    weights and the per-step metrics are the stage's outputs."""
    steps_per_epoch = math.ceil(len(dataset) / optim.batch_size)

    def loader(epoch: int, skip_batches: int) -> Iterable:
        return make_loader(
            dataset,
            optim.batch_size,
            shuffle=True,
            seed=optim.seed,
            epoch=epoch,
            num_workers=optim.num_workers,
            skip_batches=skip_batches,
        )

    result = train(
        model, objective, loader, steps_per_epoch, optim, folder / CHECKPOINTS, lr_scales=lr_scales
    )
    weights = (result.final_checkpoint / "model.safetensors").relative_to(folder)
    metrics = result.metrics_path.relative_to(folder)
    training = TrainingFacts(
        steps=result.steps,
        steps_per_epoch=steps_per_epoch,
        train_seconds=round(result.seconds, 1),
        resumed_from_step=result.resumed_from,
        items=len(dataset),
    )
    return Fitted(outputs={"weights": str(weights), "metrics": str(metrics)}, training=training)
