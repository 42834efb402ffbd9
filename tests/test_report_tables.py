"""The paper-style tables of the report: paper rows first, then ours, per task and sweep."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.reporting.tables import (
    Run,
    number,
    results_markdown,
    sweep_markdown,
    wilson_interval,
)


def retrieval(r1: float, ds_r1: float) -> dict[str, Any]:
    row = {"R@1": r1, "R@5": 50.0, "R@10": 60.0, "MedR": 4.0, "MeanR": 9.0}
    return {"plain": row, "dual_softmax": {**row, "R@1": ds_r1}, "mmpt": None}


def fineco(strategy: str, k: int = 50, ratio: float = 0.5) -> dict[str, Any]:
    return {"enabled": True, "strategy": strategy, "k": k, "ratio": ratio}


OFF: dict[str, Any] = {"enabled": False}


def test_number_rounds_halves_up_and_marks_empty_cells() -> None:
    assert [number(11.25), number(3), number(None)] == ["11.3", "3.0", "-"]


def test_wilson_interval_matches_known_values() -> None:
    # 50 of 100: 0.5 ± 1.96 * sqrt(.25/100 + 1.96²/40000) / (1 + 1.96²/100) = [0.4038, 0.5962]
    assert wilson_interval(50.0, 100) == pytest.approx((40.383, 59.617), abs=1e-3)
    low, high = wilson_interval(0.0, 29)  # none right: the interval still reaches 11.7 %
    assert low == 0.0 and high == pytest.approx(11.70, abs=0.01)
    assert wilson_interval(100.0, 10)[1] == 100.0


def test_msvd_table_has_the_paper_rows_then_ours_apart_with_scope_chance_and_ci() -> None:
    scope = {"protocol": "multi_sentence", "dataset": "msvd", "split": "test"}
    scope |= {"queries": 100, "videos": 20}
    runs = [
        Run("fineco", fineco("fixed_k", 25), {**scope, **retrieval(30, 31)}),
        Run("baseline", OFF, {**scope, **retrieval(20, 21)}),
    ]
    text = results_markdown("msvd", "retrieval", runs)
    lines = text.splitlines()
    assert lines[0] == "## Results — Table 3: MSVD text→video retrieval (multi-sentence)"
    assert "every test caption is a query over the unique test videos" in text
    published, ours = text.split("**Ours**")
    assert [line for line in published.splitlines() if line.startswith("| ") and "(" in line] == [
        "| VideoCLIP (paper) | ? | 26.4 | 52.2 | 63.3 | 5.0 |",
        "| FineCo (paper) | ? | 27.2 | 54.0 | 64.0 | 5.0 |",
    ]
    assert "msvd test, 100 queries over 20 videos; chance R@1 5.0 %" in ours
    assert "one seed" in ours and "Wilson" in ours
    assert [line for line in ours.splitlines() if line.startswith("| ours")] == [
        "| ours: fineco (fixed_k, k=25) | no | 30.0 | 50.0 | 60.0 | 4.0 | 21.9–39.6 |",
        "| ours: fineco (fixed_k, k=25) | yes | 31.0 | 50.0 | 60.0 | 4.0 | 22.8–40.6 |",
        "| ours: baseline (VideoCLIP, no L1) | no | 20.0 | 50.0 | 60.0 | 4.0 | 13.3–28.9 |",
        "| ours: baseline (VideoCLIP, no L1) | yes | 21.0 | 50.0 | 60.0 | 4.0 | 14.2–30.0 |",
    ]
    assert "MMPT-compatible" not in text  # no square matrix for multi-sentence
    assert sweep_markdown("msvd", "retrieval", runs) == ""


def test_didemo_reports_both_protocols_and_says_which_is_which() -> None:
    moments = {"rank@1": 25.0, "rank@5": 75.0, "mIoU": 40.0, "annotations": 4}
    metrics = {"protocol": "paragraph_to_video", **retrieval(10, 12), "moments": moments}
    text = results_markdown("didemo", "retrieval", [Run("fineco", fineco("fixed_k", 5), metrics)])
    assert "Table 4: DiDeMo paragraph→video retrieval" in text
    assert "all descriptions of a video joined into one query" in text
    assert "| VideoCLIP (paper) | ? | 16.6 | 46.9 | - | - |" in text
    assert "DiDeMo moment ranking (a different protocol)" in text
    assert "| VideoCLIP zero-shot (published) | 16.6 | 46.9 | - |" in text
    assert "| ours: fineco (fixed_k, k=5) | 25.0 | 75.0 | 40.0 |" in text


def test_qa_table_and_table7_sweep() -> None:
    runs = [
        Run(
            "fineco",
            fineco("fixed_k", 20),
            {
                "protocol": "qa",
                "accuracy": 40.0,
                "answers": 1500,
                "out_of_vocabulary_share": 0.0625,
            },
        ),
        Run("fineco-fixed_k-k1", fineco("fixed_k", 1), {"protocol": "qa", "accuracy": 30.04}),
        Run("baseline", OFF, {"task": "qa", "protocol": "qa", "accuracy": 35.0}),
    ]
    text = results_markdown("msrvtt", "qa", runs)
    assert "Table 5: MSR-VTT QA (open-ended, 1500 answers)" in text
    assert "| VideoCLIP (paper) | 35.9 |" in text and "| FineCo (paper) | 37.4 |" in text
    assert "| ours: fineco-fixed_k-k1 (fixed_k, k=1) | 30.0 | - |" in text  # questions unknown
    assert "Answer vocabulary: 1500 answers; 93.8% of the test questions" in text
    sweep = sweep_markdown("msrvtt", "qa", runs).splitlines()
    assert sweep[0] == "## Ablation — Table 7: number of positive frames"
    assert "Ours: ? questions, 1500 answers; chance 0.1 % (a uniform guess)" in sweep[2]
    assert "| fineco | 20 | 37.4 | 40.0 |" in sweep
    assert "| fineco-fixed_k-k1 | 1 | 35.5 | 30.0 |" in sweep
    assert "| baseline | off (VideoCLIP) | - | 35.0 |" in sweep


def test_mc_table_has_table8_rows() -> None:
    metrics = {"task": "mc", "protocol": "mc", "accuracy": 80.0, "questions": 50, "candidates": 5}
    text = results_markdown("msrvtt", "mc", [Run("fineco", fineco("fixed_k", 25), metrics)])
    assert "Table 8: MSR-VTT multiple choice" in text
    published, ours = text.split("**Ours**")
    assert "| FineCo (paper) | 92.7 |" in published
    assert "50 questions of 5 captions; chance 20.0 %" in ours
    assert "| ours: fineco (fixed_k, k=25) | 80.0 | 67.0–88.8 |" in ours


def test_table6_sweep_rows_carry_the_paper_r1_of_each_strategy() -> None:
    runs = [
        Run("fineco", fineco("fixed_k", 50), retrieval(40, 41)),
        Run("fineco-median", fineco("median"), retrieval(38, 39)),
        Run("fineco-ratio-0.3", fineco("ratio", ratio=0.3), retrieval(37, 36)),
        Run("fineco-random-k50", fineco("random", 50), retrieval(20, 21)),
        Run("baseline", OFF, retrieval(30, 31)),
    ]
    lines = sweep_markdown("youcook2", "retrieval", runs).splitlines()
    assert lines[0] == "## Ablation — Table 6: positive-frame strategies"
    assert "| fineco | fixed_k | 50 | 37.3 | 40.0 | 41.0 |" in lines
    assert "| fineco-median | median |  | 37.6 | 38.0 | 39.0 |" in lines
    assert "| fineco-ratio-0.3 | ratio | 0.3 | 37.3 | 37.0 | 36.0 |" in lines
    assert "| fineco-random-k50 | random | 50 | 30.1 | 20.0 | 21.0 |" in lines
    assert "| baseline | off (VideoCLIP) |  | - | 30.0 | 31.0 |" in lines
