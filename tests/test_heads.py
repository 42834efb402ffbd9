"""Tests for models/heads.py and pipeline/evaluation/qa_metrics.py: shapes, loop references,
hand-made ties."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import Tensor

from models.heads import AnswerHead, answer_cross_entropy, multiple_choice_scores
from pipeline.evaluation.qa_metrics import multiple_choice_accuracy, qa_accuracy

HIDDEN, ANSWERS, INNER, BATCH = 33, 17, 37, 5


def reference_answer_cross_entropy(logits: Tensor, answers: Tensor, ignore_index: int) -> Tensor:
    """Loop reference: mean of -log softmax(logits_b)[a_b] over rows with a_b != ignore_index."""
    terms = []
    for row, answer in zip(logits, answers.tolist(), strict=True):
        if answer == ignore_index:
            continue
        log_norm = torch.log(sum(torch.exp(value) for value in row))
        terms.append(log_norm - row[answer])
    if not terms:
        return logits.sum() * 0.0
    return sum(terms) / len(terms)


def test_answer_head_shape_odd_sizes() -> None:
    torch.manual_seed(0)
    head = AnswerHead(HIDDEN, num_answers=ANSWERS, inner_size=INNER)
    logits = head(torch.randn(BATCH, HIDDEN), torch.randn(BATCH, HIDDEN))
    assert logits.shape == (BATCH, ANSWERS)
    assert head.mlp[0].in_features == 2 * HIDDEN and head.mlp[0].out_features == INNER


def test_answer_head_default_inner_is_hidden_and_uses_both_inputs() -> None:
    torch.manual_seed(0)
    head = AnswerHead(HIDDEN, num_answers=ANSWERS).eval()
    assert head.mlp[0].out_features == HIDDEN
    video, text = torch.randn(BATCH, HIDDEN), torch.randn(BATCH, HIDDEN)
    base = head(video, text)
    assert not torch.allclose(base, head(video, torch.randn(BATCH, HIDDEN)))
    assert not torch.allclose(base, head(torch.randn(BATCH, HIDDEN), text))


def test_answer_head_rejects_mismatched_inputs() -> None:
    head = AnswerHead(HIDDEN, num_answers=ANSWERS)
    with pytest.raises(ValueError, match="same shape"):
        head(torch.randn(BATCH, HIDDEN), torch.randn(BATCH, HIDDEN + 1))


def test_loss_matches_reference_value_and_gradient() -> None:
    torch.manual_seed(1)
    logits = torch.randn(7, ANSWERS, dtype=torch.float64, requires_grad=True)
    ref_logits = logits.detach().clone().requires_grad_(True)
    answers = torch.tensor([3, -100, 0, 16, -100, 8, 8])
    loss = answer_cross_entropy(logits, answers)
    ref = reference_answer_cross_entropy(ref_logits, answers, -100)
    torch.testing.assert_close(loss, ref)
    loss.backward()
    ref.backward()
    torch.testing.assert_close(logits.grad, ref_logits.grad)


def test_ignored_rows_are_excluded() -> None:
    torch.manual_seed(2)
    logits = torch.randn(4, ANSWERS, requires_grad=True)
    answers = torch.tensor([2, -100, 5, -100])
    loss = answer_cross_entropy(logits, answers)
    kept = answer_cross_entropy(logits[[0, 2]], answers[[0, 2]])
    torch.testing.assert_close(loss, kept)
    loss.backward()
    assert torch.all(logits.grad[[1, 3]] == 0)
    assert torch.all(logits.grad[[0, 2]].abs().sum(dim=1) > 0)


def test_custom_ignore_index() -> None:
    logits = torch.randn(3, ANSWERS)
    answers = torch.tensor([ANSWERS, 1, ANSWERS])
    loss = answer_cross_entropy(logits, answers, ignore_index=ANSWERS)
    torch.testing.assert_close(loss, answer_cross_entropy(logits[1:2], answers[1:2]))


def test_all_ignored_gives_zero_with_gradient() -> None:
    logits = torch.randn(3, ANSWERS, requires_grad=True)
    loss = answer_cross_entropy(logits, torch.full((3,), -100))
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert logits.grad is not None and torch.all(logits.grad == 0)


def test_loss_rejects_out_of_range_answers() -> None:
    with pytest.raises(ValueError, match=r"\[0, 17\)"):
        answer_cross_entropy(torch.randn(2, ANSWERS), torch.tensor([0, ANSWERS]))


def test_loss_uniform_logits_is_log_a() -> None:
    loss = answer_cross_entropy(torch.zeros(3, ANSWERS), torch.tensor([0, 4, 16]))
    assert math.isclose(loss.item(), math.log(ANSWERS), rel_tol=1e-6)


def test_multiple_choice_scores_equal_manual_dot_products() -> None:
    torch.manual_seed(3)
    choices = 5
    video = torch.randn(BATCH, HIDDEN)
    candidates = torch.randn(BATCH, choices, HIDDEN)
    scores = multiple_choice_scores(video, candidates)
    assert scores.shape == (BATCH, choices)
    for b in range(BATCH):
        for c in range(choices):
            expected = sum(video[b, h] * candidates[b, c, h] for h in range(HIDDEN))
            torch.testing.assert_close(scores[b, c], expected, rtol=1e-5, atol=1e-5)


def test_multiple_choice_scores_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match=r"\(B, C, H\)"):
        multiple_choice_scores(torch.randn(2, HIDDEN), torch.randn(3, 5, HIDDEN))


def test_qa_accuracy_from_predictions_counts_oov_as_wrong() -> None:
    predictions = np.array([1, 2, 3, 0, 4])
    answers = np.array([1, 2, 0, -100, -100])  # 2 right, 1 wrong, 2 out of vocabulary
    assert qa_accuracy(predictions, answers) == pytest.approx(40.0)


def test_qa_accuracy_from_logits_with_ties() -> None:
    logits = np.array(
        [
            [0.0, 2.0, 1.0],  # argmax 1
            [5.0, 5.0, 1.0],  # tie 0/1 → 0
            [1.0, 3.0, 3.0],  # tie 1/2 → 1
            [9.0, 0.0, 0.0],  # argmax 0, answer out of vocabulary
        ]
    )
    answers = np.array([1, 0, 2, -100])
    assert qa_accuracy(logits, answers) == pytest.approx(50.0)


def test_qa_accuracy_rejects_bad_answers() -> None:
    with pytest.raises(ValueError, match="out of vocabulary"):
        qa_accuracy(np.zeros((2, 3)), np.array([0, 3]))
    with pytest.raises(ValueError, match="out of vocabulary"):
        qa_accuracy(np.array([0, 1]), np.array([0, -5]))


def test_multiple_choice_accuracy_hand_made_with_ties() -> None:
    scores = np.array(
        [
            [0.1, 0.9, 0.2, 0.3, 0.4],  # argmax 1, right
            [0.5, 0.5, 0.5, 0.5, 0.5],  # all tied → 0, answer 3: wrong
            [0.2, 0.7, 0.1, 0.7, 0.0],  # tie 1/3 → 1, answer 1: right
            [0.2, 0.7, 0.1, 0.7, 0.0],  # tie 1/3 → 1, answer 3: wrong
        ]
    )
    answers = np.array([1, 3, 1, 3])
    assert multiple_choice_accuracy(scores, answers) == pytest.approx(50.0)


def test_multiple_choice_accuracy_rejects_bad_answers() -> None:
    with pytest.raises(ValueError, match=r"\[0, 5\)"):
        multiple_choice_accuracy(np.zeros((2, 5)), np.array([0, 5]))
