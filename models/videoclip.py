"""VideoCLIP with FineCo's frame selector (videoclip-facts §2.1, FineCo paper §3.3).

Two towers as in MMPT `MMFusionSeparate`: a video encoder f (VideoTokenMLP + the first layers of
a BERT) and a text encoder g (the whole BERT). Each returns a masked-mean pooled vector; the
retrieval score is their raw dot product, with no projection head, no normalisation and no
temperature (videoclip-facts §2.1 "Scoring"). The frame selector scores each frame against the
pooled text for FineCo's frame-level loss; it is not used for retrieval.

`init_from_bert` copies a Hugging Face `BertModel` state dict into both towers, as MMPT does with
`from_pretrained("bert-base-uncased")` (video: layers 0..n-1 and the embeddings). The model never
reads files and never returns a loss.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from transformers import BertConfig

from models.frame_selector import FrameSelector
from models.heads import AnswerHead
from models.text_encoder import TextEncoder, TextEncoderOutput
from models.video_encoder import VideoEncoder, VideoEncoderOutput


@dataclass
class VideoCLIPOutput:
    video: Tensor  # (B, H) pooled video vectors
    text: Tensor  # (B, H) pooled text vectors
    frame_logits: Tensor  # (B, K) frame-selector logits, padding not masked
    frame_mask: Tensor  # (B, K) bool, True = real frame (the input video_mask)


@dataclass(frozen=True)
class InitReport:
    """What `init_from_bert` copied; keys are the model's (`video_encoder.bert.embeddings.…`)."""

    loaded: tuple[str, ...]  # model keys filled from the BERT state dict
    missing: tuple[str, ...]  # model BERT keys the state dict does not have (left as they were)
    unused: tuple[str, ...]  # state-dict keys copied nowhere (e.g. pooler.*, deeper layers)


class VideoCLIP(nn.Module):
    """Video encoder, text encoder and frame selector; `forward` runs all three."""

    def __init__(
        self,
        text_config: BertConfig,
        video_config: BertConfig,
        max_video_len: int,
        selector_hidden: int,
        cls_token_id: int = 101,
        sep_token_id: int = 102,
        selector_interaction: bool = False,
    ) -> None:
        super().__init__()
        if text_config.hidden_size != video_config.hidden_size:
            raise ValueError(
                f"text hidden size {text_config.hidden_size} != video hidden size "
                f"{video_config.hidden_size}; the two towers are compared by dot product"
            )
        self.text_encoder = TextEncoder(text_config)
        self.video_encoder = VideoEncoder(
            video_config, max_video_len, cls_token_id=cls_token_id, sep_token_id=sep_token_id
        )
        self.frame_selector = FrameSelector(
            text_config.hidden_size, selector_hidden, interaction=selector_interaction
        )
        self.hidden_size = text_config.hidden_size
        # Open-ended QA only: an `AnswerHead` over [video ; text], set by `attach_answer_head`
        # (after any pretrained weights are loaded, so retrieval checkpoints still load strictly).
        self.answer_head: AnswerHead | None = None

    def forward(
        self,
        video: Tensor,  # (B, K, 512) float S3D features
        video_mask: Tensor,  # (B, K) bool, True = real frame
        text_ids: Tensor,  # (B, L) long, [CLS] t.. [SEP] [PAD]..
        text_mask: Tensor,  # (B, L) bool, True = real token
    ) -> VideoCLIPOutput:
        video_out = self.encode_video(video, video_mask)
        text_out = self.encode_text(text_ids, text_mask)
        frame_logits = self.select_frames(video_out.frame_hidden, text_out.pooled)  # (B, K)
        return VideoCLIPOutput(
            video=video_out.pooled,
            text=text_out.pooled,
            frame_logits=frame_logits,
            frame_mask=video_mask,
        )

    def encode_video(self, video: Tensor, video_mask: Tensor) -> VideoEncoderOutput:
        """(B, K, 512), (B, K) bool -> frame_hidden (B, K, H), pooled (B, H)."""
        return self.video_encoder(video, video_mask)

    def encode_text(self, text_ids: Tensor, text_mask: Tensor) -> TextEncoderOutput:
        """(B, L) long, (B, L) bool -> hidden (B, L, H), pooled (B, H)."""
        return self.text_encoder(text_ids, text_mask)

    def select_frames(self, frame_hidden: Tensor, text_pooled: Tensor) -> Tensor:
        """(B, K, H), (B, H) -> frame_logits (B, K)."""
        return self.frame_selector(frame_hidden, text_pooled)


def attach_answer_head(model: VideoCLIP, num_answers: int, inner_size: int = 0) -> AnswerHead:
    """Give `model` a QA head of `num_answers` outputs (seeded, so runs are repeatable)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(num_answers)
        head = AnswerHead(model.hidden_size, num_answers, inner_size)
    model.answer_head = head
    return head


def scores(
    video: Tensor,  # (B_video, H) pooled video vectors
    text: Tensor,  # (B_text, H) pooled text vectors
) -> Tensor:  # (B_text, B_video) raw dot products; rows are texts, as in evaluation
    """VideoCLIP's retrieval score: dot product, no temperature, no normalisation."""
    return text @ video.T


def init_from_bert(model: VideoCLIP, bert_state: Mapping[str, Tensor]) -> InitReport:
    """Copy a Hugging Face `BertModel` state dict into both encoders of `model`.

    `bert_state` has `BertModel` keys ("embeddings.*", "encoder.layer.N.*", optionally
    "pooler.*"). The text encoder takes every key it has; the video encoder has only its first
    `num_hidden_layers` layers, so it takes the embeddings and layers 0..n-1. Shapes are checked
    for every key before anything is copied; a mismatch raises ValueError listing all of them.
    """
    targets = {
        "text_encoder.bert.": model.text_encoder.bert.state_dict(),
        "video_encoder.bert.": model.video_encoder.bert.state_dict(),
    }
    mismatched = [
        f"{prefix}{key}: model {tuple(tensor.shape)}, checkpoint {tuple(bert_state[key].shape)}"
        for prefix, state in targets.items()
        for key, tensor in state.items()
        if key in bert_state and bert_state[key].shape != tensor.shape
    ]
    if mismatched:
        raise ValueError(
            "BERT checkpoint shapes do not match the model:\n  " + "\n  ".join(mismatched)
        )
    loaded: list[str] = []
    missing: list[str] = []
    used: set[str] = set()
    with torch.no_grad():
        for prefix, state in targets.items():
            for key, tensor in state.items():
                if key not in bert_state:
                    missing.append(prefix + key)
                    continue
                tensor.copy_(bert_state[key])  # state_dict tensors share the parameters' storage
                loaded.append(prefix + key)
                used.add(key)
    unused = sorted(key for key in bert_state if key not in used)
    return InitReport(loaded=tuple(loaded), missing=tuple(missing), unused=tuple(unused))
