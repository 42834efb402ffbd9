"""Tests for `pipeline.training.warm_start`: fake MMPT fairseq checkpoints on a tiny VideoCLIP."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest
import torch
from torch import Tensor
from transformers import BertConfig

from models.videoclip import VideoCLIP
from pipeline.training.warm_start import (
    MMPT_PREFIX,
    load_videoclip_checkpoint,
    map_mmpt_key,
    unmap_key,
)


def tiny_config(layers: int) -> BertConfig:
    return BertConfig(
        vocab_size=99,
        hidden_size=32,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=64,
        pad_token_id=0,
    )


def tiny_videoclip(seed: int) -> VideoCLIP:
    torch.manual_seed(seed)
    return VideoCLIP(tiny_config(2), tiny_config(1), 8, 16, cls_token_id=3, sep_token_id=4)


def mmpt_state(model: VideoCLIP) -> dict[str, Tensor]:
    """The model's encoders under MMPT's key names, as a fairseq checkpoint stores them."""
    state: dict[str, Tensor] = {}
    for key, tensor in model.state_dict().items():
        theirs = unmap_key(key)
        if theirs is not None:
            state[MMPT_PREFIX + theirs] = tensor.clone()
    hidden = 32
    state[MMPT_PREFIX + "text_encoder.pooler.dense.weight"] = torch.randn(hidden, hidden)
    state[MMPT_PREFIX + "video_encoder.bert.pooler.dense.weight"] = torch.randn(hidden, hidden)
    state[MMPT_PREFIX + "video_encoder.bert.embeddings.position_ids"] = torch.arange(64)[None]
    return state


def write(path: Path, state: dict[str, Tensor], args: object = None) -> Path:
    torch.save({"model": state, "args": args}, path)
    return path


def test_mmpt_key_names() -> None:
    assert map_mmpt_key("video_encoder.videomlp.LayerNorm.weight") == (
        "video_encoder.token_mlp.layer_norm.weight"
    )
    assert map_mmpt_key("video_encoder.videomlp.linear1.bias") == (
        "video_encoder.token_mlp.linear1.bias"
    )
    assert map_mmpt_key("video_encoder.bert.encoder.layer.0.output.dense.weight") == (
        "video_encoder.bert.encoder.layer.0.output.dense.weight"
    )
    assert map_mmpt_key("text_encoder.embeddings.word_embeddings.weight") == (
        "text_encoder.bert.embeddings.word_embeddings.weight"
    )
    assert map_mmpt_key("video_encoder.videoconv.conv.weight") is None


@pytest.mark.parametrize("args", [None, argparse.Namespace(arch="mmpt", lr=[5e-5])])
def test_load_copies_encoder_weights(tmp_path: Path, args: object) -> None:
    source = tiny_videoclip(seed=0)
    path = write(tmp_path / "checkpoint_best.pt", mmpt_state(source), args)
    target = tiny_videoclip(seed=1)
    selector_before = {k: v.clone() for k, v in target.frame_selector.state_dict().items()}
    report = load_videoclip_checkpoint(path, target)

    for key, tensor in source.state_dict().items():
        if key.startswith("frame_selector."):
            assert torch.equal(target.state_dict()[key], selector_before[key.split(".", 1)[1]])
        else:
            assert torch.equal(target.state_dict()[key], tensor), key
    assert report.source == str(path)
    assert report.loaded == sum(1 for k in source.state_dict() if not k.startswith("frame_"))
    assert report.missing and all(k.startswith("frame_selector.") for k in report.missing)
    assert set(report.unexpected) == {
        "text_encoder.pooler.dense.weight",
        "video_encoder.bert.pooler.dense.weight",
        "video_encoder.bert.embeddings.position_ids",
    }


def test_missing_encoder_key_is_refused(tmp_path: Path) -> None:
    state = mmpt_state(tiny_videoclip(seed=0))
    del state[MMPT_PREFIX + "video_encoder.videomlp.LayerNorm.bias"]
    path = write(tmp_path / "partial.pt", state)
    target = tiny_videoclip(seed=1)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(
        ValueError, match=re.escape("video_encoder.token_mlp.layer_norm.bias")
    ) as info:
        load_videoclip_checkpoint(path, target)
    assert str(path) in str(info.value)
    assert all(torch.equal(before[k], v) for k, v in target.state_dict().items())


def test_unprefixed_hf_names_are_refused(tmp_path: Path) -> None:
    """A plain BERT checkpoint does not cover the video MLP or the towers' names."""
    bert = tiny_videoclip(seed=0).text_encoder.bert.state_dict()
    path = write(tmp_path / "bert.pt", dict(bert))
    with pytest.raises(ValueError, match="missing keys") as info:
        load_videoclip_checkpoint(path, tiny_videoclip(seed=1))
    assert "embeddings.word_embeddings.weight" in str(info.value)  # listed as unexpected


def test_wrong_shape_is_refused(tmp_path: Path) -> None:
    state = mmpt_state(tiny_videoclip(seed=0))
    key = MMPT_PREFIX + "text_encoder.encoder.layer.1.intermediate.dense.weight"
    state[key] = torch.zeros(40, 32)
    path = write(tmp_path / "shapes.pt", state)
    with pytest.raises(ValueError, match=re.escape("intermediate.dense.weight: model")) as info:
        load_videoclip_checkpoint(path, tiny_videoclip(seed=1))
    assert str(path) in str(info.value)


@pytest.mark.parametrize("payload", [[torch.zeros(2)], torch.zeros(3), {"model": [1, 2]}])
def test_non_dict_file_is_refused(tmp_path: Path, payload: object) -> None:
    path = tmp_path / "odd.pt"
    torch.save(payload, path)
    with pytest.raises(ValueError, match=re.escape("odd.pt")):
        load_videoclip_checkpoint(path, tiny_videoclip(seed=1))


def test_other_pickled_objects_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "pickled.pt"
    torch.save({"model": {}, "extra": Path("x")}, path)
    with pytest.raises(ValueError, match="weights_only"):
        load_videoclip_checkpoint(path, tiny_videoclip(seed=1))
