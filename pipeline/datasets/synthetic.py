"""Where `fineco synth` puts each adapter's synthetic set, declared once for writer and readers.

pipeline/synth/ writes the sets here (under `synth.out_dir`); `fineco run --synthetic` points a
preset's datasets at them; evaluate and report read each set's ground truth, the seconds that
truly show each pair's caption, from `GROUND_TRUTH_FILE` at the set's root (real sets have none,
and then selector precision is reported as unavailable).
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.datasets import howto100m, msvd, youcook2

GROUND_TRUTH_FILE = "ground_truth.json"


@dataclass(frozen=True)
class SyntheticSet:
    folder: str  # under `synth.out_dir`
    annotations: str  # the adapter's annotation file, relative to the folder ("" = the folder)
    videos: str  # the video folder, relative to the set's folder


MSRVTT = SyntheticSet("msrvtt", "", "videos")
SYNTHETIC_SETS: dict[str, SyntheticSet] = {  # adapter → its synthetic set
    "howto100m": SyntheticSet("howto100m", howto100m.CAPTION_FILES[0], "videos"),
    "youcook2": SyntheticSet("youcook2", youcook2.ANNOTATION_FILE, "videos"),
    "msrvtt": MSRVTT,
    # MSVD's files over the MSR-VTT set's videos
    "msvd": SyntheticSet("msvd", msvd.ANNOTATION_FILE, f"../{MSRVTT.folder}/{MSRVTT.videos}"),
    "didemo": SyntheticSet("didemo", "", "videos"),
}
