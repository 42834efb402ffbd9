"""`fineco synth`: every synthetic set a config asks for, rendered into one folder.

The HowTo100M- and YouCookII-format sets always: segment-based (`howto_youcook.py`), or with
`synth.long_sparse` the long-sparse benchmark at the video level (`long_sparse_video.py`, which
adds the short set `youcook2_short/`); then the short-video sets
named in `synth.short_sets`, in `SHORT_SETS` order: `msrvtt/` (`msrvtt.py`, `short_videos`
videos), `msvd/` (`msvd.py`: MSVD files over the msrvtt videos) and `didemo/` (`didemo.py`,
`didemo_videos` videos of 30 s); each module's docstring gives its files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.config import SHORT_SETS, SynthConfig
from pipeline.synth.concepts import CONCEPTS
from pipeline.synth.didemo import synthesize_didemo
from pipeline.synth.howto_youcook import synthesize_howto_youcook
from pipeline.synth.long_sparse_video import SHORT_FOLDER, synthesize_long_sparse
from pipeline.synth.msrvtt import MsrvttSummary, synthesize_msrvtt
from pipeline.synth.msvd import synthesize_msvd
from pipeline.synth.render import DatasetSummary


@dataclass(frozen=True)
class SynthSummary:
    out_dir: Path
    howto100m: DatasetSummary
    youcook2: DatasetSummary
    broken: Path | None  # youcook2/broken.json, when broken videos were requested
    concepts: tuple[str, ...]
    total_video_seconds: int  # of every video file written or kept (msvd shares msrvtt's)
    # The sets of `config.short_sets`, in SHORT_SETS order: name -> its summary.
    short: dict[str, MsrvttSummary | DatasetSummary] = field(default_factory=dict)
    # With synth.long_sparse: the short set beside the long one, and the benchmark's facts.
    youcook2_short: DatasetSummary | None = None
    long_sparse: dict[str, Any] | None = None


def synthesize(config: SynthConfig, out_dir: Path) -> SynthSummary:
    """Render every synthetic set of `config` into `out_dir` and write their annotation files."""
    youcook_short, facts = None, None
    if config.long_sparse is None:
        howto, youcook, broken = synthesize_howto_youcook(config, out_dir)
    else:
        howto, youcook, youcook_short, broken, facts = synthesize_long_sparse(config, out_dir)
    short = synthesize_short_sets(config, out_dir)
    seconds = [
        s.video_seconds for name, s in short.items() if name != "msvd" or "msrvtt" not in short
    ]
    seconds += [s.video_seconds for s in (howto, youcook, youcook_short) if s is not None]
    return SynthSummary(
        out_dir=out_dir,
        howto100m=howto,
        youcook2=youcook,
        broken=broken,
        concepts=tuple(CONCEPTS),
        total_video_seconds=sum(seconds),
        short=short,
        youcook2_short=youcook_short,
        long_sparse=facts,
    )


def synthesize_short_sets(
    config: SynthConfig, out_dir: Path
) -> dict[str, MsrvttSummary | DatasetSummary]:
    """Render the sets of `config.short_sets` (in SHORT_SETS order) under `out_dir`."""
    short_sizes = (config.short_videos, config.short_test_videos)
    didemo_sizes = (config.didemo_videos, config.didemo_test_videos)
    summaries: dict[str, MsrvttSummary | DatasetSummary] = {}
    for name in SHORT_SETS:
        if name not in config.short_sets:
            continue
        if name == "msrvtt":
            summaries[name] = synthesize_msrvtt(config, out_dir, *short_sizes)
        elif name == "msvd":
            summaries[name] = synthesize_msvd(config, out_dir, *short_sizes)
        else:
            summaries[name] = synthesize_didemo(config, out_dir, *didemo_sizes)
    return summaries


def summary_lines(summary: SynthSummary) -> list[str]:
    """One line per dataset: root, videos (rendered/reused), pairs, video-seconds."""
    sets: dict[str, MsrvttSummary | DatasetSummary] = {
        "howto100m": summary.howto100m,
        "youcook2": summary.youcook2,
        **({SHORT_FOLDER: summary.youcook2_short} if summary.youcook2_short else {}),
        **summary.short,
    }
    lines = []
    for name, s in sets.items():
        if isinstance(s, DatasetSummary):
            pairs = f"{s.pairs} pairs"
        else:  # MsrvttSummary
            pairs = f"{s.train_pairs} train / {s.test_pairs} test pairs, QA {s.qa}"
        lines.append(
            f"{name:>14}  {s.root}: {s.videos} videos ({s.rendered} rendered, {s.reused} reused),"
            f" {pairs}, {s.video_seconds} video-s"
        )
    facts = summary.long_sparse
    if facts is not None:
        share = 100 * facts["long_relevant_share_mean"]
        lines.append(
            f"{'long-sparse':>14}  {facts['test_queries']} test clips of"
            f" {facts['long_mean_seconds']:.1f} s on average, {share:.1f}% relevant; short clips"
            f" {facts['short_mean_seconds']:.1f} s; chance R@1 {facts['chance_r1']:.1f}%"
        )
    lines.append(f"{'total':>14}  {summary.total_video_seconds} video-s")
    return lines
