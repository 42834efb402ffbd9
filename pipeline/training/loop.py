"""The training loop shared by pretraining and fine-tuning (DESIGN.md §5; videoclip-facts §2.2).

VideoCLIP's recipe: Adam (betas 0.9/0.98, weight decay 0), linear warm-up then polynomial decay
to 0 over the real run length, gradient clipping, mixed precision on GPU. The loop checkpoints
into `out_dir` (training/checkpoints.py) and resumes from its latest checkpoint bit for bit: model,
optimizer, scheduler, loss scale and every RNG state are restored, and the loader is asked for the
rest of the interrupted epoch. `out_dir/metrics.jsonl` holds one JSON line per optimizer step.
Under DDP (training/ddp.py) ranks > 0 reseed by (seed, step, rank) on a resume: their dropout
and `random`-strategy draws are not an uninterrupted run's.

With an `on_epoch` hook (validation), every epoch ends with a checkpoint and then the hook; its
record goes to `out_dir/epochs.jsonl`, one line per epoch. A run killed between the checkpoint and
the line validates that epoch when it resumes. The hook must not draw from the global RNGs (an
evaluation pass in eval mode does not), so a run with validation trains exactly as one without.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.optim.lr_scheduler import LambdaLR

from models.distributed import gathering
from pipeline.config import OptimConfig
from pipeline.devices import resolve_device
from pipeline.progress import report as report_progress
from pipeline.training import ddp
from pipeline.training.checkpoints import (
    check_resumable,
    checkpoint_name,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from pipeline.training.records import (
    StepLog,
    append_line,
    log_epoch,
    read_lines,
    truncate_metrics,
)
from pipeline.training.schedule import check_decay, effective_warmup, lr_factor, resolve_amp
from storage.atomic import fsync_path

log = logging.getLogger(__name__)

METRICS = "metrics.jsonl"
EPOCHS = "epochs.jsonl"


class NonFiniteLossError(RuntimeError):
    """A NaN or infinite loss (or gradient norm): training stops before the optimizer step."""


@dataclass
class LossTerms:
    total: Tensor  # () the loss to minimise
    parts: dict[str, float]  # named components, logged to metrics.jsonl


@dataclass
class TrainResult:
    steps: int  # optimizer steps done in total (all runs of this out_dir)
    final_checkpoint: Path  # the checkpoint folder holding the weights the model now has
    metrics_path: Path
    seconds: float  # wall time of this call
    resumed_from: int | None  # the checkpoint step this call started from, None for a fresh run


LoaderFn = Callable[[int, int], Iterable[Any]]  # (epoch, skip_batches) -> that epoch's batches
LossFn = Callable[[nn.Module, Any], LossTerms]  # (model, batch on the device) -> loss terms
# (model, the epoch just finished) -> its record for epochs.jsonl (JSON-able values)
EpochHook = Callable[[nn.Module, int], dict[str, Any]]


@dataclass
class _Progress:
    step: int = 0  # optimizer steps done
    epoch: int = 0  # the epoch the next batch comes from
    step_in_epoch: int = 0  # batches of `epoch` already trained on
    seconds: float = 0.0  # training wall time of earlier calls

    def advance(self, steps_per_epoch: int) -> None:
        self.step += 1
        self.step_in_epoch += 1
        if self.step_in_epoch == steps_per_epoch:
            self.epoch += 1
            self.step_in_epoch = 0


def train(
    model: nn.Module,
    loss_fn: LossFn,
    loader_fn: LoaderFn,
    steps_per_epoch: int,
    config: OptimConfig,
    out_dir: Path,
    stop_after: int | None = None,
    log_every: int = 10,
    lr_scales: Mapping[str, float] | None = None,
    on_epoch: EpochHook | None = None,
) -> TrainResult:
    """Train `model` for `config.epochs` epochs of `steps_per_epoch` batches, or continue the run
    whose checkpoints are in `out_dir`. On return the model holds the final checkpoint's weights
    (also for a run that was already complete) and is in the train/eval mode it came in.

    `loader_fn(epoch, skip_batches)` gives epoch `epoch`'s batches (each with `.to(device)` and
    `.size`) without its first `skip_batches`; the order must depend on (seed, epoch) only and
    loading must not draw from torch's global RNG, so a resumed run sees the same batches and
    dropout masks as an uninterrupted one. `stop_after` stops (after a checkpoint) once that many
    steps are done in total. Raises NonFiniteLossError on a NaN/inf loss, before the update.
    `on_epoch` runs after each epoch's checkpoint (module docstring).
    """
    started = time.perf_counter()
    if steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch must be >= 1, found {steps_per_epoch}")
    was_training = model.training
    trainer = _Trainer(model, loss_fn, steps_per_epoch, config, out_dir, started, lr_scales or {})
    trainer.on_epoch = on_epoch
    checkpoint = latest_checkpoint(out_dir)
    resumed_from = None
    if checkpoint is None:
        _seed_everything(config.seed)
    else:
        trainer.restore(checkpoint)
        resumed_from = trainer.progress.step
    ddp.reseed(config.seed, trainer.progress.step)
    if ddp.is_main():  # under DDP rank 0 writes every file (training/ddp.py)
        truncate_metrics(trainer.metrics_path, trainer.progress.step)
        truncate_metrics(trainer.epochs_path, trainer.progress.step)
        trainer.catch_up_epoch()
    stop = trainer.total_steps if stop_after is None else min(stop_after, trainer.total_steps)
    if trainer.progress.step < stop:
        checkpoint = trainer.run(loader_fn, stop, log_every)
    ddp.barrier()  # every rank returns once rank 0's last checkpoint and records are written
    model.train(was_training)
    seconds = time.perf_counter() - started
    return TrainResult(
        trainer.progress.step, checkpoint, trainer.metrics_path, seconds, resumed_from
    )


def parameter_groups(
    model: nn.Module, lr: float, lr_scales: Mapping[str, float]
) -> list[dict[str, Any]]:
    """Adam's parameter groups: parameters whose name starts with a prefix of `lr_scales` learn
    at `lr` × its scale (e.g. {"frame_selector.": 10.0}), every other one at `lr`."""
    groups: dict[float, list[nn.Parameter]] = {}
    for name, parameter in model.named_parameters():
        scale = next((s for prefix, s in lr_scales.items() if name.startswith(prefix)), 1.0)
        groups.setdefault(scale, []).append(parameter)
    return [{"params": params, "lr": lr * scale} for scale, params in sorted(groups.items())]


class _Trainer:
    """The optimizer, schedule and progress of one run, and the steps that move it on."""

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        steps_per_epoch: int,
        config: OptimConfig,
        out_dir: Path,
        started: float,
        lr_scales: Mapping[str, float],
    ) -> None:
        self.model, self.loss_fn, self.config, self.out_dir = model, loss_fn, config, out_dir
        self.steps_per_epoch, self.started = steps_per_epoch, started
        self.device = ddp.local_device(resolve_device(config.device))
        self.amp_dtype = resolve_amp(config.amp, self.device)
        self.total_steps = config.epochs * steps_per_epoch
        self.warmup = effective_warmup(config.warmup_steps, self.total_steps)
        model.to(self.device)
        self.distributed = ddp.wrap(model, loss_fn, self.device)  # None in one process
        self.main = ddp.is_main()
        self.optimizer = torch.optim.Adam(
            parameter_groups(model, config.lr, lr_scales),
            config.lr,
            tuple(config.betas),
            weight_decay=config.weight_decay,
            fused=self.device.type == "cuda",  # one kernel for every parameter's update
        )
        warmup, power = self.warmup, config.decay_power
        total = config.decay_steps or self.total_steps  # the decay's horizon
        check_decay(config.decay_steps, warmup, self.total_steps)
        self.scheduler = LambdaLR(self.optimizer, lambda s: lr_factor(s, warmup, total, power))
        fp16 = self.amp_dtype == torch.float16
        self.scaler = torch.amp.GradScaler("cuda") if fp16 else None
        self.max_norm = config.grad_clip if config.grad_clip > 0 else math.inf
        self.progress = _Progress()
        self.clock = started  # end of the previous step
        out_dir.mkdir(parents=True, exist_ok=True)
        self.metrics_path = out_dir / METRICS
        self.epochs_path = out_dir / EPOCHS
        self.on_epoch: EpochHook | None = None

    def restore(self, checkpoint: Path) -> None:
        state = load_checkpoint(checkpoint, self.model, self.optimizer, self.scheduler, self.scaler)
        check_resumable(checkpoint, state, self.config, self.steps_per_epoch)
        self.progress = _Progress(
            state["step"], state["epoch"], state["step_in_epoch"], state.get("seconds", 0.0)
        )
        log.info("resuming from %s (step %d/%d)", checkpoint, state["step"], self.total_steps)

    def save(self) -> Path:
        """Write a checkpoint of the current step (rank 0 only under DDP); returns its folder."""
        progress = self.progress
        if not self.main:
            return self.out_dir / checkpoint_name(progress.step)
        trainer_state = {
            "epoch": progress.epoch,
            "step_in_epoch": progress.step_in_epoch,
            "total_steps": self.total_steps,
            "steps_per_epoch": self.steps_per_epoch,
            "warmup_steps": self.warmup,
            "seconds": self.seconds(),
            "amp": str(self.amp_dtype).removeprefix("torch.") if self.amp_dtype else "off",
            "config": asdict(self.config),
        }
        return save_checkpoint(
            self.out_dir,
            progress.step,
            self.model,
            self.optimizer,
            self.scheduler,
            trainer_state,
            self.scaler,
        )

    def seconds(self) -> float:
        """Training wall time over every call on this out_dir."""
        return self.progress.seconds + time.perf_counter() - self.started

    def run(self, loader_fn: LoaderFn, stop: int, log_every: int) -> Path:
        """Step until `stop` steps are done, checkpointing every `checkpoint_every` steps and at
        `stop`; returns the last checkpoint."""
        log.info(
            "training steps %d..%d of %d (%d epochs × %d) on %s%s, amp %s, warm-up %d",
            *(self.progress.step + 1, stop, self.total_steps, self.config.epochs),
            *(self.steps_per_epoch, self.device, ddp.ranks_note(), self.amp_dtype or "off"),
            self.warmup,
        )
        self.model.train()
        progress, every = self.progress, self.config.checkpoint_every
        window = StepLog(progress.step)
        if self.main:
            report_progress("training steps", progress.step, self.total_steps)
        self.clock = time.perf_counter()
        # Under DDP only rank 0 writes the metrics (the other ranks' lines are the same).
        with self.metrics_path.open("a") if self.main else open(os.devnull, "w") as metrics:
            while progress.step < stop:
                skip = progress.step_in_epoch
                for batch in _epoch_batches(loader_fn, progress.epoch, skip, self.steps_per_epoch):
                    line = self.step(batch)
                    metrics.write(json.dumps(line) + "\n")
                    if self.main:
                        report_progress("training steps", progress.step, self.total_steps)
                    if self.main and log_every > 0 and progress.step % log_every == 0:
                        window.log(line, self.total_steps)
                    epoch_end = self.on_epoch is not None and progress.step_in_epoch == 0
                    if (
                        progress.step == stop
                        or (every > 0 and progress.step % every == 0)
                        or epoch_end
                    ):
                        metrics.flush()  # the metrics of every checkpointed step are on disk
                        if self.main:
                            fsync_path(self.metrics_path)
                        checkpoint = self.save()
                    if epoch_end and self.main:  # the other ranks wait in the next step
                        self.end_epoch()
                    if progress.step == stop:
                        break
        return checkpoint

    def catch_up_epoch(self) -> None:
        """Run the epoch hook for a finished epoch whose record a kill cut off (the run stopped
        between the epoch's checkpoint and its line in epochs.jsonl)."""
        progress = self.progress
        if self.on_epoch is None or progress.step == 0 or progress.step_in_epoch != 0:
            return
        if progress.epoch - 1 not in {line["epoch"] for line in read_lines(self.epochs_path)}:
            self.end_epoch()

    def end_epoch(self) -> None:
        """The hook on the epoch just finished; its record appended to epochs.jsonl."""
        assert self.on_epoch is not None
        epoch = self.progress.epoch - 1
        record = self.on_epoch(self.model, epoch)
        self.model.train()
        append_line(self.epochs_path, {"epoch": epoch, "step": self.progress.step, **record})
        log_epoch(epoch, self.config.epochs, record)

    def step(self, batch: Any) -> dict[str, Any]:
        """One optimizer step; returns its metrics line."""
        batch = batch.to(self.device)
        autocast = (
            torch.autocast(self.device.type, dtype=self.amp_dtype)
            if self.amp_dtype is not None
            else contextlib.nullcontext()
        )
        with autocast, gathering(self.config.gather_negatives):
            if self.distributed is not None:
                total, parts = self.distributed(batch)
            else:
                terms = self.loss_fn(self.model, batch)
                total, parts = terms.total, terms.parts
        # Under DDP: the global batch's loss, and this rank's share to back-propagate (ddp.py).
        total, loss, parts = ddp.weighted(total, parts, batch.size)
        if not math.isfinite(loss):
            raise NonFiniteLossError(
                f"loss is {loss} at step {self.progress.step + 1} ({self._where()}); loss parts "
                f"{parts}; the last checkpoint is left as it was"
            )
        lr = self.optimizer.param_groups[0]["lr"]
        grad_norm = self._update(total)
        epoch = self.progress.epoch
        self.progress.advance(self.steps_per_epoch)
        now = time.perf_counter()  # the step's time includes loading its batch
        elapsed, self.clock = now - self.clock, now
        return {
            "step": self.progress.step,
            "epoch": epoch,
            "lr": lr,
            "loss": loss,
            "parts": parts,
            "grad_norm": grad_norm if math.isfinite(grad_norm) else None,
            "seconds": round(self.seconds(), 3),
            "samples_per_s": round(batch.size * ddp.world_size() / elapsed, 2)
            if elapsed > 0
            else None,
        }

    def _update(self, total: Tensor) -> float:
        """Backward, clip to `grad_clip` (fp16: on unscaled gradients), step; the norm before
        clipping."""
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is None:
            total.backward()
        else:
            self.scaler.scale(total).backward()
            self.scaler.unscale_(self.optimizer)
        parameters = self.model.parameters()
        grad_norm = torch.nn.utils.clip_grad_norm_(parameters, self.max_norm).item()
        if self.scaler is None:
            if not math.isfinite(grad_norm):
                raise NonFiniteLossError(
                    f"gradient norm is {grad_norm} at step {self.progress.step + 1} "
                    f"({self._where()}); the last checkpoint is left as it was"
                )
            self.optimizer.step()
        else:  # skips the update when the scaled gradients overflowed, then lowers the scale
            self.scaler.step(self.optimizer)
            self.scaler.update()
        self.scheduler.step()
        return grad_norm

    def _where(self) -> str:
        progress = self.progress
        return f"epoch {progress.epoch}, batch {progress.step_in_epoch + 1} of the epoch"


def _epoch_batches(
    loader_fn: LoaderFn, epoch: int, skip: int, steps_per_epoch: int
) -> Iterator[Any]:
    """The epoch's batches after the first `skip`: exactly `steps_per_epoch - skip` of them."""
    wanted = steps_per_epoch - skip
    count = 0
    for batch in loader_fn(epoch, skip):
        yield batch
        count += 1
        if count == wanted:
            return
    raise ValueError(
        f"the loader of epoch {epoch} gave {count} batches after skipping {skip}; expected "
        f"{wanted} (steps_per_epoch={steps_per_epoch})"
    )


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # CUDA generators too
