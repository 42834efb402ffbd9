"""Config loading: presets, overrides and errors that name the key and the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import ConfigError, DecodeConfig, section_dict
from pipeline.config.loading import load_config


def test_presets_load_with_typed_sections() -> None:
    for preset in ("demo", "tiny"):
        config = load_config(preset)
        assert config.name == preset
        assert isinstance(config.decode, DecodeConfig)
        assert set(config.datasets) == {"howto100m", "youcook2"}
        assert config.datasets["youcook2"].adapter == "youcook2"


def test_override_values_are_read_as_yaml() -> None:
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


def test_unknown_key_names_key_file_and_the_known_keys(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text("name: mine\ndecode:\n  frame_rate: 30\n")
    expected = r"mine\.yaml: decode\.frame_rate: unknown key; known keys here: backend, "
    with pytest.raises(ConfigError, match=expected):
        load_config(str(path))


def test_unknown_override_key_is_rejected() -> None:
    with pytest.raises(ConfigError, match=r"tiny\.yaml.*: extract\.wieghts: unknown key"):
        load_config("tiny", ["extract.wieghts=/tmp/x.pth"])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("decode.size=big", r"decode\.size: 'big' is not an integer$"),
        ("decode.backend=opencv", r"decode\.backend: 'opencv' is not one of ffmpeg, decord$"),
        ("finetune.optim.amp=of", r"finetune\.optim\.amp: 'of' is not one of auto, off, bf16"),
        ("decode.frames_per_second=15", r"decode\.frames_per_second: 15 is not a multiple of 2"),
        ("decode.size=16", r"decode\.size: 16 is below the minimum 32"),
        ("decode.max_bad_share=1.5", r"decode\.max_bad_share: 1\.5 is above the maximum 1"),
        ("finetune.fineco.ratio=0", r"finetune\.fineco\.ratio: 0 is not above 0"),
        ("decode.keep_frames=maybe", r"decode\.keep_frames: 'maybe' is not true or false"),
        ("decode.size=[1]", r"decode\.size: \[1\] is not an integer"),
        ("model.random_init=1", r"model\.random_init: 1 is not true or false"),
        ("finetune.sweep=[{strategy: med}]", r"finetune\.sweep\[0\]\.strategy: 'med' is not"),
        ("synth.short_sets=[msrvtt, bogus]", r"synth\.short_sets\[1\]: 'bogus' is not one of"),
        ("execution.gpu_stages=[extract, x]", r"gpu_stages\[1\]: 'x' is not one of ingest, "),
        ("decode.size", r"not of the form key=value"),
        ("decode.size.x=1", r"'size' is a value, not a section"),
        ("datasets.mine.root=/x", r"datasets\.mine\.adapter: missing key"),
        ("synth.min_segments=9", r"synth: expected min_segments <= max_segments, found 9 > 3"),
        ("model.random_heads=3", r"model: expected random_hidden a multiple of random_heads"),
        ("finetune.init_checkpoint=x.pt", r"finetune: expected init_checkpoint only with"),
    ],
)
def test_bad_values_name_the_key_the_value_and_what_is_allowed(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config("tiny", [override])


def test_every_problem_is_named_in_one_line() -> None:
    with pytest.raises(ConfigError) as raised:
        load_config("tiny", ["decode.size=big", "extract.device=tpu"])
    message = str(raised.value)
    assert "\n" not in message
    assert "decode.size: 'big'" in message and "extract.device: 'tpu'" in message


def test_overrides_are_read_by_the_keys_type() -> None:
    config = load_config(
        "tiny",
        [
            "finetune.optim.amp=off",  # YAML would read a boolean
            "synth.out_dir={artifacts}/x",  # YAML would read a broken mapping
            "decode.keep_frames=false",
            "finetune.optim.lr=1e-4",  # YAML 1.1 would read a string
            "finetune.sweep=[{strategy: median}, {k: 10}]",
            "datasets.mine={adapter: folder, root: /v}",  # a whole section
        ],
    )
    assert config.finetune.optim.amp == "off"
    assert config.synth.out_dir == "{artifacts}/x"
    assert config.decode.keep_frames is False
    assert config.finetune.optim.lr == pytest.approx(1e-4)
    assert [(p.strategy, p.k) for p in config.finetune.sweep] == [("median", 0), ("", 10)]
    assert (config.datasets["mine"].adapter, config.datasets["mine"].root) == ("folder", "/v")


def test_sections_built_in_code_are_validated_too() -> None:
    with pytest.raises(ValueError, match="greater than or equal to 32"):
        DecodeConfig(size=8)
    with pytest.raises(ValueError, match="frame_rate\n  Unexpected keyword argument"):
        DecodeConfig(frame_rate=30)  # type: ignore[call-arg]


def test_unknown_preset_lists_the_presets() -> None:
    expected = r"unknown preset 'dmeo'; presets: demo, didemo, .*msrvtt_qa, .*tiny"
    with pytest.raises(ConfigError, match=expected):
        load_config("dmeo")


def test_missing_yaml_file() -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config("/nonexistent/config.yaml")


def test_section_dict_is_plain_data() -> None:
    assert section_dict(load_config("tiny").decode)["size"] == 32
