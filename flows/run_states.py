"""Honest run states (issue 12; DESIGN.md §6), through the Prefect client.

- `crash_stale_task_runs`: when a flow run starts again after a killed attempt (`fineco resume`,
  `prefect flow-run retry`, an automation), that attempt's task runs were left `Running` (a
  SIGKILL reports nothing). The flow's first step marks them Crashed, so the dashboard shows
  them as such beside the new attempt's task runs.
- `resume`: schedule a deployment's failed or crashed flow run again with its own parameters.
  Finished stages are cache hits, and a killed training stage resumes from its last checkpoint.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from prefect import get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterId,
    FlowRunFilterName,
    TaskRunFilter,
    TaskRunFilterState,
    TaskRunFilterStateType,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.exceptions import ObjectNotFound
from prefect.states import Crashed, Scheduled

from flows.api import api_client, descendants
from pipeline.config import ConfigError

log = logging.getLogger(__name__)

UNFINISHED = [StateType.SCHEDULED, StateType.PENDING, StateType.RUNNING, StateType.PAUSED]


def crash_stale_task_runs(flow_run_id: UUID, attempt: int) -> list[str]:
    """Mark Crashed every unfinished task run of `flow_run_id` (called before this attempt starts
    any task, so each one belongs to an earlier, killed attempt); returns their names."""
    unfinished = TaskRunFilter(
        state=TaskRunFilterState(type=TaskRunFilterStateType(any_=UNFINISHED))
    )
    message = f"its flow run's attempt was killed; attempt {attempt} resumes the run"
    with get_client(sync_client=True) as client:
        stale = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
            task_run_filter=unfinished,
        )
        for task_run in stale:
            client.set_task_run_state(task_run.id, Crashed(message=message), force=True)
    return [task_run.name for task_run in stale]


def _unfinished(run: FlowRun) -> bool:
    return run.state is not None and not run.state.is_final()


@dataclass(frozen=True)
class Resumed:
    flow_run: FlowRun
    previous_state: str


def find_flow_run(client: Any, flow_run: str) -> FlowRun:
    """A flow run by id or by name (a ConfigError when there is none or the name is ambiguous)."""
    try:
        run_id = UUID(flow_run)
    except ValueError:  # not a UUID: a name such as "cheerful-otter"
        pass
    else:
        try:
            return client.read_flow_run(run_id)
        except ObjectNotFound:
            raise ConfigError(f"no flow run with id {flow_run} on {client.api_url}") from None
    found = client.read_flow_runs(
        flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[flow_run])), limit=2
    )
    if not found:
        raise ConfigError(f"no flow run named {flow_run!r} on {client.api_url}")
    if len(found) > 1:
        ids = ", ".join(str(run.id) for run in found)
        raise ConfigError(f"flow run name {flow_run!r} is ambiguous ({ids}); give its id")
    return found[0]


def _refuse_changes(run: FlowRun, config: str | None, overrides: Sequence[str]) -> None:
    """A resumed run keeps its parameters: refuse a different config or overrides, naming both."""
    ran_config = run.parameters.get("config")
    ran_overrides = list(run.parameters.get("overrides") or [])
    same_config = config is None or config == ran_config
    same_overrides = not overrides or list(overrides) == ran_overrides
    if same_config and same_overrides:
        return
    wanted = f"config {config or ran_config!r}, overrides {list(overrides) or ran_overrides}"
    raise ConfigError(
        f"flow run {run.name} ran with config {ran_config!r}, overrides {ran_overrides}; "
        "a resumed run keeps its parameters, so that it finishes what its first attempt began. "
        f"For {wanted}, submit a new run (`fineco submit <deployment> --config ...`): "
        "stages whose keys are unchanged are cache hits"
    )


def resume(
    flow_run: str, config: str | None = None, overrides: Sequence[str] = (), force: bool = False
) -> Resumed:
    """Schedule flow run `flow_run` (id or name) of a deployment again, with its parameters.

    Refused, with the reason: a run that has no deployment (it ran in a local process), a run that
    completed, other parameters than the run's, and, unless `force`, a run that is unfinished or
    started runs (on the GPU pool) that are: the server cannot tell a live run from one whose
    worker was killed, and a stale GPU-pool run would hold the pool's slot for ever. `force` marks
    them all Crashed first.
    """
    with api_client() as client:
        run = find_flow_run(client, flow_run)
        _refuse_changes(run, config, overrides)
        state = run.state.name if run.state else "unknown"
        if run.deployment_id is None:
            raise ConfigError(
                f"flow run {run.name} has no deployment (it ran in a local process): run the "
                "same command again; its finished stages are cache hits"
            )
        if run.state is not None and run.state.is_completed():
            raise ConfigError(f"flow run {run.name} is {state}: there is nothing to resume")
        # the run itself and the runs it started on the GPU pool (they hold the pool's slot)
        unfinished = [r for r in [run, *descendants(client, run.id)] if _unfinished(r)]
        if unfinished and not force:
            listed = ", ".join(f"{r.name} ({r.state.name})" for r in unfinished if r.state)
            raise ConfigError(
                f"flow run {run.name} or a run it started is not finished: {listed}. If their "
                "processes are gone (a killed worker), mark them Crashed and resume: "
                f"fineco resume {run.name} --force"
            )
        message = "marked Crashed by `fineco resume --force`: its process was gone"
        for stale in unfinished:
            client.set_flow_run_state(stale.id, Crashed(message=message), force=True)
        client.set_flow_run_state(
            run.id, Scheduled(message=f"resumed by fineco resume (was {state})"), force=True
        )
        return Resumed(client.read_flow_run(run.id), state)


def begin_attempt(logger: logging.Logger | logging.LoggerAdapter) -> None:
    """A flow's first step after its parameters are checked: mark the task runs that a killed
    earlier attempt of this flow run left unfinished as Crashed, and say so in the run's log."""
    from prefect.runtime import flow_run

    if not flow_run.id:
        return
    stale = crash_stale_task_runs(UUID(flow_run.id), flow_run.run_count)
    if flow_run.run_count > 1:  # runs an earlier attempt started on the GPU pool
        with get_client(sync_client=True) as client:
            started = [r for r in descendants(client, UUID(flow_run.id)) if _unfinished(r)]
        if started:
            logger.warning(
                "runs an earlier attempt started are unfinished (if their worker is gone, they "
                "hold their pool's slot; `fineco resume %s --force` marks them Crashed): %s",
                flow_run.name,
                ", ".join(f"{r.name} ({r.state.name})" for r in started if r.state),
            )
    if stale:
        logger.warning(
            "attempt %d: %d task run(s) of a killed attempt marked Crashed: %s",
            flow_run.run_count,
            len(stale),
            ", ".join(sorted(stale)),
        )
