"""The `fineco` Prefect flow: every stage of the pipeline as a cached, retryable task (DESIGN §6).

Parameters: `config` (preset name or YAML path), `stages` (default: all; upstream stages come from
cache or run first), `rerun` (stages built again even when complete), `overrides` (dotted
`key=value`). The stage order and wiring are `pipeline.runner`'s; this flow only decides how
each stage call runs: as a task named `<stage>[<dataset or variant>]` (decode and extract fan
out one task per shard), on the GPU work pool first when `execution.gpu_pool` is set, with the
dashboard's artifacts (progress, metric tables, the report) and stage logs forwarded to Prefect.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from prefect import State, flow, get_client, get_run_logger
from prefect.context import FlowRunContext
from prefect.deployments import run_deployment
from prefect.states import Failed

from flows.api import check_deployment_pool
from flows.artifacts import (
    ProgressArtifact,
    epoch_rows,
    metrics_rows,
    publish_markdown,
    publish_table,
)
from flows.extract_shards import pool_runner
from flows.parameters import check_pipeline
from flows.run_states import begin_attempt
from flows.server import GPU_POOL_ENV
from flows.stage_logs import forward_stage_logs
from flows.submit import pool_wait_note
from flows.tasks import bound_stage_task, decode_shards_as_tasks, extract_shards_as_tasks
from pipeline.config import Config, ConfigError
from pipeline.runner import Results, StageFunction, planned_calls, run_stages
from pipeline.stage import StageInputs, read_stage_manifest
from storage.layout import Manifest, artifact_root, stage_dir

SHARD_RUNNERS = {"decode": decode_shards_as_tasks, "extract": extract_shards_as_tasks}


@dataclass
class _Plan:
    """What the executor needs to know about this flow run."""

    config: str  # the flow's `config` parameter (preset or path), passed on to GPU runs
    overrides: list[str]
    synthetic: bool  # the flow's `synthetic` parameter, passed on to GPU runs
    settings: Config
    artifacts: Path
    rerun: set[str]
    progress: ProgressArtifact
    total: int
    dispatched: set[str] = field(default_factory=set)  # GPU stages already run on the pool
    done: list[str] = field(default_factory=list)


def _executor(plan: _Plan):
    """Each stage call becomes a task run; GPU stages first run on the GPU pool when set."""
    execution = plan.settings.execution

    def execute(label: str, function: StageFunction, inputs: StageInputs) -> Manifest:
        stage = inputs.stage
        # a stage the pool's run built (every call of it, rerun or not) is a cache hit here
        rerun = stage in plan.rerun and stage not in plan.dispatched
        gpu = stage in execution.gpu_stages
        pending = rerun or not _built(inputs)  # a cache hit needs no run on the pool
        # extract with an extract pool sends its shards there instead (flows/extract_shards.py)
        shards_on_pool = stage == "extract" and bool(execution.extract_pool)
        dispatch = gpu and execution.gpu_pool and stage not in plan.dispatched and pending
        if dispatch and not shards_on_pool:
            run_on_gpu_pool(plan, stage, rerun)
            plan.dispatched.add(stage)
            rerun = False  # the pool's run built it; here it is a cache hit
        if shards_on_pool:
            pool, key = execution.extract_pool, inputs.key
            runner = pool_runner(pool, plan.config, label, plan.overrides, plan.synthetic, key)
            function = functools.partial(function, shard_runner=runner)
        elif stage in SHARD_RUNNERS:  # fan out: one task run per shard
            function = functools.partial(function, shard_runner=SHARD_RUNNERS[stage])
        task = bound_stage_task(plan.artifacts, stage, label, rerun)
        telemetry = execution.telemetry_interval_s if gpu else 0.0
        manifest = task(label, function, inputs, rerun, telemetry)
        plan.done.append(f"{stage}[{label}]")
        plan.progress.update(len(plan.done), plan.total)
        return manifest

    return execute


def with_gpu_pool(settings: Config, overrides: list[str], own_pool: str | None) -> Config:
    """The GPU stages' work pool of this run: `execution.gpu_pool`, else the worker's
    FINECO_GPU_POOL when no override sets the key (a GPU pool run gets `execution.gpu_pool=`:
    it runs its stage). A run that is itself on that pool runs its GPU stages in place: sent on
    to the pool, they would wait for the slot this run holds."""
    explicit = any(item.partition("=")[0].strip() == "execution.gpu_pool" for item in overrides)
    pool = settings.execution.gpu_pool or ("" if explicit else os.environ.get(GPU_POOL_ENV, ""))
    if pool and pool == own_pool:
        pool = ""
    if pool == settings.execution.gpu_pool:
        return settings
    execution = dataclasses.replace(settings.execution, gpu_pool=pool)
    return dataclasses.replace(settings, execution=execution)


def _built(inputs: StageInputs) -> bool:
    """Whether this stage call already completed (its manifest is in its stage folder)."""
    folder = stage_dir(inputs.artifacts, inputs.stage, inputs.key)
    return read_stage_manifest(folder, inputs.info_type) is not None


def run_on_gpu_pool(plan: _Plan, stage: str, rerun: bool) -> None:
    """Run deployment `fineco/<stage>` (on `execution.gpu_pool`) and wait for it; the stage's
    results land in the shared artifact root, so this flow then finds them cached."""
    pool = plan.settings.execution.gpu_pool
    name = f"fineco/{stage}"
    check_deployment_pool(name, pool, "execution.gpu_pool")
    parameters = {
        "config": plan.config,
        "stages": [stage],
        "rerun": [stage] if rerun else [],
        "overrides": [*plan.overrides, "execution.gpu_pool="],  # the pool run stays local
        "synthetic": plan.synthetic,
    }
    logger = get_run_logger()
    with get_client(sync_client=True) as client:
        note = pool_wait_note(client, pool)
    if note:
        logger.warning("%s %s", name, note)
    logger.info("running %s on work pool %s", name, pool)
    flow_run = run_deployment(name, parameters=parameters, timeout=None)
    if not flow_run.state or not flow_run.state.is_completed():
        state = flow_run.state.name if flow_run.state else "unknown"
        raise RuntimeError(f"{name} on pool {pool} ended {state} (flow run {flow_run.id})")


def publish_results(results: Results) -> None:
    """Per-epoch validation and metric tables per variant and the report, as dashboard
    artifacts."""
    for group, stages in results.items():
        finetune = stages.get("finetune")
        if finetune is not None and "epochs" in finetune.outputs:
            lines = [
                json.loads(line) for line in finetune.output("epochs").read_text().splitlines()
            ]
            key = re.sub(r"[^a-z0-9-]", "-", f"validation-{group}".lower())
            publish_table(key, epoch_rows(lines), f"validation per epoch, {group}")
        if "evaluate" in stages:
            metrics = json.loads(stages["evaluate"].output("metrics").read_text())
            key = re.sub(r"[^a-z0-9-]", "-", f"metrics-{group}".lower())  # Prefect's key rule
            task = metrics.get("protocol", "retrieval")
            publish_table(key, metrics_rows(metrics), f"{task}, {group}")
    if "report" in results:
        report = results["report"]["report"].output("report")
        publish_markdown("report", report.read_text(), f"FineCo report ({report})")


@flow(name="fineco", validate_parameters=False)  # checked by its first step
def fineco(
    config: str = "demo",
    stages: list[str] | None = None,
    rerun: list[str] | None = None,
    overrides: list[str] | None = None,
    synthetic: bool = False,
) -> dict[str, dict[str, str]] | State:
    """Run the FineCo pipeline; returns the stage folders by group and stage.

    `synthetic`: run the preset on `fineco synth`'s set of each dataset's format with offline
    weights (as `fineco run --synthetic`). The first step checks the parameters: a bad one ends
    the run Failed within seconds, its message one line naming the value and the valid ones.
    """
    logger = get_run_logger()
    try:
        request = check_pipeline(config, stages, rerun, overrides, synthetic)
    except ConfigError as error:
        logger.error("invalid parameters: %s", error)
        return Failed(message=f"invalid parameters: {error}")
    begin_attempt(logger)
    context = FlowRunContext.get()
    own_pool = context.flow_run.work_pool_name if context and context.flow_run else None
    settings = with_gpu_pool(request.settings, list(overrides or []), own_pool)
    chosen, reruns = request.stages, request.rerun
    artifacts = artifact_root()
    logger.info("config %s, stages %s, rerun %s, artifacts %s", config, chosen, reruns, artifacts)
    total = planned_calls(settings, chosen)
    tracker = ProgressArtifact(f"fineco {settings.name}: {total} stage calls")
    plan = _Plan(
        config, list(overrides or []), synthetic, settings, artifacts, reruns, tracker, total
    )
    with forward_stage_logs():
        results = run_stages(settings, chosen, artifacts, _executor(plan))
    tracker.finish()
    publish_results(results)
    folders = {g: {s: m.path for s, m in stages.items()} for g, stages in results.items()}
    logger.info("results: %s", json.dumps(folders, indent=1))
    return folders
