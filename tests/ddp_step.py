"""One training step of the tiny model on a fixed global batch, as one rank of a torchrun launch.

    python -m torch.distributed.run --nproc-per-node N tests/ddp_step.py OUT

Every rank builds the same tiny model (dropout 0), takes its share of a fixed batch of 5 clips
(`rank_share`: 3 + 2 under two processes), computes FineCo's fine-tuning loss (median strategy:
its threshold is a global-batch statistic) as the training loop does (DDP wrapper, the loss
weighted by the rank's rows) and back-propagates, once with gathered negatives and once
without. Rank 0 saves each step's global loss, its parts and every parameter's gradient to OUT
(torch.save: {"gather": ..., "local": ...}).
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
import torch.distributed as dist
from tiny_model import TINY_MODEL

from models.distributed import gathering
from pipeline.config import FinecoConfig, FinetuneConfig
from pipeline.training import ddp
from pipeline.training.batches import ClipItem, collate
from pipeline.training.data import rank_share
from pipeline.training.model_factory import build_model
from pipeline.training.objectives import finetune_objective

CLIPS = 5
MODEL = dataclasses.replace(TINY_MODEL, dropout=0.0)  # a step is a function of the batch


def clips() -> list[ClipItem]:
    """The fixed global batch: clips of 3–8 seconds, captions of 4–9 word pieces."""
    generator = np.random.default_rng(7)
    items = []
    for index in range(CLIPS):
        seconds = int(generator.integers(3, 9))
        words = generator.integers(1000, 5000, size=int(generator.integers(4, 10))).tolist()
        video = generator.standard_normal((seconds, 512)).astype(np.float32)
        items.append(ClipItem(video, [101, *words, 102], seconds, index))
    return items


def main(out: Path) -> None:
    """Both steps (in the process group, if one is open); rank 0 saves them."""
    steps = {"gather": step(gather=True), "local": step(gather=False)}
    if ddp.is_main():
        torch.save(steps, out)


def step(gather: bool) -> dict:
    """One step from the same initial weights: the global loss, its parts, the gradients."""
    torch.manual_seed(0)
    model, _ = build_model(MODEL)
    settings = FinetuneConfig(fineco=FinecoConfig(enabled=True, strategy="median"))
    objective = finetune_objective(settings, "retrieval")
    share = rank_share(clips(), ddp.rank(), ddp.world_size())
    batch = collate(share)
    wrapped = ddp.wrap(model, objective, torch.device("cpu"))
    with gathering(gather):
        if wrapped is None:
            terms = objective(model, batch)
            total, parts = terms.total, terms.parts
        else:
            total, parts = wrapped(batch)
        total, loss, parts = ddp.weighted(total, parts, batch.size)
    total.backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    return {"loss": loss, "parts": parts, "grads": grads}


def failing_build(inputs: object, folder: Path) -> None:
    """A stage build (for `launch`) whose rank 1 fails after a DDP step while rank 0 goes on to
    wait in a collective: the launch must end, not hang, and name the error."""

    def loss(net: torch.nn.Module, x: torch.Tensor) -> SimpleNamespace:
        return SimpleNamespace(total=net(x).sum(), parts={})

    model = ddp.wrap(torch.nn.Linear(4, 1), loss, torch.device("cpu"))
    assert model is not None
    total, _ = model(torch.ones(2, 4))
    total.backward()
    if ddp.rank() == 1:
        raise ValueError(f"rank 1 fails on purpose in {folder.name}")
    dist.barrier()  # rank 1 never comes: torchrun must stop this rank once rank 1 has exited


if __name__ == "__main__":
    dist.init_process_group("gloo")
    main(Path(sys.argv[1]))
    # After main's DDP models are gone: a group whose last reference a DDP model drops can hang
    # in gloo's destructor (it joins a thread that waits for the GIL).
    dist.destroy_process_group()
