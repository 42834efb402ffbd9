"""The `fineco` Prefect flow under `prefect_test_harness`: cached tasks, reruns, results."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("DO_NOT_TRACK", "1")

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.testing.utilities import prefect_test_harness

from flows.pipeline_flow import fineco
from pipeline.config import load_config
from pipeline.synth import synthesize
from storage.layout import expand_path

STAGES = ["ingest", "decode", "extract", "pretrain", "finetune", "evaluate", "report"]


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("artifacts")
    config = load_config("tiny")
    synthesize(config.synth, expand_path(config.synth.out_dir, root))
    previous = os.environ.get("FINECO_ARTIFACTS")
    os.environ["FINECO_ARTIFACTS"] = str(root)
    with prefect_test_harness(server_startup_timeout=120):
        yield root
    if previous is None:
        os.environ.pop("FINECO_ARTIFACTS")
    else:
        os.environ["FINECO_ARTIFACTS"] = previous


def _task_states(flow_run_id: object) -> dict[str, str]:
    async def read() -> dict[str, str]:
        async with get_client() as client:
            runs = await client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
            )
        return {run.name: run.state.name for run in runs if "[" in run.name}

    return asyncio.run(read())


def _run(**parameters: object) -> tuple[dict, dict[str, str]]:
    state = fineco(config="tiny", return_state=True, **parameters)
    assert state.is_completed(), state
    return state.result(), _task_states(state.state_details.flow_run_id)


def test_flow_runs_caches_and_reruns(harness: Path) -> None:
    first, states = _run(stages=STAGES)
    assert (Path(first["report"]["report"]) / "report.md").is_file()
    assert "decode[youcook2]" in states and "finetune[fineco]" in states
    assert set(states.values()) == {"Completed"}

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
