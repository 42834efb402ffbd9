"""What each training stage minimises (paper §3.4; videoclip-facts §2.2).

Pretraining: VideoCLIP's symmetric NCE over in-batch pairs. Fine-tuning: L = weight · L1 + L2 with
L2 the task's loss and L1 FineCo's frame-level loss over the frame selector's logits (absent for
the VideoCLIP baseline). L1's positives are the frames the selector itself ranks highest (the
paper), or, with `fineco.positives: similarity`, those whose state is most similar to the text
(<h_k, t>, what L2 trains): a target from outside the selector, which otherwise only sharpens its
own ranking (README, "What the selector learns from"). L2 is the contrastive loss
`finetune.objective` names (text→video for retrieval, video→text for multiple choice) for the tasks
"retrieval" and "mc", and for open-ended QA ("qa") the cross-entropy of the model's answer head
over `[pooled video ; pooled question]` against `batch.answers` (questions outside the answer
vocabulary, IGNORE_INDEX, are left out).
Each objective is a closure `(model, batch) -> LossTerms` for the shared loop (`loop.py`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from models.frame_selector import frame_probabilities
from models.heads import answer_cross_entropy
from models.losses import (
    PositiveStrategy,
    fineco_frame_loss,
    select_positives,
    symmetric_nce,
    t2v_contrastive,
    v2t_contrastive,
)
from models.videoclip import VideoCLIP
from pipeline.config import TASKS, FinetuneConfig
from pipeline.training.data import Batch
from pipeline.training.loop import LossTerms

Objective = Callable[[VideoCLIP, Batch], LossTerms]


def pretrain_objective() -> Objective:
    """Symmetric NCE over raw dot products of the pooled video and text vectors (MMPT)."""

    def loss(model: VideoCLIP, batch: Batch) -> LossTerms:
        video = model.encode_video(batch.video, batch.video_mask).pooled  # (B, H)
        text = model.encode_text(batch.text_ids, batch.text_mask).pooled  # (B, H)
        nce = symmetric_nce(video, text)
        return LossTerms(nce, {"nce": nce.item()})

    return loss


def finetune_objective(config: FinetuneConfig, task: str = "retrieval") -> Objective:
    """L2 (t2v or v2t contrastive; answer cross-entropy for task "qa"), plus FineCo's L1 when
    `config.fineco.enabled`. Task "qa" needs a model with an answer head (`attach_answer_head`).

    Positives are chosen on detached frame-selector logits; the `random` strategy draws from the
    global torch RNG, which checkpoints restore, so a resumed run draws the same frames.
    """
    fineco = config.fineco
    strategy = PositiveStrategy(kind=fineco.strategy, k=fineco.k, ratio=fineco.ratio)
    if task not in TASKS:
        raise ValueError(f"unknown fine-tuning task {task!r}; expected one of {TASKS}")
    contrastive = t2v_contrastive if config.objective == "t2v" else v2t_contrastive

    def task_loss(model: VideoCLIP, batch: Batch, video: Tensor, text: Tensor) -> Tensor:
        if task != "qa":
            return contrastive(video, text)
        if model.answer_head is None:
            raise ValueError(
                "task 'qa' needs a model with an answer head: call "
                "models.videoclip.attach_answer_head(model, num_answers) before training"
            )
        logits = model.answer_head(video, text)  # (B, A)
        return answer_cross_entropy(logits, batch.answers)

    def loss(model: VideoCLIP, batch: Batch) -> LossTerms:
        video = model.encode_video(batch.video, batch.video_mask)
        text = model.encode_text(batch.text_ids, batch.text_mask)
        l2 = task_loss(model, batch, video.pooled, text.pooled)
        if not fineco.enabled:
            return LossTerms(l2, {"l2": l2.item()})
        logits = model.select_frames(video.frame_hidden, text.pooled)  # (B, K)
        if fineco.positives == "selector":  # the paper: the selector's own ranking
            ranking = logits.detach()
        else:  # the similarity L2 trains: <h_k, t>, a target from outside the selector
            ranking = frame_text_similarity(video.frame_hidden, text.pooled).detach()  # (B, K)
        positives = select_positives(
            ranking, batch.video_mask, strategy, batch.true_lengths
        )  # (B, K) bool
        frame = fineco_frame_loss(logits, batch.video_mask, positives)
        total = fineco.weight * frame.loss + l2
        parts = {
            "l2": l2.item(),
            "l1": frame.loss.item(),
            "all_positive_share": frame.all_positive_share,
            "selector_entropy": selector_entropy(logits.detach(), batch.video_mask),
        }
        return LossTerms(total, parts)

    return loss


def frame_text_similarity(
    frame_hidden: Tensor,  # (B, K, H) the video encoder's frame states
    text: Tensor,  # (B, H) pooled text vectors
) -> Tensor:  # (B, K) <h_k, t>: the dot product the pair-level loss scores videos with
    return torch.einsum("bkh,bh->bk", frame_hidden.float(), text.float())


def selector_entropy(
    frame_logits: Tensor,  # (B, K) selector logits
    frame_mask: Tensor,  # (B, K) bool, True = real frame
) -> float:
    """Mean over clips of the selector's softmax entropy / log(real frames): 1 = uniform,
    0 = all mass on one frame (clips of one frame are left out)."""
    probabilities = frame_probabilities(frame_logits.float(), frame_mask)  # (B, K)
    entropy = -(probabilities * torch.log(probabilities.clamp_min(1e-12))).sum(dim=1)  # (B,)
    frames = frame_mask.sum(dim=1)  # (B,)
    keep = frames > 1
    if not keep.any():
        return 0.0
    return float((entropy[keep] / torch.log(frames[keep].float())).mean())
