"""MSR-VTT open-ended QA and multiple choice from annotation files to a fine-tuned model: adapter
tables, ingest's task.json, answers through PairClips/Batch, the QA objective and run_finetune."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file
from tiny_model import FEATURE_DIM as DIM
from tiny_model import TINY_MODEL as MODEL

from models.videoclip import attach_answer_head
from pipeline.config import DatasetConfig, FinecoConfig, FinetuneConfig, OptimConfig
from pipeline.datasets import msrvtt
from pipeline.datasets.tables import PAIR_COLUMNS, AnnotationError
from pipeline.finetune import run_finetune
from pipeline.ingest import run_ingest
from pipeline.stage import stage_key
from pipeline.training.data import Batch, ClipItem, PairClips, collate
from pipeline.training.model_factory import build_model
from pipeline.training.objectives import finetune_objective
from pipeline.training.warm_start import MMPT_PREFIX, unmap_key
from storage.features import FeatureStore
from storage.layout import Manifest
from storage.shards import FeatureShardWriter
from storage.tables import read_table, write_table


def write_json(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def write_video(root: Path, video_id: str) -> None:
    path = root / "videos" / f"{video_id}.mp4"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\0" * 5)


def qa(qa_id: int, video: int, answer: str) -> dict[str, Any]:
    return {"id": qa_id, "video_id": video, "question": f"what is in {qa_id}?", "answer": answer}


TRAIN_QA = [
    qa(0, 1, "man"),
    qa(1, 1, "man"),
    qa(2, 2, "dog"),
    qa(3, 2, "man"),
    qa(4, 3, "cat"),
    qa(5, 3, "dog"),
    qa(6, 4, "ball"),  # out of a 3-answer vocabulary
    qa(7, 5, "man"),  # video5 has no file
]
VAL_QA = [qa(20, 6, "dog")]
TEST_QA = [qa(30, 7, "man"), qa(31, 7, "zebra"), qa(32, 8, "cat")]


def qa_root(tmp_path: Path, train: list[dict[str, Any]] | None = None) -> Path:
    root = tmp_path / "msrvtt-qa"
    write_json(root / "train_qa.json", TRAIN_QA if train is None else train)
    write_json(root / "val_qa.json", VAL_QA)
    write_json(root / "test_qa.json", TEST_QA)
    for number in (1, 2, 3, 4, 6, 7, 8):
        write_video(root, f"video{number}")
    return root


QA_CONFIG = DatasetConfig(adapter="msrvtt", root="unused", task="qa", answers=3)
MC_CONFIG = DatasetConfig(adapter="msrvtt", root="unused", task="mc")
MC_HEADER = "vid_key\ta1\ta2\ta3\ta4\ta5\tanswer\n"
MC_ROWS = "msr7020\ta man, talking\tb\tc\td\te\t0\nmsr9999\tv\tw\tx\ty\tthe right one\t4\n"


def mc_root(tmp_path: Path, mc: str = MC_HEADER + MC_ROWS) -> Path:
    root = tmp_path / "msrvtt-mc"
    data = {
        "videos": [{"video_id": "video0"}, {"video_id": "video1"}],
        "sentences": [
            {"caption": "a car is shown", "video_id": "video0", "sen_id": 0},
            {"caption": "a red car drives", "video_id": "video0", "sen_id": 1},
            {"caption": "a man sings", "video_id": "video1", "sen_id": 2},
        ],
    }
    write_json(root / "MSRVTT_data.json", data)
    (root / "MSRVTT_train.9k.csv").write_text("video_id\nvideo0\nvideo1\n")
    (root / "MSR_MC_test.csv").write_text(mc)
    for video_id in ("video0", "video1", "video7020", "video9999"):
        write_video(root, video_id)
    return root


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


def test_ingest_writes_task_json(tmp_path: Path) -> None:
    root = qa_root(tmp_path)
    artifacts = tmp_path / "artifacts"
    manifest = run_ingest("msrvtt_qa", replace(QA_CONFIG, root=str(root)), artifacts)
    assert manifest.outputs["task"] == "task.json"
    facts = json.loads(manifest.output("task").read_text())
    assert set(facts) == {"task", "answers", "train_coverage", "test_coverage"}
    assert facts["answers"] == ["man", "dog", "ball"]
    assert manifest.info["task"] == "qa"
    assert manifest.info["task_facts"] == {
        "task": "qa",
        "answers": 3,
        "train_coverage": pytest.approx(7 / 8),
        "test_coverage": pytest.approx(1 / 3),
    }
    pairs = read_table(manifest.output("pairs"))
    assert pairs["answer_index"].tolist()[:7] == [0, 0, 1, 0, -100, 1, 2]

    mc = run_ingest("msrvtt_mc", replace(MC_CONFIG, root=str(mc_root(tmp_path))), artifacts)
    assert json.loads(mc.output("task").read_text()) == {"task": "mc", "candidates": 5}
    pairs = read_table(mc.output("pairs"))  # the candidates column round-trips through parquet
    assert msrvtt.decode_candidates(pairs["candidates"].iloc[3])[0] == "a man, talking"
    assert msrvtt.decode_candidates(pairs["candidates"].iloc[0]) == []
    assert pairs["answer_index"].tolist() == [-100, -100, -100, 0, 4]


# --- answers through the data path --------------------------------------------------------------


def write_features(folder: Path, seconds: dict[str, int]) -> Path:
    """A feature index over one shard: random features for each video."""
    generator = np.random.default_rng(0)
    with FeatureShardWriter(folder / "shards" / "features-00000.h5", dim=DIM) as writer:
        for video_id, length in seconds.items():
            writer.add(video_id, generator.standard_normal((length, DIM)).astype(np.float32))
        writer.commit()
    index = pd.DataFrame(
        {
            "video_id": list(seconds),
            "shard": ["shards/features-00000.h5"] * len(seconds),
            "row": list(range(len(seconds))),
            "n_seconds": list(seconds.values()),
        }
    )
    write_table(index, folder / "index.parquet")
    return folder / "index.parquet"


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


# --- run_finetune -------------------------------------------------------------------------------


def qa_manifests(tmp_path: Path) -> tuple[Manifest, Manifest, Path]:
    root = qa_root(tmp_path)
    artifacts = tmp_path / "artifacts"
    ingest = run_ingest("msrvtt_qa", replace(QA_CONFIG, root=str(root)), artifacts)
    videos = read_table(ingest.output("videos"))
    seconds = {video_id: 3 + i % 4 for i, video_id in enumerate(videos["video_id"])}
    folder = tmp_path / "extract"
    write_features(folder, seconds)
    extract = Manifest(
        stage="extract",
        cache_key="tiny",
        path=str(folder),
        digest="tiny-features",
        outputs={"index": "index.parquet"},
    )
    return ingest, extract, artifacts


FINETUNE = FinetuneConfig(
    dataset="msrvtt_qa",
    from_pretrain=False,
    baseline=False,
    fineco=FinecoConfig(k=2),
    optim=OptimConfig(epochs=2, batch_size=4, warmup_steps=1, device="cpu", amp="off"),
)


def test_run_finetune_qa_end_to_end(tmp_path: Path) -> None:
    ingest, extract, artifacts = qa_manifests(tmp_path)
    manifest = run_finetune(FINETUNE, "fineco", MODEL, ingest, extract, None, artifacts)
    info = manifest.info
    assert info["task"] == "qa" and info["answers"] == 3
    assert info["answer_coverage"] == {"train": pytest.approx(7 / 8), "test": 1 / 3}
    assert info["started_from"] == "bert" and info["items"] == 7  # train pairs with video files
    assert info["steps"] == 4
    weights = load_file(manifest.output("weights"))
    assert weights["answer_head.mlp.3.weight"].shape == (3, MODEL.random_hidden)
    lines = [json.loads(line) for line in manifest.output("metrics").read_text().splitlines()]
    losses = [line["loss"] for line in lines if "loss" in line]
    assert losses and all(np.isfinite(losses))
    again = run_finetune(FINETUNE, "fineco", MODEL, ingest, extract, None, artifacts)
    assert again.path == manifest.path  # cached


def mmpt_checkpoint(path: Path, seed: int) -> Path:
    """A fake released VideoCLIP checkpoint for MODEL: its encoders under MMPT's names."""
    torch.manual_seed(seed)
    model, _ = build_model(replace(MODEL, random_layers=2))
    state = {}
    for key, tensor in model.state_dict().items():
        theirs = unmap_key(key)
        if theirs is not None:
            state[MMPT_PREFIX + theirs] = tensor + seed
    state[MMPT_PREFIX + "text_encoder.pooler.dense.weight"] = torch.zeros(32, 32)
    torch.save({"model": state, "args": None}, path)
    return path


def test_init_checkpoint(tmp_path: Path) -> None:
    ingest, extract, artifacts = qa_manifests(tmp_path)
    config = replace(FINETUNE, init_checkpoint="{artifacts}/videoclip/checkpoint_best.pt")
    with pytest.raises(FileNotFoundError, match=re.escape("finetune.init_checkpoint")):
        run_finetune(config, "fineco", MODEL, ingest, extract, None, artifacts)
    path = artifacts / "videoclip" / "checkpoint_best.pt"
    path.parent.mkdir(parents=True)
    mmpt_checkpoint(path, seed=1)

    def key() -> str:
        return stage_key(
            lambda: run_finetune(config, "fineco", MODEL, ingest, extract, None, artifacts)
        )

    first = key()
    manifest = run_finetune(config, "fineco", MODEL, ingest, extract, None, artifacts)
    assert manifest.info["started_from"] == str(path)
    warm = manifest.info["warm_start"]
    assert warm["loaded"] > 0 and warm["unexpected"] == 1
    assert warm["unexpected_keys"] == ["text_encoder.pooler.dense.weight"]
    assert manifest.info["answers"] == 3
    mmpt_checkpoint(path, seed=2)  # same path, new content: a new cache key
    assert key() != first
