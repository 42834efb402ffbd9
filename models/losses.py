"""Training losses: VideoCLIP's pair-level contrastive losses and FineCo's frame-level loss.

Pair level (L2, videoclip-facts §2.2, MMPT `mmpt/losses/nce.py`): cross-entropy over raw dot
products of pooled video and text vectors, with in-batch negatives and no temperature. Under
DDP the negatives are the global batch's and the median strategy's τ is the global batch's
(models/distributed.py); one process computes exactly what it did before.
`t2v_contrastive` is MMPT's `T2VContraLoss`, `v2t_contrastive` its `V2TContraLoss` and
`symmetric_nce` its `MMContraLoss` (the SUM of both directions, not their mean).

Frame level (L1, FineCo paper Eq. 3, §3.2; videoclip-facts §1): with frame-selector logits s_k as
"sim", A_i / (A_i + B_i) = Σ_{k∈P} softmax(s)_k over the real frames of clip i, so
L1_i = −log Σ_{k∈P} softmax(s)_k = logsumexp_{real}(s) − logsumexp_{P}(s).
`select_positives` implements the four strategies of paper §5.2 (fixed-k, median, ratio, random)
with our reading of the unspecified parts (videoclip-facts §1 "Our reading"):

- Only real frames (mask True) are ranked or chosen; `[CLS]`, `[SEP]` and padding never are.
- fixed_k: the k real frames with the highest logits; ties go to the LOWER frame index.
  Rows with at most k real frames take all of them (L1_i = 0).
- median: the median of a row's real logits is its middle value for an odd count and the MEAN OF
  THE TWO MIDDLE VALUES for an even count; τ = mean of these medians over the rows with at least
  one real frame. Positives are real frames with logit > τ (strictly). A row with no frame above τ
  gets its single highest frame (lowest index on ties) as positive; otherwise A_i = 0 and
  L1_i = −log 0 = ∞.
- ratio: C_i = max(1, round(ratio · true_length_i)) with the clip's length before truncation,
  rounded half to even (`torch.round`, like Python's `round`: 2.5 → 2), clipped to the number of
  real frames kept; then the top C_i as fixed_k.
- random: k real frames uniformly without replacement (the k smallest of i.i.d. uniform keys);
  rows with at most k real frames take all of them.

Rows with no real frame have no positives, are left out of the L1 mean, and give exactly 0
gradient; a batch of only such rows gives a loss of 0 that still has a gradient path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor

from models.distributed import gather_rows, gathers, global_sum

StrategyKind = Literal["fixed_k", "median", "ratio", "random"]


def _compute_dtype(tensor: Tensor) -> torch.dtype:
    """float32 for half/bfloat16 inputs (and integers); float64 stays float64."""
    return torch.promote_types(tensor.dtype, torch.float32)


def _check_pairs(first: Tensor, second: Tensor, name: str) -> None:
    """Both must be (B, D) with the same B and D."""
    if first.ndim != 2 or first.shape != second.shape:
        raise ValueError(
            f"{name}: video and text must both be (B, D) with the same B and D; got "
            f"{tuple(first.shape)} and {tuple(second.shape)}"
        )


def _matching_cross_entropy(queries: Tensor, keys: Tensor, name: str) -> Tensor:
    """Mean over this process's queries of CE(query_i · keysᵀ, i): pair i matches pair i.

    Under DDP with gathered negatives (models/distributed.py) the keys are every rank's, and
    query i's own key sits at this rank's offset in them; otherwise the batch's own rows.
    """
    _check_pairs(queries, keys, name)
    all_keys, offset = gather_rows(keys) if gathers() else (keys, 0)  # (ΣB, D)
    dtype = torch.promote_types(_compute_dtype(queries), _compute_dtype(keys))
    logits = queries.to(dtype) @ all_keys.to(dtype).T  # (B, ΣB)
    targets = offset + torch.arange(logits.shape[0], device=logits.device)  # (B,)
    return F.cross_entropy(logits, targets)


def t2v_contrastive(
    video: Tensor,  # (B, D) pooled video vectors
    text: Tensor,  # (B, D) pooled text vectors; row i describes video i
) -> Tensor:  # () mean over texts of CE(text_i · videoᵀ, i)
    """Text-to-video InfoNCE (MMPT `T2VContraLoss`): each text picks its video among the batch."""
    return _matching_cross_entropy(text, video, "t2v_contrastive")  # logits (B_t, B_v)


def v2t_contrastive(
    video: Tensor,  # (B, D) pooled video vectors
    text: Tensor,  # (B, D) pooled text vectors; row i describes video i
) -> Tensor:  # () mean over videos of CE(video_i · textᵀ, i)
    """Video-to-text InfoNCE (MMPT `V2TContraLoss`): each video picks its text among the batch."""
    return _matching_cross_entropy(video, text, "v2t_contrastive")  # logits (B_v, B_t)


def symmetric_nce(
    video: Tensor,  # (B, D) pooled video vectors
    text: Tensor,  # (B, D) pooled text vectors; row i describes video i
) -> Tensor:  # () CE(V·Tᵀ) + CE(T·Vᵀ), summed as MMPT `MMContraLoss` does
    """Both directions of the pair-level loss, summed (VideoCLIP pretraining)."""
    return v2t_contrastive(video, text) + t2v_contrastive(video, text)


@dataclass(frozen=True)
class PositiveStrategy:
    """How FineCo picks the positive frames P(x) of each clip (paper §5.2)."""

    kind: StrategyKind
    k: int = 50  # fixed_k and random: number of positive frames
    ratio: float = 0.5  # ratio: share of the clip's true (untruncated) length

    def __post_init__(self) -> None:
        if self.kind not in get_args(StrategyKind):
            raise ValueError(
                f"PositiveStrategy.kind must be one of {get_args(StrategyKind)}, got {self.kind!r}"
            )
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1:
            raise ValueError(f"PositiveStrategy.k must be an integer >= 1, got {self.k!r}")
        if not 0.0 < self.ratio <= 1.0:
            raise ValueError(
                f"PositiveStrategy.ratio must satisfy 0 < ratio <= 1, got {self.ratio}"
            )


def _check_frames(name: str, frame_logits: Tensor, **masks: Tensor) -> None:
    """frame_logits must be (B, K) floating point; every mask a (B, K) bool tensor."""
    if frame_logits.ndim != 2 or not frame_logits.is_floating_point():
        raise ValueError(
            f"{name}: frame_logits must be a (B, K) float tensor, got shape "
            f"{tuple(frame_logits.shape)} and dtype {frame_logits.dtype}"
        )
    for mask_name, mask in masks.items():
        if mask.shape != frame_logits.shape or mask.dtype != torch.bool:
            raise ValueError(
                f"{name}: {mask_name} must be a bool tensor of shape {tuple(frame_logits.shape)} "
                f"like frame_logits, got shape {tuple(mask.shape)} and dtype {mask.dtype}"
            )


def _rank_frames(
    scores: Tensor,  # (B, K) float
    frame_mask: Tensor,  # (B, K) bool, True = real frame
) -> tuple[Tensor, Tensor]:  # (B, K) long frame index at each rank, (B, K) long rank of each frame
    """Real frames first by descending score, ties broken by lower frame index; padding last.

    Two stable sorts: by score, then by realness, so a real frame whose score equals a padding
    value (e.g. -inf) still ranks before all padding.
    """
    order = torch.sort(scores, dim=1, descending=True, stable=True).indices  # (B, K)
    realness = frame_mask.gather(1, order).to(torch.int8)  # (B, K)
    order = order.gather(1, torch.sort(realness, dim=1, descending=True, stable=True).indices)
    positions = torch.arange(scores.shape[1], device=scores.device).expand_as(order)  # (B, K)
    return order, torch.empty_like(order).scatter_(1, order, positions)


def _top_count(
    scores: Tensor,  # (B, K) float
    frame_mask: Tensor,  # (B, K) bool
    count: Tensor,  # (B,) long, number of positives per row (<= real frames)
) -> Tensor:  # (B, K) bool
    """The `count` highest-scoring real frames of each row (ties → lower index)."""
    _, ranks = _rank_frames(scores, frame_mask)  # (B, K)
    return (ranks < count.unsqueeze(1)) & frame_mask


def _median_positives(
    logits: Tensor,  # (B, K) float, detached
    frame_mask: Tensor,  # (B, K) bool
    n_real: Tensor,  # (B,) long
) -> Tensor:  # (B, K) bool
    """Real frames above τ = batch mean of per-row medians; at least one positive per real row."""
    order, ranks = _rank_frames(logits, frame_mask)  # (B, K), (B, K)
    ranked = logits.gather(1, order)  # (B, K): real logits first, descending
    middle_low = ((n_real - 1).clamp(min=0) // 2).unsqueeze(1)  # (B, 1)
    middle_high = (n_real // 2).unsqueeze(1)  # (B, 1); equal to middle_low for odd counts
    medians = 0.5 * (ranked.gather(1, middle_low) + ranked.gather(1, middle_high)).squeeze(1)
    has_real = n_real > 0  # (B,)
    # Mean over rows with a real frame; where() keeps padding values (maybe NaN) out of the sum.
    # Under DDP both sums run over the global batch (models/distributed.py).
    sums = global_sum(torch.stack([torch.where(has_real, medians, 0.0).sum(), has_real.sum()]))
    threshold = sums[0] / sums[1].clamp(min=1)  # ()
    above = frame_mask & (logits > threshold)  # (B, K)
    best = frame_mask & (ranks == 0)  # (B, K): each real row's highest frame
    needs_best = ~above.any(dim=1, keepdim=True)  # (B, 1)
    return torch.where(needs_best, best, above)


def select_positives(
    frame_logits: Tensor,  # (B, K) frame-selector logits
    frame_mask: Tensor,  # (B, K) bool, True = real frame
    strategy: PositiveStrategy,
    true_lengths: Tensor,  # (B,) long, clip length in seconds before truncation (ratio only)
    generator: torch.Generator | None = None,  # random only; must live on frame_logits' device
) -> Tensor:  # (B, K) bool, True = positive frame; always a subset of frame_mask
    """The positive frames P(x) of each clip under `strategy` (see the module docstring).

    Works on detached logits without gradient (ranking is not differentiable); vectorised over
    the batch. Rows with no real frame get no positives.
    """
    _check_frames("select_positives", frame_logits, frame_mask=frame_mask)
    if true_lengths.shape != frame_logits.shape[:1]:
        raise ValueError(
            f"select_positives: true_lengths must have shape ({frame_logits.shape[0]},) (one per "
            f"clip), got {tuple(true_lengths.shape)}"
        )
    with torch.no_grad():
        logits = frame_logits.detach().to(_compute_dtype(frame_logits))  # (B, K)
        n_real = frame_mask.sum(dim=1)  # (B,)
        if strategy.kind == "fixed_k":
            return _top_count(logits, frame_mask, n_real.clamp(max=strategy.k))
        elif strategy.kind == "median":
            return _median_positives(logits, frame_mask, n_real)
        elif strategy.kind == "ratio":
            true = true_lengths.to(device=logits.device, dtype=torch.float64)  # (B,)
            wanted = torch.round(true * strategy.ratio).long()  # (B,) half to even
            count = torch.minimum(wanted.clamp(min=1), n_real)  # (B,)
            return _top_count(logits, frame_mask, count)
        elif strategy.kind == "random":
            keys = torch.rand(
                logits.shape, generator=generator, device=logits.device, dtype=torch.float64
            )  # (B, K)
            return _top_count(keys, frame_mask, n_real.clamp(max=strategy.k))
        raise ValueError(f"select_positives: unknown strategy kind {strategy.kind!r}")


@dataclass(frozen=True)
class FinecoLoss:
    """FineCo's frame-level loss L1 and the share of clips for which it is identically 0."""

    loss: Tensor  # () mean over rows with >= 1 real frame of -log Σ_{k∈P} softmax_real(s)_k
    all_positive_share: float  # share of those rows whose positives are all their real frames


def fineco_frame_loss(
    frame_logits: Tensor,  # (B, K) frame-selector logits s
    frame_mask: Tensor,  # (B, K) bool, True = real frame
    positives: Tensor,  # (B, K) bool, True = positive frame (entries at padding are ignored)
) -> FinecoLoss:
    """Paper Eq. 3 as a loss: L1_i = logsumexp_{real}(s_i) - logsumexp_{P_i}(s_i), batch mean.

    Computed in float32 (float64 stays float64). Padding is masked with -inf, so its logits may
    be anything (even inf or NaN) without reaching the value or the gradient. Raises ValueError
    when a row has real frames but no positive (its loss would be -log 0).
    """
    _check_frames("fineco_frame_loss", frame_logits, frame_mask=frame_mask, positives=positives)
    scores = frame_logits.to(_compute_dtype(frame_logits))  # (B, K)
    positives = positives & frame_mask  # (B, K)
    n_real = frame_mask.sum(dim=1)  # (B,)
    empty = (n_real == 0).unsqueeze(1)  # (B, 1)
    no_positive = (positives.sum(dim=1) == 0) & (n_real > 0)  # (B,)
    if bool(no_positive.any()):
        rows = no_positive.nonzero().flatten().tolist()
        raise ValueError(
            f"fineco_frame_loss: rows {rows} have real frames but no positive frame; "
            "L1 would be -log 0 (select_positives always gives at least one)"
        )
    # Empty rows: use finite dummy scores over all frames so every intermediate stays finite;
    # their row loss is then exactly 0 and masked out below.
    scores = scores.masked_fill(empty, 0.0)  # (B, K)
    all_set = frame_mask | empty  # (B, K)
    positive_set = positives | empty  # (B, K)
    log_all = scores.masked_fill(~all_set, float("-inf")).logsumexp(dim=1)  # (B,)
    log_positive = scores.masked_fill(~positive_set, float("-inf")).logsumexp(dim=1)  # (B,)
    row_loss = (log_all - log_positive).masked_fill(empty.squeeze(1), 0.0)  # (B,)
    n_rows = (n_real > 0).sum()  # ()
    loss = row_loss.sum() / n_rows.clamp(min=1)
    all_positive = ((frame_mask & ~positives).sum(dim=1) == 0) & (n_real > 0)  # (B,)
    share = (all_positive.sum() / n_rows.clamp(min=1)).item()
    return FinecoLoss(loss=loss, all_positive_share=float(share))
