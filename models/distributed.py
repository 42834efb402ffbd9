"""What the losses need from torch.distributed: the global batch's rows and sums.

One process (no process group, or a group of one) is the identity everywhere, so every loss reads
the same with and without DDP. Under DDP each rank holds a slice of the global batch:

- `gather_rows(x)`: every rank's rows of `x`, in rank order, with autograd. The backward pass sums
  the gradient of every rank's loss with respect to each row (an all-reduce) and keeps this
  rank's rows, so negatives taken from other ranks train their encoders too (CLIP-style
  "gathered negatives"). Slices may differ in length (the last batch of an epoch).
- `global_sum(x)`: an all-reduce SUM without gradient, for batch statistics (the median
  strategy's threshold, the global batch size).

Whether the contrastive losses gather is `gathering(enabled)`'s to say (OptimConfig
`gather_negatives`, on by default); without it each rank's negatives are its own rows, as in
CLIP4Clip's default DDP recipe.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

import torch
import torch.distributed as dist
from torch import Tensor

_GATHER: ContextVar[bool] = ContextVar("fineco_gather_negatives", default=True)


def world_size() -> int:
    """The number of processes in the default group (1 without one)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def rank() -> int:
    """This process's rank in the default group (0 without one)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return 0


def is_main() -> bool:
    """Rank 0: the process that writes the stage's files."""
    return rank() == 0


@contextlib.contextmanager
def gathering(enabled: bool) -> Iterator[None]:
    """Inside this block the contrastive losses take negatives from every rank or not."""
    token = _GATHER.set(enabled)
    try:
        yield
    finally:
        _GATHER.reset(token)


def gathers() -> bool:
    """Whether the losses should gather rows now: more than one process and gathering on."""
    return _GATHER.get() and world_size() > 1


def global_sum(values: Tensor) -> Tensor:
    """The sum of `values` over every rank (no gradient); `values` itself in one process."""
    if world_size() == 1:
        return values
    total = values.detach().clone()
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total


def gather_rows(rows: Tensor) -> tuple[Tensor, int]:
    """(every rank's rows concatenated in rank order, where this rank's rows start).

    rows: (B_r, ...) this rank's slice → (ΣB, ...), with gradient to this rank's rows from every
    rank's use of them. One process: (rows, 0).
    """
    if world_size() == 1:
        return rows, 0
    counts = _row_counts(rows)
    offset = sum(counts[: rank()])
    return _GatherRows.apply(rows, counts), offset


def _row_counts(rows: Tensor) -> list[int]:
    """Every rank's number of rows (one small all-gather)."""
    local = torch.tensor([rows.shape[0]], device=rows.device, dtype=torch.long)
    counts = [torch.zeros_like(local) for _ in range(world_size())]
    dist.all_gather(counts, local)
    return [int(count.item()) for count in counts]


class _GatherRows(torch.autograd.Function):
    """All-gather of row slices of any lengths, padded to the longest for the collective."""

    @staticmethod
    def forward(ctx, rows: Tensor, counts: list[int]) -> Tensor:  # type: ignore[override]
        ctx.counts = counts
        longest = max(counts)
        padded = rows.new_zeros((longest, *rows.shape[1:]))  # (max B_r, ...)
        padded[: rows.shape[0]] = rows
        parts = [torch.empty_like(padded) for _ in counts]
        dist.all_gather(parts, padded.contiguous())
        return torch.cat([part[:count] for part, count in zip(parts, counts)])  # (ΣB, ...)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        total = grad.contiguous().clone()  # (ΣB, ...) this rank's loss's gradient on every row
        dist.all_reduce(total, op=dist.ReduceOp.SUM)  # every rank's loss's gradient
        start = sum(ctx.counts[: rank()])
        return total[start : start + ctx.counts[rank()]], None
