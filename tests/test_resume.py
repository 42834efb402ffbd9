"""A decode killed mid-way (SIGKILL) resumes without redoing finished shards (DESIGN.md §3)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.config.loading import load_config
from pipeline.runner import run_stages
from pipeline.synth.sets import synthesize
from storage.layout import expand_path
from storage.tables import read_table

# One video per shard and paper-size clips, so each shard takes long enough to kill between.
OVERRIDES = ["decode.videos_per_shard=1", "decode.workers=1", "decode.frames_per_second=30"]
OVERRIDES += ["decode.size=224"]


def _synth(root: Path) -> None:
    config = load_config("tiny")
    synthesize(config.synth, expand_path(config.synth.out_dir, root))


def _kill_after_first_shard(root: Path) -> set[Path]:
    """Start `fineco run --stages decode`, SIGKILL it once a shard is complete; those shards."""
    command = [sys.executable, "-m", "flows.cli", "run", "--config", "tiny", "--stages", "decode"]
    env = {**os.environ, "FINECO_ARTIFACTS": str(root)}
    process = subprocess.Popen([*command, *OVERRIDES], env=env, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not (done := set(root.glob("decode/pool-*/frames-*.json"))):
        assert process.poll() is None, "decode finished before it could be killed"
        assert time.monotonic() < deadline, "no shard completed within 60 s"
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    return done


@pytest.mark.slow
def test_killed_decode_resumes_and_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    killed_root, clean_root = tmp_path / "killed", tmp_path / "clean"
    _synth(killed_root)
    _synth(clean_root)
    finished = _kill_after_first_shard(killed_root)
    assert not list(killed_root.glob("decode/*/manifest.json")), "no stage completed"
    stamps = {path: path.stat().st_mtime_ns for path in finished}

    config = load_config("tiny", OVERRIDES)
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
    "finetune.optim.epochs=120",
    "finetune.optim.checkpoint_every=5",
    "finetune.baseline=false",
]


def _kill_after_checkpoints(root: Path, count: int) -> None:
    """Run `fineco run --stages finetune`; SIGKILL it once `count` checkpoints exist."""
    command = [sys.executable, "-m", "flows.cli", "run", "--config", "tiny", "--stages"]
    env = {**os.environ, "FINECO_ARTIFACTS": str(root)}
    process = subprocess.Popen([*command, "finetune", *TRAIN], env=env, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while len(list(root.glob("finetune/*/checkpoints/checkpoint-*"))) < count:
        assert process.poll() is None, "training finished before it could be killed"
        assert time.monotonic() < deadline, "no checkpoint within 120 s"
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()


@pytest.mark.slow
def test_killed_training_resumes_and_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    killed_root, clean_root = tmp_path / "killed", tmp_path / "clean"
    _synth(killed_root)
    _synth(clean_root)
    config = load_config("tiny", TRAIN)
    run_stages(config, ["pretrain"], killed_root)  # upstream done; the kill hits finetune
    _kill_after_checkpoints(killed_root, 2)
    assert not list(killed_root.glob("finetune/*/manifest.json")), "finetune did not complete"

    resumed = run_stages(config, ["finetune"], killed_root)["fineco"]["finetune"]
    clean = run_stages(config, ["finetune"], clean_root)["fineco"]["finetune"]
    assert (
        resumed.info.training.resumed_from_step is not None
        and resumed.info.training.resumed_from_step > 0
    )
    assert resumed.info.training.steps == clean.info.training.steps
    weights = resumed.output_digests["weights"]
    assert weights == clean.output_digests["weights"]  # bit for bit
