"""The `fineco` Prefect flow on the session's test server: cached tasks, reruns, results."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from prefect_runs import artifacts, cache_keys, task_states

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


def _run(**parameters: object) -> tuple[dict, dict[str, str]]:
    state = fineco(config="tiny", return_state=True, **parameters)
    assert state.is_completed(), state
    return state.result(), task_states(state.state_details.flow_run_id)


def _keys(**parameters: object) -> dict[str, str | None]:
    state = fineco(config="tiny", return_state=True, **parameters)
    task_states(state.state_details.flow_run_id, expect=1)  # every state recorded
    return cache_keys(state.state_details.flow_run_id)


def test_flow_runs_caches_and_reruns(harness: Path) -> None:
    first, states = _run(stages=STAGES)
    assert (Path(first["report"]["report"]) / "report.md").is_file()
    assert "decode[youcook2]" in states and "finetune[fineco]" in states
    assert sum(name.startswith("decode-shard[frames-") for name in states) >= 3  # fanned out
    assert sum(name.startswith("extract-shard[features-") for name in states) >= 3
    assert set(states.values()) == {"Completed"}
    state = fineco(config="tiny", stages=STAGES, return_state=True)  # cached: see its artifacts
    found = artifacts(state.state_details.flow_run_id)
    assert ("metrics-fineco", "table", "text_to_video, fineco") in found
    assert any(key == "report" and kind == "markdown" for key, kind, _ in found)
    assert any(kind == "progress" for _, kind, _ in found)

    second, states = _run(stages=STAGES)
    assert second == first
    assert set(states.values()) == {"Cached"}, states
    keys = _keys(stages=STAGES)  # the dashboard's "Cache Key": the stage's own, cached or not
    manifest = json.loads((Path(first["youcook2"]["decode"]) / "manifest.json").read_text())
    assert keys["decode[youcook2]"] == f"decode-{manifest['cache_key']}"
    assert all(
        key and key.startswith(name.split("[")[0] + "-")
        for name, key in keys.items()
        if "shard[" not in name
    ), keys

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
    import flows.api
    import flows.pipeline_flow as module

    calls: list[tuple[str, dict]] = []

    class Client:  # the deployment lookup: every fineco/<stage> is on the gpu pool
        def __enter__(self) -> Client:
            return self

        def __exit__(self, *exc_info: object) -> None:
            return None

        def read_deployment_by_name(self, name: str) -> SimpleNamespace:
            return SimpleNamespace(work_pool_name="gpu")

        def read_work_pool(self, name: str) -> SimpleNamespace:
            return SimpleNamespace(concurrency_limit=None)

    def run_deployment(name: str, parameters: dict, timeout: object) -> SimpleNamespace:
        calls.append((name, parameters))  # a worker on the pool would run this flow
        state = fineco(**parameters, return_state=True)
        return SimpleNamespace(state=state, id="pool-run")

    monkeypatch.setattr(module, "run_deployment", run_deployment)
    monkeypatch.setattr(module, "get_client", lambda sync_client: Client())
    monkeypatch.setattr(flows.api, "get_client", lambda sync_client: Client())
    # extract and pretrain are cached: no pool run; finetune is rebuilt; evaluate is re-keyed
    overrides = ["execution.gpu_pool=gpu", "evaluate.dual_softmax_temperature=0.7"]
    _, states = _run(stages=STAGES, overrides=overrides, rerun=["finetune"])
    assert [name for name, _ in calls] == ["fineco/finetune", "fineco/evaluate"]
    assert all(p["overrides"][-1] == "execution.gpu_pool=" for _, p in calls)
    assert all(p["synthetic"] is False for _, p in calls)
    assert calls[0][1]["rerun"] == ["finetune"] and calls[1][1]["rerun"] == []
    assert states["finetune[fineco]"] == "Cached", states  # the pool's run built it
    assert states["evaluate[fineco]"] == "Cached", states

    # FINECO_GPU_POOL (the CPU worker's) stands in for an empty execution.gpu_pool; the pool's
    # run, given `execution.gpu_pool=`, runs its stage instead of sending it on again
    calls.clear()
    monkeypatch.setenv("FINECO_GPU_POOL", "gpu")
    _run(stages=["evaluate"], overrides=["evaluate.dual_softmax_temperature=0.8"])
    assert [name for name, _ in calls] == ["fineco/evaluate"]
