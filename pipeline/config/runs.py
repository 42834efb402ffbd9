"""What a run is asked to do, decided before any stage runs: the stage list (`parse_stages`) and
the config rewritten for `fineco synth`'s data (`with_synthetic_data`) or for a folder of one's
own videos (`with_video_folder`). Light to import (no torch): `fineco submit` checks parameters
with these before it submits a run."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path

from pipeline.config import STAGES, Config, ConfigError, DatasetConfig, OptimConfig
from pipeline.datasets.synthetic import SYNTHETIC_SETS

log = logging.getLogger("pipeline.runner")  # the name these messages have always had


def parse_stages(text: str | Sequence[str]) -> list[str]:
    """`"ingest,decode"` (or a list) → validated stage names in pipeline order."""
    names = [s.strip() for s in (text.split(",") if isinstance(text, str) else text) if s.strip()]
    unknown = [name for name in names if name not in STAGES]
    if unknown:
        raise ConfigError(f"unknown stage(s) {unknown}; stages: {', '.join(STAGES)}")
    return [stage for stage in STAGES if stage in names]


def with_video_folder(config: Config, folder: Path) -> Config:
    """The config with its datasets replaced by one folder of the user's own videos."""
    if not folder.is_dir():
        raise ConfigError(f"--videos {folder}: not a directory")
    dataset = DatasetConfig(adapter="folder", root=str(folder.resolve()), videos="")
    return dataclasses.replace(config, datasets={"videos": dataset})


def with_synthetic_data(config: Config) -> Config:
    """The config run on `fineco synth`'s sets in each dataset's own format, offline.

    Every dataset is pointed at the synthetic set of its adapter (its task kept), the weights
    become the offline defaults: random S3D-G, MiniLM, no VideoCLIP checkpoint (a paper preset
    names the public weights, which a synthetic run does not need), and mixed precision becomes
    `auto` (the paper's fp16 on a GPU, off on a CPU).
    """
    out_dir = config.synth.out_dir
    datasets = {}
    for name, dataset in config.datasets.items():
        if dataset.adapter not in SYNTHETIC_SETS:
            raise ConfigError(f"datasets.{name}: no synthetic set for adapter {dataset.adapter}")
        synthetic = SYNTHETIC_SETS[dataset.adapter]
        datasets[name] = dataclasses.replace(
            dataset,
            root=f"{out_dir}/{synthetic.folder}",
            annotations=synthetic.annotations,
            videos=synthetic.videos,
        )
    log.info("synthetic data from %s; random S3D-G, MiniLM, no VideoCLIP checkpoint", out_dir)
    return dataclasses.replace(
        config,
        datasets=datasets,
        extract=dataclasses.replace(config.extract, weights=""),
        model=dataclasses.replace(config.model, bert="minilm"),
        pretrain=dataclasses.replace(config.pretrain, optim=_auto_amp(config.pretrain.optim)),
        finetune=dataclasses.replace(
            config.finetune, init_checkpoint="", optim=_auto_amp(config.finetune.optim)
        ),
    )


def _auto_amp(optim: OptimConfig) -> OptimConfig:
    return dataclasses.replace(optim, amp="auto")


def with_processes(config: Config, nproc: int) -> Config:
    """The config with pretraining and fine-tuning in `nproc` DDP processes (not in any cache
    key: N processes train on the batches one process would)."""
    if nproc < 1:
        raise ValueError(f"--nproc must be at least 1, got {nproc}")
    pretrain, finetune = config.pretrain, config.finetune
    return dataclasses.replace(
        config,
        pretrain=dataclasses.replace(
            pretrain, optim=dataclasses.replace(pretrain.optim, nproc=nproc)
        ),
        finetune=dataclasses.replace(
            finetune, optim=dataclasses.replace(finetune.optim, nproc=nproc)
        ),
    )
