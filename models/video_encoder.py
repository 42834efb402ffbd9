"""VideoCLIP's video encoder: per-second S3D features through a small BERT (videoclip-facts §2.1).

Follows MMPT `MMFusionSeparate.forward_video` with `MMBertEmbeddings` (Xu et al., VideoCLIP,
EMNLP 2021, §3; FineCo paper §3.3 uses the same encoder f):

- each 512-d S3D feature goes through `VideoTokenMLP` (Linear → activation → LayerNorm → Linear);
- the sequence is `[CLS] v1..vK [SEP]`, where `[CLS]`/`[SEP]` are BERT's own (trainable) word
  embeddings of the tokenizer's cls/sep ids, not new parameters;
- position ids are 0..K for `[CLS]` and the frames, and `max_video_len + 1` for `[SEP]`, so the
  `[SEP]` position does not depend on the padded length; padding sits between the last real
  frame and `[SEP]`, as in MMPT; token type 0; attention mask `[1, video_mask, 1]`;
- the pooled vector is the masked mean of the last hidden states over the real frames and
  `[SEP]`, excluding `[CLS]`.

Masks: `True` = real frame. Every row needs at least one real frame (`forward` raises otherwise):
an empty clip has no content to encode, and the frame selector would have nothing to choose from.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from transformers import BertConfig, BertModel
from transformers.activations import ACT2FN

from models.ops import masked_mean
from models.s3dg import EMBEDDING_DIM as S3D_FEATURE_DIM

LAYER_NORM_EPS = 1e-5  # MMPT's VideoTokenMLP LayerNorm: PyTorch's default, not BERT's 1e-12


@dataclass
class VideoEncoderOutput:
    frame_hidden: Tensor  # (B, K, H) last hidden states of the frame tokens v1..vK
    pooled: Tensor  # (B, H) masked mean over real frames + [SEP], excluding [CLS]


class VideoTokenMLP(nn.Module):
    """MMPT `VideoTokenMLP`: Linear(input_dim → H) → act → LayerNorm(H) → Linear(H → H).

    As in MMPT: the LayerNorm keeps PyTorch's default eps 1e-5 (MMPT builds it without BERT's
    `layer_norm_eps` 1e-12), and both Linear layers start as BERT initialises the weights that a
    checkpoint lacks (`BertPreTrainedModel._init_weights`, which MMPT's `from_pretrained` applies
    to this module): weights N(0, initializer_range), biases 0.
    """

    def __init__(self, config: BertConfig, input_dim: int = S3D_FEATURE_DIM) -> None:
        super().__init__()
        hidden_size = config.hidden_size
        self.linear1 = nn.Linear(input_dim, hidden_size)
        self.activation = ACT2FN[config.hidden_act]
        self.layer_norm = nn.LayerNorm(hidden_size, eps=LAYER_NORM_EPS)
        self.linear2 = nn.Linear(hidden_size, hidden_size)
        for linear in (self.linear1, self.linear2):
            nn.init.normal_(linear.weight, mean=0.0, std=config.initializer_range)
            nn.init.zeros_(linear.bias)

    def forward(self, video: Tensor) -> Tensor:  # (B, K, input_dim) -> (B, K, H)
        hidden = self.activation(self.linear1(video))  # (B, K, H)
        return self.linear2(self.layer_norm(hidden))  # (B, K, H)


class VideoEncoder(nn.Module):
    """`[CLS] v1..vK [SEP]` through a BERT whose depth is `config.num_hidden_layers`.

    `bert` is a plain Hugging Face `BertModel` without pooler, so its state-dict keys are those
    of a BERT checkpoint (see `models.videoclip.init_from_bert`).
    """

    def __init__(
        self,
        config: BertConfig,
        max_video_len: int,
        input_dim: int = S3D_FEATURE_DIM,
        cls_token_id: int = 101,
        sep_token_id: int = 102,
    ) -> None:
        super().__init__()
        if max_video_len < 1:
            raise ValueError(f"max_video_len must be >= 1, got {max_video_len}")
        if max_video_len + 2 > config.max_position_embeddings:
            raise ValueError(
                f"max_video_len {max_video_len} needs position ids up to {max_video_len + 1} "
                f"([SEP] sits at max_video_len + 1), but the BERT config has only "
                f"max_position_embeddings={config.max_position_embeddings}; use "
                f"max_video_len <= {config.max_position_embeddings - 2}"
            )
        for name, token_id in (("cls_token_id", cls_token_id), ("sep_token_id", sep_token_id)):
            if not 0 <= token_id < config.vocab_size:
                raise ValueError(
                    f"{name}={token_id} is outside the vocabulary of {config.vocab_size}"
                )
        self.max_video_len = max_video_len
        self.cls_token_id = cls_token_id
        self.sep_token_id = sep_token_id
        self.token_mlp = VideoTokenMLP(config, input_dim)
        self.bert = BertModel(config, add_pooling_layer=False)

    def forward(
        self,
        video: Tensor,  # (B, K, input_dim) float, S3D features, one per second
        video_mask: Tensor,  # (B, K) bool, True = real frame
    ) -> VideoEncoderOutput:
        self._check_batch(video, video_mask)
        batch_size, num_frames = video_mask.shape
        inputs_embeds = self._token_embeddings(video)  # (B, K + 2, H)
        position_ids = self._position_ids(num_frames, video.device)  # (1, K + 2)
        always = video_mask.new_ones(batch_size, 1)  # (B, 1) [CLS] / [SEP] are always real
        attention_mask = torch.cat([always, video_mask, always], dim=1)  # (B, K + 2)
        hidden = self.bert(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            token_type_ids=torch.zeros_like(attention_mask, dtype=torch.long),
            position_ids=position_ids.expand(batch_size, -1),  # (B, K + 2)
        ).last_hidden_state  # (B, K + 2, H)
        pooled = masked_mean(hidden[:, 1:], attention_mask[:, 1:])  # (B, H) frames + [SEP]
        return VideoEncoderOutput(frame_hidden=hidden[:, 1 : num_frames + 1], pooled=pooled)

    def _check_batch(self, video: Tensor, video_mask: Tensor) -> None:
        """Shapes agree, K <= max_video_len, and every row has a real frame."""
        num_frames = video_mask.shape[1]
        if video.shape[:2] != video_mask.shape:
            raise ValueError(
                f"video has shape {tuple(video.shape)} but video_mask has shape "
                f"{tuple(video_mask.shape)}; expected (B, K, D) and (B, K)"
            )
        if num_frames > self.max_video_len:
            raise ValueError(
                f"the batch has {num_frames} frames per clip but max_video_len is "
                f"{self.max_video_len}; truncate clips before encoding"
            )
        empty_rows = (~video_mask.any(dim=1)).nonzero().flatten().tolist()
        if empty_rows:
            raise ValueError(f"video rows {empty_rows} have no real frame (video_mask all False)")

    def _token_embeddings(self, video: Tensor) -> Tensor:  # (B, K, D) -> (B, K + 2, H)
        """Projected frames between BERT's word embeddings of [CLS] and [SEP]."""
        batch_size = video.shape[0]
        frame_embeds = self.token_mlp(video)  # (B, K, H)
        special_ids = torch.tensor([self.cls_token_id, self.sep_token_id], device=video.device)
        special = self.bert.embeddings.word_embeddings(special_ids)  # (2, H)
        special = special.to(frame_embeds.dtype).unsqueeze(0).expand(batch_size, -1, -1)
        return torch.cat([special[:, :1], frame_embeds, special[:, 1:]], dim=1)  # (B, K + 2, H)

    def _position_ids(self, num_frames: int, device: torch.device) -> Tensor:  # (1, K + 2)
        """0..K for [CLS] + frames, max_video_len + 1 for [SEP] (MMPT `MMBertEmbeddings`)."""
        head = torch.arange(num_frames + 1, device=device)  # (K + 1,)
        sep = torch.tensor([self.max_video_len + 1], device=device)  # (1,)
        return torch.cat([head, sep]).unsqueeze(0)  # (1, K + 2)
