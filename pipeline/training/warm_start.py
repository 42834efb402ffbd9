"""Warm-start `VideoCLIP` from the released MMPT checkpoint (videoclip-facts §2.1, Implications 5).

The released `checkpoint_best.pt` is a fairseq checkpoint: a dict whose "model" entry is the state
dict of the fairseq model, which holds MMPT's `MMFusionSeparate` as `mmmodel`, so every key starts
with `mmmodel.`. Inside it (fairseq `examples/MMPT/mmpt/models/mmfusion.py`,
`transformermodel.py`, `modules/mm.py`):

- `video_encoder` is `MMBertForEncoder`: `videomlp` (`VideoTokenMLP`: `linear1`, `LayerNorm`,
  `linear2`), `bert` (`MMBertModel`, a Hugging Face `BertModel` whose `embeddings` is
  `MMBertEmbeddings(BertEmbeddings)` and whose encoder subclasses `BertEncoder`, so the parameter
  names are BERT's), and `videoconv` only when the config has `conv1d` (not VideoCLIP's);
- `text_encoder` is a plain Hugging Face `BertModel` (`embeddings.*`, `encoder.layer.N.*`,
  `pooler.*`).

Key mapping (MMPT, after stripping `mmmodel.` → ours), see `map_mmpt_key`:

    video_encoder.videomlp.linear1.*    → video_encoder.token_mlp.linear1.*
    video_encoder.videomlp.LayerNorm.*  → video_encoder.token_mlp.layer_norm.*
    video_encoder.videomlp.linear2.*    → video_encoder.token_mlp.linear2.*
    video_encoder.bert.embeddings.*     → video_encoder.bert.embeddings.*   (same names)
    video_encoder.bert.encoder.layer.N.* → video_encoder.bert.encoder.layer.N.*
    text_encoder.<rest>                 → text_encoder.bert.<rest>

Checkpoint keys our model has no slot for (the two poolers, the `position_ids` /
`token_type_ids` buffers older transformers saved, MMPT's unused `seg_embeddings`, `videoconv`)
are reported as `unexpected` and not loaded. Every parameter of both encoders must be covered,
with the same shape, or the file is refused. The frame selector is FineCo's, not VideoCLIP's: it
is never in the file, keeps its initialisation, and its keys are reported as `missing`.
"""

from __future__ import annotations

import argparse
import pickle
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from models.videoclip import VideoCLIP

MMPT_PREFIX = "mmmodel."
FRAME_SELECTOR_PREFIX = "frame_selector."
_LIST_LIMIT = 20

# MMPT prefix → our prefix, first match wins (video token MLP before the generic video rule).
_PREFIX_RENAMES: tuple[tuple[str, str], ...] = (
    ("video_encoder.videomlp.linear1.", "video_encoder.token_mlp.linear1."),
    ("video_encoder.videomlp.LayerNorm.", "video_encoder.token_mlp.layer_norm."),
    ("video_encoder.videomlp.linear2.", "video_encoder.token_mlp.linear2."),
    ("video_encoder.bert.", "video_encoder.bert."),
    ("text_encoder.", "text_encoder.bert."),
)


@dataclass(frozen=True)
class WarmStartReport:
    """What `load_videoclip_checkpoint` did; keys are ours, except `unexpected` (the file's)."""

    loaded: int  # model tensors filled from the file
    missing: tuple[str, ...]  # model keys left at init: the frame selector, which MMPT lacks
    unexpected: tuple[str, ...]  # file keys (prefix stripped) with no place in the model
    source: str  # the file read


def map_mmpt_key(key: str) -> str | None:
    """Our key for an MMPT key (without `mmmodel.`), or None when we have no rule for it."""
    for theirs, ours in _PREFIX_RENAMES:
        if key.startswith(theirs):
            return ours + key[len(theirs) :]
    return None


def unmap_key(key: str) -> str | None:
    """Inverse of `map_mmpt_key`: the MMPT key (without `mmmodel.`) for one of our keys."""
    for theirs, ours in _PREFIX_RENAMES:
        if key.startswith(ours):
            return theirs + key[len(ours) :]
    return None


def _read(path: Path) -> object:
    """`torch.load` with `weights_only=True`; fairseq's pickled `argparse.Namespace` allowed."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        pass
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise ValueError(
            f"{path}: torch.load(weights_only=True) refuses the file even with "
            f"argparse.Namespace allowed; it pickles other objects: {error}"
        ) from error


def _short(keys: list[str]) -> str:
    head = ", ".join(keys[:_LIST_LIMIT])
    return head + (f", … ({len(keys) - _LIST_LIMIT} more)" if len(keys) > _LIST_LIMIT else "")


def load_videoclip_checkpoint(path: Path, model: VideoCLIP) -> WarmStartReport:
    """Copy the encoders of a released VideoCLIP (MMPT fairseq) checkpoint into `model`.

    Loads with `torch.load(path, map_location="cpu", weights_only=True)`. fairseq checkpoints
    pickle their `args` as an `argparse.Namespace`, which `weights_only` refuses; in that case the
    load is retried, still with `weights_only=True`, inside
    `torch.serialization.safe_globals([argparse.Namespace])`, which allows that one class and
    nothing else. There is no fallback to `weights_only=False`.

    Takes `["model"]` when present, strips `mmmodel.`, renames keys with `map_mmpt_key`, then
    checks, before copying anything, that every encoder key of `model` is in the file with the
    same shape. Raises ValueError naming the file (and up to 20 missing / unexpected keys or all
    shape mismatches) otherwise, and for a file that is not a dict of tensors. The frame selector
    is left at its initialisation and listed in `missing`.
    """
    raw = _read(path)
    if not isinstance(raw, Mapping):
        raise ValueError(f"{path}: expected a checkpoint dict, got {type(raw).__name__}")
    state = raw.get("model", raw)
    if not isinstance(state, Mapping):
        raise ValueError(f"{path}: checkpoint['model'] is {type(state).__name__}, not a dict")

    mapped: dict[str, Tensor] = {}
    unexpected: list[str] = []
    targets = model.state_dict()
    for key, value in state.items():
        name = str(key)
        name = name[len(MMPT_PREFIX) :] if name.startswith(MMPT_PREFIX) else name
        ours = map_mmpt_key(name)
        if ours is None or ours not in targets or not isinstance(value, Tensor):
            unexpected.append(name)
        else:
            mapped[ours] = value

    encoder_keys = [key for key in targets if not key.startswith(FRAME_SELECTOR_PREFIX)]
    missing = [key for key in encoder_keys if key not in mapped]
    if missing:
        raise ValueError(
            f"{path} does not cover the VideoCLIP encoders: {len(missing)} missing keys "
            f"[{_short(missing)}]; {len(unexpected)} unexpected keys [{_short(unexpected)}]"
        )
    mismatched = [
        f"{key}: model {tuple(targets[key].shape)}, file {tuple(mapped[key].shape)}"
        for key in encoder_keys
        if mapped[key].shape != targets[key].shape
    ]
    if mismatched:
        raise ValueError(
            f"{path}: checkpoint shapes do not match the model:\n  " + "\n  ".join(mismatched)
        )
    with torch.no_grad():
        for key in encoder_keys:
            targets[key].copy_(mapped[key])  # state_dict tensors share the parameters' storage
    selector = tuple(key for key in targets if key.startswith(FRAME_SELECTOR_PREFIX))
    return WarmStartReport(
        loaded=len(encoder_keys),
        missing=selector,
        unexpected=tuple(unexpected),
        source=str(path),
    )
