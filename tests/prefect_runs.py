"""What the session's Prefect test server recorded about a finished flow run.

Prefect 3 records task runs and their states from events, which the server ingests after the
flow has returned: read too early and the last tasks are missing or still `Running`. These
helpers poll (bounded) until the record is complete."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId


def _of_run(flow_run_id: object) -> FlowRunFilter:
    return FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))


def task_states(flow_run_id: object, expect: int = 0, wait_s: float = 30.0) -> dict[str, str]:
    """Stage task states (`name[label]` → state name) of a finished flow run, once at least
    `expect` of them are recorded and every one is final, or after `wait_s` seconds."""

    async def read() -> dict[str, str]:
        deadline = time.monotonic() + wait_s
        async with get_client() as client:
            while True:
                runs = await client.read_task_runs(flow_run_filter=_of_run(flow_run_id))
                runs = [run for run in runs if "[" in run.name]
                complete = len(runs) >= expect and all(run.state.is_final() for run in runs)
                if complete or time.monotonic() > deadline:
                    return {run.name: run.state.name for run in runs}
                await asyncio.sleep(0.2)

    return asyncio.run(read())


def artifacts(flow_run_id: object) -> list[tuple[str | None, str, str | None]]:
    """(key, type, description) of every artifact the flow run published."""

    async def read() -> list[tuple[str | None, str, str | None]]:
        async with get_client() as client:
            found = await client.read_artifacts(flow_run_filter=_of_run(flow_run_id))
        return [(item.key, item.type, item.description) for item in found]

    return asyncio.run(read())


def cache_keys(flow_run_id: object) -> dict[str, str | None]:
    """The "Cache Key" the dashboard shows for each stage task run (`name[label]` → key)."""

    async def read() -> dict[str, str | None]:
        async with get_client() as client:
            runs = await client.read_task_runs(flow_run_filter=_of_run(flow_run_id))
        return {run.name: run.cache_key for run in runs if "[" in run.name}

    return asyncio.run(read())


def recorded_progress_updates(monkeypatch: Any) -> list[float]:
    """The progress values `flows.artifacts` sends from now on (they still reach the API)."""
    from flows import artifacts

    sent: list[float] = []
    real_update = artifacts.update_progress_artifact

    def recording_update(artifact_id: object, progress: float, **kwargs: object) -> object:
        sent.append(progress)
        return real_update(artifact_id, progress=progress, **kwargs)

    monkeypatch.setattr(artifacts, "update_progress_artifact", recording_update)
    return sent
