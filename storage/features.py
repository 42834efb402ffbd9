"""Random access to a dataset's extracted features through the extract stage's `index.parquet`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from storage.shards import FeatureShardReader
from storage.tables import read_table


class FeatureStore:
    """video_id → its `[n_seconds, 512]` float16 features, read from the shard that holds them.

    Shard files open lazily and stay open (one handle per shard per process; the readers reopen
    after a fork), so a DataLoader worker may use a store built in the parent process.
    """

    def __init__(self, index_path: Path) -> None:
        index = read_table(index_path)
        folder = index_path.parent
        self._shards = {video: folder / shard for video, shard in zip(index.video_id, index.shard)}
        self._lengths = dict(zip(index.video_id, index.n_seconds.astype(int)))
        self._readers: dict[Path, FeatureShardReader] = {}

    @property
    def video_ids(self) -> list[str]:
        return list(self._shards)

    def __contains__(self, video_id: str) -> bool:
        return video_id in self._shards

    def n_seconds(self, video_id: str) -> int:
        return self._lengths[self._known(video_id)]

    def features(self, video_id: str, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Rows `start:stop` of the video's features, (k, 512) float16."""
        shard = self._shards[self._known(video_id)]
        if shard not in self._readers:
            self._readers[shard] = FeatureShardReader(shard)
        return self._readers[shard].features(video_id, start, stop)

    def __getstate__(self) -> dict:
        """Pickle without open HDF5 handles (a spawned DataLoader worker opens its own)."""
        return {**self.__dict__, "_readers": {}}

    def close(self) -> None:
        for reader in self._readers.values():
            reader.close()
        self._readers.clear()

    def _known(self, video_id: str) -> str:
        if video_id not in self._shards:
            raise KeyError(f"video {video_id!r} has no features in this index")
        return video_id
