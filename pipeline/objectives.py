"""What each training stage minimises (paper §3.4; videoclip-facts §2.2).

Pretraining: VideoCLIP's symmetric NCE over in-batch pairs. Fine-tuning: L = weight · L1 + L2 with
L2 the task's contrastive loss (text→video for retrieval, video→text for multiple choice) and L1
FineCo's frame-level loss over the frame selector's logits (absent for the VideoCLIP baseline).
Each objective is a closure `(model, batch) -> LossTerms` for the shared loop in `train.py`.
"""

from __future__ import annotations

from collections.abc import Callable

from models.losses import (
    PositiveStrategy,
    fineco_frame_loss,
    select_positives,
    symmetric_nce,
    t2v_contrastive,
    v2t_contrastive,
)
from models.videoclip import VideoCLIP
from pipeline.config import FinetuneConfig
from pipeline.train import LossTerms
from pipeline.training_data import Batch

Objective = Callable[[VideoCLIP, Batch], LossTerms]


def pretrain_objective() -> Objective:
    """Symmetric NCE over raw dot products of the pooled video and text vectors (MMPT)."""

    def loss(model: VideoCLIP, batch: Batch) -> LossTerms:
        video = model.encode_video(batch.video, batch.video_mask).pooled  # (B, H)
        text = model.encode_text(batch.text_ids, batch.text_mask).pooled  # (B, H)
        nce = symmetric_nce(video, text)
        return LossTerms(nce, {"nce": nce.item()})

    return loss


def finetune_objective(config: FinetuneConfig) -> Objective:
    """L2 (t2v or v2t contrastive), plus FineCo's L1 when `config.fineco.enabled`.

    Positives are chosen on detached frame-selector logits; the `random` strategy draws from the
    global torch RNG, which checkpoints restore, so a resumed run draws the same frames.
    """
    fineco = config.fineco
    strategy = PositiveStrategy(kind=fineco.strategy, k=fineco.k, ratio=fineco.ratio)
    task_loss = t2v_contrastive if config.objective == "t2v" else v2t_contrastive

    def loss(model: VideoCLIP, batch: Batch) -> LossTerms:
        video = model.encode_video(batch.video, batch.video_mask)
        text = model.encode_text(batch.text_ids, batch.text_mask)
        task = task_loss(video.pooled, text.pooled)
        if not fineco.enabled:
            return LossTerms(task, {"l2": task.item()})
        logits = model.select_frames(video.frame_hidden, text.pooled)  # (B, K)
        positives = select_positives(
            logits.detach(), batch.video_mask, strategy, batch.true_lengths
        )  # (B, K) bool
        frame = fineco_frame_loss(logits, batch.video_mask, positives)
        total = fineco.weight * frame.loss + task
        parts = {
            "l2": task.item(),
            "l1": frame.loss.item(),
            "all_positive_share": frame.all_positive_share,
        }
        return LossTerms(total, parts)

    return loss
