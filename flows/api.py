"""The Prefect API as the `fineco` commands reach it: a client whose failures are one-line
ConfigErrors (`api_client`), and the flow runs a run started (`descendants`: its GPU pool runs)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any
from uuid import UUID

import httpx
from prefect import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId
from prefect.client.schemas.objects import FlowRun
from prefect.settings import PREFECT_API_URL

from pipeline.config import ConfigError


@contextlib.contextmanager
def api_client() -> Iterator[Any]:
    """The synchronous Prefect client; an API that is not set or does not answer is a one-line
    ConfigError (unset, the client would start a temporary server of its own)."""
    if not PREFECT_API_URL.value():
        raise ConfigError(
            "PREFECT_API_URL is not set: point it at the server, e.g. "
            "export PREFECT_API_URL=http://127.0.0.1:4200/api (what `make demo` starts)"
        )
    try:
        with get_client(sync_client=True) as client:
            yield client
    except httpx.TransportError as error:
        raise ConfigError(
            f"the Prefect API at {PREFECT_API_URL.value()} does not answer ({error}); start it "
            "(`make demo`, `python -m flows.server up`) or set PREFECT_API_URL"
        ) from error


def descendants(client: Any, flow_run_id: UUID) -> list[FlowRun]:
    """Flow runs started by tasks of `flow_run_id` (the GPU pool's runs), and theirs."""
    found: list[FlowRun] = []
    parents = [flow_run_id]
    while parents:
        level = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=parents)
            )
        )
        found += level
        parents = [run.id for run in level]
    return found


def check_deployment_pool(name: str, pool: str, setting: str) -> None:
    """Deployment `name` must be on work pool `pool`, which config key `setting` names (else the
    runs sent there would go to a pool that nobody named)."""
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name(name)
    if deployment.work_pool_name != pool:
        raise ConfigError(
            f"{setting}={pool!r} but deployment {name} is on pool "
            f"{deployment.work_pool_name!r}; run `prefect --no-prompt deploy --all`"
        )
