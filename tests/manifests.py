"""Hand-made stage outputs for tests that feed a stage files written by the test itself."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.stage import ExtractInfo, FinetuneInfo, IngestInfo, TrainingFacts
from storage.layout import Manifest
from storage.shards import FeatureShardWriter
from storage.tables import write_table


def hand_manifest(stage: str, folder: Path, outputs: dict[str, str], info: Any) -> Manifest:
    """A complete manifest of `stage` over files in `folder` (its digest names the folder)."""
    return Manifest(stage, "hand", str(folder), f"hand-{stage}-{folder}", outputs, info)


def write_feature_index(folder: Path, videos: dict[str, np.ndarray]) -> Path:
    """One feature shard holding each video's (n_seconds, D) rows, and its `index.parquet`."""
    shard = "shards/features-00000.h5"
    dim = next(iter(videos.values())).shape[1]
    with FeatureShardWriter(folder / shard, dim=dim) as writer:
        for video_id, rows in videos.items():
            writer.add(video_id, rows.astype(np.float32))
        writer.commit()
    index = pd.DataFrame(
        {
            "video_id": list(videos),
            "shard": [shard] * len(videos),
            "row": list(range(len(videos))),
            "n_seconds": [len(rows) for rows in videos.values()],
        }
    )
    write_table(index, folder / "index.parquet")
    return folder / "index.parquet"


def extract_manifest(folder: Path, videos: dict[str, np.ndarray]) -> Manifest:
    """An extract stage's manifest over `write_feature_index`'s files (random S3D-G)."""
    folder.mkdir(parents=True, exist_ok=True)
    write_feature_index(folder, videos)
    info = ExtractInfo("hand", {"random_init": True}, True, len(videos), 0, 0, None, None)
    return hand_manifest("extract", folder, {"index": "index.parquet"}, info)


def ingest_manifest(
    folder: Path,
    pairs: pd.DataFrame,
    task: str,
    adapter: str,
    extras: dict[str, Any] | None = None,
    annotation_dir: Path | None = None,
) -> Manifest:
    """An ingest stage's manifest over a pairs table (and task facts) written into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    write_table(pairs, folder / "pairs.parquet")
    outputs = {"pairs": "pairs.parquet"}
    if extras is not None:
        (folder / "task.json").write_text(json.dumps(extras))
        outputs["task"] = "task.json"
    info = ingest_info(folder, task, adapter, annotation_dir)
    return hand_manifest("ingest", folder, outputs, info)


def ingest_info(root: Path, task: str, adapter: str, annotation_dir: Path | None = None):
    return IngestInfo(
        dataset=adapter,
        adapter=adapter,
        task=task,
        root=str(root),
        annotation_dir=str(annotation_dir or root),
        videos=0,
        pairs=0,
        splits={},
        dropped={},
    )


def finetune_info(variant: str = "fineco") -> FinetuneInfo:
    training = TrainingFacts(
        steps=1, steps_per_epoch=1, train_seconds=0.0, resumed_from_step=None, items=1
    )
    return FinetuneInfo("hand", variant, "retrieval", {}, "bert", {}, "t2v", {}, training)
