"""One training step of the tiny model on a fixed global batch, as one rank of a torchrun launch.

    python -m torch.distributed.run --nproc-per-node N tests/ddp_step.py OUT [no-gather]

Every rank builds the same tiny model (dropout 0), takes its share of a fixed batch of 5 clips
(`rank_share`: 3 + 2 under two processes), computes FineCo's fine-tuning loss (median strategy:
its threshold is a global-batch statistic) as the training loop does (DDP wrapper, the loss
weighted by the rank's rows) and back-propagates. Rank 0 saves the global loss, its parts and
every parameter's gradient to OUT (torch.save). `no-gather` turns gathered negatives off.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from models.distributed import gathering
from pipeline.config import FinecoConfig, FinetuneConfig, ModelConfig
from pipeline.training import ddp
from pipeline.training.batches import ClipItem, collate
from pipeline.training.data import rank_share
from pipeline.training.model_factory import build_model
from pipeline.training.objectives import finetune_objective

CLIPS = 5
MODEL = ModelConfig(
    random_init=True,
    random_hidden=32,
    random_layers=2,
    random_heads=2,
    random_intermediate=37,
    video_layers=1,
    max_video_len=8,
    max_text_tokens=16,
    dropout=0.0,
)


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


def main(out: Path, gather: bool) -> None:
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        dist.init_process_group("gloo")
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
    if ddp.is_main():
        grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
        torch.save({"loss": loss, "parts": parts, "grads": grads}, out)
    if ddp.world_size() > 1:
        dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]), gather="no-gather" not in sys.argv[2:])
