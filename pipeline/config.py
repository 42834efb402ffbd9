"""Typed, frozen pipeline configuration loaded from YAML presets in `pipeline/configs/`.

A preset is a YAML mapping whose sections mirror the dataclasses below. `key=value` overrides
use dotted paths (`decode.size=112`, `datasets.youcook.root=/data/yc`); values are parsed as YAML
scalars. Unknown keys and wrongly typed values are rejected with the key's dotted name and the
file it came from. Each stage receives only its own section.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

PRESET_DIR = Path(__file__).parent / "configs"


class ConfigError(ValueError):
    """A preset, file or override that does not fit the config schema."""


@dataclass(frozen=True)
class DatasetConfig:
    """One dataset on disk: which adapter reads it and where its files are."""

    adapter: Literal["howto100m", "youcook2", "folder"]
    root: str  # dataset root; `{artifacts}` expands to the artifact root
    annotations: str = ""  # annotation file relative to root ("" for the folder adapter)
    videos: str = "videos"  # directory of video files relative to root
    split: str = "train"  # split given to every video by adapters without splits (folder)


@dataclass(frozen=True)
class SynthConfig:
    """Sizes of the synthetic datasets rendered by `fineco synth` (pipeline/synth.py)."""

    seed: int = 0
    out_dir: str = "{artifacts}/synth"
    width: int = 160  # rendered frame size; decode rescales to `decode.size`
    height: int = 120
    fps: int = 15
    pretrain_videos: int = 16  # HowTo100M-format corpus
    youcook_train_videos: int = 24  # YouCookII-format retrieval set, `training` subset
    youcook_val_videos: int = 8  # `validation` subset
    min_segments: int = 3  # segments (one concept each) per video
    max_segments: int = 5
    min_segment_s: int = 3
    max_segment_s: int = 15
    broken_videos: bool = True  # add one truncated and one corrupt file to the YouCookII set

    def __post_init__(self) -> None:
        _require(1 <= self.min_segments <= self.max_segments, "min_segments <= max_segments")
        _require(1 <= self.min_segment_s <= self.max_segment_s, "min_segment_s <= max_segment_s")
        _require(self.width >= 16 and self.height >= 16 and self.fps >= 1, "a frame size >= 16")


@dataclass(frozen=True)
class DecodeConfig:
    """Raw video → one-second uint8 clips (pipeline/decode.py)."""

    backend: Literal["ffmpeg", "decord"] = "ffmpeg"
    frames_per_second: int = 30  # frames per one-second clip (VideoCLIP: 30)
    size: int = 224  # short side scaled to `size`, then centre crop size × size
    videos_per_shard: int = 64
    workers: int = 0  # parallel decoder processes; 0 = one per CPU core
    max_bad_share: float = 0.25  # fail the stage when more videos than this share are bad
    # Keep decoded clips in frame shards (4.5 MB per video-second at 30 frames of 224 px). Off:
    # decode still checks every video and counts its seconds, and extract decodes it again.
    keep_frames: bool = True

    def __post_init__(self) -> None:
        # S3D-G's space-to-depth stem halves time and space: both must be even.
        _require(
            self.frames_per_second >= 2 and self.frames_per_second % 2 == 0,
            f"frames_per_second even and >= 2, found {self.frames_per_second}",
        )
        _require(self.size >= 32 and self.size % 2 == 0, f"size even and >= 32, found {self.size}")
        _require(self.videos_per_shard >= 1, "videos_per_shard >= 1")
        _require(0.0 <= self.max_bad_share <= 1.0, "max_bad_share between 0 and 1")


@dataclass(frozen=True)
class ExtractConfig:
    """One-second clips → L2-normalised 512-d S3D-G `video_embedding` (pipeline/extract.py)."""

    weights: str = ""  # path to s3d_howto100m.pth; "" = random init (recorded in manifests)
    init_seed: int = 0  # seed of the random init when no weights are given
    batch_seconds: int = 16  # one-second clips per forward pass
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int = 0  # torch CPU threads; 0 = all cores

    def __post_init__(self) -> None:
        _require(self.batch_seconds >= 1, "batch_seconds >= 1")


@dataclass(frozen=True)
class Config:
    name: str
    datasets: dict[str, DatasetConfig] = field(default_factory=dict)
    synth: SynthConfig = field(default_factory=SynthConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    extract: ExtractConfig = field(default_factory=ExtractConfig)


def _require(condition: bool, expectation: str) -> None:
    if not condition:
        raise ConfigError(f"expected {expectation}")


def preset_path(name_or_path: str) -> Path:
    """A preset name (`demo`) or a path to a YAML file."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        return path
    preset = PRESET_DIR / f"{name_or_path}.yaml"
    if not preset.is_file():
        known = sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))
        raise ConfigError(f"unknown preset {name_or_path!r}; presets: {', '.join(known)}")
    return preset


def load_config(name_or_path: str, overrides: Sequence[str] = ()) -> Config:
    """Load a preset or YAML file, apply `key=value` overrides, and validate every key."""
    path = preset_path(name_or_path)
    with path.open() as handle:
        raw = yaml.safe_load(handle) or {}
    if not isinstance(raw, dict):
        found = type(raw).__name__
        raise ConfigError(f"{path}: expected a mapping at the top level, found {found}")
    raw.setdefault("name", path.stem)
    for override in overrides:
        _apply_override(raw, override)
    source = str(path) + (f" (with overrides {list(overrides)})" if overrides else "")
    return _build(Config, raw, key="", source=source)


def section_dict(section: Any) -> dict[str, Any]:
    """A config section as plain JSON-able data (for cache keys and manifests)."""
    return dataclasses.asdict(section)


def _apply_override(raw: dict[str, Any], override: str) -> None:
    key, sep, text = override.partition("=")
    if not sep or not key:
        raise ConfigError(f"override {override!r} is not of the form key=value")
    parts = key.strip().split(".")
    node = raw
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {override!r}: {part!r} is a value, not a section")
        node = child
    node[parts[-1]] = yaml.safe_load(text) if text.strip() else ""


def _build(cls: type, data: Any, key: str, source: str) -> Any:
    where = key or "<top level>"
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: {where} should be a mapping, found {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        names = ", ".join(_join(key, name) for name in unknown)
        raise ConfigError(f"{source}: unknown key {names}; known keys: {', '.join(fields)}")
    values = {}
    for name in fields:
        if name in data:
            values[name] = _coerce(hints[name], data[name], _join(key, name), source)
        elif _is_required(fields[name]):
            raise ConfigError(f"{source}: missing key {_join(key, name)}")
    try:
        return cls(**values)
    except ConfigError as error:
        raise ConfigError(f"{source}: {where}: {error}") from None


def _coerce(hint: Any, value: Any, key: str, source: str) -> Any:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, key, source)
    if origin is Literal:
        choices = typing.get_args(hint)
        if value not in choices:
            raise ConfigError(f"{source}: {key} must be one of {list(choices)}, found {value!r}")
        return value
    if origin is dict:
        _, value_type = typing.get_args(hint)
        if not isinstance(value, Mapping):
            raise ConfigError(f"{source}: {key} should be a mapping, found {value!r}")
        return {
            str(name): _coerce(value_type, item, _join(key, str(name)), source)
            for name, item in value.items()
        }
    if origin in (tuple, list):
        (item_type, *_) = typing.get_args(hint)
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{source}: {key} should be a list, found {value!r}")
        return tuple(_coerce(item_type, v, f"{key}[{i}]", source) for i, v in enumerate(value))
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in typing.get_args(hint):
            return None
        (inner,) = [a for a in typing.get_args(hint) if a is not type(None)]
        return _coerce(inner, value, key, source)
    return _scalar(hint, value, key, source)


def _scalar(hint: type, value: Any, key: str, source: str) -> Any:
    if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if hint is str and isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        raise ConfigError(
            f"{source}: {key} should be {hint.__name__}, found {value!r} ({type(value).__name__})"
        )
    return value


def _is_required(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name
