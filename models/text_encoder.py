"""VideoCLIP's text encoder g: a BERT over `[CLS] tokens [SEP] [PAD]…` (videoclip-facts §2.1).

Follows MMPT `MMFusionSeparate.forward_text` (VideoCLIP §3; FineCo paper §3.3: g(y) is the
average-pooled text representation, not `[CLS]`): token type 0, and the pooled vector is the
masked mean of the last hidden states over the tokens including `[SEP]`, excluding `[CLS]` at
position 0. Masks: `True` = real token.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from transformers import BertConfig, BertModel

from models.ops import masked_mean


@dataclass
class TextEncoderOutput:
    hidden: Tensor  # (B, L, H) last hidden states, [CLS] at position 0
    pooled: Tensor  # (B, H) masked mean over tokens + [SEP], excluding [CLS]


class TextEncoder(nn.Module):
    """A Hugging Face `BertModel` without pooler; its state-dict keys are a BERT checkpoint's."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.bert = BertModel(config, add_pooling_layer=False)

    def forward(
        self,
        text_ids: Tensor,  # (B, L) long, [CLS] t1..tn [SEP] [PAD]…
        text_mask: Tensor,  # (B, L) bool, True = real token ([CLS] and [SEP] included)
    ) -> TextEncoderOutput:
        if text_ids.shape != text_mask.shape:
            raise ValueError(
                f"text_ids has shape {tuple(text_ids.shape)} but text_mask has shape "
                f"{tuple(text_mask.shape)}; both must be (B, L)"
            )
        hidden = self.bert(
            input_ids=text_ids,
            attention_mask=text_mask,
            token_type_ids=torch.zeros_like(text_ids),
        ).last_hidden_state  # (B, L, H)
        pooled = masked_mean(hidden[:, 1:], text_mask[:, 1:])  # (B, H) without [CLS]
        return TextEncoderOutput(hidden=hidden, pooled=pooled)
