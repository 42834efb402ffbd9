"""Config loading: presets, overrides and errors that name the key and the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import ConfigError, DecodeConfig, load_config, section_dict


def test_presets_load_with_typed_sections() -> None:
    for preset in ("demo", "tiny"):
        config = load_config(preset)
        assert config.name == preset
        assert isinstance(config.decode, DecodeConfig)
        assert set(config.datasets) == {"howto100m", "youcook2"}
        assert config.datasets["youcook2"].adapter == "youcook2"


def test_overrides_are_parsed_as_yaml_scalars() -> None:
    config = load_config("tiny", ["decode.size=48", "decode.max_bad_share=0.1", "extract.weights="])
    assert config.decode.size == 48
    assert config.decode.max_bad_share == pytest.approx(0.1)
    assert config.extract.weights == ""


def test_override_can_add_a_dataset() -> None:
    config = load_config("tiny", ["datasets.mine.adapter=folder", "datasets.mine.root=/data/v"])
    assert config.datasets["mine"].root == "/data/v"


def test_config_is_frozen() -> None:
    config = load_config("tiny")
    with pytest.raises(AttributeError):
        config.decode.size = 3  # type: ignore[misc]


def test_unknown_key_names_key_and_file(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text("name: mine\ndecode:\n  frame_rate: 30\n")
    with pytest.raises(ConfigError, match=r"mine\.yaml.*unknown key decode\.frame_rate"):
        load_config(str(path))


def test_unknown_override_key_is_rejected() -> None:
    with pytest.raises(ConfigError, match=r"tiny\.yaml.*unknown key extract\.wieghts"):
        load_config("tiny", ["extract.wieghts=/tmp/x.pth"])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("decode.size=big", r"decode\.size should be int, found 'big'"),
        ("decode.backend=opencv", r"decode\.backend must be one of \['ffmpeg', 'decord'\]"),
        ("decode.frames_per_second=15", r"frames_per_second even"),
        ("decode.size", r"not of the form key=value"),
        ("decode.size.x=1", r"'size' is a value, not a section"),
        ("datasets.mine.root=/x", r"missing key datasets\.mine\.adapter"),
        ("synth.min_segments=9", r"min_segments <= max_segments"),
    ],
)
def test_bad_values_are_rejected_with_the_key(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config("tiny", [override])


def test_unknown_preset_lists_the_presets() -> None:
    expected = r"unknown preset 'dmeo'; presets: demo, didemo, .*msrvtt_qa, .*tiny"
    with pytest.raises(ConfigError, match=expected):
        load_config("dmeo")


def test_missing_yaml_file() -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config("/nonexistent/config.yaml")


def test_section_dict_is_plain_data() -> None:
    assert section_dict(load_config("tiny").decode)["size"] == 32
