"""The `fineco` Prefect flow on the session's test server: cached tasks, reruns, results."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

from flows.pipeline_flow import fineco
from pipeline.config import STAGES


@pytest.fixture(scope="module")
def harness(
    prefect_server: None,
    synthetic_copy: Callable[[Path], Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Path]:
    """The session's Prefect server and an artifact root of this module's own (its first run
    must build every stage), holding a copy of the tiny synthetic sets."""
    root = synthetic_copy(tmp_path_factory.mktemp("flow-artifacts"))
    previous = os.environ.get("FINECO_ARTIFACTS")
    os.environ["FINECO_ARTIFACTS"] = str(root)
    yield root
    if previous is None:
        os.environ.pop("FINECO_ARTIFACTS")
    else:
        os.environ["FINECO_ARTIFACTS"] = previous


def _task_states(flow_run_id: object, wait_s: float = 30.0) -> dict[str, str]:
    """Stage task states of a finished flow run. Prefect 3 records task-run states from events,
    after the flow returns, so a last task can still read `Running`: poll (bounded) until every
    state is final."""

    async def read() -> dict[str, str]:
        deadline = time.monotonic() + wait_s
        async with get_client() as client:
            while True:
                runs = await client.read_task_runs(
                    flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
                )
                runs = [run for run in runs if "[" in run.name]
                if all(run.state.is_final() for run in runs) or time.monotonic() > deadline:
                    return {run.name: run.state.name for run in runs}
                await asyncio.sleep(0.2)

    return asyncio.run(read())


def _artifacts(flow_run_id: object) -> list[tuple[str | None, str, str | None]]:
    async def read() -> list[tuple[str | None, str, str | None]]:
        async with get_client() as client:
            found = await client.read_artifacts(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
            )
        return [(item.key, item.type, item.description) for item in found]

    return asyncio.run(read())


def _run(**parameters: object) -> tuple[dict, dict[str, str]]:
    state = fineco(config="tiny", return_state=True, **parameters)
    assert state.is_completed(), state
    return state.result(), _task_states(state.state_details.flow_run_id)


def test_flow_runs_caches_and_reruns(harness: Path) -> None:
    first, states = _run(stages=STAGES)
    assert (Path(first["report"]["report"]) / "report.md").is_file()
    assert "decode[youcook2]" in states and "finetune[fineco]" in states
    assert sum(name.startswith("decode-shard[frames-") for name in states) >= 3  # fanned out
    assert sum(name.startswith("extract-shard[features-") for name in states) >= 3
    assert set(states.values()) == {"Completed"}
    state = fineco(config="tiny", stages=STAGES, return_state=True)  # cached: see its artifacts
    found = _artifacts(state.state_details.flow_run_id)
    assert ("metrics-fineco", "table", "text_to_video, fineco") in found
    assert any(key == "report" and kind == "markdown" for key, kind, _ in found)
    assert any(kind == "progress" for _, kind, _ in found)

    second, states = _run(stages=STAGES)
    assert second == first
    assert set(states.values()) == {"Cached"}, states

    third, states = _run(stages=STAGES, rerun=["finetune"])
    assert states["finetune[fineco]"] == "Completed" and states["finetune[baseline]"] == "Completed"
    for name in (
        "ingest[youcook2]",
        "decode[youcook2]",
        "extract[youcook2]",
        "pretrain[howto100m]",
    ):
        assert states[name] == "Cached", (name, states)
    assert third["fineco"]["finetune"] == first["fineco"]["finetune"]  # same key, rebuilt


def test_override_reruns_only_the_fineco_branch(harness: Path) -> None:
    _run(stages=STAGES)
    _, states = _run(stages=STAGES, overrides=["finetune.fineco.strategy=median"])
    assert states["finetune[fineco]"] == "Completed"
    assert states["evaluate[fineco]"] == "Completed"
    assert states["report[tiny]"] == "Completed"
    assert states["finetune[baseline]"] == "Cached"
    assert states["extract[youcook2]"] == "Cached"


def test_gpu_stages_run_on_the_gpu_pool(harness: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With execution.gpu_pool set, each GPU stage first runs as deployment fineco/<stage>."""
    import flows.pipeline_flow as module

    calls: list[tuple[str, dict]] = []

    class Client:  # the deployment lookup: every fineco/<stage> is on the gpu pool
        def __enter__(self) -> Client:
            return self

        def __exit__(self, *exc_info: object) -> None:
            return None

        def read_deployment_by_name(self, name: str) -> SimpleNamespace:
            return SimpleNamespace(work_pool_name="gpu")

    def run_deployment(name: str, parameters: dict, timeout: object) -> SimpleNamespace:
        calls.append((name, parameters))  # a worker on the pool would run this flow
        state = fineco(**parameters, return_state=True)
        return SimpleNamespace(state=state, id="pool-run")

    monkeypatch.setattr(module, "run_deployment", run_deployment)
    monkeypatch.setattr(module, "get_client", lambda sync_client: Client())
    _, states = _run(stages=STAGES, overrides=["execution.gpu_pool=gpu"], rerun=["finetune"])
    gpu = ["extract", "pretrain", "finetune", "evaluate"]
    assert [name for name, _ in calls] == [f"fineco/{stage}" for stage in gpu]
    assert all(p["overrides"][-1] == "execution.gpu_pool=" for _, p in calls)
    assert all(p["synthetic"] is False for _, p in calls)
    assert calls[2][1]["rerun"] == ["finetune"] and calls[0][1]["rerun"] == []
    assert states["finetune[fineco]"] == "Cached", states  # the pool's run built it
