"""Prefect tasks around the stage functions (DESIGN.md §3, §6).

One task runs one stage call. Its cache key is the stage's own DESIGN.md key, read from the
stage's typed inputs (`inputs.key`: computed once, then kept for the stage run that follows). Its
result — the stage's small manifest, never arrays — is persisted under the artifact root, so a
rerun against a fresh server database is all cache hits and the stage folders stay the single
source of truth. Transient errors (I/O, lost connections, a killed
subprocess) are retried with back-off; a retried training stage resumes from its last checkpoint
because its stage folder still holds them. Bad input (config, annotation, weights) is not
retried: it would fail the same way again.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from prefect import Task, task
from prefect.context import TaskRunContext
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.tasks import exponential_backoff

from flows.artifacts import ProgressArtifact
from flows.telemetry import gpu_telemetry
from pipeline.config import DecodeConfig
from pipeline.decode import DecodeTask, decode_shard
from pipeline.extract import ShardWork
from pipeline.progress import listening
from pipeline.stage import StageInputs, rebuilding
from storage.layout import Manifest
from storage.pool import ShardRecord

if TYPE_CHECKING:  # the runner loads every front-end stage; a task module needs only the name
    from pipeline.runner import StageFunction

RESULTS_FOLDER = "prefect-results"  # under the artifact root: shared by every worker
TRANSIENT = (OSError, subprocess.SubprocessError)  # OSError covers timeouts and connections


def _retry_transient(task: Task, task_run: Any, state: Any) -> bool:
    """Retry only errors that may pass: I/O and subprocess failures, not bad input."""
    try:
        state.result()
    except TRANSIENT:
        return True
    except Exception:  # every other error is final
        return False
    return False


def _key(context: TaskRunContext, parameters: dict[str, Any]) -> str:
    """The stage's own key. It is also set on the task run, which Prefect 3's engine leaves
    empty: the dashboard then shows it as the run's "Cache Key", for cached runs too."""
    inputs: StageInputs = parameters["inputs"]
    key = f"{inputs.stage}-{inputs.key}"
    context.task_run.cache_key = key  # sent with the run's next state event
    return key


@task(
    persist_result=True,
    cache_key_fn=_key,
    retries=2,
    retry_delay_seconds=exponential_backoff(backoff_factor=10),
    retry_condition_fn=_retry_transient,
    cache_result_in_memory=False,
)
def stage_task(
    label: str,
    function: StageFunction,
    inputs: StageInputs,
    rerun: bool,
    telemetry_s: float = 0.0,
) -> Manifest:
    """Run one stage call (cached by the stage's key; `rerun` builds it again). With
    `telemetry_s`, GPU utilisation and memory are logged at that interval while it runs."""
    telemetry = gpu_telemetry(telemetry_s) if telemetry_s > 0 else contextlib.nullcontext()
    rebuild = rebuilding() if rerun else contextlib.nullcontext()
    bars: dict[str, ProgressArtifact] = {}

    def show(what: str, done: int, total: int) -> None:  # one progress artifact per kind
        if what not in bars:
            bars[what] = ProgressArtifact(f"{inputs.stage}[{label}]: {what}")
        bars[what].update(done, total)

    with telemetry, rebuild, listening(show):
        manifest = function(inputs)
    for bar in bars.values():  # the stage is complete: every unit of its work is done
        bar.finish()
    return manifest


def bound_stage_task(artifacts: Path, stage: str, label: str, rerun: bool) -> Task:
    """`stage_task` named for the dashboard, storing results under the artifact root."""
    return stage_task.with_options(
        name=f"{stage}",
        task_run_name=f"{stage}[{label}]",
        result_storage=artifacts / RESULTS_FOLDER,
        refresh_cache=rerun,
    )


@task(retries=2, retry_delay_seconds=10, retry_condition_fn=_retry_transient)
def decode_shard_task(shard: DecodeTask, config: DecodeConfig) -> ShardRecord:
    """Decode one shard of videos (the decode stage fans out one of these per shard)."""
    return decode_shard(shard, config)


def decode_shards_as_tasks(shards: list[DecodeTask], config: DecodeConfig) -> list[ShardRecord]:
    """The decode stage's shard runner under Prefect: one task run per shard, as many at a time
    as `decode.workers` (0 = one per core; each runs single-threaded ffmpeg processes)."""
    workers = max(1, min(config.workers or os.cpu_count() or 1, len(shards)))
    with ThreadPoolTaskRunner(max_workers=workers) as runner:
        futures = [
            runner.submit(
                decode_shard_task.with_options(task_run_name=f"decode-shard[{shard.name}]"),
                parameters={"shard": shard, "config": config},
            )
            for shard in shards
        ]
        return [future.result() for future in futures]


@task(retries=2, retry_delay_seconds=10, retry_condition_fn=_retry_transient)
def extract_shard_task(work: ShardWork, group: pd.DataFrame) -> ShardRecord:
    """Embed one frame shard's videos (the extract stage fans out one of these per shard)."""
    return work(group)


def extract_shards_as_tasks(
    groups: list[tuple[str, pd.DataFrame]], work: ShardWork
) -> Iterator[ShardRecord]:
    """The extract stage's shard runner under Prefect: one task run per frame shard, in turn
    (they share one model on one device)."""
    for name, group in groups:
        yield extract_shard_task.with_options(task_run_name=f"extract-shard[{name}]")(work, group)
