"""The long-sparse benchmark at the `video` level: the same plan, rendered as videos.

With `synth.long_sparse` set, `fineco synth` writes the benchmark's sets (`long_sparse.py`: the
same clips, captions, runs and ground truth as the `features` level for the same parameters) as
video files that go through decode → S3D-G extract like any real video:
- `youcook2/` — the **long** set in YouCookII's format (`videos/<id>.mp4`, one annotation over
  the whole clip, `ground_truth.json` with the relevant seconds), where `fineco run` and
  `--synthetic` look for the YouCookII set; with `synth.broken_videos`, one truncated and one
  corrupt training video (`broken.json`), as the segment-based set has;
- `youcook2_short/` — the **short** set: the same captions, each video only its clip's relevant
  runs in order. Each run is rendered from the same source and seed as in the long video, so a
  short second shows what the long clip's relevant second shows (up to compression);
- `howto100m/` — the pretraining corpus in HowTo100M's format (`caption.json`, one ASR-like
  caption per 3-8 s concept run);
- `long_sparse.json` — the parameters and counts (`long_sparse.benchmark_facts`).

A concept renders as its pattern's lavfi source through its tint's and motion's filters
(`concepts.py`), so every one of the 882 combinations is drawable; a few look alike on screen
(a natural or grey tint on a grey pattern), which the features level, with one random vector per
attribute value, does not have.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from pipeline.config import BenchmarkConfig, SynthConfig
from pipeline.datasets.synthetic import SYNTHETIC_SETS
from pipeline.synth.long_sparse import (
    HOWTO_FILE,
    YOUCOOK_FILE,
    Clip,
    Run,
    all_concepts,
    benchmark_facts,
    clip_truth,
    howto_documents,
    plan_clips,
    plan_pretrain,
    plan_runs,
    youcook_document,
)
from pipeline.synth.render import (
    DatasetSummary,
    Segment,
    VideoPlan,
    describe,
    render_all,
    video_id,
    write_dataset,
)
from storage.atomic import atomic_write_json, remove_stale_temporaries

HOWTO, YOUCOOK = SYNTHETIC_SETS["howto100m"], SYNTHETIC_SETS["youcook2"]
SHORT_FOLDER = "youcook2_short"  # the short set, beside the long one
FACTS_FILE = "long_sparse.json"
BROKEN_KINDS = ("truncated", "corrupt")


def segments(runs: tuple[Run, ...], seed: int, vid: str) -> tuple[Segment, ...]:
    """One rendered segment per run; the seeds of randomised sources are drawn per video, so a
    video renders the same whatever else the set holds."""
    rng = random.Random(f"{seed}:sources:{vid}")
    return tuple(Segment(r.start, r.stop, r.concept.name, rng.randrange(1000)) for r in runs)


def short_plan(clip: Clip, long: VideoPlan) -> VideoPlan:
    """The clip's relevant segments, back to back from second 0, same sources and seeds."""
    kept, now = [], 0
    for segment in long.segments:
        if segment.concept == clip.concept.name:
            length = segment.end - segment.start
            kept.append(Segment(now, now + length, segment.concept, segment.variant))
            now += length
    return VideoPlan(long.video_id, tuple(kept))


def broken_clips(config: BenchmarkConfig, taken: set[str]) -> list[Clip]:
    """Two more training clips whose files will be damaged (one per BROKEN_KINDS)."""
    rng = random.Random(f"{config.seed}:broken")
    concepts = all_concepts()
    clips = []
    for _ in BROKEN_KINDS:
        concept = rng.choice(concepts)
        runs = plan_runs(rng, config, concept, [c for c in concepts if c != concept])
        vid = video_id(rng, taken)
        clips.append(Clip(vid, "train", concept, describe(rng, concept), tuple(runs)))
    return clips


def synthesize_long_sparse(
    config: SynthConfig, out_dir: Path
) -> tuple[DatasetSummary, DatasetSummary, DatasetSummary, Path | None, dict[str, Any]]:
    """Render the pretrain, long and short sets of `config.long_sparse` under `out_dir`.

    Returns the HowTo100M, long (YouCookII) and short summaries, `broken.json`'s path (or None)
    and the benchmark's facts, also written to `out_dir/long_sparse.json`.
    """
    bench = config.long_sparse
    if bench is None:
        raise ValueError("synth.long_sparse is not set")
    clips = plan_clips(bench)
    pretrain = plan_pretrain(bench)
    taken = {clip.video_id for clip in clips} | {video.video_id for video in pretrain}
    broken = broken_clips(bench, taken) if config.broken_videos else []
    long_plans = [VideoPlan(c.video_id, segments(c.runs, bench.seed, c.video_id)) for c in clips]
    long_plans += [
        VideoPlan(c.video_id, segments(c.runs, bench.seed, c.video_id), broken=kind)
        for c, kind in zip(broken, BROKEN_KINDS[: len(broken)], strict=True)
    ]
    short_plans = [
        short_plan(clip, plan) for clip, plan in zip(clips, long_plans[: len(clips)], strict=True)
    ]
    howto_plans = [
        VideoPlan(v.video_id, segments(v.runs, bench.seed, v.video_id)) for v in pretrain
    ]

    roots = {
        "howto": out_dir / HOWTO.folder,
        "long": out_dir / YOUCOOK.folder,
        "short": out_dir / SHORT_FOLDER,
    }
    plans = {"howto": howto_plans, "long": long_plans, "short": short_plans}
    jobs = []
    for name, root in roots.items():
        folder = root / YOUCOOK.videos
        folder.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(folder)
        jobs += [(plan, folder / f"{plan.video_id}.mp4") for plan in plans[name]]
    written = render_all(jobs, config)  # one pool for the three sets
    done, offset = {}, 0
    for name in roots:
        done[name] = written[offset : offset + len(plans[name])]
        offset += len(plans[name])

    captions, howto_truth = howto_documents(pretrain)
    howto = write_dataset(
        roots["howto"] / HOWTO_FILE, captions, howto_truth, tuple(howto_plans), done["howto"]
    )
    everything = [*clips, *broken]
    long_truth, _ = clip_truth(everything)
    _, short_truth = clip_truth(clips)
    lengths = {clip.video_id: clip.length for clip in everything}
    long = write_dataset(
        roots["long"] / YOUCOOK_FILE, youcook_document(everything, lengths), long_truth,
        tuple(long_plans), done["long"],
    )  # fmt: skip
    short_lengths = {plan.video_id: plan.duration for plan in short_plans}
    short = write_dataset(
        roots["short"] / YOUCOOK_FILE, youcook_document(clips, short_lengths), short_truth,
        tuple(short_plans), done["short"],
    )  # fmt: skip
    broken_path = None
    if broken:
        broken_path = roots["long"] / "broken.json"
        atomic_write_json(
            broken_path, {kind: [c.video_id] for c, kind in zip(broken, BROKEN_KINDS, strict=True)}
        )
    facts = {"level": "video", **benchmark_facts(bench, clips, short_lengths, len(pretrain))}
    atomic_write_json(out_dir / FACTS_FILE, facts)
    return howto, long, short, broken_path, facts
