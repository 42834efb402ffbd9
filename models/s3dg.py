"""S3D-G video encoder with the MIL-NCE sentence branch, as trained on HowTo100M.

S3D-G (separable 3D convolutions with feature self-gating) is from Xie et al., "Rethinking
Spatiotemporal Feature Learning: Speed-Accuracy Trade-offs in Video Classification" (ECCV 2018,
arXiv:1712.04851). The space-to-depth stem, the 512-d joint space and the sentence branch are from
Miech et al., "End-to-End Learning of Visual Representations from Uncurated Instructional Videos"
(MIL-NCE, CVPR 2020, arXiv:1912.06430).

Written from the architecture of antoine77340/S3D_HowTo100M `s3dg.py` (an identical copy lives in
fairseq examples/MMPT). Attribute names are those of that file, because they are the keys of the
public `s3d_howto100m.pth` state dict, which must load with `strict=True`.

Shapes: B batch, C channels, T frames, H height, W width, L words.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import NamedTuple

import torch
from torch import Tensor, nn

VOCABULARY_SIZE = 66250  # rows of `text_module.word_embd`; id 0 is padding
WORD_DIM = 300  # word2vec size used to initialise the word embeddings
TEXT_HIDDEN_DIM = 2048
MAX_WORDS = 16
EMBEDDING_DIM = 512  # joint video-text space

Triple = tuple[int, int, int]


def _triple(value: int | Sequence[int]) -> Triple:
    if isinstance(value, int):
        return (value, value, value)
    if len(value) != 3:
        raise ValueError(f"expected an int or 3 values (T, H, W), got {tuple(value)}")
    return (int(value[0]), int(value[1]), int(value[2]))


class S3DOutput(NamedTuple):
    video_embedding: Tensor  # (B, 512) in the joint space, compared to text by dot product
    mixed_5c: Tensor  # (B, 1024) mean-pooled last inception block, before `fc`


class STConv3D(nn.Module):
    """Conv3d (no bias) -> BatchNorm3d -> ReLU.

    With `separable` and a temporal kernel above 1, the convolution is factorised into a spatial
    (1, kh, kw) conv -> BN -> ReLU followed by a temporal (kt, 1, 1) conv -> BN -> ReLU.
    """

    def __init__(
        self,
        input_dim: int,
        output_dim: int,
        kernel_size: Sequence[int],
        stride: int | Sequence[int] = 1,
        padding: int | Sequence[int] = 0,
        separable: bool = False,
    ) -> None:
        super().__init__()
        kernel, step, pad = _triple(kernel_size), _triple(stride), _triple(padding)
        self.separable = separable and kernel[0] != 1
        if self.separable:
            self.conv1 = nn.Conv3d(
                input_dim,
                output_dim,
                kernel_size=(1, kernel[1], kernel[2]),
                stride=(1, step[1], step[2]),
                padding=(0, pad[1], pad[2]),
                bias=False,
            )
            self.bn1 = nn.BatchNorm3d(output_dim)
            self.conv2 = nn.Conv3d(
                output_dim,
                output_dim,
                kernel_size=(kernel[0], 1, 1),
                stride=(step[0], 1, 1),
                padding=(pad[0], 0, 0),
                bias=False,
            )
            self.bn2 = nn.BatchNorm3d(output_dim)
        else:
            self.conv1 = nn.Conv3d(
                input_dim, output_dim, kernel_size=kernel, stride=step, padding=pad, bias=False
            )
            self.bn1 = nn.BatchNorm3d(output_dim)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:  # (B, C_in, T, H, W) -> (B, C_out, T', H', W')
        x = self.relu(self.bn1(self.conv1(x)))
        if self.separable:
            x = self.relu(self.bn2(self.conv2(x)))
        return x


class SelfGating(nn.Module):
    """Channel gate from the global average: x * sigmoid(fc(mean over T, H, W of x))."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.fc = nn.Linear(channels, channels)

    def forward(self, x: Tensor) -> Tensor:  # (B, C, T, H, W) -> same
        average = x.mean(dim=(2, 3, 4))  # (B, C)
        weights = torch.sigmoid(self.fc(average))  # (B, C)
        return x * weights[:, :, None, None, None]


class InceptionBlock(nn.Module):
    """Inception block of S3D-G: four self-gated branches concatenated on channels.

    Branches: 1x1x1; 1x1x1 -> separable 3x3x3; 1x1x1 -> separable 3x3x3; max pool 3x3x3 -> 1x1x1.
    """

    def __init__(
        self,
        input_dim: int,
        branch0_dim: int,
        branch1_reduce_dim: int,
        branch1_dim: int,
        branch2_reduce_dim: int,
        branch2_dim: int,
        branch3_dim: int,
    ) -> None:
        super().__init__()
        self.conv_b0 = STConv3D(input_dim, branch0_dim, [1, 1, 1])
        self.conv_b1_a = STConv3D(input_dim, branch1_reduce_dim, [1, 1, 1])
        self.conv_b1_b = STConv3D(
            branch1_reduce_dim, branch1_dim, [3, 3, 3], padding=1, separable=True
        )
        self.conv_b2_a = STConv3D(input_dim, branch2_reduce_dim, [1, 1, 1])
        self.conv_b2_b = STConv3D(
            branch2_reduce_dim, branch2_dim, [3, 3, 3], padding=1, separable=True
        )
        self.maxpool_b3 = nn.MaxPool3d((3, 3, 3), stride=1, padding=1)
        self.conv_b3_b = STConv3D(input_dim, branch3_dim, [1, 1, 1])
        self.gating_b0 = SelfGating(branch0_dim)
        self.gating_b1 = SelfGating(branch1_dim)
        self.gating_b2 = SelfGating(branch2_dim)
        self.gating_b3 = SelfGating(branch3_dim)
        self.output_dim = branch0_dim + branch1_dim + branch2_dim + branch3_dim

    def forward(self, x: Tensor) -> Tensor:  # (B, C_in, T, H, W) -> (B, output_dim, T, H, W)
        branch0 = self.gating_b0(self.conv_b0(x))
        branch1 = self.gating_b1(self.conv_b1_b(self.conv_b1_a(x)))
        branch2 = self.gating_b2(self.conv_b2_b(self.conv_b2_a(x)))
        branch3 = self.gating_b3(self.conv_b3_b(self.maxpool_b3(x)))
        return torch.cat((branch0, branch1, branch2, branch3), dim=1)


def tf_same_padding(kernel_size: Triple, stride: Triple) -> tuple[int, int, int, int, int, int]:
    """ConstantPad3d amounts (W_left, W_right, H_top, H_bottom, T_front, T_back) for TF 'SAME'.

    Per dimension the total is max(kernel - stride, 0), with the odd extra on the far side.
    """
    amounts: list[int] = []
    for kernel, step in reversed(list(zip(kernel_size, stride, strict=True))):  # W, H, T
        total = max(kernel - step, 0)
        amounts += [total // 2, total - total // 2]
    return (amounts[0], amounts[1], amounts[2], amounts[3], amounts[4], amounts[5])


class MaxPool3dTFPadding(nn.Module):
    """Max pooling with TensorFlow 'SAME' padding: zero pad, then pool with ceil_mode.

    Zero padding equals -inf padding here because every pooled input follows a ReLU (>= 0).
    """

    def __init__(self, kernel_size: Sequence[int], stride: Sequence[int]) -> None:
        super().__init__()
        kernel, step = _triple(kernel_size), _triple(stride)
        self.pad = nn.ConstantPad3d(tf_same_padding(kernel, step), 0.0)
        self.pool = nn.MaxPool3d(kernel, step, ceil_mode=True)

    def forward(self, x: Tensor) -> Tensor:  # (B, C, T, H, W) -> (B, C, ~T/s, ~H/s, ~W/s)
        return self.pool(self.pad(x))


class SentenceEmbedding(nn.Module):
    """MIL-NCE text branch: word embedding -> fc1 -> ReLU -> max over words -> fc2.

    Padding words (id 0) are not masked out of the max, as in the trained model.
    """

    def __init__(self, embedding_dim: int = EMBEDDING_DIM) -> None:
        super().__init__()
        self.word_embd = nn.Embedding(VOCABULARY_SIZE, WORD_DIM)
        self.fc1 = nn.Linear(WORD_DIM, TEXT_HIDDEN_DIM)
        self.fc2 = nn.Linear(TEXT_HIDDEN_DIM, embedding_dim)

    def forward(self, text_ids: Tensor) -> Tensor:  # (B, L) int64 -> (B, embedding_dim)
        words = self.word_embd(text_ids)  # (B, L, 300)
        hidden = torch.relu(self.fc1(words))  # (B, L, 2048)
        sentence = hidden.max(dim=1).values  # (B, 2048)
        return self.fc2(sentence)


class WordTokenizer:
    """Maps sentences to the word ids of the MIL-NCE text branch.

    `vocabulary` is the word list of `s3d_dict.npy` (read by the caller): a word's id is its
    position + 1, and 0 is padding. Sentences are lower-cased and split with the regex [\\w']+;
    unknown words are dropped; the ids are padded with 0 or truncated to `max_words`.
    """

    def __init__(self, vocabulary: Sequence[str], max_words: int = MAX_WORDS) -> None:
        self.word_to_id = {str(word): index + 1 for index, word in enumerate(vocabulary)}
        self.max_words = max_words

    def word_ids(self, sentence: str) -> list[int]:
        words = re.findall(r"[\w']+", sentence.lower())
        known = [self.word_to_id[word] for word in words if word in self.word_to_id]
        known = known[: self.max_words]
        return known + [0] * (self.max_words - len(known))

    def encode(self, sentences: Sequence[str]) -> Tensor:  # -> (B, max_words) int64
        if isinstance(sentences, str):
            raise TypeError("encode expects a list of sentences, got a single string")
        return torch.tensor([self.word_ids(sentence) for sentence in sentences], dtype=torch.long)


def space_to_depth(video: Tensor) -> Tensor:
    """Fold each 2x2x2 block of (T, H, W) into channels: (B, C, T, H, W) -> (B, 8C, T/2, H/2, W/2).

    The new channel index is ((dt * 2 + dh) * 2 + dw) * C + c, as in the trained model.
    """
    batch, channels, frames, height, width = video.shape
    blocks = video.view(batch, channels, frames // 2, 2, height // 2, 2, width // 2, 2)
    blocks = blocks.permute(0, 3, 5, 7, 1, 2, 4, 6)  # (B, 2, 2, 2, C, T/2, H/2, W/2)
    return blocks.reshape(batch, 8 * channels, frames // 2, height // 2, width // 2)


def _check_video(video: Tensor) -> None:
    if video.dim() != 5 or video.shape[1] != 3:
        raise ValueError(f"S3D expects video of shape (B, 3, T, H, W), got {tuple(video.shape)}")
    if not video.is_floating_point():
        raise ValueError(f"S3D expects float video in [0, 1], got dtype {video.dtype}")
    frames, height, width = video.shape[2:]
    if frames % 2 or height % 2 or width % 2:
        raise ValueError(
            "S3D space-to-depth needs even T, H and W, "
            f"got T={frames}, H={height}, W={width} (shape {tuple(video.shape)})"
        )


class S3D(nn.Module):
    """S3D-G video encoder (space-to-depth stem) plus the MIL-NCE text branch.

    Input video is (B, 3, T, H, W) float RGB in [0, 1] with no mean/std normalisation; T, H and
    W must be even. Call `eval()` before extracting features (BatchNorm).
    """

    def __init__(self, embedding_dim: int = EMBEDDING_DIM) -> None:
        super().__init__()
        self.conv1 = STConv3D(24, 64, [2, 4, 4], stride=1, padding=(1, 2, 2))
        self.conv_2b = STConv3D(64, 64, [1, 1, 1])
        self.conv_2c = STConv3D(64, 192, [3, 3, 3], padding=1, separable=True)
        self.gating = SelfGating(192)
        self.maxpool_2a = MaxPool3dTFPadding((1, 3, 3), (1, 2, 2))
        self.maxpool_3a = MaxPool3dTFPadding((1, 3, 3), (1, 2, 2))
        self.mixed_3b = InceptionBlock(192, 64, 96, 128, 16, 32, 32)
        self.mixed_3c = InceptionBlock(self.mixed_3b.output_dim, 128, 128, 192, 32, 96, 64)
        self.maxpool_4a = MaxPool3dTFPadding((3, 3, 3), (2, 2, 2))
        self.mixed_4b = InceptionBlock(self.mixed_3c.output_dim, 192, 96, 208, 16, 48, 64)
        self.mixed_4c = InceptionBlock(self.mixed_4b.output_dim, 160, 112, 224, 24, 64, 64)
        self.mixed_4d = InceptionBlock(self.mixed_4c.output_dim, 128, 128, 256, 24, 64, 64)
        self.mixed_4e = InceptionBlock(self.mixed_4d.output_dim, 112, 144, 288, 32, 64, 64)
        self.mixed_4f = InceptionBlock(self.mixed_4e.output_dim, 256, 160, 320, 32, 128, 128)
        self.maxpool_5a = MaxPool3dTFPadding((2, 2, 2), (2, 2, 2))
        self.mixed_5b = InceptionBlock(self.mixed_4f.output_dim, 256, 160, 320, 32, 128, 128)
        self.mixed_5c = InceptionBlock(self.mixed_5b.output_dim, 384, 192, 384, 48, 128, 128)
        self.fc = nn.Linear(self.mixed_5c.output_dim, embedding_dim)
        self.text_module = SentenceEmbedding(embedding_dim)

    def forward(self, video: Tensor) -> S3DOutput:  # (B, 3, T, H, W) in [0, 1]
        _check_video(video)
        features = self.video_features(video)  # (B, 1024, T/8, H/32, W/32), sizes rounded up
        mixed_5c = features.mean(dim=(2, 3, 4))  # (B, 1024)
        return S3DOutput(video_embedding=self.fc(mixed_5c), mixed_5c=mixed_5c)

    def video_features(self, video: Tensor) -> Tensor:
        """(B, 3, T, H, W) -> (B, 1024, T', H', W') output of mixed_5c before pooling."""
        x = space_to_depth(video)  # (B, 24, T/2, H/2, W/2)
        # The conv pads 1 frame/pixel more than TF 'SAME' on the near side; crop it.
        x = self.conv1(x)[:, :, 1:, 1:, 1:]  # (B, 64, T/2, H/2, W/2)
        x = self.maxpool_2a(x)  # (B, 64, T/2, H/4, W/4)
        x = self.gating(self.conv_2c(self.conv_2b(x)))  # (B, 192, T/2, H/4, W/4)
        x = self.maxpool_3a(x)  # (B, 192, T/2, H/8, W/8)
        x = self.mixed_3c(self.mixed_3b(x))  # (B, 480, T/2, H/8, W/8)
        x = self.maxpool_4a(x)  # (B, 480, T/4, H/16, W/16)
        for block in (self.mixed_4b, self.mixed_4c, self.mixed_4d, self.mixed_4e, self.mixed_4f):
            x = block(x)  # ends (B, 832, T/4, H/16, W/16)
        x = self.maxpool_5a(x)  # (B, 832, T/8, H/32, W/32)
        return self.mixed_5c(self.mixed_5b(x))  # (B, 1024, T/8, H/32, W/32)

    def text_embedding(self, text_ids: Tensor) -> Tensor:
        """(B, L) int64 word ids from `WordTokenizer` (L = 16 in MIL-NCE) -> (B, 512)."""
        if text_ids.dim() != 2 or text_ids.dtype != torch.long:
            raise ValueError(
                f"text_ids must be (B, L) int64, got {tuple(text_ids.shape)} {text_ids.dtype}"
            )
        return self.text_module(text_ids)


@torch.no_grad()
def calibrate_batch_norm(model: nn.Module, batches: Iterable[Tensor]) -> None:
    """Set every BatchNorm's running mean and variance to their averages over `batches`.

    Used for a randomly initialised backbone: with BatchNorm's default statistics (mean 0, var 1)
    activations drift with depth and all inputs map to nearly one vector. Leaves `model` in eval.
    """
    norms = [module for module in model.modules() if isinstance(module, nn.BatchNorm3d)]
    momenta = [norm.momentum for norm in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average over the calibration batches
    model.train()
    for batch in batches:
        model(batch)
    for norm, momentum in zip(norms, momenta, strict=True):
        norm.momentum = momentum
    model.eval()
