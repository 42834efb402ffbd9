"""MSR-VTT open-ended QA and multiple choice from annotation files to a fine-tuned model: adapter
tables, ingest's task.json, answers through PairClips/Batch, the QA objective and run_finetune."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from manifests import write_feature_index
from msrvtt_files import MC_CONFIG, MC_HEADER, QA_CONFIG, TRAIN_QA, mc_root, qa, qa_root
from tiny_model import FEATURE_DIM as DIM
from tiny_model import TINY_MODEL as MODEL

from models.videoclip import attach_answer_head
from pipeline.config import DatasetConfig, FinecoConfig, FinetuneConfig
from pipeline.datasets import msrvtt
from pipeline.datasets.tables import PAIR_COLUMNS, AnnotationError
from pipeline.ingest import IngestInputs, run_ingest
from pipeline.training.data import Batch, ClipItem, PairClips, collate
from pipeline.training.model_factory import build_model
from pipeline.training.objectives import finetune_objective
from storage.features import FeatureStore
from storage.layout import Manifest
from storage.tables import read_table

# --- adapter --------------------------------------------------------------------------------------


def test_qa_tables(tmp_path: Path) -> None:
    root = qa_root(tmp_path)
    tables = msrvtt.load(QA_CONFIG, root)
    pairs = tables.pairs
    assert list(pairs.columns) == [*PAIR_COLUMNS, "answer", "answer_index"]
    assert str(pairs["answer_index"].dtype) == "int64"
    assert pairs["pair_id"].tolist() == [
        "qa0", "qa1", "qa2", "qa3", "qa4", "qa5", "qa6", "qa20", "qa30", "qa31", "qa32"
    ]  # fmt: skip
    assert pairs["video_id"].tolist()[:3] == ["video1", "video1", "video2"]
    assert pairs["split"].tolist() == ["train"] * 7 + ["val"] + ["test"] * 3
    assert pairs["text"].iloc[0] == "what is in 0?"
    assert set(pairs["start_s"]) == {0.0} and set(pairs["end_s"]) == {msrvtt.WHOLE_VIDEO_END_S}
    # vocabulary: man 4, dog 2, cat 1, ball 1 -> top 3 = man, dog, ball (ball < cat)
    assert tables.extras["answers"] == ["man", "dog", "ball"]
    by_id = dict(zip(pairs["pair_id"], pairs["answer_index"], strict=True))
    assert (by_id["qa0"], by_id["qa2"], by_id["qa4"], by_id["qa6"]) == (0, 1, -100, 2)
    assert (by_id["qa30"], by_id["qa31"], by_id["qa32"]) == (0, -100, -100)
    assert pairs.set_index("pair_id").loc["qa31", "answer"] == "zebra"
    assert tables.extras["task"] == "qa"
    assert tables.extras["train_coverage"] == pytest.approx(7 / 8)  # cat is out, video5 counts
    assert tables.extras["test_coverage"] == pytest.approx(1 / 3)
    assert tables.dropped == {"missing_video_file": 1, "missing_video_file_pairs": 1}
    videos = dict(zip(tables.videos["video_id"], tables.videos["split"], strict=True))
    assert videos == {
        "video1": "train",
        "video2": "train",
        "video3": "train",
        "video4": "train",
        "video6": "val",
        "video7": "test",
        "video8": "test",
    }
    names = [path.name for path in msrvtt.annotation_files(QA_CONFIG, root)]
    assert names == ["train_qa.json", "val_qa.json", "test_qa.json"]


def test_qa_video_ids_may_be_video_strings(tmp_path: Path) -> None:
    """Some re-exports write "video7" where MSR-VTT-QA writes 7: both name the same video."""
    as_text = [{**item, "video_id": f"video{item['video_id']}"} for item in TRAIN_QA]
    numbers = msrvtt.load(QA_CONFIG, qa_root(tmp_path / "numbers")).pairs
    strings = msrvtt.load(QA_CONFIG, qa_root(tmp_path / "strings", as_text)).pairs
    pd.testing.assert_frame_equal(numbers, strings)


@pytest.mark.parametrize("video", ["clip7", "video-1", "video", -1, 2.5, None])
def test_qa_video_ids_that_name_no_video_are_refused(tmp_path: Path, video: Any) -> None:
    with pytest.raises(AnnotationError) as raised:
        msrvtt.load(QA_CONFIG, qa_root(tmp_path, [{**qa(0, 1, "man"), "video_id": video}]))
    assert raised.value.field == "video_id" and raised.value.record == "item 0"


@pytest.mark.parametrize(
    ("train", "field"),
    [([qa(0, 7, "man")], "video_id"), ([qa(30, 1, "man")], "id")],
    ids=["video in train and test", "id in train and test"],
)
def test_qa_across_files_errors(tmp_path: Path, train: list[dict[str, Any]], field: str) -> None:
    with pytest.raises(AnnotationError) as raised:
        msrvtt.load(QA_CONFIG, qa_root(tmp_path, train))
    assert raised.value.file.name == "test_qa.json" and raised.value.field == field
    assert "item" in raised.value.record


def test_mc_tables(tmp_path: Path) -> None:
    root = mc_root(tmp_path)
    tables = msrvtt.load(MC_CONFIG, root)
    pairs = tables.pairs
    assert list(pairs.columns) == [*PAIR_COLUMNS, "candidates", "answer_index"]
    assert pairs["pair_id"].tolist() == ["video0:0", "video0:1", "video1:2", "mc0", "mc1"]
    assert pairs["split"].tolist() == ["train"] * 3 + ["test"] * 2
    assert pairs["text"].tolist()[2:] == ["a man sings", "a man, talking", "the right one"]
    assert pairs["answer_index"].tolist() == [-100, -100, -100, 0, 4]
    assert str(pairs["answer_index"].dtype) == "int64"
    candidates = [msrvtt.decode_candidates(value) for value in pairs["candidates"]]
    assert candidates[:3] == [[], [], []]
    assert candidates[3] == ["a man, talking", "b", "c", "d", "e"]
    assert candidates[4][4] == "the right one"
    assert tables.extras == {"task": "mc", "candidates": 5}
    assert tables.dropped == {}
    names = [path.name for path in msrvtt.annotation_files(MC_CONFIG, root)]
    assert names == ["MSRVTT_data.json", "MSRVTT_train.9k.csv", "MSR_MC_test.csv"]
    # The train pairs are the retrieval train pairs.
    (root / "MSRVTT_JSFUSION_test.csv").write_text("key,vid_key,video_id,sentence\n")
    retrieval = msrvtt.load(replace(MC_CONFIG, task="retrieval"), root).pairs
    assert retrieval.equals(pairs.loc[pairs.split == "train", PAIR_COLUMNS])


def test_mc_video_in_the_train_list_and_malformed_rows(tmp_path: Path) -> None:
    mc = MC_HEADER + "msr7020\ta\tb\tc\td\te\t1\nmsr1\ta\tb\tc\td\te\t2\n"
    (tmp_path / "a").mkdir()
    with pytest.raises(AnnotationError) as raised:
        msrvtt.load(MC_CONFIG, mc_root(tmp_path / "a", mc))
    error = raised.value
    assert error.file.name == "MSR_MC_test.csv" and error.field == "vid_key"
    assert "row 2" in error.record and "msr1" in error.record
    assert "MSRVTT_train.9k.csv" in str(error)
    (tmp_path / "b").mkdir()
    with pytest.raises(AnnotationError) as raised:
        msrvtt.load(MC_CONFIG, mc_root(tmp_path / "b", MC_HEADER + "msr5\ta\tb\tc\td\te\t7\n"))
    assert raised.value.field == "answer" and raised.value.record == "line 2"


# --- ingest -------------------------------------------------------------------------------------


def ingest(artifacts: Path, name: str, config: DatasetConfig) -> Manifest:
    return run_ingest(IngestInputs(artifacts=artifacts, dataset=name, config=config))


def test_ingest_writes_task_json(tmp_path: Path) -> None:
    root = qa_root(tmp_path)
    artifacts = tmp_path / "artifacts"
    manifest = ingest(artifacts, "msrvtt_qa", replace(QA_CONFIG, root=str(root)))
    assert manifest.outputs["task"] == "task.json"
    facts = json.loads(manifest.output("task").read_text())
    assert set(facts) == {"task", "answers", "train_coverage", "test_coverage"}
    assert facts["answers"] == ["man", "dog", "ball"]
    assert manifest.info.task == "qa"
    assert manifest.info.task_facts == {
        "task": "qa",
        "answers": 3,
        "train_coverage": pytest.approx(7 / 8),
        "test_coverage": pytest.approx(1 / 3),
    }
    pairs = read_table(manifest.output("pairs"))
    assert pairs["answer_index"].tolist()[:7] == [0, 0, 1, 0, -100, 1, 2]

    mc = ingest(artifacts, "msrvtt_mc", replace(MC_CONFIG, root=str(mc_root(tmp_path))))
    assert json.loads(mc.output("task").read_text()) == {"task": "mc", "candidates": 5}
    pairs = read_table(mc.output("pairs"))  # the candidates column round-trips through parquet
    assert msrvtt.decode_candidates(pairs["candidates"].iloc[3])[0] == "a man, talking"
    assert msrvtt.decode_candidates(pairs["candidates"].iloc[0]) == []
    assert pairs["answer_index"].tolist() == [-100, -100, -100, 0, 4]


# --- answers through the data path --------------------------------------------------------------


def write_features(folder: Path, seconds: dict[str, int]) -> Path:
    """A feature index over one shard: random features for each video."""
    generator = np.random.default_rng(0)
    videos = {video: generator.standard_normal((n, DIM)) for video, n in seconds.items()}
    return write_feature_index(folder, videos)


def test_pair_clips_and_batches_carry_answers(tmp_path: Path) -> None:
    from pipeline.training.model_factory import load_tokenizer

    store = FeatureStore(write_features(tmp_path, {"video1": 4, "video2": 3}))
    tokenizer = load_tokenizer(MODEL.bert)
    pairs = pd.DataFrame(
        {
            "pair_id": ["qa0", "qa1", "qa2"],
            "video_id": ["video1", "video2", "video9"],  # video9 has no features
            "start_s": [0.0, 0.0, 0.0],
            "end_s": [1e9, 1e9, 1e9],
            "text": ["what is it?", "who sings?", "why?"],
            "split": ["train"] * 3,
            "answer_index": pd.Series([3, -100, 1], dtype="int64"),
        }
    )
    dataset = PairClips(pairs, store, tokenizer, max_video_len=8, max_text_tokens=16)
    assert [dataset[0].answer, dataset[1].answer] == [3, -100]
    batch = collate([dataset[0], dataset[1]])
    assert batch.answers.tolist() == [3, -100] and batch.answers.dtype == torch.long
    assert batch.to("cpu").answers.tolist() == [3, -100]
    plain = PairClips(pairs.drop(columns="answer_index"), store, tokenizer, 8, 16)
    assert collate([plain[0], plain[1]]).answers.tolist() == [-100, -100]
    item = ClipItem(np.zeros((2, DIM), np.float32), [101, 102], 2, 0)  # answer defaults to -100
    assert item.answer == -100
    by_hand = Batch(
        video=batch.video,
        video_mask=batch.video_mask,
        text_ids=batch.text_ids,
        text_mask=batch.text_mask,
        true_lengths=batch.true_lengths,
        index=batch.index,
    )
    assert by_hand.answers.tolist() == [-100, -100]


# --- objective ----------------------------------------------------------------------------------


def random_batch(size: int, answers: list[int]) -> Batch:
    generator = torch.Generator().manual_seed(1)
    items = [
        ClipItem(
            torch.randn(3 + index % 3, DIM, generator=generator).numpy(),
            [101, *torch.randint(1000, 2000, (5,), generator=generator).tolist(), 102],
            3 + index % 3,
            index,
            answers[index],
        )
        for index in range(size)
    ]
    return collate(items)


@pytest.mark.parametrize("fineco", [False, True], ids=["baseline", "fineco"])
def test_qa_objective_trains_the_answer_head(fineco: bool) -> None:
    model, _ = build_model(MODEL)
    config = FinetuneConfig(from_pretrain=False, fineco=FinecoConfig(enabled=fineco, k=2))
    objective = finetune_objective(config, "qa")
    batch = random_batch(6, [0, 1, 2, 3, -100, 1])
    with pytest.raises(ValueError, match="answer head"):
        objective(model, batch)
    head = attach_answer_head(model, 4, MODEL.answer_hidden)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(8):
        terms = objective(model, batch)
        assert torch.isfinite(terms.total)
        optimizer.zero_grad()
        terms.total.backward()
        grads = [parameter.grad for parameter in head.parameters()]
        assert all(grad is not None and grad.abs().sum() > 0 for grad in grads)
        optimizer.step()
        losses.append(terms.total.item())
    assert losses[-1] < losses[0]
    assert ("l1" in terms.parts) == fineco
    with pytest.raises(ValueError, match="unknown fine-tuning task"):
        finetune_objective(config, "captioning")
