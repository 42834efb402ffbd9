"""Tests for the VideoCLIP encoders and frame selector (models/, videoclip-facts §2.1).

Tiny random BERTs with odd sizes (hidden 32, intermediate 37, 2 heads, vocab 99) on CPU.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor
from transformers import BertConfig, BertModel

from models.frame_selector import FrameSelector, frame_probabilities
from models.ops import masked_mean
from models.text_encoder import TextEncoder
from models.video_encoder import VideoEncoder, VideoTokenMLP
from models.videoclip import VideoCLIP, init_from_bert, scores

HIDDEN = 32
CLS_ID = 3
SEP_ID = 4
PAD_ID = 0


def tiny_config(layers: int = 2, max_positions: int = 512) -> BertConfig:
    return BertConfig(
        vocab_size=99,
        hidden_size=HIDDEN,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=max_positions,
        pad_token_id=PAD_ID,
    )


def video_encoder(max_video_len: int = 32, layers: int = 2) -> VideoEncoder:
    torch.manual_seed(0)
    encoder = VideoEncoder(
        tiny_config(layers), max_video_len, cls_token_id=CLS_ID, sep_token_id=SEP_ID
    )
    return encoder.eval()


def lengths_mask(lengths: list[int], num_frames: int) -> Tensor:  # (B, K) bool
    return torch.arange(num_frames).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)


def text_batch(lengths: list[int], width: int) -> tuple[Tensor, Tensor]:
    """[CLS] random word ids [SEP] [PAD]…: (B, L) long ids and (B, L) bool mask."""
    generator = torch.Generator().manual_seed(1)
    text_ids = torch.full((len(lengths), width), PAD_ID)  # (B, L)
    for row, length in enumerate(lengths):
        words = torch.randint(5, 99, (length,), generator=generator)
        text_ids[row, : length + 2] = torch.cat(
            [torch.tensor([CLS_ID]), words, torch.tensor([SEP_ID])]
        )
    return text_ids, text_ids != PAD_ID


def test_masked_mean_values_and_empty_rows() -> None:
    hidden = torch.arange(2 * 3 * 4, dtype=torch.float32).reshape(2, 3, 4)  # (B, N, H)
    mask = torch.tensor([[True, False, True], [False, False, False]])
    pooled = masked_mean(hidden, mask)
    assert torch.equal(pooled[0], (hidden[0, 0] + hidden[0, 2]) / 2)
    assert torch.equal(pooled[1], torch.zeros(4))
    with pytest.raises(ValueError, match="mask has shape"):
        masked_mean(hidden, mask[:, :2])


def test_video_token_mlp_layers() -> None:
    mlp = VideoTokenMLP(tiny_config())
    assert mlp.linear1.in_features == 512 and mlp.linear1.out_features == HIDDEN
    assert mlp.layer_norm.eps == 1e-5 != tiny_config().layer_norm_eps  # MMPT: PyTorch's default
    for linear in (mlp.linear1, mlp.linear2):  # BERT's init for weights a checkpoint lacks
        assert torch.equal(linear.bias, torch.zeros_like(linear.bias))
        assert abs(linear.weight.std().item() - tiny_config().initializer_range) < 0.005
    assert mlp(torch.randn(2, 5, 512)).shape == (2, 5, HIDDEN)


@pytest.mark.parametrize("max_video_len", [32, 256])
@pytest.mark.parametrize("num_frames", [5, 32])
def test_video_output_shapes(max_video_len: int, num_frames: int) -> None:
    encoder = video_encoder(max_video_len)
    video = torch.randn(3, num_frames, 512)
    output = encoder(video, lengths_mask([num_frames, 2, 1], num_frames))
    assert output.frame_hidden.shape == (3, num_frames, HIDDEN)
    assert output.pooled.shape == (3, HIDDEN)
    assert torch.isfinite(output.pooled).all()


def test_video_rejects_lengths_beyond_bert_positions() -> None:
    config = tiny_config(max_positions=40)
    ids = {"cls_token_id": CLS_ID, "sep_token_id": SEP_ID}
    VideoEncoder(config, max_video_len=38, **ids)  # [SEP] at position 39, the last one
    with pytest.raises(ValueError, match="max_position_embeddings=40"):
        VideoEncoder(config, max_video_len=39, **ids)
    with pytest.raises(ValueError, match="cls_token_id=101 is outside the vocabulary of 99"):
        VideoEncoder(config, max_video_len=8)


def test_video_rejects_bad_batches() -> None:
    encoder = video_encoder(max_video_len=4)
    with pytest.raises(ValueError, match="max_video_len is 4"):
        encoder(torch.randn(1, 5, 512), torch.ones(1, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"rows \[1\] have no real frame"):
        encoder(torch.randn(2, 3, 512), lengths_mask([2, 0], 3))


def test_video_padding_invariance() -> None:
    encoder = video_encoder()
    lengths = [5, 3, 1]
    video = torch.randn(3, 5, 512)
    with torch.no_grad():
        short = encoder(video, lengths_mask(lengths, 5))
        # 9 more padded frames holding garbage: positions of real frames and [SEP] do not move
        padded_video = torch.cat([video, 100 * torch.randn(3, 9, 512)], dim=1)  # (B, 14, 512)
        long = encoder(padded_video, lengths_mask(lengths, 14))
    torch.testing.assert_close(long.pooled, short.pooled, atol=1e-5, rtol=0)
    for row, length in enumerate(lengths):
        torch.testing.assert_close(
            long.frame_hidden[row, :length], short.frame_hidden[row, :length], atol=1e-5, rtol=0
        )


def capture_bert_io(encoder: VideoEncoder) -> dict[str, Tensor]:
    """Record the position ids and the embedding/last-layer outputs of the encoder's BERT."""
    seen: dict[str, Tensor] = {}
    bert = encoder.bert

    def on_positions(_module, args, _output) -> None:
        seen["position_ids"] = args[0]

    def on_embeddings(_module, _args, output) -> None:
        seen["embeddings"] = output

    def on_bert(_module, _args, output) -> None:
        seen["last_hidden"] = output.last_hidden_state

    bert.embeddings.position_embeddings.register_forward_hook(on_positions)
    bert.embeddings.register_forward_hook(on_embeddings)
    bert.register_forward_hook(on_bert)
    return seen


@pytest.mark.parametrize("max_video_len", [32, 256])
def test_video_sequence_layout(max_video_len: int) -> None:
    encoder = video_encoder(max_video_len)
    seen = capture_bert_io(encoder)
    video = torch.randn(2, 5, 512)
    video_mask = lengths_mask([5, 2], 5)
    with torch.no_grad():
        output = encoder(video, video_mask)
    expected_positions = torch.tensor([0, 1, 2, 3, 4, 5, max_video_len + 1])
    assert torch.equal(seen["position_ids"], expected_positions.expand(2, -1))

    # embeddings by hand: word([CLS]) | MLP(v) | word([SEP]), + position + token type 0, LayerNorm
    embeddings = encoder.bert.embeddings
    with torch.no_grad():
        tokens = torch.cat(
            [
                embeddings.word_embeddings.weight[CLS_ID].expand(2, 1, -1),
                encoder.token_mlp(video),
                embeddings.word_embeddings.weight[SEP_ID].expand(2, 1, -1),
            ],
            dim=1,
        )  # (B, K + 2, H)
        summed = tokens + embeddings.position_embeddings(expected_positions)
        summed = summed + embeddings.token_type_embeddings.weight[0]
        manual = embeddings.LayerNorm(summed)  # (B, K + 2, H)
    torch.testing.assert_close(seen["embeddings"], manual)

    # pooled = mean over real frames and [SEP], never [CLS]
    last = seen["last_hidden"]  # (B, K + 2, H)
    torch.testing.assert_close(output.pooled[0], last[0, 1:].mean(dim=0))
    row_1 = torch.stack([last[1, 1], last[1, 2], last[1, 6]])  # frames 1-2 and [SEP]
    torch.testing.assert_close(output.pooled[1], row_1.mean(dim=0))
    torch.testing.assert_close(output.frame_hidden, last[:, 1:6])


def test_text_shapes_pooling_and_padding_invariance() -> None:
    torch.manual_seed(0)
    encoder = TextEncoder(tiny_config()).eval()
    seen: dict[str, Tensor] = {}
    encoder.bert.register_forward_hook(
        lambda _module, _args, output: seen.update(last=output.last_hidden_state)
    )
    lengths = [6, 2]
    text_ids, text_mask = text_batch(lengths, width=8)
    with torch.no_grad():
        short = encoder(text_ids, text_mask)
        last = seen["last"]  # (B, L, H)
        wide_ids = torch.cat([text_ids, torch.randint(5, 99, (2, 7))], dim=1)  # (B, 15)
        wide_mask = torch.cat([text_mask, torch.zeros(2, 7, dtype=torch.bool)], dim=1)
        long = encoder(wide_ids, wide_mask)
    assert short.hidden.shape == (2, 8, HIDDEN) and short.pooled.shape == (2, HIDDEN)
    for row, length in enumerate(lengths):
        # tokens t1..tn and [SEP] sit at positions 1..length+1; [CLS] at 0 is left out
        torch.testing.assert_close(short.pooled[row], last[row, 1 : length + 2].mean(dim=0))
    torch.testing.assert_close(long.pooled, short.pooled, atol=1e-5, rtol=0)


def test_frame_selector_and_probabilities() -> None:
    torch.manual_seed(0)
    selector = FrameSelector(HIDDEN, 13)
    assert selector.mlp[0].in_features == 2 * HIDDEN
    frame_hidden = torch.randn(3, 5, HIDDEN)
    logits = selector(frame_hidden, torch.randn(3, HIDDEN))
    assert logits.shape == (3, 5)

    frame_mask = lengths_mask([5, 2, 0], 5)
    logits = logits.detach().requires_grad_()
    probabilities = frame_probabilities(logits, frame_mask)
    torch.testing.assert_close(probabilities.sum(dim=1), torch.tensor([1.0, 1.0, 0.0]))
    assert torch.equal(probabilities[~frame_mask], torch.zeros(int((~frame_mask).sum())))
    torch.testing.assert_close(probabilities[1, :2], torch.softmax(logits[1, :2], dim=0))
    probabilities[:, 0].sum().backward()
    assert torch.isfinite(logits.grad).all()


def tiny_videoclip(text_layers: int = 3, video_layers: int = 2) -> VideoCLIP:
    torch.manual_seed(0)
    model = VideoCLIP(
        tiny_config(text_layers),
        tiny_config(video_layers),
        max_video_len=32,
        selector_hidden=13,
        cls_token_id=CLS_ID,
        sep_token_id=SEP_ID,
    )
    return model.eval()


def test_videoclip_forward_and_scores() -> None:
    model = tiny_videoclip()
    video_mask = lengths_mask([4, 6, 1], 6)
    text_ids, text_mask = text_batch([3, 5, 1], width=7)
    with torch.no_grad():
        output = model(torch.randn(3, 6, 512), video_mask, text_ids, text_mask)
    assert output.video.shape == (3, HIDDEN) and output.text.shape == (3, HIDDEN)
    assert output.frame_logits.shape == (3, 6)
    assert output.frame_mask is video_mask
    similarity = scores(output.video[:2], output.text)
    assert similarity.shape == (3, 2)
    torch.testing.assert_close(similarity[2, 1], output.text[2] @ output.video[1])


def test_videoclip_rejects_different_hidden_sizes() -> None:
    video_config = tiny_config()
    video_config.hidden_size = 36
    with pytest.raises(ValueError, match="hidden size"):
        VideoCLIP(tiny_config(), video_config, 32, 13, CLS_ID, SEP_ID)


def test_init_from_bert_copies_embeddings_and_first_layers() -> None:
    torch.manual_seed(1)
    source = BertModel(tiny_config(layers=3))  # with pooler, as a checkpoint has
    state = source.state_dict()
    model = tiny_videoclip(text_layers=3, video_layers=2)
    report = init_from_bert(model, state)

    text_state = model.text_encoder.bert.state_dict()
    video_state = model.video_encoder.bert.state_dict()
    for key, tensor in text_state.items():
        assert torch.equal(tensor, state[key]), key
    for key, tensor in video_state.items():
        assert torch.equal(tensor, state[key]), key
    layer_0 = "encoder.layer.0.attention.self.query.weight"
    assert torch.equal(video_state[layer_0], text_state[layer_0])
    assert len(model.video_encoder.bert.encoder.layer) == 2
    assert not any(key.startswith("encoder.layer.2.") for key in video_state)
    assert report.missing == ()
    assert set(report.unused) == {key for key in state if key.startswith("pooler.")}
    assert len(report.loaded) == len(text_state) + len(video_state)
    assert "video_encoder.bert.encoder.layer.1.output.dense.bias" in report.loaded


def test_init_from_bert_reports_missing_and_rejects_bad_shapes() -> None:
    model = tiny_videoclip(text_layers=3, video_layers=2)
    state = BertModel(tiny_config(layers=2)).state_dict()
    report = init_from_bert(model, state)
    assert report.missing and all(".encoder.layer.2." in key for key in report.missing)
    assert all(key.startswith("text_encoder.") for key in report.missing)

    bad = dict(state)
    bad["embeddings.word_embeddings.weight"] = torch.zeros(98, HIDDEN)
    before = model.text_encoder.bert.embeddings.position_embeddings.weight.clone()
    with pytest.raises(ValueError, match=r"word_embeddings.weight: model \(99, 32\)"):
        init_from_bert(model, {key: value + 1 for key, value in bad.items()})
    # nothing is copied when any shape is wrong
    assert torch.equal(model.text_encoder.bert.embeddings.position_embeddings.weight, before)
