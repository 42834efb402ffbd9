"""Crash drill (issue 12): SIGKILL a tiny pipeline run at random points in decode, extract and
fine-tuning, resume it, and check that what it ends with equals an uninterrupted run's.

    python tests/crash_drill.py --runs 20 [--seed 0] [--root DIR]

1. An uninterrupted reference run of `fineco run --config tiny` (all stages, with more
   fine-tuning steps and a checkpoint every step, so kills land between checkpoints too) counts
   the calls of three points: `decode_video` (per video), `embed_clips` (per batch of seconds)
   and `_Trainer.step` (per training step, fine-tuning only).
2. Each drill run targets decode, extract and fine-tuning in turn: a fresh artifact root, the
   same command, SIGKILLed (the whole process group, ffmpeg included) a random 0-0.05 s after a
   random call of that stage's point: mid-video, mid-batch, mid-checkpoint, mid-write.
3. The same command again resumes it; its results are compared with the reference: decode
   statuses and shard digests, the feature index and feature shard digests, pretrained and
   fine-tuned weights, and evaluate's metrics.

Prints one line per run and `N/N runs resumed to the reference's results`; exits 1 otherwise.
The drill function is also run by tests/test_crash_drill.py with one run.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kill_after import wrap_returns

STAGES = ("decode", "extract", "finetune")
POINTS = {  # stage -> the function whose calls are the kill points (as seen by its caller)
    "decode": "pipeline.decode:decode_video",
    "extract": "pipeline.extract:embed_clips",
    "finetune": "pipeline.training.loop:_Trainer.step",
}
OVERRIDES = [  # decode in this process (the wrapped calls), more fine-tuning steps, a
    # checkpoint each, one variant
    "decode.workers=1",
    "finetune.optim.epochs=3",
    "finetune.optim.checkpoint_every=1",
    "finetune.baseline=false",
]
COMMAND = ["run", "--config", "tiny", *OVERRIDES]
MAX_DELAY_S = 0.05  # tiny units take ~0.02-0.5 s: a longer delay often lands in the next stage


def child(mode: str, argv: list[str]) -> int:
    """In the drilled process: `count FILE` writes the calls of each point to FILE at exit (the
    training steps of pretraining and fine-tuning together: `drill` subtracts pretraining's);
    `kill STAGE N DELAY` SIGKILLs this process group DELAY s after the N-th call of STAGE's
    point."""
    counts = dict.fromkeys(STAGES, 0)
    if mode == "count":
        out, rest = Path(argv[0]), argv[1:]
        for stage, target in POINTS.items():
            wrap_returns(target, lambda n, stage=stage: counts.__setitem__(stage, n))
    else:
        stage, count, delay, rest = argv[0], int(argv[1]), float(argv[2]), argv[3:]

        def kill() -> None:
            os.killpg(0, signal.SIGKILL)

        def after(n: int) -> None:
            if n == count:
                threading.Timer(delay, kill).start()

        wrap_returns(POINTS[stage], after)
    from flows.cli import main

    code = main(rest)
    if mode == "count":
        out.write_text(json.dumps(counts))
    return code


@dataclass(frozen=True)
class Drill:
    stage: str
    call: int
    delay_s: float
    killed_in: str  # the stage running when the kill landed ("" = the run was not killed)
    equal: bool
    differences: list[str]


def _run(root: Path, prefix: list[str], timeout_s: float = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "FINECO_ARTIFACTS": str(root)}
    return subprocess.run(
        [sys.executable, __file__, *prefix, *COMMAND],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        start_new_session=True,  # its own process group: the kill takes ffmpeg with it
    )


def results(root: Path) -> dict[str, Any]:
    """What a run ends with, comparable across artifact roots (paths left out)."""
    import pandas as pd

    found: dict[str, Any] = {}
    for manifest_path in sorted(root.glob("*/*/manifest.json")):
        stage = manifest_path.parent.parent.name
        manifest = json.loads(manifest_path.read_text())
        group = manifest["info"].get("dataset") or manifest["info"].get("variant") or ""
        folder = manifest_path.parent
        if stage == "decode":
            table = pd.read_parquet(folder / "decode.parquet").sort_values("video_id")
            columns = ["video_id", "status", "n_seconds", "shard_digest"]
            found[f"decode[{group}]"] = table[columns].astype(str).values.tolist()
        elif stage == "extract":
            found[f"extract[{group}] index"] = manifest["output_digests"]["index"]
        elif stage in ("pretrain", "finetune"):
            found[f"{stage}[{group}] weights"] = manifest["output_digests"]["weights"]
        elif stage == "evaluate":
            found[f"evaluate[{group}] metrics"] = json.loads((folder / "metrics.json").read_text())
    for pool in ("decode", "extract"):
        records = sorted(root.glob(f"{pool}/pool-*/*.json"))
        found[f"{pool} shards"] = sorted(json.loads(path.read_text())["digest"] for path in records)
    return found


ORDER = ("ingest", "decode", "extract", "pretrain", "finetune", "evaluate", "report")


def _killed_in(root: Path) -> str:
    """The stage that was running when the kill landed: its folder exists without a manifest
    (a stage creates its folder first and writes its manifest last); "between stages" if none."""
    running = {
        folder.parent.name
        for stage in ORDER
        for folder in root.glob(f"{stage}/*/")
        if not folder.name.startswith("pool-") and not (folder / "manifest.json").is_file()
    }
    return ", ".join(sorted(running)) or "between stages"


def _fresh_root(base: Path, name: str, synth: Path) -> Path:
    root = base / name
    shutil.copytree(synth, root / "synth")
    return root


def _synthesize(base: Path) -> Path:
    """`fineco synth --config tiny` into `base`; the folder holding the sets."""
    root = base / "synth-source"
    made = subprocess.run(
        [sys.executable, "-m", "flows.cli", "synth", "--config", "tiny"],
        env={**os.environ, "FINECO_ARTIFACTS": str(root)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    if made.returncode != 0:
        raise RuntimeError(f"fineco synth failed: {made.stderr[-2000:]}")
    return root / "synth"


def drill(
    runs: int, seed: int, base: Path, out=print, synth: Path | None = None, first_stage: int = 0
) -> list[Drill]:
    """Reference run, then `runs` killed-and-resumed runs (stages in turn from
    STAGES[first_stage]); one Drill per run. `synth`: tiny's rendered sets (default: rendered)."""
    rng = random.Random(seed)
    synth = synth or _synthesize(base)
    reference_root = _fresh_root(base, "reference", synth)
    counts_file = base / "counts.json"
    done = _run(reference_root, ["child", "count", str(counts_file)])
    if done.returncode != 0:
        raise RuntimeError(f"the reference run failed: {done.stderr[-3000:]}")
    counts = json.loads(counts_file.read_text())
    reference = results(reference_root)
    out(f"reference: calls {counts}; {len(reference)} results")
    drills = []
    for index in range(runs):
        stage = STAGES[(first_stage + index) % len(STAGES)]
        first = 1
        if stage == "finetune":  # the steps after pretraining's (counted as the reference ran)
            first = counts["finetune"] - _finetune_steps(reference_root) + 1
        call = rng.randint(first, counts[stage])
        delay = round(rng.uniform(0.0, MAX_DELAY_S), 3)
        root = _fresh_root(base, f"run-{index:02d}", synth)
        killed = _run(root, ["child", "kill", stage, str(call), str(delay)])
        killed_at = _killed_in(root) if killed.returncode == -signal.SIGKILL else ""
        resumed = _run(root, ["child", "count", str(root / "counts.json")])
        if resumed.returncode != 0:
            differences = [f"resume failed: {resumed.stderr.strip().splitlines()[-1:]}"]
        else:
            ours = results(root)
            differences = [
                k for k in sorted(set(reference) | set(ours)) if reference.get(k) != ours.get(k)
            ]
        result = Drill(stage, call, delay, killed_at, not differences, differences)
        drills.append(result)
        verdict = "equal" if result.equal else f"DIFFERENT: {differences}"
        killed_text = f"killed in {killed_at}" if killed_at else f"not killed ({killed.returncode})"
        out(f"run {index + 1}/{runs}: {stage} call {call} +{delay:.3f} s, {killed_text}; {verdict}")
        shutil.rmtree(root, ignore_errors=True)
    return drills


def _finetune_steps(root: Path) -> int:
    manifest = json.loads(next(root.glob("finetune/*/manifest.json")).read_text())
    return int(manifest["info"]["training"]["steps"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--root", type=Path, help="work folder (default: a temporary one)")
    args = parser.parse_args()
    base = args.root or Path(tempfile.mkdtemp(prefix="crash-drill-"))
    drills = drill(args.runs, args.seed, base)
    killed = [d for d in drills if d.killed_in]
    passed = [d for d in drills if d.equal]
    print(f"{len(passed)}/{len(drills)} runs resumed to the reference's results")
    by_stage = Counter(d.killed_in for d in killed)
    print(f"killed: {len(killed)}/{len(drills)}; by stage {dict(sorted(by_stage.items()))}")
    return 0 if len(passed) == len(drills) else 1


if __name__ == "__main__":
    if sys.argv[1:2] == ["child"]:
        sys.exit(child(sys.argv[2], sys.argv[3:]))
    sys.exit(main())
