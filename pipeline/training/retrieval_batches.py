"""VideoCLIP's retrieval-augmented pretraining batches (`pretrain.batching: retrieval`).

MMPT (`retritask.py`, `vectorpool.py`, `retri.py`; reference/videoclip-facts.md §2.3) builds
each epoch's batches from the model itself: every video is embedded as the mean over its sampled
clips of (pooled video + pooled text) / 2; random seed videos are drawn, each seed's
`retrieval_candidates` nearest videos (L2) are looked up and `videos_per_batch` of them kept at
random; one batch is those videos with all their clips, so its in-batch negatives are videos
the model finds alike.

Here, at the start of every epoch, the embedding pass runs over that epoch's own clips
(`clips_per_video` per video, MMPT: 16) in eval mode without gradients, so it draws from no
training generator. There are ceil(videos / videos_per_batch) seeds, so an epoch has as many
steps as with random batches (MMPT: videos // 32). MMPT searches a FAISS IVF index (512
centroids, approximate); this searches exactly (a chunk of seeds against all videos per
matrix product, on the model's device), which finds the same or nearer videos. The embedding
pass runs in float32 through a DataLoader with `optim.num_workers` processes. The epoch's
batches are written to `<folder>/epoch-<e>.json` before the first is trained on, and a run
resumed mid-epoch reads them back: the model has moved since the epoch began, so recomputing
would give other batches than the uninterrupted run trained on.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import torch

from models.videoclip import VideoCLIP
from pipeline.training.data import HowToClips, make_loader
from storage.atomic import atomic_write_json

log = logging.getLogger(__name__)


DISTANCE_CELLS = 50_000_000  # seeds × videos distances per matrix product (200 MB in float32)


def video_vectors(
    model: VideoCLIP, dataset: HowToClips, batch_size: int, num_workers: int = 0
) -> torch.Tensor:
    """(V, H) float32 on the model's device: each video's mean over its clips of (pooled video +
    pooled text)/2, for the dataset's current epoch, with `model` in eval mode (its mode is
    restored afterwards); items load through a DataLoader with `num_workers` processes."""
    clips = dataset.config.clips_per_video
    device = next(model.parameters()).device
    total = torch.zeros(len(dataset.video_ids), model.hidden_size, device=device)  # (V, H)
    loader = make_loader(
        dataset, batch_size, shuffle=False, seed=0, epoch=dataset.epoch, num_workers=num_workers
    )
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for batch in loader:
                batch = batch.to(device)
                video = model.encode_video(batch.video, batch.video_mask).pooled  # (B, H)
                text = model.encode_text(batch.text_ids, batch.text_mask).pooled  # (B, H)
                total.index_add_(0, batch.index // clips, ((video + text) / 2).float())
    finally:
        model.train(was_training)
    return total / clips


def neighbour_groups(
    vectors: torch.Tensor, group_size: int, candidates: int, generator: np.random.Generator
) -> list[list[int]]:
    """ceil(V / group_size) groups of video positions: for each random seed video, `group_size`
    drawn at random from its `candidates` nearest videos by L2 (the seed included; at least
    `group_size` of them), searched exactly, a chunk of seeds per matrix product. `vectors`
    (V, H). With fewer videos than a group, every group is all of them."""
    count = len(vectors)
    size, pool = min(group_size, count), min(max(candidates, group_size), count)
    seeds = generator.choice(count, size=math.ceil(count / group_size), replace=count < group_size)
    squares = (vectors * vectors).sum(dim=1)  # (V,)
    rows = max(1, DISTANCE_CELLS // count)
    groups = []
    for first in range(0, len(seeds), rows):
        chunk = torch.as_tensor(seeds[first : first + rows], device=vectors.device)  # (c,)
        # |b|² - 2 a·b: the squared L2 distance less |a|², which is the same along a row
        distances = torch.addmm(squares[None, :], vectors[chunk], vectors.T, alpha=-2.0)
        nearest = torch.topk(distances, pool, largest=False).indices.cpu().numpy()  # (c, pool)
        for row in nearest:
            groups.append(sorted(generator.choice(row, size=size, replace=False).tolist()))
    return groups


class RetrievalBatches:
    """Each epoch's item order for `make_loader`: the clips of one neighbour group after another,
    `clips_per_video × videos_per_batch` items per batch, kept in `folder` for resumption."""

    def __init__(
        self,
        dataset: HowToClips,
        batch_size: int,
        candidates: int,
        seed: int,
        folder: Path,
        num_workers: int = 0,
    ) -> None:
        clips = dataset.config.clips_per_video
        if batch_size % clips:
            raise ValueError(
                f"pretrain.batching=retrieval: optim.batch_size {batch_size} is not a multiple "
                f"of clips_per_video {clips} (a batch holds every clip of its videos)"
            )
        self.dataset, self.batch_size, self.candidates = dataset, batch_size, candidates
        self.videos_per_batch, self.seed, self.folder = batch_size // clips, seed, folder
        self.num_workers = num_workers

    def order(self, model: VideoCLIP, epoch: int) -> list[int]:
        """Item indices of epoch `epoch` in batch order (the groups written before returning)."""
        path = self.folder / f"epoch-{epoch:03d}.json"
        ids = self.dataset.video_ids
        if path.is_file():
            position = {video_id: index for index, video_id in enumerate(ids)}
            saved = json.loads(path.read_text())["groups"]
            groups = [[position[v] for v in group] for group in saved]
            log.info("retrieval batches of epoch %d read from %s", epoch, path)
        else:
            self.dataset.set_epoch(epoch)
            vectors = video_vectors(model, self.dataset, self.batch_size, self.num_workers)
            generator = np.random.default_rng([self.seed, epoch, 0x7E7])
            groups = neighbour_groups(vectors, self.videos_per_batch, self.candidates, generator)
            atomic_write_json(
                path, {"epoch": epoch, "groups": [[ids[p] for p in g] for g in groups]}
            )
            log.info(
                "retrieval batches of epoch %d: %d groups of %d videos from the %d nearest",
                epoch, len(groups), self.videos_per_batch, self.candidates,
            )  # fmt: skip
        clips = self.dataset.config.clips_per_video
        return [p * clips + j for group in groups for p in group for j in range(clips)]
