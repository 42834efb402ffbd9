"""Run the training loop for a stage and describe its outputs (shared by pretrain and finetune).

With a validator, every epoch is validated (epochs.jsonl, an output) and the run keeps either its
last weights or those of its best epoch by validation R@1: when an epoch beats every earlier one,
its weights are written to `checkpoints/best.safetensors` (atomically, before its epochs line, so
a killed run never records a best epoch whose weights are missing).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from safetensors.torch import save_model
from torch.utils.data import Dataset

from models.videoclip import VideoCLIP
from pipeline.config import OptimConfig
from pipeline.stage import SelectionFacts, TrainingFacts
from pipeline.training import ddp
from pipeline.training.data import make_loader
from pipeline.training.loop import EPOCHS, train
from pipeline.training.objectives import Objective
from pipeline.training.records import read_lines
from storage.atomic import atomic_output, atomic_write_json

log = logging.getLogger(__name__)

Validate = Callable[[VideoCLIP], dict[str, Any]]  # the model → its validation record
EpochOrder = Callable[[VideoCLIP, int], list[int]]  # (model, epoch) → the epoch's item order

CHECKPOINTS = "checkpoints"
BEST_WEIGHTS, BEST_RECORD = "best.safetensors", "best.json"
# What select=best maximises (ties keep the earlier epoch): an epochs.jsonl key → its name.
CRITERIA = {"r1": "validation R@1", "accuracy": "validation answer accuracy"}
# The code a training stage runs (with the stage's own module): part of its cache key.
TRAINING_MODULES = (
    "pipeline.training.fit",
    "pipeline.training.objectives",
    "pipeline.training.loop",
    "pipeline.training.records",
    "pipeline.training.schedule",
    "pipeline.training.checkpoints",
    "pipeline.training.batches",
    "pipeline.training.data",
    "pipeline.training.ddp",
    "pipeline.training.launch",
    "pipeline.training.model_factory",
    "pipeline.devices",
    "models",
    "storage",
)
SCHEDULING_FIELDS = ("device", "num_workers", "nproc")  # change where it runs, not what it learns


def optim_section(optim: OptimConfig) -> dict[str, Any]:
    """The optimiser settings that belong in a cache key."""
    section = asdict(optim)
    for name in SCHEDULING_FIELDS:
        section.pop(name)
    if not optim.gather_negatives:  # each rank's negatives are its own: N changes the loss
        section["nproc"] = optim.nproc
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
    validation: Validation | None = None,
    epoch_order: EpochOrder | None = None,
    contrastive: bool = True,
) -> Fitted:
    """Train `model` on `dataset` into `folder/checkpoints` (resuming a killed run); the kept
    weights (the last, or with `validation` maybe the best epoch's), the per-step metrics and
    the per-epoch validation records are the stage's outputs. `epoch_order`, called at each
    epoch's start with the model as it is then, gives the epoch's items in batch order (exactly
    `steps_per_epoch` batches); else each epoch is a seeded shuffle. `contrastive`: the loss
    takes its negatives from the batch (every objective but QA's answer cross-entropy)."""
    drop = _drops_last_batch(len(dataset), optim.batch_size, contrastive, epoch_order is None)
    steps_per_epoch = math.ceil(len(dataset) / optim.batch_size) - int(drop)
    world, rank = ddp.world_size(), ddp.rank()
    if drop:
        log.info(
            "%d items in batches of %d: each epoch leaves out the last %d",
            *(len(dataset), optim.batch_size, len(dataset) % optim.batch_size),
        )

    def order(epoch: int) -> list[int] | None:
        if epoch_order is None:
            return None
        return ddp.broadcast(epoch_order(model, epoch) if ddp.is_main() else None)

    def loader(epoch: int, skip_batches: int) -> Iterable:
        return make_loader(
            dataset,
            optim.batch_size,
            shuffle=True,
            seed=optim.seed,
            epoch=epoch,
            num_workers=optim.num_workers,
            skip_batches=skip_batches,
            drop_last=drop,
            order=order(epoch),
            rank=rank,
            world_size=world,
        )

    checkpoints = folder / CHECKPOINTS
    hook = _BestKeeper(validation, checkpoints) if validation else None
    result = train(
        model,
        objective,
        loader,
        steps_per_epoch,
        optim,
        checkpoints,
        lr_scales=lr_scales,
        on_epoch=hook,
    )
    weights = (result.final_checkpoint / "model.safetensors").relative_to(folder)
    metrics = result.metrics_path.relative_to(folder)
    outputs = {"weights": str(weights), "metrics": str(metrics)}
    selection = None
    if validation is not None:
        selection = _selection(validation, checkpoints, optim.epochs)
        outputs["epochs"] = str((checkpoints / EPOCHS).relative_to(folder))
        if validation.select == "best":
            outputs["weights"] = str((checkpoints / BEST_WEIGHTS).relative_to(folder))
    training = TrainingFacts(
        steps=result.steps,
        steps_per_epoch=steps_per_epoch,
        train_seconds=round(result.seconds, 1),
        resumed_from_step=result.resumed_from,
        items=len(dataset),
        selection=selection,
    )
    return Fitted(outputs=outputs, training=training)


def _drops_last_batch(items: int, batch_size: int, contrastive: bool, shuffled: bool) -> bool:
    """Whether each epoch leaves out its short last batch.

    A last batch of one item has no negatives: its contrastive loss (VideoCLIP's, FineCo's L2) is
    0, yet AdamW would still move the weights (momentum, weight decay). Another item is left out
    each epoch, since the order is reshuffled. Retrieval batches (`epoch_order`) are always full.

    The rule does not depend on the number of processes, so N processes train exactly the steps
    one process would (and resume under another N). A batch that cannot give every rank a row is
    refused with what to change instead.
    """
    short = items % batch_size
    drop = shuffled and contrastive and short == 1 and items > short
    world = ddp.world_size()
    kept_short = short if shuffled and not drop else 0  # a last batch that is trained on
    if world > 1 and (batch_size < world or items < world or 0 < kept_short < world):
        smallest = min(batch_size, items, kept_short or batch_size)
        raise ValueError(
            f"{world} processes need every batch to give each process an item, but {items} "
            f"items in batches of {batch_size} make a batch of {smallest}: run at most "
            f"{smallest} processes (--nproc, optim.nproc) or change optim.batch_size"
        )
    return drop


@dataclass(frozen=True)
class Validation:
    """How a fine-tuning run validates: the hook, what it keeps, and for the manifest where the
    validation pairs came from."""

    validate: Validate
    select: str  # "last" or "best"
    source: str  # e.g. "10% of the training videos held out"
    pairs: int
    criterion: str = "r1"  # a key of CRITERIA: retrieval R@1, or QA answer accuracy


class _BestKeeper:
    """The loop's epoch hook: validate, and keep the weights of a new best epoch."""

    def __init__(self, validation: Validation, checkpoints: Path) -> None:
        self.validation, self.checkpoints = validation, checkpoints

    def __call__(self, model: VideoCLIP, epoch: int) -> dict[str, Any]:
        record = self.validation.validate(model)
        key = self.validation.criterion
        earlier = [line[key] for line in read_lines(self.checkpoints / EPOCHS)]
        best = not earlier or record[key] > max(earlier)
        if best and self.validation.select == "best":
            with atomic_output(self.checkpoints / BEST_WEIGHTS) as tmp:
                save_model(model, str(tmp))
            atomic_write_json(self.checkpoints / BEST_RECORD, {"epoch": epoch, **record})
        return {**record, "best": best}


def _selection(validation: Validation, checkpoints: Path, epochs: int) -> SelectionFacts:
    """The manifest's account of the kept epoch (read back from the files, so a resumed or
    already complete run says the same)."""
    lines = read_lines(checkpoints / EPOCHS)
    if len(lines) != epochs:
        raise RuntimeError(f"{checkpoints / EPOCHS}: {len(lines)} epochs validated of {epochs}")
    scores = [line[validation.criterion] for line in lines]
    best_epoch = lines[scores.index(max(scores))]["epoch"]
    selected = lines[-1]["epoch"]
    if validation.select == "best":
        selected = json.loads((checkpoints / BEST_RECORD).read_text())["epoch"]
    return SelectionFacts(
        select=validation.select,
        criterion=CRITERIA[validation.criterion],
        validation=validation.source,
        validation_pairs=validation.pairs,
        selected_epoch=selected,
        best_epoch=best_epoch,
    )
