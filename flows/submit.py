"""`fineco submit`: check a deployment run's parameters here, then create it; `--watch` follows
it (issue 12; DESIGN.md §6).

The check is the flow's own first step (`flows.parameters`), run before submitting, so a misspelt
preset or key fails in seconds instead of after the run has waited for a worker. `watch` prints
the run's logs, and those of the runs it starts on the GPU pool, each line labelled with its task
run (`[finetune[fineco]]`) or flow run, and returns when the run is final.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
    LogFilter,
    LogFilterFlowRunId,
    LogFilterTimestamp,
    TaskRunFilter,
    TaskRunFilterId,
    WorkPoolFilter,
    WorkPoolFilterName,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.client.schemas.sorting import LogSort
from prefect.exceptions import ObjectNotFound
from prefect.states import Scheduled

from flows.api import api_client, descendants
from flows.parameters import check_deployment_parameters
from pipeline.config import ConfigError

FLOW = "fineco"
POLL_S = 1.0  # seconds between reads of the run, its task runs and new logs
LOG_PAGE = 200
# Runs send their logs in batches (PREFECT_LOGGING_TO_API_BATCH_INTERVAL, 2 s) and at exit, so a
# log can arrive after newer ones and after its run is final: each read looks this far back,
# and `watch` goes on reading until the run has been final this long with nothing new (one
# batch interval and a second).
LATE_S = 3.0
BUSY = [StateType.PENDING, StateType.RUNNING]  # a run holding a slot of its pool's limit


def _local(config: object) -> bool:
    """Whether a `config` parameter can be read on this machine (a preset name, or a file here).
    A path that only exists where the workers run (/artifacts/... in compose) is left to the
    flow's first step."""
    if not isinstance(config, str) or not (config.endswith((".yaml", ".yml")) or "/" in config):
        return True
    return Path(config).is_file()


def pool_wait_note(client: Any, pool: str | None) -> str | None:
    """Why a run on work pool `pool` would not start now: its concurrency limit is taken (by
    which runs), or None when it may start."""
    if not pool:
        return None
    try:
        limit = client.read_work_pool(pool).concurrency_limit
    except ObjectNotFound:
        return f"work pool {pool!r} does not exist: no worker can take the run"
    if limit is None:
        return None
    busy = client.read_flow_runs(
        work_pool_filter=WorkPoolFilter(name=WorkPoolFilterName(any_=[pool])),
        flow_run_filter=FlowRunFilter(
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=BUSY))
        ),
    )
    if len(busy) < limit:
        return None
    names = ", ".join(run.name for run in busy)
    return f"waits for work pool {pool!r}: its concurrency limit {limit} is taken by {names}"


def submit(deployment: str, parameters: dict[str, Any], out: Callable[[str], None]) -> FlowRun:
    """Check `parameters` over the deployment's defaults, then create a run of
    `fineco/<deployment>`; a ConfigError (nothing submitted) names the bad value."""
    name = f"{FLOW}/{deployment}"
    with api_client() as client:
        try:
            found = client.read_deployment_by_name(name)
        except ObjectNotFound:
            known = sorted(f"{FLOW}/{d.name}" for d in client.read_deployments())
            raise ConfigError(
                f"no deployment {name} on {client.api_url}; deployments: {', '.join(known)}"
            ) from None
        merged = {**(found.parameters or {}), **parameters}
        here = _local(merged.get("config"))
        check_deployment_parameters(deployment, merged, read_config=here)
        if not here:
            out(f"config {merged['config']} is not on this machine: the run's first step reads it")
        note = pool_wait_note(client, found.work_pool_name)
        state = Scheduled(message=note) if note else None  # the dashboard shows the reason
        run = client.create_flow_run_from_deployment(found.id, parameters=parameters, state=state)
    out(f"submitted {name}: flow run {run.name} ({run.id}), parameters {merged}")
    if note:
        out(f"{name} {note}")
    return run


def _line(log: Any, labels: dict[UUID, str]) -> str:
    label = labels.get(log.task_run_id) or labels.get(log.flow_run_id) or "?"
    stamp = log.timestamp.astimezone().strftime("%H:%M:%S")
    return f"{stamp} {_LEVELS.get(log.level, str(log.level)):<7} [{label}] {log.message}"


_LEVELS = {10: "DEBUG", 20: "INFO", 30: "WARNING", 40: "ERROR", 50: "CRITICAL"}


def watch(flow_run_id: UUID, out: Callable[[str], None], poll_s: float = POLL_S) -> FlowRun:
    """Print the logs of a flow run and of the runs it started, labelled, until it is final;
    returns its final record."""
    seen: set[UUID] = set()
    since: datetime | None = None
    labels: dict[UUID, str] = {}  # task and flow run id -> name
    final_at: float | None = None  # when the run was first seen final
    quiet_since = time.monotonic()  # when the last new log line came
    with api_client() as client:
        while True:
            run = client.read_flow_run(flow_run_id)
            if final_at is None and run.state is not None and run.state.is_final():
                final_at = time.monotonic()
            runs = [run, *descendants(client, flow_run_id)]
            labels |= {r.id: r.name for r in runs}
            ids = [r.id for r in runs]
            start = None if since is None else since - timedelta(seconds=LATE_S)
            new = [log for log in _logs_since(client, ids, start) if log.id not in seen]
            _name_task_runs(client, {log.task_run_id for log in new} - set(labels), labels)
            for log in new:
                seen.add(log.id)
                since = max(since, log.timestamp) if since else log.timestamp
                out(_line(log, labels))
            now = time.monotonic()
            quiet_since = now if new else quiet_since
            if final_at is not None and now - max(final_at, quiet_since) >= LATE_S:
                return run
            time.sleep(poll_s)


def _name_task_runs(client: Any, ids: set[UUID | None], labels: dict[UUID, str]) -> None:
    """Add the names of the task runs `ids` (None: a flow-level log) to `labels`."""
    wanted = [task_run_id for task_run_id in ids if task_run_id is not None]
    if wanted:
        found = client.read_task_runs(
            task_run_filter=TaskRunFilter(id=TaskRunFilterId(any_=wanted))
        )
        labels |= {task_run.id: task_run.name for task_run in found}


def _logs_since(client: Any, ids: list[UUID], since: datetime | None) -> list[Any]:
    """Every log of the runs `ids` at or after `since`, oldest first, all pages."""
    timestamp = LogFilterTimestamp(after_=since) if since is not None else None
    log_filter = LogFilter(flow_run_id=LogFilterFlowRunId(any_=ids), timestamp=timestamp)
    logs: list[Any] = []
    while True:
        page = client.read_logs(
            log_filter=log_filter, limit=LOG_PAGE, offset=len(logs), sort=LogSort.TIMESTAMP_ASC
        )
        logs += page
        if len(page) < LOG_PAGE:
            return logs
