"""The finetune stage end to end on a hand-made MSR-VTT QA set: answer head, warm start, keys."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from manifests import extract_manifest
from msrvtt_files import QA_CONFIG, qa_root
from safetensors.torch import load_file
from tiny_model import FEATURE_DIM as DIM
from tiny_model import TINY_MODEL as MODEL

from pipeline.config import FinecoConfig, FinetuneConfig, OptimConfig
from pipeline.config.loading import load_config
from pipeline.finetune import FinetuneInputs, run_finetune
from pipeline.ingest import IngestInputs, run_ingest
from pipeline.runner import run_stages
from pipeline.stage import stage_key
from pipeline.training.model_factory import build_model
from pipeline.training.warm_start import MMPT_PREFIX, unmap_key
from storage.layout import Manifest
from storage.tables import read_table

FINETUNE = FinetuneConfig(
    dataset="msrvtt_qa",
    from_pretrain=False,
    baseline=False,
    fineco=FinecoConfig(k=2),
    optim=OptimConfig(epochs=2, batch_size=4, warmup_steps=1, device="cpu", amp="off"),
)


def qa_manifests(tmp_path: Path) -> tuple[Manifest, Manifest, Path]:
    """Ingest of the QA set and random features for its videos (3-6 seconds each)."""
    artifacts = tmp_path / "artifacts"
    config = replace(QA_CONFIG, root=str(qa_root(tmp_path)))
    ingest = run_ingest(IngestInputs(artifacts=artifacts, dataset="msrvtt_qa", config=config))
    videos = read_table(ingest.output("videos"))["video_id"]
    generator = np.random.default_rng(0)
    features = {
        video: generator.standard_normal((3 + i % 4, DIM)) for i, video in enumerate(videos)
    }
    return ingest, extract_manifest(tmp_path / "extract", features), artifacts


def inputs(config: FinetuneConfig, ingest: Manifest, extract: Manifest, artifacts: Path):
    return FinetuneInputs(
        artifacts=artifacts, variant="fineco", config=config, model=MODEL, ingest=ingest,
        extract=extract,
    )  # fmt: skip


def test_run_finetune_qa_end_to_end(tmp_path: Path) -> None:
    ingest, extract, artifacts = qa_manifests(tmp_path)
    manifest = run_finetune(inputs(FINETUNE, ingest, extract, artifacts))
    info = manifest.info
    assert info.task == "qa" and info.answers == 3
    assert info.answer_coverage == {"train": pytest.approx(7 / 8), "test": 1 / 3}
    assert info.started_from == "bert" and info.training.items == 7  # train pairs with videos
    assert info.training.steps == 4
    weights = load_file(manifest.output("weights"))
    assert weights["answer_head.mlp.3.weight"].shape == (3, MODEL.random_hidden)
    lines = [json.loads(line) for line in manifest.output("metrics").read_text().splitlines()]
    losses = [line["loss"] for line in lines if "loss" in line]
    assert losses and all(np.isfinite(losses))
    again = run_finetune(inputs(FINETUNE, ingest, extract, artifacts))
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


def test_init_checkpoint_is_a_declared_input(tmp_path: Path) -> None:
    ingest, extract, artifacts = qa_manifests(tmp_path)
    config = replace(FINETUNE, init_checkpoint="{artifacts}/videoclip/checkpoint_best.pt")
    with pytest.raises(FileNotFoundError, match=re.escape("finetune.init_checkpoint")):
        run_finetune(inputs(config, ingest, extract, artifacts))
    path = artifacts / "videoclip" / "checkpoint_best.pt"
    path.parent.mkdir(parents=True)
    mmpt_checkpoint(path, seed=1)
    first = stage_key(inputs(config, ingest, extract, artifacts))
    manifest = run_finetune(inputs(config, ingest, extract, artifacts))
    assert manifest.cache_key == first  # the key is known before the stage runs
    assert manifest.info.started_from == str(path)
    warm = manifest.info.warm_start
    assert warm is not None and warm["loaded"] > 0 and warm["unexpected"] == 1
    assert warm["unexpected_keys"] == ["text_encoder.pooler.dense.weight"]
    assert manifest.info.answers == 3
    mmpt_checkpoint(path, seed=2)  # same path, new content: a new cache key
    assert stage_key(inputs(config, ingest, extract, artifacts)) != first


def test_from_pretrain_needs_a_pretrain_manifest(tmp_path: Path) -> None:
    ingest, extract, artifacts = qa_manifests(tmp_path)
    with pytest.raises(ValueError, match="from_pretrain is set but no pretrain manifest"):
        inputs(replace(FINETUNE, from_pretrain=True), ingest, extract, artifacts)


def test_a_last_batch_of_one_item_is_left_out_of_each_epoch(
    tiny_run: dict, fresh_root: Callable[[str], Path]
) -> None:
    """A batch of one has no negatives (contrastive loss 0, yet AdamW would move the weights):
    with items = k * batch + 1, each epoch trains k full batches."""
    items = tiny_run["fineco"]["finetune"].info.training.items
    assert items > 2
    overrides = [f"finetune.optim.batch_size={items - 1}", "finetune.baseline=false"]
    config = load_config("tiny", overrides)
    manifest = run_stages(config, ["finetune"], fresh_root("lone"))["fineco"]["finetune"]
    training = manifest.info.training
    assert training.items == items and training.steps_per_epoch == 1
    assert training.steps == config.finetune.optim.epochs
    lines = [json.loads(line) for line in manifest.output("metrics").read_text().splitlines()]
    assert all(line["parts"]["l2"] > 0 for line in lines)
