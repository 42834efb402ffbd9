"""VideoQA metrics (numpy only): open-ended answer accuracy and multiple-choice accuracy.

Both return percent (0-100), as in the papers' tables (FineCo Table 2: MSR-VTT QA 37.4, MC 92.7).

Open-ended QA. Answers outside the A-answer vocabulary are encoded as -100. They are counted as
*wrong*, not dropped: ClipBERT and FineCo report accuracy over all test questions, so dropping
them would inflate the number.

Ties. `argmax` takes the lowest index among equal maxima, both for answer logits and for the C
multiple-choice scores. A model that scores every candidate the same therefore always picks
candidate 0; tests build such ties by hand.
"""

from __future__ import annotations

import numpy as np

OUT_OF_VOCABULARY = -100


def qa_accuracy(
    logits_or_predictions: np.ndarray,  # (N, A) logits or (N,) predicted answer indices
    answers: np.ndarray,  # (N,) answer index, -100 = outside the vocabulary (always wrong)
) -> float:  # percent of the N questions answered correctly
    """Open-ended QA accuracy over all N questions; out-of-vocabulary answers count as wrong."""
    values = np.asarray(logits_or_predictions)
    answers = np.asarray(answers)
    if values.ndim == 2:
        predictions = values.argmax(axis=1)  # (N,) lowest index on ties
        num_answers = values.shape[1]
    elif values.ndim == 1:
        predictions = values
        num_answers = None
    else:
        raise ValueError(
            f"qa_accuracy expects logits (N, A) or predictions (N,), got shape {values.shape}"
        )
    if answers.shape != predictions.shape:
        raise ValueError(
            f"qa_accuracy: {predictions.shape[0]} predictions but answers of shape {answers.shape}"
        )
    if answers.size == 0:
        raise ValueError("qa_accuracy: no questions given")
    in_vocab = answers != OUT_OF_VOCABULARY
    too_large = answers >= num_answers if num_answers is not None else np.zeros_like(in_vocab)
    bad = in_vocab & ((answers < 0) | too_large)
    if bad.any():
        raise ValueError(
            f"qa_accuracy: answers must be in [0, A) or {OUT_OF_VOCABULARY} (out of vocabulary); "
            f"found {answers[bad].tolist()} at rows {np.flatnonzero(bad).tolist()}"
        )
    correct = in_vocab & (predictions == answers)
    return 100.0 * float(correct.mean())


def multiple_choice_accuracy(
    scores: np.ndarray,  # (N, C) score of each candidate, e.g. from multiple_choice_scores
    answers: np.ndarray,  # (N,) index of the correct candidate in [0, C)
) -> float:  # percent of the N questions whose argmax is the correct candidate
    """Multiple-choice accuracy; ties go to the lower candidate index."""
    scores = np.asarray(scores)
    answers = np.asarray(answers)
    if scores.ndim != 2 or answers.shape != scores.shape[:1]:
        raise ValueError(
            f"multiple_choice_accuracy expects scores (N, C) and answers (N,), "
            f"got scores {scores.shape} and answers {answers.shape}"
        )
    if scores.shape[0] == 0:
        raise ValueError("multiple_choice_accuracy: no questions given")
    bad = (answers < 0) | (answers >= scores.shape[1])
    if bad.any():
        raise ValueError(
            f"multiple_choice_accuracy: answers must be in [0, {scores.shape[1]}); "
            f"found {answers[bad].tolist()} at rows {np.flatnonzero(bad).tolist()}"
        )
    predictions = scores.argmax(axis=1)  # (N,) lowest index on ties
    return 100.0 * float((predictions == answers).mean())
