"""The training loop under DDP: what changes when a stage runs as N torchrun processes.

The process group is opened by the launcher (training/launch.py); here, with more than one
process, the loop's model is wrapped in torch's DistributedDataParallel and each step's loss is
weighted so that N processes take the step one process would take on the same global batch:

- each rank loads its share of every global batch (data.rank_share) and its loss is a mean over
  its own rows (against every rank's negatives, models/distributed.py);
- DDP averages gradients over ranks, so rank r back-propagates N·B_r/B · loss_r (B_r its rows,
  B the global batch): the average is then ∇ Σ_r (B_r/B)·loss_r, the global batch's mean loss;
- the logged loss and parts are those global means, the same on every rank, so a NaN stops every
  rank at the same step.

Losses that are exactly means over rows (the contrastive losses, FineCo's L1 over clips with real
frames) match one process to rounding; QA's answer cross-entropy averages over the questions with
an answer in the vocabulary, so under DDP a rank's mean over fewer such rows is weighted by its
rows, not by its answered questions: a small departure, stated in the README.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from models.distributed import global_sum, is_main, rank, world_size

__all__ = ["is_main", "rank", "world_size"]


class _Objective(nn.Module):
    """The model with its loss as `forward`, so DDP sees (and syncs) every step."""

    def __init__(self, model: nn.Module, loss_fn: Callable[[nn.Module, Any], Any]) -> None:
        super().__init__()
        self.model, self.loss_fn = model, loss_fn

    def forward(self, batch: Any) -> tuple[Tensor, dict[str, float]]:
        terms = self.loss_fn(self.model, batch)
        return terms.total, terms.parts


def local_device(device: torch.device) -> torch.device:
    """This rank's GPU (torchrun's LOCAL_RANK) for a cuda device under DDP; else `device`."""
    if device.type != "cuda" or world_size() == 1:
        return device
    local = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    torch.cuda.set_device(local)
    return local


def wrap(model: nn.Module, loss_fn: Callable[[nn.Module, Any], Any], device: torch.device):
    """DDP over (model, loss) with more than one process, else None. Parameters a variant leaves
    unused (the frame selector of the baseline, the answer head outside QA) are allowed."""
    if world_size() == 1:
        return None
    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(
        _Objective(model, loss_fn), device_ids=ids, find_unused_parameters=True
    )


def weighted(total: Tensor, parts: dict[str, float], rows: int) -> tuple[Tensor, float, dict]:
    """(what this rank back-propagates, the global batch's loss, its parts) for a step whose
    loss `total` is a mean over this rank's `rows` (module docstring)."""
    if world_size() == 1:
        return total, total.item(), parts
    names = sorted(parts)
    local = torch.tensor([1.0, total.item(), *(parts[name] for name in names)]) * rows
    summed = global_sum(local.to(total.device)).cpu().tolist()  # [B, Σ B_r·loss_r, ...]
    batch = summed[0]
    means = {name: value / batch for name, value in zip(names, summed[2:])}
    return total * (world_size() * rows / batch), summed[1] / batch, means


def reseed(seed: int, step: int) -> None:
    """Give ranks > 0 their own torch stream (dropout, the random strategy), derived from
    (seed, step, rank); rank 0 keeps the stream one process would have."""
    if rank() == 0:
        return
    high, low = np.random.SeedSequence([seed, step, rank()]).generate_state(2, np.uint32)
    torch.manual_seed((int(high) & 0x7FFFFFFF) << 32 | int(low))


def ranks_note() -> str:
    """' × N processes' under DDP, '' in one process (for the log)."""
    return f" × {world_size()} processes" if world_size() > 1 else ""


def barrier() -> None:
    """Wait for every rank (no-op in one process)."""
    if world_size() > 1:
        dist.barrier()


def broadcast(value: Any) -> Any:
    """Rank 0's `value` on every rank (a picklable object; no-op in one process)."""
    if world_size() == 1:
        return value
    box = [value if is_main() else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]
