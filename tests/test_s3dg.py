"""Tests for models/s3dg.py: state-dict layout of s3d_howto100m.pth, shapes, padding, tokenizer."""

from __future__ import annotations

import ast
import io
from pathlib import Path

import pytest
import torch

from models.s3dg import (
    S3D,
    MaxPool3dTFPadding,
    S3DOutput,
    WordTokenizer,
    space_to_depth,
    tf_same_padding,
)

SHAPES_FILE = Path(__file__).parent / "data" / "s3dg_state_dict_shapes.txt"


def load_expected_shapes() -> dict[str, tuple[int, ...]]:
    """Every key of s3d_howto100m.pth with its shape, written out from the architecture table."""
    shapes: dict[str, tuple[int, ...]] = {}
    for line in SHAPES_FILE.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        key, shape = line.split(" ", 1)
        assert key not in shapes, f"{SHAPES_FILE.name}: duplicate key {key}"
        shapes[key] = tuple(ast.literal_eval(shape))
    return shapes


@pytest.fixture(scope="module")
def model() -> S3D:
    torch.manual_seed(0)
    return S3D().eval()


def test_state_dict_keys_and_shapes_match_pretrained_file(model: S3D) -> None:
    expected = load_expected_shapes()
    actual = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    assert sorted(set(expected) - set(actual)) == [], "keys missing from the model"
    assert sorted(set(actual) - set(expected)) == [], "keys the pretrained file does not have"
    wrong = {key: (actual[key], shape) for key, shape in expected.items() if actual[key] != shape}
    assert wrong == {}, "(model shape, expected shape)"
    assert len(expected) == 537


def test_spot_check_shapes(model: S3D) -> None:
    state = model.state_dict()
    assert state["conv1.conv1.weight"].shape == (64, 24, 2, 4, 4)
    assert state["mixed_5c.conv_b1_b.conv1.weight"].shape == (384, 192, 1, 3, 3)
    assert state["mixed_5c.conv_b1_b.conv2.weight"].shape == (384, 384, 3, 1, 1)
    assert state["conv_2c.bn2.num_batches_tracked"].shape == ()
    assert state["text_module.word_embd.weight"].shape == (66250, 300)
    assert state["fc.weight"].shape == (512, 1024)


@pytest.mark.parametrize(("frames", "size"), [(16, 64), (32, 34)])
def test_video_output_shapes(model: S3D, frames: int, size: int) -> None:
    video = torch.rand(2, 3, frames, size, size)
    with torch.no_grad():
        output = model(video)
    assert isinstance(output, S3DOutput)
    assert output.video_embedding.shape == (2, 512)
    assert output.mixed_5c.shape == (2, 1024)
    assert torch.isfinite(output.video_embedding).all()


def test_video_features_temporal_size_rounds_up(model: S3D) -> None:
    # T = 30 as in VideoCLIP: 15 after space-to-depth, then 8, then 4 thanks to ceil_mode.
    with torch.no_grad():
        features = model.video_features(torch.rand(1, 3, 30, 32, 32))
    assert features.shape == (1, 1024, 4, 1, 1)


def test_round_trip_through_torch_save(model: S3D) -> None:
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    loaded = S3D()
    result = loaded.load_state_dict(torch.load(buffer, weights_only=True), strict=True)
    assert result.missing_keys == [] and result.unexpected_keys == []
    loaded.eval()
    video = torch.rand(1, 3, 16, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(video).video_embedding, model(video).video_embedding)


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ((1, 3, 15, 32, 32), "even"),
        ((1, 3, 16, 33, 32), "even"),
        ((1, 3, 16, 32, 31), "even"),
        ((1, 1, 16, 32, 32), "B, 3, T, H, W"),
        ((3, 16, 32, 32), "B, 3, T, H, W"),
    ],
)
def test_bad_video_raises(model: S3D, shape: tuple[int, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        model(torch.rand(shape))


def test_integer_video_raises(model: S3D) -> None:
    with pytest.raises(ValueError, match="float"):
        model(torch.zeros(1, 3, 16, 32, 32, dtype=torch.uint8))


def test_tf_same_padding_amounts() -> None:
    # Order is (W_left, W_right, H_top, H_bottom, T_front, T_back); extra goes to the far side.
    assert tf_same_padding((3, 3, 3), (2, 2, 2)) == (0, 1, 0, 1, 0, 1)
    assert tf_same_padding((1, 3, 3), (1, 2, 2)) == (0, 1, 0, 1, 0, 0)
    assert tf_same_padding((2, 2, 2), (2, 2, 2)) == (0, 0, 0, 0, 0, 0)
    assert tf_same_padding((1, 3, 5), (1, 1, 1)) == (2, 2, 1, 1, 0, 0)


@pytest.mark.parametrize(
    ("input_size", "output_size"),
    [((16, 14, 28), (8, 7, 14)), ((15, 7, 9), (8, 4, 5))],
)
def test_tf_same_pool_output_size(
    input_size: tuple[int, int, int], output_size: tuple[int, int, int]
) -> None:
    pool = MaxPool3dTFPadding((3, 3, 3), (2, 2, 2))
    assert pool(torch.rand(1, 2, *input_size)).shape == (1, 2, *output_size)


def test_tf_same_pool_values() -> None:
    # Along T: 5 frames, kernel 3, stride 2, zero pad 0 front and 1 back -> ceil(5 / 2) = 3
    # windows over frames [0, 1, 2], [2, 3, 4] and [4, pad], as TF 'SAME' gives.
    pool = MaxPool3dTFPadding((3, 1, 1), (2, 1, 1))
    frames = torch.tensor([1.0, 5.0, 2.0, 0.5, 3.0]).view(1, 1, 5, 1, 1)
    assert pool(frames).flatten().tolist() == [5.0, 3.0, 3.0]


def test_space_to_depth_layout() -> None:
    video = torch.arange(2 * 3 * 2 * 4 * 6, dtype=torch.float32).view(2, 3, 2, 4, 6)
    folded = space_to_depth(video)
    assert folded.shape == (2, 24, 1, 2, 3)
    # Channel ((dt * 2 + dh) * 2 + dw) * C + c holds video[b, c, 2t + dt, 2h + dh, 2w + dw].
    b, c, dt, dh, dw, h, w = 1, 2, 1, 0, 1, 1, 2
    channel = ((dt * 2 + dh) * 2 + dw) * 3 + c
    assert folded[b, channel, 0, h, w] == video[b, c, dt, 2 * h + dh, 2 * w + dw]


def test_tokenizer_on_tiny_vocabulary() -> None:
    tokenizer = WordTokenizer(["the", "cat", "don't", "sat"], max_words=5)
    text_ids = tokenizer.encode(["The CAT sat, on the mat!", "Don't", "zebra", "the " * 9])
    assert text_ids.dtype == torch.long
    assert text_ids.tolist() == [
        [1, 2, 4, 1, 0],  # "on" and "mat" are unknown and dropped
        [3, 0, 0, 0, 0],  # the apostrophe stays inside the word
        [0, 0, 0, 0, 0],  # nothing known: all padding
        [1, 1, 1, 1, 1],  # truncated to max_words
    ]


def test_tokenizer_rejects_single_string() -> None:
    with pytest.raises(TypeError, match="list of sentences"):
        WordTokenizer(["cat"]).encode("cat")


def test_text_embedding_shape(model: S3D) -> None:
    text_ids = WordTokenizer(["a", "b", "c"]).encode(["a b", "c"])
    assert text_ids.shape == (2, 16)
    with torch.no_grad():
        assert model.text_embedding(text_ids).shape == (2, 512)
    with pytest.raises(ValueError, match="int64"):
        model.text_embedding(text_ids.float())


def test_batch_norm_calibration_spreads_random_features() -> None:
    """A random S3D-G maps every clip to nearly one vector until its BatchNorm is calibrated."""
    from models.s3dg import calibrate_batch_norm

    torch.manual_seed(0)
    model = S3D().eval()
    clips = torch.rand(4, 3, 8, 32, 32)
    clips[2:] *= 0.2  # two dark clips

    def spread() -> float:
        with torch.inference_mode():
            rows = torch.nn.functional.normalize(model(clips).video_embedding, dim=1)
        return float(1 - (rows @ rows.T).min())

    before = spread()
    calibrate_batch_norm(model, [torch.rand(4, 3, 8, 32, 32) for _ in range(2)])
    assert not model.training
    assert spread() > 10 * before
    norm = model.conv1.bn1
    assert norm.momentum == 0.1 and int(norm.num_batches_tracked) == 2
