"""VideoQA heads: an answer classifier over `[video ; text]` and multiple-choice scores.

Open-ended QA (FineCo §4, videoclip-facts §1 "Inference"): concatenate the pooled video and text
representations, run an MLP, and predict one answer out of a fixed vocabulary (1500 answers for
MSR-VTT QA in ClipBERT/FineCo). Our MLP is `Linear(2H → inner) → GELU → Dropout → Linear(inner →
A)`, returning raw logits; the loss is the pure function `answer_cross_entropy`.

Multiple choice (videoclip-facts §2.6, MMPT's `QAPredictor` for MSR-VTT MC): each of C candidate
answers is encoded as text and scored by the dot product of its pooled vector with the pooled
video vector; the prediction is the argmax over the C candidates (the v2t view of retrieval).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

IGNORE_INDEX = -100


class AnswerHead(nn.Module):
    """MLP over `[video ; text]` giving one logit per answer in the vocabulary."""

    def __init__(
        self,
        hidden_size: int,
        num_answers: int = 1500,
        inner_size: int = 0,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        inner = hidden_size if inner_size == 0 else inner_size
        if hidden_size < 1 or num_answers < 1 or inner < 1:
            raise ValueError(
                f"AnswerHead needs hidden_size >= 1, num_answers >= 1 and inner_size >= 0, got "
                f"hidden_size={hidden_size}, num_answers={num_answers}, inner_size={inner_size}"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"AnswerHead needs 0 <= dropout < 1, got dropout={dropout}")
        self.mlp = nn.Sequential(
            nn.Linear(2 * hidden_size, inner),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(inner, num_answers),
        )

    def forward(
        self,
        video: Tensor,  # (B, H) pooled video vector
        text: Tensor,  # (B, H) pooled question vector
    ) -> Tensor:  # (B, A) raw answer logits
        if video.shape != text.shape or video.dim() != 2:
            raise ValueError(
                f"AnswerHead expects video and text of the same shape (B, H), "
                f"got video {tuple(video.shape)} and text {tuple(text.shape)}"
            )
        pair = torch.cat([video, text], dim=-1)  # (B, 2H)
        return self.mlp(pair)  # (B, A)


def answer_cross_entropy(
    logits: Tensor,  # (B, A) answer logits
    answers: Tensor,  # (B,) long answer index; ignore_index = answer outside the vocabulary
    ignore_index: int = IGNORE_INDEX,
) -> Tensor:  # () mean cross-entropy over the rows whose answer is in the vocabulary
    """Cross-entropy over in-vocabulary rows; 0 (still differentiable) if every row is ignored.

    Questions whose answer is not among the A answers cannot be learned by a classifier, so they
    are excluded from the loss (they still count as wrong in the evaluation's QA accuracy).
    """
    if logits.dim() != 2 or answers.shape != logits.shape[:1]:
        raise ValueError(
            f"answer_cross_entropy expects logits (B, A) and answers (B,), "
            f"got logits {tuple(logits.shape)} and answers {tuple(answers.shape)}"
        )
    num_answers = logits.shape[1]
    keep = answers != ignore_index  # (B,) True = answer in the vocabulary
    bad = keep & ((answers < 0) | (answers >= num_answers))
    if bool(bad.any()):
        raise ValueError(
            f"answer_cross_entropy: answers must lie in [0, {num_answers}) or equal "
            f"ignore_index={ignore_index}; found {answers[bad].tolist()} at rows "
            f"{bad.nonzero().flatten().tolist()}"
        )
    if not bool(keep.any()):
        return logits.sum() * 0.0  # keeps a grad path so DDP/backward see every parameter
    return F.cross_entropy(logits[keep], answers[keep])


def multiple_choice_scores(
    video: Tensor,  # (B, H) pooled video vector
    candidates: Tensor,  # (B, C, H) pooled vector of each candidate answer
) -> Tensor:  # (B, C) dot product video · candidate
    if video.dim() != 2 or candidates.dim() != 3 or candidates.shape[::2] != video.shape:
        raise ValueError(
            f"multiple_choice_scores expects video (B, H) and candidates (B, C, H), "
            f"got video {tuple(video.shape)} and candidates {tuple(candidates.shape)}"
        )
    return torch.einsum("bh,bch->bc", video, candidates)  # (B, C)
