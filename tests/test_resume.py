"""A stage killed with SIGKILL resumes without redoing finished work and matches an uninterrupted
run (DESIGN.md §3). The kill lands at a known point (tests/kill_after.py): after the first
complete frame shard, after the second training checkpoint."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from pipeline.config.loading import load_config
from pipeline.runner import run_stages
from storage.tables import read_table

KILL_AFTER = Path(__file__).with_name("kill_after.py")


def run_killed(root: Path, target: str, count: int, arguments: list[str]) -> None:
    """`fineco run --config tiny ARGUMENTS` under FINECO_ARTIFACTS=root, killed by SIGKILL right
    after `target` returned `count` times."""
    command = [sys.executable, str(KILL_AFTER), target, str(count), "run", "--config", "tiny"]
    env = {**os.environ, "FINECO_ARTIFACTS": str(root)}
    process = subprocess.run(
        [*command, *arguments], env=env, capture_output=True, text=True, timeout=300
    )
    assert process.returncode == -signal.SIGKILL, process.stderr[-2000:]


# One video per shard, decoded in this process, so the kill falls between two shards.
DECODE = ["decode.videos_per_shard=1", "decode.workers=1"]


def test_killed_decode_resumes_and_matches_an_uninterrupted_run(
    fresh_root: Callable[[str], Path],
) -> None:
    killed_root, clean_root = fresh_root("killed"), fresh_root("clean")
    run_killed(killed_root, "storage.pool:ShardPool.commit", 1, ["--stages", "decode", *DECODE])
    assert not list(killed_root.glob("decode/*/manifest.json")), "no stage completed"
    finished = set(killed_root.glob("decode/pool-*/frames-*.json"))
    assert len(finished) == 1
    stamps = {path: path.stat().st_mtime_ns for path in finished}

    config = load_config("tiny", DECODE)
    resumed = run_stages(config, ["decode"], killed_root)
    clean = run_stages(config, ["decode"], clean_root)

    assert {path: path.stat().st_mtime_ns for path in finished} == stamps, "shards redone"
    assert not list(killed_root.glob("decode/pool-*/.*tmp*")), "killed writer's file removed"
    for dataset in ("howto100m", "youcook2"):
        ours = read_table(resumed[dataset]["decode"].output("decode")).set_index("video_id")
        theirs = read_table(clean[dataset]["decode"].output("decode")).set_index("video_id")
        columns = ["status", "n_seconds", "shard_digest"]
        assert ours.sort_index()[columns].equals(theirs.sort_index()[columns])


TRAIN = [
    "finetune.optim.epochs=3",
    "finetune.optim.checkpoint_every=1",
    "finetune.baseline=false",
]


def test_killed_training_resumes_and_matches_an_uninterrupted_run(
    fresh_root: Callable[[str], Path],
) -> None:
    """Both roots decode and embed alike (S3D-G's low bits depend on how seconds are batched,
    so the clean run must not reuse another run's shards)."""
    killed_root, clean_root = fresh_root("killed"), fresh_root("clean")
    config = load_config("tiny", TRAIN)
    run_stages(config, ["pretrain"], killed_root)  # upstream done; the kill hits finetune
    target = "pipeline.training.loop:save_checkpoint"
    run_killed(killed_root, target, 2, ["--stages", "finetune", *TRAIN])
    assert not list(killed_root.glob("finetune/*/manifest.json")), "finetune did not complete"
    assert len(list(killed_root.glob("finetune/*/checkpoints/checkpoint-*"))) == 2

    resumed = run_stages(config, ["finetune"], killed_root)["fineco"]["finetune"]
    clean = run_stages(config, ["finetune"], clean_root)["fineco"]["finetune"]
    assert resumed.info.training.resumed_from_step == 2
    assert resumed.info.training.steps == clean.info.training.steps > 2
    weights = resumed.output_digests["weights"]
    assert weights == clean.output_digests["weights"]  # bit for bit
