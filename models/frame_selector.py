"""FineCo's frame selector FS: one relevance logit per frame (FineCo paper §3.2–3.3, Eq. 3).

The paper says only "a multi-layer perceptron with a softmax layer" over the frame and the text
representation (videoclip-facts §1, "Our reading of the unspecified parts"; "There is no
constraint on the architecture of FS", §3.2.2). Our default: an MLP over the concatenation
`[h_k ; t]` of the video encoder's last hidden state at frame k and the pooled text vector,
`Linear(2H → inner) → GELU → Linear(inner → 1)`, returning raw logits. With `interaction` the
MLP also sees `h_k ⊙ t`, so a frame's agreement with the text (Σ h_k t, the dot product the
retrieval score uses) is one linear layer away; over `[h_k ; t]` alone the first layer is
additive in frame and text and must build that product from its nonlinearity.
Masking padded frames is the job of the loss and of `frame_probabilities`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class FrameSelector(nn.Module):
    """MLP over `[h_k ; t]` giving one logit per frame."""

    def __init__(self, hidden_size: int, inner_size: int, interaction: bool = False) -> None:
        super().__init__()
        if hidden_size < 1 or inner_size < 1:
            raise ValueError(
                f"FrameSelector needs hidden_size >= 1 and inner_size >= 1, "
                f"got hidden_size={hidden_size}, inner_size={inner_size}"
            )
        self.interaction = interaction
        self.mlp = nn.Sequential(
            nn.Linear((3 if interaction else 2) * hidden_size, inner_size),
            nn.GELU(),
            nn.Linear(inner_size, 1),
        )

    def forward(
        self,
        frame_hidden: Tensor,  # (B, K, H) video-encoder states of the frame tokens
        text: Tensor,  # (B, H) pooled text vector
    ) -> Tensor:  # (B, K) raw logits, padding not masked
        num_frames = frame_hidden.shape[1]
        text_per_frame = text.unsqueeze(1).expand(-1, num_frames, -1)  # (B, K, H)
        parts = [frame_hidden, text_per_frame]
        if self.interaction:
            parts.append(frame_hidden * text_per_frame)
        pair = torch.cat(parts, dim=-1)  # (B, K, 2H or 3H)
        return self.mlp(pair).squeeze(-1)  # (B, K)


def frame_probabilities(
    frame_logits: Tensor,  # (B, K) frame-selector logits
    frame_mask: Tensor,  # (B, K) bool, True = real frame
) -> Tensor:  # (B, K) softmax over real frames, 0 at padding; all 0 for rows without real frames
    """Softmax over the real frames of each row.

    Padded logits are set to the dtype's lowest finite value instead of -inf, so a row with no
    real frame gives a finite (uniform) softmax that the final mask turns into zeros, and no NaN
    reaches the gradients.
    """
    lowest = torch.finfo(frame_logits.dtype).min
    filled = frame_logits.masked_fill(~frame_mask, lowest)  # (B, K)
    probabilities = torch.softmax(filled, dim=-1)  # (B, K)
    return probabilities * frame_mask.to(probabilities.dtype)  # (B, K)
