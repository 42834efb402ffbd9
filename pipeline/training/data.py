"""Datasets and loaders that feed extracted features and text to VideoCLIP (batches: `batches`).

Token layout (reference/videoclip-facts.md §2.1, MMPT's Aligner): text `[CLS] t1..tn [SEP]` with
at most `max_text_tokens` word pieces (VideoCLIP: 61); video the first `min(len, max_video_len)`
seconds of a clip (VideoCLIP: 32), no random crop on downstream data.

- `PairClips`: one item per annotated (clip, caption) pair, for fine-tuning and evaluation
  (YouCookII segments are integer seconds and the clip is `feat[start:end]`, §2.7); with the
  pairs' `answer_index` column (MSR-VTT-QA, MC) as each item's `answer`, else IGNORE_INDEX.
- `HowToClips`: HowTo100M pretraining, `clips_per_video` overlapped (video span, text span) pairs
  sampled per video and epoch as MMPT's OverlappedAligner does (§2.3), with a random generator
  seeded by (seed, epoch, index) so an epoch can be replayed or resumed exactly.
- `make_loader`: a seeded, resumable DataLoader over either.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset
from transformers import PreTrainedTokenizerBase

from models.heads import IGNORE_INDEX
from pipeline.config import ModelConfig, PretrainConfig
from pipeline.training.batches import PAD_ID, Batch, ClipItem, collate  # noqa: F401 (re-exported)
from storage.features import FeatureStore
from storage.layout import Manifest
from storage.tables import read_table

log = logging.getLogger(__name__)


def _layout(word_ids: list[int], tokenizer: PreTrainedTokenizerBase, limit: int) -> list[int]:
    return [tokenizer.cls_token_id, *word_ids[:limit], tokenizer.sep_token_id]


def tokenize(tokenizer: PreTrainedTokenizerBase, text: str, max_text_tokens: int) -> list[int]:
    """`[CLS]` + the first `max_text_tokens` word pieces of `text` + `[SEP]`."""
    word_ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return _layout(word_ids, tokenizer, max_text_tokens)


class PairClips(Dataset):
    """One item per pair: the clip's seconds `[floor(start_s), ceil(end_s))` and its caption.

    The clip is clipped to the video and keeps at least one second (a segment starting at or
    after the video's end becomes its last second); the first `max_video_len` seconds are fed,
    `true_length` keeps the length before that cut. Pairs whose video has no features are dropped
    and counted in `dropped`; `pair_ids` and `video_ids` follow item order.
    """

    def __init__(
        self,
        pairs: pd.DataFrame,  # pair_id, video_id, start_s, end_s, text, [answer_index] (more
        # columns ignored)
        features: FeatureStore,
        tokenizer: PreTrainedTokenizerBase,
        max_video_len: int,
        max_text_tokens: int,
    ) -> None:
        self.features = features
        self.max_video_len = max_video_len
        known = pairs.video_id.map(lambda video_id: video_id in features).to_numpy(bool)
        self.dropped: dict[str, int] = {}
        if not known.all():
            missing_videos = pairs.video_id[~known].nunique()
            self.dropped = {"missing_features": int((~known).sum())}
            log.warning(
                "%d of %d pairs dropped: their %d videos have no features in the index",
                self.dropped["missing_features"],
                len(pairs),
                missing_videos,
            )
        kept = pairs[known]
        self.pair_ids: list[str] = kept.pair_id.astype(str).tolist()
        self.video_ids: list[str] = kept.video_id.astype(str).tolist()
        self.answers: list[int] = (
            kept["answer_index"].astype("int64").tolist()
            if "answer_index" in kept.columns
            else [IGNORE_INDEX] * len(kept)
        )
        self.adjusted: Counter[str] = Counter()  # clips widened to one second, by reason
        self._seconds = [
            self._clip(video_id, start_s, end_s)
            for video_id, start_s, end_s in zip(self.video_ids, kept.start_s, kept.end_s)
        ]
        if self.adjusted:
            log.warning("clips set to one second (reason: pairs): %s", dict(self.adjusted))
        texts = kept.text.astype(str).tolist()
        word_ids = tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []
        self._text_ids = [_layout(ids, tokenizer, max_text_tokens) for ids in word_ids]

    def _clip(self, video_id: str, start_s: float, end_s: float) -> tuple[int, int]:
        """Seconds [start, stop) of a segment in a video of n seconds, at least one."""
        n_seconds = self.features.n_seconds(video_id)
        start, stop = max(math.floor(start_s), 0), min(math.ceil(end_s), n_seconds)
        if start >= n_seconds:
            self.adjusted["starts_after_video_end"] += 1
            return n_seconds - 1, n_seconds
        if stop <= start:
            self.adjusted["shorter_than_one_second"] += 1
            return start, start + 1
        return start, stop

    def clip_seconds(self, index: int) -> tuple[int, int]:
        """Video seconds [start, stop) fed as frames 0..stop-start-1 of item `index`."""
        start, stop = self._seconds[index]
        return start, min(stop, start + self.max_video_len)

    def __len__(self) -> int:
        return len(self._seconds)

    def __getitem__(self, index: int) -> ClipItem:
        start, stop = self.clip_seconds(index)
        video = self.features.features(self.video_ids[index], start, stop)  # (k, 512) float16
        true_length = self._seconds[index][1] - self._seconds[index][0]
        return ClipItem(
            video.astype(np.float32),
            self._text_ids[index],
            true_length,
            index,
            self.answers[index],
        )


def split_pairs(
    ingest: Manifest,
    extract: Manifest,
    split: str,
    tokenizer: PreTrainedTokenizerBase,
    model: ModelConfig,
) -> PairClips:
    """The `split` pairs of an ingested dataset over its extracted features."""
    pairs = read_table(ingest.output("pairs"))
    return PairClips(
        pairs[pairs.split == split],
        FeatureStore(extract.output("index")),
        tokenizer,
        model.max_video_len,
        model.max_text_tokens,
    )


@dataclass(frozen=True)
class ClipSpans:
    """One sampled HowTo100M clip: captions [caption_first, caption_stop) of the video, sorted by
    start, and video seconds [video_start, video_stop)."""

    video_position: int  # index into HowToClips.video_ids
    caption_first: int
    caption_stop: int
    text_budget: int  # word pieces kept (<= the model's max_text_tokens)
    video_start: int
    video_stop: int  # before truncation to max_video_len


@dataclass(frozen=True)
class _Captions:
    """The captions of one video, sorted by start."""

    starts: np.ndarray  # (n,) float64 seconds
    ends: np.ndarray  # (n,) float64 seconds
    texts: list[str]


class HowToClips(Dataset):
    """HowTo100M pretraining: `clips_per_video` overlapped (video, text) spans per video.

    Item `index` belongs to video `index // clips_per_video`; its spans are drawn by a generator
    seeded with (seed, epoch, index), so any item of any epoch can be drawn again alone.
    """

    def __init__(
        self,
        pairs: pd.DataFrame,  # captions: pair_id "<video>:<i>", video_id, start_s, end_s, text
        features: FeatureStore,
        tokenizer: PreTrainedTokenizerBase,
        config: PretrainConfig,
        max_video_len: int,
        max_text_tokens: int,
        seed: int,
    ) -> None:
        self.features = features
        self.tokenizer = tokenizer
        self.config = config
        self.max_video_len = max_video_len
        self.max_text_tokens = max_text_tokens
        self.seed = seed
        self.epoch = 0
        known = pairs.video_id.map(lambda video_id: video_id in features).to_numpy(bool)
        self.dropped: dict[str, int] = {}
        if not known.all():
            self.dropped = {
                "missing_features_videos": int(pairs.video_id[~known].nunique()),
                "missing_features_pairs": int((~known).sum()),
            }
            log.warning("videos and captions dropped, no features: %s", self.dropped)
        kept = pairs[known]
        seconds = kept.video_id.map(features.n_seconds).to_numpy(float)  # each caption's video
        after = np.floor(kept.start_s.to_numpy(float)) >= seconds
        if after.any():  # a documented repair (README, "Real datasets")
            self.dropped["captions_after_video_end"] = int(after.sum())
            first = kept[after].iloc[0]
            log.warning(
                "%d captions start at or after their video's end (its last decoded second) and "
                "are dropped; e.g. pair %s at %.1f s of video %s (%d s)",
                *(int(after.sum()), first.pair_id, first.start_s, first.video_id),
                features.n_seconds(first.video_id),
            )
        ordered = kept[~after].sort_values(["video_id", "start_s"], kind="stable")
        self.video_ids: list[str] = []
        self._captions: list[_Captions] = []
        for video_id, group in ordered.groupby("video_id", sort=True):
            self.video_ids.append(str(video_id))
            starts, ends = group.start_s.to_numpy(float), group.end_s.to_numpy(float)
            self._captions.append(_Captions(starts, ends, group.text.astype(str).tolist()))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.video_ids) * self.config.clips_per_video

    def spans(self, index: int) -> ClipSpans:
        """Draw item `index`'s text and video spans (reference/videoclip-facts.md §2.3)."""
        generator = np.random.default_rng([self.seed, self.epoch, index])
        position = index // self.config.clips_per_video
        captions = self._captions[position]
        config = self.config
        budget = int(generator.integers(config.min_text_tokens, config.max_text_tokens + 1))
        budget = min(budget, self.max_text_tokens)
        counts = [len(ids) for ids in self._word_ids(captions.texts)]
        first, stop = self._grow_text(captions, counts, budget, generator)
        n_seconds = self.features.n_seconds(self.video_ids[position])
        low = min(max(math.floor(captions.starts[first]), 0), n_seconds - 1)
        high = min(max(math.ceil(captions.ends[stop - 1]), low + 1), n_seconds)
        centre = int(generator.integers(low, high))
        length = int(generator.integers(config.min_video_s, config.max_video_s + 1))
        video_start, video_stop = _grow_video(centre, length, n_seconds, generator)
        return ClipSpans(position, first, stop, budget, video_start, video_stop)

    def _word_ids(self, texts: list[str]) -> list[list[int]]:
        return self.tokenizer(texts, add_special_tokens=False)["input_ids"]

    def _grow_text(
        self, captions: _Captions, counts: list[int], budget: int, generator: np.random.Generator
    ) -> tuple[int, int]:
        """Captions [first, stop) grown at random from a random centre (MMPT's
        TextClipSamplingProcessor) until `budget` word pieces or `max_text_span_s` seconds."""
        total = len(counts)
        first = int(generator.integers(total))
        stop = first + 1
        tokens = counts[first]
        span_s = max(0.0, captions.ends[first] - captions.starts[first])
        max_span_s = self.config.max_text_span_s
        while (first > 0 or stop < total) and tokens < budget and span_s < max_span_s:
            if stop < total and (first == 0 or generator.random() < 0.5):
                tokens += counts[stop]
                stop += 1
            else:
                first -= 1
                tokens += counts[first]
            span_s = max(0.0, captions.ends[stop - 1] - captions.starts[first])
        return first, stop

    def __getitem__(self, index: int) -> ClipItem:
        spans = self.spans(index)
        captions = self._captions[spans.video_position]
        text = " ".join(captions.texts[spans.caption_first : spans.caption_stop])
        text_ids = tokenize(self.tokenizer, text, spans.text_budget)
        stop = min(spans.video_stop, spans.video_start + self.max_video_len)
        video_id = self.video_ids[spans.video_position]
        video = self.features.features(video_id, spans.video_start, stop)  # (k, 512) float16
        true_length = spans.video_stop - spans.video_start
        return ClipItem(video.astype(np.float32), text_ids, true_length, index)


def _grow_video(
    centre: int, length: int, n_seconds: int, generator: np.random.Generator
) -> tuple[int, int]:
    """Seconds [start, stop) grown one at a time at random around `centre` (MMPT's
    VideoClipSamplingProcessor) to `length` seconds or the whole video."""
    start = stop = centre
    while (start > 0 or stop < n_seconds) and stop - start < length:
        if start <= 0:
            stop += 1
        elif stop >= n_seconds:
            start -= 1
        elif generator.random() < 0.5:
            stop += 1
        else:
            start -= 1
    return start, stop


def _seed_of(seed: int, epoch: int) -> int:
    """A 63-bit torch seed mixed from (seed, epoch)."""
    high, low = np.random.SeedSequence([seed, epoch]).generate_state(2, np.uint32)
    return (int(high) & 0x7FFFFFFF) << 32 | int(low)


def item_order(size: int, shuffle: bool, seed: int, epoch: int) -> list[int]:
    """The epoch's item order: a permutation seeded by (seed, epoch), or 0..size-1."""
    if not shuffle:
        return list(range(size))
    generator = torch.Generator().manual_seed(_seed_of(seed, epoch))
    return torch.randperm(size, generator=generator).tolist()


def make_loader(
    dataset: Dataset,
    batch_size: int,
    shuffle: bool,
    seed: int,
    epoch: int,
    num_workers: int,
    skip_batches: int = 0,
    drop_last: bool = False,
    order: list[int] | None = None,
    rank: int = 0,
    world_size: int = 1,
) -> DataLoader:
    """A DataLoader over one epoch in a fixed order (`order`, else `item_order`'s); `skip_batches`
    leaves out the epoch's first batches without loading them (resuming mid-epoch gives the same
    later batches).

    Under DDP (`world_size` > 1) the global batches are the same as in one process and `rank`
    loads its contiguous share of each (`rank_share`), so N processes train on exactly the
    batches one process would. (torch's DistributedSampler splits the epoch's order instead,
    which changes which items share a batch.)

    The loader draws nothing from torch's global generator (its own generator is seeded), so
    creating it does not shift the training RNG that a checkpoint restores.
    """
    set_epoch = getattr(dataset, "set_epoch", None)
    if callable(set_epoch):
        set_epoch(epoch)
    order = item_order(len(dataset), shuffle, seed, epoch) if order is None else order
    order = order[skip_batches * batch_size :]
    batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    if drop_last and batches and len(batches[-1]) < batch_size:
        batches.pop()
    return DataLoader(
        dataset,
        batch_sampler=[rank_share(batch, rank, world_size) for batch in batches],
        num_workers=num_workers,
        collate_fn=collate,
        generator=torch.Generator().manual_seed(_seed_of(seed, epoch)),
    )


def rank_share(batch: list[int], rank: int, world_size: int) -> list[int]:
    """Rank `rank`'s contiguous part of a global batch; parts differ in size by at most one."""
    base, extra = divmod(len(batch), world_size)
    start = rank * base + min(rank, extra)
    return batch[start : start + base + (rank < extra)]
