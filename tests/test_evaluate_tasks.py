"""The evaluate stage's protocols: multi-sentence retrieval, DiDeMo moments, QA and multiple choice.

Pure parts (pairs → unique clips → targets, ranks, moment scores) on hand-made numbers with known
answers; the stage paths with a tiny random model over hand-made features and a hand-written
ingest pairs table carrying the task columns.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from manifests import extract_manifest, finetune_info, hand_manifest, ingest_manifest
from safetensors.torch import load_file, save_model
from tiny_model import FEATURE_DIM as DIM
from tiny_model import TINY_MODEL as MODEL

from models.text_encoder import TextEncoderOutput
from models.video_encoder import VideoEncoderOutput
from models.videoclip import attach_answer_head
from pipeline.config import EvaluateConfig
from pipeline.datasets import didemo
from pipeline.evaluate import EvaluateInputs, run_evaluate
from pipeline.evaluation.protocols import (
    candidate_list,
    clip_targets,
    evaluate_moments,
    evaluate_retrieval,
    moment_scores,
    retrieval_report,
)
from pipeline.evaluation.retrieval_metrics import mmpt_retrieval_metrics
from pipeline.training.data import tokenize
from pipeline.training.model_factory import build_model, load_tokenizer
from storage.features import FeatureStore
from storage.layout import Manifest
from storage.tables import read_table

EVALUATE = EvaluateConfig(dataset="hand", split="test", batch_size=3, device="cpu")
COMMON_KEYS = {
    "task", "protocol", "variant", "dataset", "split", "queries", "s3d_random_init",
    "frame_precision",
}  # fmt: skip
WHOLE = 1e9  # a whole-video pair's end_s, as the adapters write it


# --- helpers: hand-made features, ingest, finetune manifests --------------------------------------


def random_features(seconds: dict[str, int]) -> dict[str, np.ndarray]:
    generator = np.random.default_rng(0)
    return {v: generator.standard_normal((n, DIM)).astype(np.float32) for v, n in seconds.items()}


def pairs_frame(rows: list[tuple[str, str, str]], **task_columns: Any) -> pd.DataFrame:
    """Whole-video test pairs (pair_id, video_id, text) plus task columns."""
    frame = pd.DataFrame(
        {
            "pair_id": [r[0] for r in rows],
            "video_id": [r[1] for r in rows],
            "start_s": [0.0] * len(rows),
            "end_s": [WHOLE] * len(rows),
            "text": [r[2] for r in rows],
            "split": ["test"] * len(rows),
        }
    )
    for name, values in task_columns.items():
        frame[name] = values
    return frame


def write_weights(folder: Path, answers: int = 0, favourite: int = 0) -> Manifest:
    """A finetune manifest over a tiny random model; with `answers`, a QA head whose logits
    favour answer `favourite` for every question (last layer: zero weights, one-hot bias)."""
    folder.mkdir(parents=True, exist_ok=True)
    model, _ = build_model(MODEL)
    if answers:
        head = attach_answer_head(model, answers, MODEL.answer_hidden)
        with torch.no_grad():
            head.mlp[3].weight.zero_()
            head.mlp[3].bias.copy_(torch.nn.functional.one_hot(torch.tensor(favourite), answers))
    save_model(model, str(folder / "model.safetensors"))
    return hand_manifest("finetune", folder, {"weights": "model.safetensors"}, finetune_info())


def evaluate(tmp_path: Path, ingest: Manifest, extract: Manifest, finetune: Manifest) -> dict:
    inputs = EvaluateInputs(
        artifacts=tmp_path / "artifacts",
        variant="fineco",
        config=EVALUATE,
        model=MODEL,
        finetune=finetune,
        ingest=ingest,
        extract=extract,
    )
    manifest = run_evaluate(inputs)
    metrics = json.loads(manifest.output("metrics").read_text())
    assert manifest.output("frame_scores").is_file()
    assert manifest.info.variant == "fineco" and manifest.info.task == metrics["task"]
    return {"manifest": manifest, "metrics": metrics}


# --- retrieval: pairs → unique clips → targets ---------------------------------------------------


def test_clip_targets_group_pairs_by_video_and_seconds() -> None:
    video_ids = ["a", "a", "b", "a", "c", "b"]
    spans = [(0, 8), (0, 8), (0, 5), (2, 8), (0, 3), (0, 5)]
    clips = clip_targets(video_ids, spans)
    assert clips.targets.tolist() == [0, 0, 1, 2, 3, 1]
    assert clips.first.tolist() == [0, 2, 3, 4]
    assert clips.queries.tolist() == [2, 2, 1, 1]
    assert clips.targets.dtype == np.int64
    with pytest.raises(ValueError, match="2 video ids but 1 spans"):
        clip_targets(["a", "b"], [(0, 1)])


def test_multi_sentence_ranks_on_hand_made_scores() -> None:
    # 5 captions over 3 videos; targets 0, 0, 1, 2, 2.
    scores = np.array(
        [
            [0.9, 0.1, 0.2],  # target 0: rank 1
            [0.3, 0.5, 0.1],  # target 0: rank 2
            [0.4, 0.4, 0.1],  # target 1: tie with video 0 counts against it, rank 2
            [0.1, 0.2, 0.3],  # target 2: rank 1
            [0.8, 0.7, 0.6],  # target 2: rank 3
        ]
    )
    result = retrieval_report(scores, np.array([0, 0, 1, 2, 2]), temperature=1.0)
    assert result.ranks.tolist() == [1, 2, 2, 1, 3]
    assert result.metrics["plain"]["R@1"] == pytest.approx(40.0)
    assert result.metrics["plain"]["R@5"] == 100.0
    assert result.metrics["plain"]["MedR"] == 2.0
    assert result.metrics["plain"]["MeanR"] == pytest.approx(9 / 5)
    assert result.metrics["mmpt"] is None and result.metrics["mmpt_dual_softmax"] is None
    assert result.ranks_dual_softmax.shape == (5,)
    assert set(result.metrics["dual_softmax"]) == {"R@1", "R@5", "R@10", "MedR", "MeanR"}


def test_evaluate_retrieval_over_unique_clips() -> None:
    # Three clips with one-hot video vectors; pairs 0, 1 share clip a, pairs 3, 4 share clip c.
    eye = np.eye(3)
    video = eye[[0, 0, 1, 2, 2]]  # (5, 3) each pair's clip vector
    text = np.array([[3, 1, 0], [0, 2, 1], [1, 1, 0], [0, 0, 1], [2, 1, 0]], float)
    video_ids = ["a", "a", "b", "c", "c"]
    spans = [(0, 4)] * 5
    result = evaluate_retrieval(video, text, video_ids, spans, "msvd", 1.0)
    assert result.ranks.tolist() == [1, 3, 2, 1, 3]
    assert result.metrics["protocol"] == "multi_sentence"
    assert result.metrics["videos"] == 3
    assert result.metrics["mmpt"] is None
    # One caption per clip: the old diagonal protocol, MMPT's metric included.
    single = evaluate_retrieval(video[[0, 2, 3]], text[[0, 2, 3]], ["a", "b", "c"], spans[:3],
                                "youcook2", 1.0)  # fmt: skip
    assert single.metrics["protocol"] == "text_to_video"
    square = text[[0, 2, 3]] @ video[[0, 2, 3]].T
    assert single.metrics["mmpt"] == mmpt_retrieval_metrics(square)
    assert single.ranks.tolist() == [1, 2, 1]
    didemo_result = evaluate_retrieval(video[[0, 2, 3]], text[[0, 2, 3]], ["a", "b", "c"],
                                       spans[:3], "didemo", 1.0)  # fmt: skip
    assert didemo_result.metrics["protocol"] == "paragraph_to_video"


def msvd_ingest(tmp_path: Path) -> tuple[Manifest, Manifest]:
    rows = [
        ("v1:0", "v1", "a dog runs"),
        ("v1:1", "v1", "the dog is running"),
        ("v2:0", "v2", "a man cooks"),
        ("v2:1", "v2", "someone is cooking"),
        ("v2:2", "v2", "food in a pan"),
        ("v3:0", "v3", "a cat sleeps"),
        ("v9:0", "v9", "no features"),
    ]
    extract = extract_manifest(tmp_path / "extract", random_features({"v1": 5, "v2": 9, "v3": 3}))
    return ingest_manifest(tmp_path / "ingest", pairs_frame(rows), "retrieval", "msvd"), extract


def test_run_evaluate_multi_sentence(tmp_path: Path) -> None:
    ingest, extract = msvd_ingest(tmp_path)
    result = evaluate(tmp_path, ingest, extract, write_weights(tmp_path / "finetune"))
    metrics = result["metrics"]
    assert set(metrics) >= COMMON_KEYS
    assert (metrics["task"], metrics["protocol"]) == ("retrieval", "multi_sentence")
    assert (metrics["queries"], metrics["videos"]) == (6, 3)
    assert metrics["mmpt"] is None and metrics["mmpt_dual_softmax"] is None
    assert "moments" not in metrics
    ranks = read_table(result["manifest"].output("ranks"))
    assert len(ranks) == 6 and ranks["rank"].between(1, 3).all()
    assert result["manifest"].info.plain == metrics["plain"]


# --- DiDeMo moments -------------------------------------------------------------------------------


def test_moment_scores_pick_the_known_best_moment() -> None:
    # 30 seconds, H = 2: feature 0 of chunk c is c's level; the text reads feature 0 only.
    levels = [0.0, 1.0, 4.0, 3.0, 1.0, 0.0]
    frame_hidden = np.zeros((30, 2))
    frame_hidden[:, 0] = np.repeat(levels, 5)
    text = np.array([[1.0, 0.0], [-1.0, 0.0]])
    scores = moment_scores(frame_hidden, text)
    candidates = didemo.candidate_moments()
    assert scores.shape == (2, 21)
    assert candidates[int(scores[0].argmax())] == (2, 2)
    assert scores[0, candidates.index((2, 3))] == pytest.approx(3.5)
    assert scores[1, candidates.index((0, 5))] == pytest.approx(-1.5)
    # A 12-second video: chunks 3..5 lie outside; chunk 2 keeps seconds 10, 11.
    short = moment_scores(frame_hidden[:12], text[:1])[0]
    outside = [i for i, (s, _) in enumerate(candidates) if s >= 3]
    assert np.isneginf(short[outside]).all() and np.isfinite(np.delete(short, outside)).all()
    assert short[candidates.index((2, 5))] == pytest.approx(4.0)
    assert short[candidates.index((0, 5))] == pytest.approx((5 * 0 + 5 * 1 + 2 * 4) / 12)


def chunk_features(best_chunk: int, seconds: int = 30) -> np.ndarray:
    """Features whose dimension 0 is 1 on the seconds of one chunk, 0 elsewhere."""
    rows = np.zeros((seconds, DIM), np.float32)
    rows[5 * best_chunk : 5 * (best_chunk + 1), 0] = 1.0
    return rows


def test_evaluate_moments_with_hand_made_frame_hidden(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """frame_hidden = the features' first H dimensions, every text = e0: the best moment is the
    chunk whose features are 1, so an annotation there is a rank@1 hit with IoU 1."""
    model, _ = build_model(MODEL)
    hidden = model.hidden_size

    def encode_video(video: torch.Tensor, mask: torch.Tensor) -> VideoEncoderOutput:
        return VideoEncoderOutput(frame_hidden=video[..., :hidden], pooled=video[:, 0, :hidden])

    def encode_text(ids: torch.Tensor, mask: torch.Tensor) -> TextEncoderOutput:
        pooled = torch.zeros(len(ids), hidden)
        pooled[:, 0] = 1.0
        return TextEncoderOutput(hidden=pooled[:, None], pooled=pooled)

    monkeypatch.setattr(model, "encode_video", encode_video)
    monkeypatch.setattr(model, "encode_text", encode_text)
    annotations = pd.DataFrame(
        {
            "annotation_id": [1, 2, 3, 4],
            "video": ["v1", "v2", "v1", "gone"],
            "description": ["the dog jumps", "a man waves", "the dog sits", "missing"],
            "times": [
                [(3, 3), (3, 3), (3, 3), (2, 3)],  # best = (3, 3): rank 1, IoU 1
                [(0, 0), (0, 0), (0, 1), (0, 0)],  # best = (0, 0): rank 1, IoU 1
                [(5, 5), (5, 5), (4, 5), (5, 5)],  # (3, 3) predicted: IoU 0, rank > 5
                [(0, 0)] * 4,  # no features: dropped
            ],
        }
    )
    extract = extract_manifest(tmp_path, {"v1": chunk_features(3), "v2": chunk_features(0, 17)})
    store = FeatureStore(extract.output("index"))
    tokenizer = load_tokenizer(MODEL.bert)
    moments = evaluate_moments(model, tokenizer, annotations, store, 30, 16, 2, torch.device("cpu"))
    assert moments["annotations"] == 3 and moments["dropped_missing_features"] == 1
    assert moments["rank@1"] == pytest.approx(200 / 3)
    assert moments["rank@5"] == pytest.approx(200 / 3)
    assert moments["mIoU"] == pytest.approx(200 / 3)
    # max_video_len 8 leaves chunk 0 and 3 seconds of chunk 1: v1's chunk 3 is no longer seen.
    capped = evaluate_moments(model, tokenizer, annotations, store, 8, 16, 2, torch.device("cpu"))
    assert capped["rank@1"] == pytest.approx(100 / 3)


def didemo_ingest(tmp_path: Path) -> tuple[Manifest, Manifest]:
    annotations = tmp_path / "annotations"
    annotations.mkdir()
    records = [
        {"annotation_id": 1, "video": "v1.mov", "description": "a dog", "times": [[3, 3]] * 4},
        {"annotation_id": 2, "video": "v1.mov", "description": "it jumps", "times": [[0, 1]] * 4},
        {"annotation_id": 3, "video": "v2.mp4", "description": "a man", "times": [[0, 0]] * 4},
        {"annotation_id": 4, "video": "v9.mov", "description": "lost", "times": [[1, 1]] * 4},
    ]
    (annotations / "test_data.json").write_text(json.dumps(records))
    rows = [("v1", "v1", "a dog it jumps"), ("v2", "v2", "a man"), ("v9", "v9", "lost")]
    ingest = ingest_manifest(tmp_path / "ingest", pairs_frame(rows), "retrieval", "didemo",
                          annotation_dir=annotations)  # fmt: skip
    extract = extract_manifest(tmp_path / "extract", random_features({"v1": 30, "v2": 12}))
    return ingest, extract


def test_run_evaluate_didemo_paragraphs_and_moments(tmp_path: Path) -> None:
    ingest, extract = didemo_ingest(tmp_path)
    metrics = evaluate(tmp_path, ingest, extract, write_weights(tmp_path / "finetune"))["metrics"]
    assert (metrics["protocol"], metrics["queries"], metrics["videos"]) == (
        "paragraph_to_video", 2, 2
    )  # fmt: skip
    assert metrics["mmpt"] is not None
    moments = metrics["moments"]
    assert (moments["annotations"], moments["dropped_missing_features"]) == (3, 1)
    for name in ("rank@1", "rank@5", "mIoU"):
        assert 0.0 <= moments[name] <= 100.0


# --- QA -------------------------------------------------------------------------------------------


def test_run_evaluate_qa(tmp_path: Path) -> None:
    answers = ["man", "dog", "ball"]
    rows = [
        ("qa0", "v1", "who is it?"),
        ("qa1", "v2", "what runs?"),
        ("qa2", "v1", "what is shown?"),
        ("qa3", "v3", "where?"),
        ("qa4", "v9", "no features?"),
    ]
    pairs = pairs_frame(
        rows,
        answer=["dog", "man", "dog", "kitchen", "dog"],
        answer_index=pd.Series([1, 0, 1, -100, 1], dtype="int64"),
    )
    ingest = ingest_manifest(tmp_path / "ingest", pairs, "qa", "msrvtt",
                          {"task": "qa", "answers": answers})  # fmt: skip
    extract = extract_manifest(tmp_path / "extract", random_features({"v1": 4, "v2": 6, "v3": 2}))
    finetune = write_weights(tmp_path / "finetune", answers=3, favourite=1)  # always "dog"
    result = evaluate(tmp_path, ingest, extract, finetune)
    metrics = result["metrics"]
    assert set(metrics) >= COMMON_KEYS
    assert (metrics["task"], metrics["protocol"]) == ("qa", "qa")
    assert metrics["accuracy"] == pytest.approx(50.0)  # qa0, qa2 right; qa1 wrong; qa3 OOV
    assert (metrics["questions"], metrics["queries"], metrics["answers"]) == (4, 4, 3)
    assert metrics["out_of_vocabulary_share"] == pytest.approx(0.25)
    assert result["manifest"].info.accuracy == metrics["accuracy"]
    predictions = read_table(result["manifest"].output("predictions"))
    assert predictions["pair_id"].tolist() == ["qa0", "qa1", "qa2", "qa3"]
    assert predictions["predicted"].tolist() == ["dog"] * 4
    assert predictions["answer"].tolist() == ["dog", "man", "dog", "kitchen"]
    assert predictions["correct"].tolist() == [True, False, True, False]
    assert "ranks" not in result["manifest"].outputs


# --- multiple choice ------------------------------------------------------------------------------


MC_CANDIDATES = [
    ["a dog runs", "a cat sleeps", "a man cooks", "rain falls", "a car drives"],
    ["people dance", "a bird sings", "a boy swims", "a girl reads", "snow melts"],
    ["a chef slices", "kids play ball", "a train passes", "waves crash", "a horse runs"],
]


@pytest.mark.parametrize("stored", ["list", "json"])
def test_run_evaluate_multiple_choice(tmp_path: Path, stored: str) -> None:
    rows = [("mc0", "v1", "a dog runs"), ("mc1", "v2", "a bird sings"),
            ("mc2", "v3", "waves crash"), ("mc3", "v9", "x")]  # fmt: skip
    candidates = [*MC_CANDIDATES, ["x"] * 5]
    column = candidates if stored == "list" else [json.dumps(c) for c in candidates]
    answer_index = pd.Series([0, 1, 3, 0], dtype="int64")
    pairs = pairs_frame(rows, candidates=column, answer_index=answer_index)
    ingest = ingest_manifest(tmp_path / "ingest", pairs, "mc", "msrvtt", {"task": "mc"})
    if stored == "list":  # write_table stores the list column; it reads back as arrays
        stored_cell = read_table(ingest.output("pairs"))["candidates"].iloc[0]
        assert isinstance(stored_cell, np.ndarray) and candidate_list(stored_cell) == candidates[0]
    features = random_features({"v1": 4, "v2": 6, "v3": 3})
    extract = extract_manifest(tmp_path / "extract", features)
    finetune = write_weights(tmp_path / "finetune")
    result = evaluate(tmp_path, ingest, extract, finetune)
    metrics = result["metrics"]
    assert set(metrics) >= COMMON_KEYS
    assert (metrics["task"], metrics["protocol"]) == ("mc", "mc")
    assert (metrics["questions"], metrics["queries"], metrics["candidates"]) == (3, 3, 5)

    # The same scores computed one video and one candidate at a time.
    model, _ = build_model(MODEL)
    model.load_state_dict(load_file(finetune.output("weights")))
    model.eval()
    tokenizer = load_tokenizer(MODEL.bert)
    expected = []
    with torch.inference_mode():
        for video_id, texts in zip(["v1", "v2", "v3"], MC_CANDIDATES, strict=True):
            video = torch.from_numpy(features[video_id][: MODEL.max_video_len])[None]
            pooled = model.encode_video(video, torch.ones(video.shape[:2], dtype=torch.bool))
            scores = []
            for text in texts:
                ids = torch.tensor([tokenize(tokenizer, text, MODEL.max_text_tokens)])
                encoded = model.encode_text(ids, torch.ones_like(ids, dtype=torch.bool))
                scores.append(float(encoded.pooled[0] @ pooled.pooled[0]))
            expected.append(int(np.argmax(scores)))
    predictions = read_table(result["manifest"].output("predictions"))
    assert predictions["pair_id"].tolist() == ["mc0", "mc1", "mc2"]
    assert predictions["predicted"].tolist() == expected
    assert predictions["answer_index"].tolist() == [0, 1, 3]
    correct = [p == a for p, a in zip(expected, [0, 1, 3], strict=True)]
    assert predictions["correct"].tolist() == correct
    assert metrics["accuracy"] == pytest.approx(100.0 * np.mean(correct))
