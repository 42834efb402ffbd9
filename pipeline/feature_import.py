"""Extract for a dataset that comes as pre-extracted features (`datasets.<name>.features`, one
`<id>.npy` of (seconds, 512) per video): its files are checked and copied into feature shards
with the same index as the extract stage writes, so the stages after extract cannot tell the two
apart. It runs as the dataset's extract stage (same stage name and manifest facts)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from models.s3dg import EMBEDDING_DIM
from pipeline import progress
from pipeline.stage import ExtractInfo, IngestInfo, StageInputs, StageResult, run_cached
from storage.layout import Manifest
from storage.shards import FeatureShardWriter
from storage.tables import read_table, write_table

log = logging.getLogger(__name__)

INDEX_COLUMNS = ["video_id", "shard", "row", "n_seconds"]  # as the extract stage's index
IMPORT_VIDEOS_PER_SHARD = 256


@dataclass(frozen=True, kw_only=True)
class ImportInputs(StageInputs):
    """An ingested dataset whose videos are `.npy` feature files (no decode, no S3D-G)."""

    stage: ClassVar[str] = "extract"
    modules: ClassVar[tuple[str, ...]] = ("pipeline.feature_import", "storage")
    info_type: ClassVar[type] = ExtractInfo

    dataset: str
    ingest: Manifest[IngestInfo]

    def section(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "imported": True, "dim": EMBEDDING_DIM}

    def upstream(self) -> tuple[Manifest[Any], ...]:
        return (self.ingest,)  # its videos table names every file with its size and mtime


def run_import(inputs: ImportInputs) -> Manifest[ExtractInfo]:
    """Copy each video's (seconds, 512) `.npy` features into feature shards and index them."""

    def build(folder: Path) -> StageResult[ExtractInfo]:
        videos = read_table(inputs.ingest.output("videos"))
        rows = []
        for number, start in enumerate(range(0, len(videos), IMPORT_VIDEOS_PER_SHARD)):
            group = videos.iloc[start : start + IMPORT_VIDEOS_PER_SHARD]
            shard = f"shards/features-{number:05d}.h5"
            with FeatureShardWriter(folder / shard, EMBEDDING_DIM, {"imported": True}) as writer:
                for position, video in enumerate(group.itertuples()):
                    features = read_feature_file(Path(video.path), video.video_id)
                    writer.add(video.video_id, features)
                    rows.append([video.video_id, shard, position, len(features)])
                    progress.report("extract: imported videos", len(rows), len(videos))
                writer.commit()
        index = pd.DataFrame(rows, columns=INDEX_COLUMNS)
        write_table(index, folder / "index.parquet")
        seconds = int(index.n_seconds.sum())
        info = ExtractInfo(
            dataset=inputs.dataset,
            weights={"imported": True},
            random_init=False,
            videos=len(index),
            seconds=seconds,
            embedded_seconds=0,
            embedded_per_second=None,
            device=None,
            imported=True,
        )
        log.info("extract %s: imported %d videos, %d seconds", inputs.dataset, len(index), seconds)
        return StageResult(outputs={"index": "index.parquet"}, info=info)

    return run_cached(inputs, build)


def read_feature_file(path: Path, video_id: str) -> np.ndarray:
    """A video's pre-extracted features, checked: (seconds >= 1, 512) finite floats."""
    try:
        features = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise ValueError(f"features of video {video_id!r}: cannot read {path}: {error}") from None
    if features.ndim != 2 or features.shape[1] != EMBEDDING_DIM or len(features) == 0:
        raise ValueError(
            f"features of video {video_id!r}: {path} holds an array of shape "
            f"{features.shape}; expected (seconds >= 1, {EMBEDDING_DIM}), one row per second"
        )
    if features.dtype.kind != "f":
        raise ValueError(
            f"features of video {video_id!r}: {path} holds {features.dtype}, not floats"
        )
    if not np.isfinite(features).all():
        raise ValueError(f"features of video {video_id!r}: {path} holds NaN or infinite values")
    return features
