"""The synthetic data's sections: `synth:` (what `fineco synth` renders, pipeline/synth/) and
`benchmark:` (the long-sparse benchmark, also `synth.long_sparse` at the video level)."""

from __future__ import annotations

import typing
from typing import Annotated, Literal

from pydantic import Field, StrictBool, model_validator
from pydantic.dataclasses import dataclass

from pipeline.config.base import (
    SECTION,
    NonNegativeInt,
    PositiveInt,
    ordered,
    require,
)
from storage.layout import ARTIFACTS

ShortSet = Literal["msrvtt", "msvd", "didemo"]  # the short-video synthetic sets, in render order
SHORT_SETS: tuple[str, ...] = typing.get_args(ShortSet)


@dataclass(frozen=True, config=SECTION)
class BenchmarkConfig:
    """The long-sparse benchmark (synth/long_sparse.py, `fineco study`; README, "The long-sparse
    benchmark"): the defaults ARE the benchmark; a study may shrink its counts, never its regime."""

    seed: int = 0
    train_clips: PositiveInt = 1200
    test_clips: PositiveInt = 500  # distinct caption concepts; chance R@1 = 1 / test_clips
    min_seconds: PositiveInt = 60  # clip length at one feature per second
    max_seconds: Annotated[int, Field(ge=1, le=256)] = 256
    max_relevant_share: Annotated[float, Field(gt=0.0, le=1.0)] = 0.25
    min_relevant_seconds: PositiveInt = 6
    max_runs: PositiveInt = 3  # relevant seconds come in 1..max_runs runs
    min_run_seconds: PositiveInt = 2
    distractor_run_seconds: tuple[PositiveInt, PositiveInt] = (3, 15)
    noise: Annotated[float, Field(ge=0.0)] = 1.0  # norm of a second's noise vs its concept's 1
    distractors: Literal["spare", "captions"] = "spare"  # captions: v1 (README, the benchmark)
    pretrain_videos: PositiveInt = 400  # HowTo100M-format corpus: 4-8 segments of 3-8 s each

    @model_validator(mode="after")
    def _regime_fits(self) -> BenchmarkConfig:
        ordered(self, "min_seconds", "max_seconds")
        require(
            self.min_relevant_seconds <= int(self.min_seconds * self.max_relevant_share),
            "min_relevant_seconds <= min_seconds × max_relevant_share, found "
            f"{self.min_relevant_seconds} > {int(self.min_seconds * self.max_relevant_share)}",
        )
        low, high = self.distractor_run_seconds
        require(low <= high, f"distractor_run_seconds ordered, found ({low}, {high})")
        return self


@dataclass(frozen=True, config=SECTION)
class SynthConfig:
    """Sizes of the synthetic datasets rendered by `fineco synth` (pipeline/synth/)."""

    seed: int = 0
    out_dir: str = f"{ARTIFACTS}/synth"
    width: Annotated[int, Field(ge=16, multiple_of=2)] = 160  # rendered frame size (yuv420p:
    height: Annotated[int, Field(ge=16, multiple_of=2)] = 120  # even); decode rescales it
    fps: PositiveInt = 15
    pretrain_videos: NonNegativeInt = 16  # HowTo100M-format corpus
    youcook_train_videos: NonNegativeInt = 24  # YouCookII-format retrieval set, `training`
    youcook_val_videos: NonNegativeInt = 8  # `validation` subset
    min_segments: PositiveInt = 3  # segments (one concept each) per video
    max_segments: PositiveInt = 5
    min_segment_s: PositiveInt = 3
    max_segment_s: PositiveInt = 15
    broken_videos: StrictBool = True  # add one truncated and one corrupt file to the YouCookII set
    # Short-video sets (4-10 s, captions cover most of each video): MSR-VTT formats, and MSVD
    # formats over the same videos; DiDeMo formats over 30 s videos of 5-second moments.
    short_sets: tuple[ShortSet, ...] = SHORT_SETS
    short_videos: PositiveInt = 12  # MSR-VTT/MSVD set, all splits
    short_test_videos: PositiveInt = 4
    didemo_videos: PositiveInt = 10
    didemo_test_videos: PositiveInt = 4
    # Set: the HowTo100M and YouCookII sets are this long-sparse benchmark's pretrain and long
    # sets rendered as videos (synth/long_sparse_video.py): its own seed and counts apply, and
    # `seed`, the video counts and segment sizes above are unused (broken_videos still applies).
    long_sparse: BenchmarkConfig | None = None

    @model_validator(mode="after")
    def _sizes_fit(self) -> SynthConfig:
        ordered(self, "min_segments", "max_segments")
        ordered(self, "min_segment_s", "max_segment_s")
        if {"msrvtt", "msvd"} & set(self.short_sets):
            require(
                self.short_test_videos < self.short_videos,
                f"short_test_videos < short_videos, found {self.short_test_videos} of "
                f"{self.short_videos}",
            )
        if "didemo" in self.short_sets:  # train and val need a video each
            require(
                self.didemo_test_videos <= self.didemo_videos - 2,
                "didemo_test_videos <= didemo_videos - 2 (train and val need a video each), "
                f"found {self.didemo_test_videos} of {self.didemo_videos}",
            )
        return self
