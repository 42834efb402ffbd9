"""Tests for models/losses.py: loop references (value and gradient), strategies, properties."""

from __future__ import annotations

import pytest
import torch
from reference_losses import (
    reference_fineco,
    reference_positives,
    reference_symmetric,
    reference_t2v,
    reference_v2t,
)
from torch import Tensor

from models.losses import (
    FinecoLoss,
    PositiveStrategy,
    fineco_frame_loss,
    select_positives,
    symmetric_nce,
    t2v_contrastive,
    v2t_contrastive,
)

PAIR_LOSSES = [
    (t2v_contrastive, reference_t2v),
    (v2t_contrastive, reference_v2t),
    (symmetric_nce, reference_symmetric),
]


def random_frames(
    batch: int, frames: int, seed: int, integer_logits: bool = False
) -> tuple[Tensor, Tensor, Tensor]:
    """Logits (float64), a padded mask (row 0 full, one empty row when batch > 2) and positives."""
    generator = torch.Generator().manual_seed(seed)
    if integer_logits:  # many ties
        logits = torch.randint(-2, 3, (batch, frames), generator=generator).double()
    else:
        logits = torch.randn(batch, frames, generator=generator, dtype=torch.float64) * 2
    lengths = torch.randint(1, frames + 1, (batch,), generator=generator)
    lengths[0] = frames
    if batch > 2:
        lengths[2] = 0
    mask = torch.arange(frames).unsqueeze(0) < lengths.unsqueeze(1)  # (B, K)
    positives = (torch.rand(batch, frames, generator=generator) < 0.4) & mask
    first_real = mask & (torch.arange(frames) == 0)  # guarantee one positive per real row
    positives = positives | first_real
    if batch > 1:
        positives[1] = mask[1]  # a row where every real frame is positive
    return logits, mask, positives


# ---- pair-level losses -----------------------------------------------------------------------


@pytest.mark.parametrize("batch", [1, 2, 5, 8])
@pytest.mark.parametrize(("loss_fn", "reference"), PAIR_LOSSES)
def test_pair_loss_matches_reference_value_and_gradient(batch, loss_fn, reference):
    generator = torch.Generator().manual_seed(batch)
    video = torch.randn(batch, 7, generator=generator, dtype=torch.float64, requires_grad=True)
    text = torch.randn(batch, 7, generator=generator, dtype=torch.float64, requires_grad=True)
    value = loss_fn(video, text)
    expected = reference(video, text)
    torch.testing.assert_close(value, expected)
    grads = torch.autograd.grad(value, (video, text))
    expected_grads = torch.autograd.grad(expected, (video, text))
    for grad, expected_grad in zip(grads, expected_grads):
        torch.testing.assert_close(grad, expected_grad)


def test_symmetric_is_sum_of_both_directions_with_roles_transposed():
    generator = torch.Generator().manual_seed(3)
    video, text = torch.randn(2, 6, 11, generator=generator)
    torch.testing.assert_close(v2t_contrastive(video, text), t2v_contrastive(text, video))
    torch.testing.assert_close(
        symmetric_nce(video, text), t2v_contrastive(video, text) + t2v_contrastive(text, video)
    )


def test_aligned_pairs_give_lower_t2v_loss_than_shuffled():
    generator = torch.Generator().manual_seed(4)
    video = torch.randn(16, 32, generator=generator)
    text = video + 0.1 * torch.randn(16, 32, generator=generator)
    shuffled = text[torch.roll(torch.arange(16), 1)]
    assert t2v_contrastive(video, text) < t2v_contrastive(video, shuffled)
    assert symmetric_nce(video, text) < symmetric_nce(video, shuffled)


def test_pair_loss_casts_half_precision_and_rejects_bad_shapes():
    video = torch.randn(4, 8).half()
    text = torch.randn(4, 8).half()
    value = t2v_contrastive(video, text)
    assert value.dtype == torch.float32
    torch.testing.assert_close(value, t2v_contrastive(video.float(), text.float()))
    with pytest.raises(ValueError, match=r"\(B, D\)"):
        t2v_contrastive(torch.randn(4, 8), torch.randn(3, 8))


# ---- fineco_frame_loss -----------------------------------------------------------------------


@pytest.mark.parametrize("batch", [1, 3, 6])
def test_fineco_matches_reference_value_and_gradient(batch):
    logits, mask, positives = random_frames(batch, 9, seed=batch)
    logits.requires_grad_(True)
    result = fineco_frame_loss(logits, mask, positives)
    expected = reference_fineco(logits, mask, positives)
    assert isinstance(result, FinecoLoss)
    torch.testing.assert_close(result.loss, expected)
    (grad,) = torch.autograd.grad(result.loss, logits)
    (expected_grad,) = torch.autograd.grad(expected, logits)
    torch.testing.assert_close(grad, expected_grad)


def test_fineco_is_invariant_to_appended_padding():
    logits, mask, positives = random_frames(5, 6, seed=7)
    logits.requires_grad_(True)
    padding = torch.tensor([1e4, -1e4, float("nan"), float("inf")], dtype=torch.float64)
    longer = torch.cat([logits, padding.expand(5, 4)], dim=1)  # (B, K + 4)
    longer_mask = torch.cat([mask, torch.zeros(5, 4, dtype=torch.bool)], dim=1)
    longer_positives = torch.cat([positives, torch.ones(5, 4, dtype=torch.bool)], dim=1)
    short = fineco_frame_loss(logits, mask, positives)
    long = fineco_frame_loss(longer, longer_mask, longer_positives)
    torch.testing.assert_close(long.loss, short.loss)
    assert long.all_positive_share == short.all_positive_share
    (grad_short,) = torch.autograd.grad(short.loss, logits)
    (grad_long,) = torch.autograd.grad(long.loss, logits)
    torch.testing.assert_close(grad_long, grad_short)


def test_fineco_is_zero_when_all_real_frames_are_positive():
    logits, mask, _ = random_frames(4, 8, seed=2)
    logits.requires_grad_(True)
    result = fineco_frame_loss(logits, mask, mask.clone())
    assert result.loss.item() == 0.0
    assert result.all_positive_share == 1.0
    (grad,) = torch.autograd.grad(result.loss, logits)
    assert torch.count_nonzero(grad) == 0


def test_fineco_gradient_is_zero_at_padding_and_finite():
    logits, mask, positives = random_frames(6, 7, seed=5)
    logits = logits.masked_fill(~mask, float("nan")).requires_grad_(True)
    result = fineco_frame_loss(logits, mask, positives)
    (grad,) = torch.autograd.grad(result.loss, logits)
    assert torch.isfinite(result.loss)
    assert torch.isfinite(grad).all()
    assert torch.count_nonzero(grad[~mask]) == 0
    assert torch.count_nonzero(grad[mask]) > 0


def test_fineco_all_positive_share_counts_non_empty_rows_only():
    mask = torch.tensor([[1, 1, 1], [1, 1, 0], [0, 0, 0], [1, 0, 0]], dtype=torch.bool)
    positives = torch.tensor([[1, 0, 0], [1, 1, 0], [0, 0, 0], [1, 0, 0]], dtype=torch.bool)
    result = fineco_frame_loss(torch.zeros(4, 3), mask, positives)
    assert result.all_positive_share == pytest.approx(2 / 3)
    # only row 0 contributes: -log(1/3), averaged over the 3 non-empty rows
    assert result.loss.item() == pytest.approx(torch.log(torch.tensor(3.0)).item() / 3)


def test_fineco_all_empty_batch_gives_zero_with_a_gradient_path():
    logits = torch.randn(3, 4, requires_grad=True)
    empty = torch.zeros(3, 4, dtype=torch.bool)
    result = fineco_frame_loss(logits, empty, empty)
    assert result.loss.item() == 0.0
    assert result.loss.requires_grad
    assert result.all_positive_share == 0.0
    (grad,) = torch.autograd.grad(result.loss, logits)
    assert torch.count_nonzero(grad) == 0


def test_fineco_is_stable_for_large_logits():
    logits = torch.tensor([[1e4, -1e4, 0.0], [-1e4, -1e4, 1e4]], requires_grad=True)
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]], dtype=torch.bool)
    positives = torch.tensor([[0, 1, 0], [1, 0, 0]], dtype=torch.bool)
    result = fineco_frame_loss(logits, mask, positives)
    # row 0: -log softmax at -1e4 against 1e4 = 2e4; row 1: two equal real frames, -log(1/2)
    expected = (2e4 + torch.log(torch.tensor(2.0)).item()) / 2
    assert result.loss.item() == pytest.approx(expected)
    (grad,) = torch.autograd.grad(result.loss, logits)
    assert torch.isfinite(grad).all()
    assert grad[1, 2] == 0


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_fineco_casts_low_precision_to_float32(dtype):
    logits, mask, positives = random_frames(4, 6, seed=9)
    low = (logits * 1000).to(dtype).requires_grad_(True)
    result = fineco_frame_loss(low, mask, positives)
    assert result.loss.dtype == torch.float32
    expected = fineco_frame_loss(low.detach().float(), mask, positives)
    torch.testing.assert_close(result.loss, expected.loss)
    (grad,) = torch.autograd.grad(result.loss, low)
    assert grad.dtype == dtype
    assert torch.isfinite(grad).all()


def test_fineco_rejects_rows_without_positives_and_bad_masks():
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]], dtype=torch.bool)
    positives = torch.tensor([[1, 0, 0], [0, 0, 1]], dtype=torch.bool)  # row 1: only padding
    with pytest.raises(ValueError, match=r"rows \[1\]"):
        fineco_frame_loss(torch.zeros(2, 3), mask, positives)
    with pytest.raises(ValueError, match="frame_mask must be a bool"):
        fineco_frame_loss(torch.zeros(2, 3), mask.float(), positives)


# ---- select_positives ------------------------------------------------------------------------


def pick(
    logits: list[list[float]],
    lengths: list[int],
    strategy: PositiveStrategy,
    true_lengths: list[int] | None = None,
) -> list[list[int]]:
    """Positive frame indices per row for hand-made logits padded after `lengths` real frames."""
    frame_logits = torch.tensor(logits, dtype=torch.float32)
    mask = torch.arange(frame_logits.shape[1]) < torch.tensor(lengths).unsqueeze(1)
    true = torch.tensor(true_lengths if true_lengths is not None else lengths)
    chosen = select_positives(frame_logits, mask, strategy, true)
    assert chosen.dtype == torch.bool and not (chosen & ~mask).any()
    return [row.nonzero().flatten().tolist() for row in chosen]


def test_fixed_k_breaks_ties_by_lower_index():
    fixed = PositiveStrategy("fixed_k", k=1)
    assert pick([[3, 3, 1], [1, 3, 3], [2, 2, 2]], [3, 3, 3], fixed) == [[0], [1], [0]]
    fixed_two = PositiveStrategy("fixed_k", k=2)
    assert pick([[1, 3, 3, 3]], [4], fixed_two) == [[1, 2]]


def test_fixed_k_tie_break_holds_for_long_rows():
    # Long rows with many ties: an unstable sort would pick arbitrary tied frames.
    logits = torch.zeros(3, 5000)
    logits[:, ::7] = 1.0  # 715 tied maxima per row, then 4285 tied zeros
    mask = torch.ones(3, 5000, dtype=torch.bool)
    mask[2, :3000] = False  # real frames 3000.. only
    chosen = select_positives(logits, mask, PositiveStrategy("fixed_k", k=720), mask.sum(1))
    assert chosen[0].nonzero().flatten().tolist() == sorted([*range(0, 5000, 7), 1, 2, 3, 4, 5])
    assert torch.equal(chosen, reference_positives(logits, mask, "fixed_k", k=720))


def test_fixed_k_short_rows_take_all_real_frames_and_ignore_padding():
    fixed = PositiveStrategy("fixed_k", k=2)
    logits = [[5, 1, 9, 9], [0, 7, 1e4, 1e4], [1, 2, 3, 4], [float("-inf"), 0, 0, 0]]
    assert pick(logits, [4, 2, 0, 1], fixed) == [[2, 3], [0, 1], [], [0]]


def test_median_threshold_by_hand_even_and_odd_counts():
    median = PositiveStrategy("median")
    # row 0 (4 real, even): median (3 + 5) / 2 = 4; row 1 (5 real, odd): median 4; τ = 4.
    # The lower middle value (3) would give τ = 3.5 and add frame 4 of row 1; the upper one (5)
    # would give τ = 4.5 and drop frame 0 of row 1. Padding (100) is neither ranked nor chosen.
    logits = [[1, 9, 3, 5, 100], [4.25, 0, 100, -1, 4]]
    assert pick(logits, [4, 5], median) == [[1, 3], [0, 2]]


def test_median_row_with_nothing_above_threshold_gets_its_best_frame():
    median = PositiveStrategy("median")
    # medians 1 and 20 → τ = 10.5: row 0 has nothing above, so it keeps its top frame (ties →
    # lower index); the empty row is left out of τ (else τ = 23.67) and gets no positive.
    logits = [[1, 0, 1], [10, 20, 30], [50, 50, 50]]
    assert pick(logits, [3, 3, 0], median) == [[0], [1, 2], []]
    assert pick([[0, 1, 1], [10, 20, 30]], [3, 3], median) == [[1], [1, 2]]


def test_ratio_uses_true_length_not_kept_length():
    ratio = PositiveStrategy("ratio", ratio=0.3)
    logits = [[4, 1, 3, 2, 0, 0], [1, 2, 3, 4, 5, 6], [7, 8, 0, 0, 0, 0], [1, 2, 3, 0, 0, 0]]
    # C = round(0.3 · true): 10 → 3 (top 3 of 4 kept); 100 → 30 clipped to 6 kept; 1 → 0 → at
    # least 1; 5 → 1.5 → 2 (half to even)
    chosen = pick(logits, [4, 6, 2, 3], ratio, true_lengths=[10, 100, 1, 5])
    assert chosen == [[0, 2, 3], [0, 1, 2, 3, 4, 5], [1], [1, 2]]
    half = PositiveStrategy("ratio", ratio=0.5)
    assert pick([[1, 2, 3, 4, 5]], [5], half, true_lengths=[5]) == [[3, 4]]  # 2.5 → 2


def test_random_is_reproducible_within_real_frames_with_exact_count():
    logits = torch.randn(6, 10)
    mask = torch.arange(10) < torch.tensor([10, 7, 3, 2, 0, 5]).unsqueeze(1)
    strategy = PositiveStrategy("random", k=3)
    lengths = mask.sum(dim=1)

    def draw(seed: int) -> Tensor:
        return select_positives(
            logits, mask, strategy, lengths, torch.Generator().manual_seed(seed)
        )

    first = draw(0)
    assert torch.equal(first, draw(0))
    assert not torch.equal(first, draw(1))
    assert not (first & ~mask).any()
    assert first.sum(dim=1).tolist() == [3, 3, 3, 2, 0, 3]
    assert select_positives(logits, mask, strategy, lengths).sum() == 14  # global RNG works too


def test_random_is_uniform_over_real_frames():
    mask = torch.tensor([True, True, True, True, False]).expand(4000, 5)
    logits = torch.arange(5.0).expand(4000, 5)  # logits must not matter
    chosen = select_positives(
        logits, mask, PositiveStrategy("random", k=2), mask.sum(1), torch.Generator().manual_seed(3)
    )
    frequency = chosen.double().mean(dim=0)
    expected = torch.full((4,), 0.5, dtype=torch.float64)
    torch.testing.assert_close(frequency[:4], expected, atol=0.04, rtol=0.0)
    assert frequency[4] == 0


@pytest.mark.parametrize("kind", ["fixed_k", "median", "ratio"])
@pytest.mark.parametrize("seed", range(6))
def test_vectorised_strategies_match_loop_reference(kind, seed):
    logits, mask, _ = random_frames(7, 8, seed=seed, integer_logits=seed % 2 == 0)
    true_lengths = mask.sum(dim=1) + torch.randint(
        0, 6, (7,), generator=torch.Generator().manual_seed(seed)
    )
    strategy = PositiveStrategy(kind, k=3, ratio=0.4)
    chosen = select_positives(logits.float(), mask, strategy, true_lengths)
    expected = reference_positives(logits.float(), mask, kind, 3, 0.4, true_lengths)
    assert torch.equal(chosen, expected)


def test_select_positives_ignores_gradients_and_validates_inputs():
    logits = torch.randn(2, 4, requires_grad=True)
    mask = torch.ones(2, 4, dtype=torch.bool)
    chosen = select_positives(logits, mask, PositiveStrategy("median"), torch.tensor([4, 4]))
    assert not chosen.requires_grad
    with pytest.raises(ValueError, match="true_lengths"):
        select_positives(logits, mask, PositiveStrategy("ratio"), torch.tensor([4]))
    with pytest.raises(ValueError, match="frame_mask"):
        select_positives(logits, mask[:, :3], PositiveStrategy("median"), torch.tensor([4, 4]))


@pytest.mark.parametrize(
    "arguments",
    [
        {"kind": "top"},
        {"kind": "fixed_k", "k": 0},
        {"kind": "random", "k": 2.5},
        {"kind": "ratio", "ratio": 0.0},
        {"kind": "ratio", "ratio": 1.5},
    ],
)
def test_positive_strategy_rejects_invalid_values(arguments):
    with pytest.raises(ValueError, match="PositiveStrategy"):
        PositiveStrategy(**arguments)
