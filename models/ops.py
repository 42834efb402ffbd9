"""Small tensor operations shared by the VideoCLIP encoders (videoclip-facts §2.1).

VideoCLIP pools each modality by a masked mean of the last hidden states (MMPT
`MMFusionSeparate.forward_video` / `forward_text`, paper §3.3 "average pooling"). Masks follow the
project convention: `True` = real frame/token.
"""

from __future__ import annotations

from torch import Tensor


def masked_mean(
    hidden: Tensor,  # (B, N, H) hidden states
    mask: Tensor,  # (B, N) bool, True = include this position
) -> Tensor:  # (B, H) mean over the included positions; 0 for a row with none
    """Mean of `hidden` over the positions where `mask` is True, row by row.

    Rows whose mask is all False give a zero vector rather than NaN (0 / clamp(0, 1) = 0).
    """
    if hidden.shape[:2] != mask.shape:
        raise ValueError(
            f"masked_mean: hidden has shape {tuple(hidden.shape)} (B, N, H) but mask has shape "
            f"{tuple(mask.shape)}; expected (B, N) = {tuple(hidden.shape[:2])}"
        )
    weights = mask.to(hidden.dtype).unsqueeze(-1)  # (B, N, 1)
    total = (hidden * weights).sum(dim=1)  # (B, H)
    count = weights.sum(dim=1).clamp(min=1.0)  # (B, 1)
    return total / count
