"""Writes a shard that never finishes, for tests/test_shards.py to SIGKILL mid-write.

    python tests/shard_writer_child.py frames|features PATH

Writes one whole video, prints 'started', then appends seconds to a second video until killed.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from storage.shards import FeatureShardWriter, FrameShardWriter

FRAMES_PER_SECOND = 5
SIZE = 7
DIM = 37


def write_frames_forever(path: Path) -> None:
    rng = np.random.default_rng(0)
    clip = rng.integers(0, 256, (FRAMES_PER_SECOND, SIZE, SIZE, 3), dtype=np.uint8)  # (F, S, S, 3)
    with FrameShardWriter(path, FRAMES_PER_SECOND, SIZE) as writer:
        writer.begin_video("first")
        for _ in range(3):
            writer.append_second(clip)
        writer.end_video()
        print("started", flush=True)
        writer.begin_video("second")
        while True:
            writer.append_second(clip)
            time.sleep(0.001)


def write_features_forever(path: Path) -> None:
    rows = np.random.default_rng(0).standard_normal((4, DIM)).astype(np.float32)  # (k, D)
    with FeatureShardWriter(path, dim=DIM) as writer:
        writer.add("first", rows)
        print("started", flush=True)
        writer.begin_video("second")
        while True:
            writer.append_rows(rows)
            time.sleep(0.001)


if __name__ == "__main__":
    kind, target = sys.argv[1], Path(sys.argv[2])
    if kind == "frames":
        write_frames_forever(target)
    elif kind == "features":
        write_features_forever(target)
    else:
        raise SystemExit(f"unknown shard kind {kind!r}: expected 'frames' or 'features'")
