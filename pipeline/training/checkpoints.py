"""Training checkpoints: one folder per step, written whole or not at all (DESIGN.md §3).

Layout of `folder/`:

    checkpoint-00000400/
        model.safetensors   the model's state dict (shared tensors stored once)
        optimizer.pt        optimizer.state_dict()
        scheduler.pt        lr scheduler state_dict()
        scaler.pt           fp16 GradScaler state_dict() (only when one is given)
        rng.pt              python `random`, numpy, torch CPU and CUDA generator states
        trainer_state.json  step, epoch, ... whatever the loop needs to continue
    latest                  text file naming the newest complete checkpoint folder

A checkpoint is written into a hidden temporary sibling folder, fsynced, and renamed into place;
only then does `latest` (written atomically) name it. A writer killed at any point leaves `latest`
naming the previous complete checkpoint. Every `.pt` file loads with `weights_only=True`.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, load_model, save_model
from torch import nn

from pipeline.config import OptimConfig
from storage.atomic import atomic_write_text, fsync_path, temporary_path

log = logging.getLogger(__name__)

# What a resumed run must share with its checkpoint: these decide the schedule and the batches.
# Where it runs (device, num_workers), amp, grad_clip and checkpoint_every may change.
RESUME_FIELDS = (
    "epochs",
    "batch_size",
    "lr",
    "betas",
    "weight_decay",
    "warmup_steps",
    "decay_power",
    "decay_steps",
    "seed",
)

LATEST = "latest"
WEIGHTS = "model.safetensors"
OPTIMIZER = "optimizer.pt"
SCHEDULER = "scheduler.pt"
SCALER = "scaler.pt"
RNG = "rng.pt"
TRAINER_STATE = "trainer_state.json"
_NAME = re.compile(r"checkpoint-(\d{8,})")


def checkpoint_name(step: int) -> str:
    return f"checkpoint-{step:08d}"


def save_checkpoint(
    folder: Path,
    step: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    trainer_state: dict[str, Any],
    scaler: torch.amp.GradScaler | None = None,
    keep: int = 2,
) -> Path:
    """Write `folder/checkpoint-<step>/`, point `latest` at it, keep the newest `keep` checkpoints.

    `trainer_state` must be JSON-able; `step` is added to it. Returns the checkpoint folder.
    """
    if keep < 1:
        raise ValueError(f"keep must be >= 1, found {keep}")
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / checkpoint_name(step)
    tmp = temporary_path(final)
    tmp.mkdir()
    try:
        _write_contents(tmp, model, optimizer, scheduler, scaler, {**trainer_state, "step": step})
        for path in tmp.iterdir():
            fsync_path(path)
        fsync_path(tmp)
        _replace_folder(tmp, final)
        fsync_path(folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    atomic_write_text(folder / LATEST, final.name + "\n")
    _prune(folder, keep=keep, protect=final)
    return final


def latest_checkpoint(folder: Path) -> Path | None:
    """The checkpoint `folder/latest` names, or None when there is none yet."""
    pointer = folder / LATEST
    if not pointer.is_file():
        return None
    name = pointer.read_text().strip()
    path = folder / name
    if not _NAME.fullmatch(name) or not (path / TRAINER_STATE).is_file():
        raise FileNotFoundError(
            f"{pointer} names {name!r}, which is not a complete checkpoint folder in {folder}; "
            "delete the folder to start the run over"
        )
    return path


def load_checkpoint(
    path: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    scaler: torch.amp.GradScaler | None = None,
) -> dict[str, Any]:
    """Restore the model (strict), the optimizer, scheduler and fp16 scaler when given, and every
    RNG state saved in `path`; returns the trainer state."""
    load_weights(path, model)
    for target, file_name in ((optimizer, OPTIMIZER), (scheduler, SCHEDULER)):
        if target is not None:
            file = path / file_name
            if not file.is_file():
                raise FileNotFoundError(f"checkpoint {path} has no {file_name}")
            target.load_state_dict(torch.load(file, map_location="cpu", weights_only=True))
    if scaler is not None:
        if (path / SCALER).is_file():
            scaler.load_state_dict(torch.load(path / SCALER, weights_only=True))
        else:  # the run was saved without fp16 (amp changed on resume): a fresh scale is harmless
            log.warning("checkpoint %s has no %s; the fp16 loss scale starts afresh", path, SCALER)
    set_rng_state(torch.load(path / RNG, weights_only=True))
    return json.loads((path / TRAINER_STATE).read_text())


def load_weights(path: Path, model: nn.Module, keep: str = "") -> None:
    """Load `model.safetensors` (from a checkpoint folder or the file itself) into `model`,
    strictly: every key of the model present in the file and no other. Keys starting with `keep`
    (e.g. "frame_selector.") are neither loaded nor required: the model keeps its own."""
    file = path / WEIGHTS if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f"no weights file {file}")
    try:
        if keep:
            missing, unexpected = _load_except(model, file, keep)
        else:  # safetensors re-ties shared tensors (stored once) itself
            missing, unexpected = load_model(model, file, strict=False)
    except RuntimeError as error:  # shape mismatches
        raise RuntimeError(f"{file}: cannot load into {type(model).__name__}: {error}") from None
    if missing or unexpected:
        raise RuntimeError(
            f"{file} does not match {type(model).__name__}: "
            f"missing keys {sorted(missing)}, unexpected keys {sorted(unexpected)}"
        )


def _load_except(model: nn.Module, file: Path, keep: str) -> tuple[list[str], list[str]]:
    """Load every tensor but those under `keep`; a key tied to a loaded one is not missing."""
    state = {key: value for key, value in load_file(file).items() if not key.startswith(keep)}
    missing, unexpected = model.load_state_dict(state, strict=False)
    own = model.state_dict()
    loaded = {own[key].data_ptr() for key in state if key in own}
    missing = [k for k in missing if not k.startswith(keep) and own[k].data_ptr() not in loaded]
    return missing, list(unexpected)


def rng_state() -> dict[str, Any]:
    """Every generator's state, as tensors, tuples, lists and numbers (weights_only-loadable)."""
    kind, keys, position, has_gauss, cached_gaussian = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "kind": kind,
            "keys": keys.tolist(),
            "position": int(position),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    numpy_state = state["numpy"]
    np.random.set_state(
        (
            numpy_state["kind"],
            np.asarray(numpy_state["keys"], dtype=np.uint32),
            numpy_state["position"],
            numpy_state["has_gauss"],
            numpy_state["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if cuda is None or not torch.cuda.is_available():
        if cuda is not None:
            log.warning("checkpoint holds CUDA RNG states but no CUDA device is available")
        return
    if len(cuda) != torch.cuda.device_count():
        log.warning(
            "checkpoint holds %d CUDA RNG states for %d devices; restoring the common ones",
            len(cuda),
            torch.cuda.device_count(),
        )
    for device, device_state in enumerate(cuda[: torch.cuda.device_count()]):
        torch.cuda.set_rng_state(device_state, device)


def _write_contents(
    tmp: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: torch.amp.GradScaler | None,
    trainer_state: dict[str, Any],
) -> None:
    save_model(model, str(tmp / WEIGHTS))
    torch.save(optimizer.state_dict(), tmp / OPTIMIZER)
    torch.save(scheduler.state_dict(), tmp / SCHEDULER)
    if scaler is not None:
        torch.save(scaler.state_dict(), tmp / SCALER)
    torch.save(rng_state(), tmp / RNG)
    text = json.dumps(trainer_state, indent=2, sort_keys=True, default=str) + "\n"
    (tmp / TRAINER_STATE).write_text(text)


def _replace_folder(source: Path, target: Path) -> None:
    """Rename `source` to `target`; an existing `target` (an orphan of a run killed between the
    rename and `latest`) is moved aside first, as rename cannot replace a non-empty folder."""
    if not target.exists():
        os.replace(source, target)
        return
    aside = temporary_path(target)
    os.replace(target, aside)
    os.replace(source, target)
    shutil.rmtree(aside)


def _prune(folder: Path, keep: int, protect: Path) -> None:
    """Delete all but the newest `keep` checkpoints and leftovers of killed writers."""
    for leftover in folder.glob(".checkpoint-*.tmp-*"):
        shutil.rmtree(leftover, ignore_errors=True)
    complete = sorted(
        (int(match.group(1)), path)
        for path in folder.iterdir()
        if path.is_dir() and (match := _NAME.fullmatch(path.name))
    )
    for _, path in complete[:-keep]:
        if path != protect:
            shutil.rmtree(path)


def check_resumable(
    checkpoint: Path, state: dict[str, Any], config: OptimConfig, steps_per_epoch: int
) -> None:
    """Refuse a checkpoint whose schedule or batches differ from this run's (RESUME_FIELDS)."""
    saved = dict(state.get("config", {}), steps_per_epoch=state.get("steps_per_epoch"))
    # through JSON, as the saved values went, so tuples compare equal to lists
    current = json.loads(json.dumps(dict(asdict(config), steps_per_epoch=steps_per_epoch)))
    for name in (*RESUME_FIELDS, "steps_per_epoch"):
        if saved.get(name) != current[name]:
            raise ValueError(
                f"cannot resume from {checkpoint}: it was trained with {name}={saved.get(name)!r}, "
                f"this run asks for {current[name]!r}; delete {checkpoint.parent} to start over"
            )
