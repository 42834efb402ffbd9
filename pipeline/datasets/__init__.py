"""Dataset adapters: annotation files in the real datasets' formats → the dataset index.

One module per dataset (`howto100m`, `youcook2`, `msrvtt` with its file readers in
`msrvtt_files`, `msvd`, `didemo`, `folder`), each with `load(config, root)` → `DatasetTables` and
`annotation_files(config, root)`; `tables` holds the shared schemas and `synthetic` where
`fineco synth` puts each format's set (DESIGN.md §3, formats in reference/videoclip-facts.md
§2.3 and §2.7).
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

from pipeline.config import DatasetConfig
from pipeline.datasets import didemo, folder, howto100m, msrvtt, msvd, youcook2
from pipeline.datasets.tables import DatasetTables


def load_dataset(config: DatasetConfig, root: Path) -> DatasetTables:
    """The videos and pairs tables of the dataset at `root`, read by `config.adapter`."""
    return _adapter(config).load(config, root)


def annotation_files(config: DatasetConfig, root: Path) -> list[Path]:
    """The annotation files `config.adapter` reads at `root` (their content decides the tables)."""
    return _adapter(config).annotation_files(config, root)


def _adapter(config: DatasetConfig) -> ModuleType:
    if config.adapter == "howto100m":
        return howto100m
    elif config.adapter == "youcook2":
        return youcook2
    elif config.adapter == "msrvtt":
        return msrvtt
    elif config.adapter == "msvd":
        return msvd
    elif config.adapter == "didemo":
        return didemo
    elif config.adapter == "folder":
        return folder
    raise ValueError(f"unknown dataset adapter {config.adapter!r}")
