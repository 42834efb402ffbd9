"""Tests for pipeline/training/model_factory.py: finding BERT checkpoints offline and building
VideoCLIP from them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from transformers import BertConfig, BertModel

from pipeline.config import ModelConfig
from pipeline.training.model_factory import MINILM, build_model, load_tokenizer, resolve_bert

# [CLS]/[SEP] deliberately not at BERT's 101/102, so the ids must come from the tokenizer
VOCAB = ["[PAD]", "[UNK]", "[unused0]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(93)]


@pytest.fixture
def tiny_bert_dir(tmp_path: Path) -> tuple[Path, BertModel]:
    """A 2-layer BERT saved with `save_pretrained` beside a 99-word vocab.txt."""
    config = BertConfig(
        vocab_size=len(VOCAB),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
    )
    torch.manual_seed(3)
    bert = BertModel(config)
    directory = tmp_path / "tiny-bert"
    bert.save_pretrained(directory)
    (directory / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    return directory, bert


def test_build_model_loads_checkpoint(tiny_bert_dir: tuple[Path, BertModel]) -> None:
    directory, bert = tiny_bert_dir
    model, facts = build_model(ModelConfig(bert=str(directory), video_layers=1))
    assert facts["bert"] == str(directory)
    assert facts["random_init"] is False
    assert (facts["hidden"], facts["text_layers"], facts["video_layers"]) == (32, 2, 1)
    assert facts["parameters"] == sum(parameter.numel() for parameter in model.parameters())
    source = bert.state_dict()
    for key, tensor in model.text_encoder.bert.state_dict().items():
        assert torch.equal(tensor, source[key]), key
    video_state = model.video_encoder.bert.state_dict()
    assert not any(key.startswith("encoder.layer.1.") for key in video_state)
    for key, tensor in video_state.items():
        assert torch.equal(tensor, source[key]), key
    assert (model.video_encoder.cls_token_id, model.video_encoder.sep_token_id) == (3, 4)
    assert model.frame_selector.mlp[0].out_features == 32  # selector_hidden 0 = hidden size


def test_build_model_rejects_more_video_layers_than_checkpoint(
    tiny_bert_dir: tuple[Path, BertModel],
) -> None:
    directory, _ = tiny_bert_dir
    with pytest.raises(ValueError, match=r"video_layers=3 .* only 2 layers"):
        build_model(ModelConfig(bert=str(directory), video_layers=3))


def test_build_model_random_init(tiny_bert_dir: tuple[Path, BertModel]) -> None:
    directory, _ = tiny_bert_dir
    (directory / "model.safetensors").unlink()  # random init needs config.json and vocab only
    config = ModelConfig(
        bert=str(directory),
        random_init=True,
        random_hidden=24,
        random_layers=3,
        random_heads=2,
        random_intermediate=29,
        video_layers=6,
        selector_hidden=11,
    )
    model, facts = build_model(config)
    again, _ = build_model(config)
    assert facts["random_init"] is True
    assert (facts["hidden"], facts["text_layers"], facts["video_layers"]) == (24, 3, 3)
    assert model.text_encoder.bert.config.intermediate_size == 29
    assert model.text_encoder.bert.config.vocab_size == len(VOCAB)
    for (name, tensor), (_, other) in zip(
        model.state_dict().items(), again.state_dict().items(), strict=True
    ):
        assert torch.equal(tensor, other), f"{name} differs between two seeded builds"


def test_resolve_bert_errors_name_the_path(
    tmp_path: Path, tiny_bert_dir: tuple[Path, BertModel]
) -> None:
    absent = tmp_path / "no-such-bert"
    with pytest.raises(FileNotFoundError, match=re.escape(str(absent))):
        resolve_bert(str(absent))
    with pytest.raises(FileNotFoundError, match=re.escape(str(absent))):
        build_model(ModelConfig(bert=str(absent)))
    directory, _ = tiny_bert_dir
    (directory / "model.safetensors").unlink()
    (directory / "vocab.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"tiny-bert is missing: weights .*, vocabulary"):
        resolve_bert(str(directory))


def test_resolve_bert_minilm() -> None:
    directory = resolve_bert(MINILM)
    assert (directory / "config.json").is_file()
    assert directory.name == "model"


def test_real_minilm_pooled_text_separates_paraphrases() -> None:
    model, facts = build_model(ModelConfig(bert=MINILM, video_layers=6))
    assert (facts["hidden"], facts["text_layers"], facts["video_layers"]) == (384, 6, 6)
    tokenizer = load_tokenizer(MINILM)
    sentences = [
        "slice the onion into thin rings",
        "cut the onion into thin slices",
        "the stock market fell sharply today",
    ]
    batch = tokenizer(sentences, padding=True, return_tensors="pt")
    assert (batch["input_ids"][:, 0] == tokenizer.cls_token_id).all()
    model.eval()
    with torch.no_grad():
        pooled = model.encode_text(batch["input_ids"], batch["attention_mask"].bool()).pooled
    pooled = torch.nn.functional.normalize(pooled, dim=-1)  # (3, H)
    paraphrase, unrelated = pooled[0] @ pooled[1], pooled[0] @ pooled[2]
    assert paraphrase > unrelated + 0.2, (paraphrase, unrelated)
