"""`pretrain.batching: retrieval`: VideoCLIP's batches of mutually near videos, built from the
model at each epoch's start, kept on disk for resumption, and run by the pretrain stage."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from pipeline.config import ConfigError, PretrainConfig
from pipeline.config.loading import load_config
from pipeline.runner import run_stages
from pipeline.training.data import HowToClips, collate
from pipeline.training.model_factory import build_model, load_tokenizer
from pipeline.training.retrieval_batches import (
    RetrievalBatches,
    neighbour_groups,
    video_vectors,
)
from storage.features import FeatureStore
from storage.shards import FeatureShardWriter
from storage.tables import write_table
from tests.tiny_model import FEATURE_DIM, TINY_MODEL

VIDEOS = 10
CLIPS = 3


def test_groups_hold_near_videos_only() -> None:
    """Two far-apart clusters of 8: a group of 4 drawn from a seed's 8 nearest never mixes them."""
    generator = np.random.default_rng(0)
    centres = torch.zeros(2, 16)
    centres[0, 0], centres[1, 1] = 10.0, 10.0
    vectors = torch.cat(
        [centres[0] + torch.randn(8, 16) * 0.1, centres[1] + torch.randn(8, 16) * 0.1]
    )
    groups = neighbour_groups(vectors, 4, 8, generator)
    assert len(groups) == 4  # ceil(16 / 4): as many steps as random batches
    for group in groups:
        assert len(set(group)) == 4
        assert all(v < 8 for v in group) or all(v >= 8 for v in group), group
    # with candidates == group size, a group is exactly its seed's nearest videos
    for group in neighbour_groups(vectors, 8, 8, generator):
        assert group in (list(range(8)), list(range(8, 16)))


def test_a_corpus_smaller_than_a_group_is_one_group() -> None:
    groups = neighbour_groups(torch.randn(3, 4), 8, 64, np.random.default_rng(1))
    assert groups == [[0, 1, 2]]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> HowToClips:
    folder = tmp_path_factory.mktemp("retrieval-features")
    generator = np.random.default_rng(3)
    ids = [f"video{n:02d}" for n in range(VIDEOS)]
    with FeatureShardWriter(folder / "features-00000.h5", dim=FEATURE_DIM) as writer:
        for video_id in ids:
            writer.add(video_id, generator.standard_normal((12, FEATURE_DIM)).astype(np.float32))
        writer.commit()
    index = pd.DataFrame(
        {"video_id": ids, "shard": ["features-00000.h5"] * VIDEOS, "row": range(VIDEOS)}
    ).assign(n_seconds=12)
    write_table(index, folder / "index.parquet")
    words = ["cut the onion", "add salt", "stir the pan", "boil water", "serve hot"]
    rows = [
        (f"{v}:{i}", v, 3.0 * i, 3.0 * i + 2.5, words[(n + i) % len(words)], "train")
        for n, v in enumerate(ids)
        for i in range(4)
    ]
    pairs = pd.DataFrame(rows, columns=["pair_id", "video_id", "start_s", "end_s", "text", "split"])
    config = PretrainConfig(clips_per_video=CLIPS, max_video_s=6)
    tokenizer = load_tokenizer(TINY_MODEL.bert)
    return HowToClips(pairs, FeatureStore(folder / "index.parquet"), tokenizer, config, 8, 16, 5)


def test_a_video_vector_is_the_mean_of_its_clips(corpus: HowToClips) -> None:
    model, _ = build_model(TINY_MODEL)
    model.train()
    corpus.set_epoch(2)
    vectors = video_vectors(model, corpus, batch_size=4)  # (V, H)
    assert model.training, "the model's mode is restored"
    model.eval()
    with torch.no_grad():
        batch = collate([corpus[i] for i in range(CLIPS, 2 * CLIPS)])  # video 1's clips
        video = model.encode_video(batch.video, batch.video_mask).pooled
        text = model.encode_text(batch.text_ids, batch.text_mask).pooled
    torch.testing.assert_close(vectors[1], ((video + text) / 2).mean(dim=0), atol=1e-5, rtol=1e-5)


def test_batches_are_whole_videos_and_are_kept_for_a_resumed_run(
    corpus: HowToClips, tmp_path: Path
) -> None:
    model, _ = build_model(TINY_MODEL)
    batches = RetrievalBatches(corpus, 4 * CLIPS, candidates=6, seed=0, folder=tmp_path)
    order = batches.order(model, epoch=1)
    assert len(order) == 3 * 4 * CLIPS  # ceil(10 / 4) batches of 4 videos
    for first in range(0, len(order), 4 * CLIPS):
        chunk = order[first : first + 4 * CLIPS]
        videos = sorted({index // CLIPS for index in chunk})
        assert len(videos) == 4  # four distinct videos per batch ...
        assert sorted(chunk) == [v * CLIPS + j for v in videos for j in range(CLIPS)]  # ... whole
    saved = json.loads((tmp_path / "epoch-001.json").read_text())
    assert [len(group) for group in saved["groups"]] == [4, 4, 4]
    torch.manual_seed(0)
    with torch.no_grad():  # the model moves on; a resumed epoch keeps the batches it began with
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter))
    assert batches.order(model, epoch=1) == order
    again = RetrievalBatches(corpus, 4 * CLIPS, candidates=6, seed=0, folder=tmp_path / "other")
    assert again.order(model, epoch=1) != order  # recomputed from the moved model


def test_the_pretrain_stage_trains_on_retrieval_batches(fresh_artifacts: Path) -> None:
    overrides = ["pretrain.batching=retrieval", "pretrain.optim.epochs=2"]
    results = run_stages(load_config("tiny", overrides), ["pretrain"], fresh_artifacts)
    pretrain = results["pretrain"]["pretrain"]
    folder = Path(pretrain.path)
    saved = sorted(path.name for path in (folder / "checkpoints" / "retrieval").iterdir())
    assert saved == ["epoch-000.json", "epoch-001.json"]
    assert pretrain.info.training.steps == 2 * pretrain.info.training.steps_per_epoch
    plain = run_stages(
        load_config("tiny", ["pretrain.optim.epochs=2"]), ["pretrain"], fresh_artifacts
    )
    assert plain["pretrain"]["pretrain"].cache_key != pretrain.cache_key


def test_retrieval_batches_need_whole_videos_per_batch_and_enough_candidates() -> None:
    overrides = ["batching=retrieval", "clips_per_video=4", "optim.batch_size=6"]
    expected = "a multiple of clips_per_video with batching=retrieval, found 6 and 4"
    with pytest.raises(ConfigError, match=expected):
        load_config("tiny", [f"pretrain.{override}" for override in overrides])
    overrides = ["batching=retrieval", "clips_per_video=2", "optim.batch_size=8"]
    with pytest.raises(ConfigError, match=r"retrieval_candidates >= the videos per batch .* 3 < 4"):
        load_config("tiny", [f"pretrain.{o}" for o in [*overrides, "retrieval_candidates=3"]])
