"""Batches of the training and evaluation data: one item before collation (`ClipItem`), the
padded batch (`Batch`, masks True at real frames and tokens) and `collate` between them."""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch
from torch import Tensor

from models.heads import IGNORE_INDEX

PAD_ID = 0  # text padding id of BERT vocabularies ([PAD]); padded positions are masked anyway


@dataclass
class ClipItem:
    """One dataset item before collation."""

    video: np.ndarray  # (k, 512) float32, k <= max_video_len
    text_ids: list[int]  # [CLS] t1..tn [SEP]
    true_length: int  # seconds of the clip before truncation to max_video_len
    index: int  # dataset item index
    answer: int = IGNORE_INDEX  # QA: answer-vocabulary index; MC: correct candidate; else -100


@dataclass
class Batch:
    """A collated batch; masks are True at real frames and tokens."""

    video: Tensor  # (B, K, 512) float32, zero at padding
    video_mask: Tensor  # (B, K) bool
    text_ids: Tensor  # (B, L) long, PAD_ID at padding
    text_mask: Tensor  # (B, L) bool
    true_lengths: Tensor  # (B,) long, clip seconds before truncation
    index: Tensor  # (B,) long, dataset item indices
    # (B,) long, ClipItem.answer (IGNORE_INDEX = none); None when built by hand = all IGNORE_INDEX
    answers: Tensor = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.answers is None:
            self.answers = torch.full_like(self.index, IGNORE_INDEX, dtype=torch.long)

    @property
    def size(self) -> int:
        return int(self.video.shape[0])

    def to(self, device: torch.device | str) -> Batch:
        non_blocking = torch.device(device).type == "cuda"
        moved = {
            field.name: getattr(self, field.name).to(device, non_blocking=non_blocking)
            for field in fields(self)
        }
        return Batch(**moved)


def collate(items: list[ClipItem]) -> Batch:
    """Pad video with zeros to the batch's longest clip K, text with PAD_ID to its longest L."""
    if not items:
        raise ValueError("collate needs at least one item")
    frames = max(len(item.video) for item in items)
    tokens = max(len(item.text_ids) for item in items)
    size, dim = len(items), items[0].video.shape[1]
    video = torch.zeros(size, frames, dim)  # (B, K, 512)
    video_mask = torch.zeros(size, frames, dtype=torch.bool)  # (B, K)
    text_ids = torch.full((size, tokens), PAD_ID, dtype=torch.long)  # (B, L)
    text_mask = torch.zeros(size, tokens, dtype=torch.bool)  # (B, L)
    for row, item in enumerate(items):
        video[row, : len(item.video)] = torch.from_numpy(item.video)
        video_mask[row, : len(item.video)] = True
        text_ids[row, : len(item.text_ids)] = torch.tensor(item.text_ids, dtype=torch.long)
        text_mask[row, : len(item.text_ids)] = True
    true_lengths = torch.tensor([item.true_length for item in items], dtype=torch.long)  # (B,)
    index = torch.tensor([item.index for item in items], dtype=torch.long)  # (B,)
    answers = torch.tensor([item.answer for item in items], dtype=torch.long)  # (B,)
    return Batch(video, video_mask, text_ids, text_mask, true_lengths, index, answers)
