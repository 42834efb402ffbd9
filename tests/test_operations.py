"""Operating the flows through Prefect (issue 12): parameters checked first, stale task runs of a
killed attempt marked Crashed, `fineco resume` and `fineco submit` through the Prefect client,
logs watched with their labels."""

from __future__ import annotations

import time
from collections.abc import Iterator
from uuid import UUID

import pytest
from prefect import flow, get_client, task
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
from prefect.context import get_run_context
from prefect.logging.handlers import APILogWorker
from prefect.settings import PREFECT_LOGGING_TO_API_BATCH_INTERVAL, temporary_settings
from prefect.states import Completed, Crashed, Running
from prefect_runs import recorded_progress_updates, task_states

from flows import artifacts
from flows.artifacts import ProgressArtifact
from flows.pipeline_flow import fineco
from flows.run_states import crash_stale_task_runs, resume
from flows.study_flow import fineco_study
from flows.submit import submit, watch
from pipeline.config import ConfigError


@pytest.fixture(scope="module")
def harness(prefect_server: None) -> Iterator[None]:
    with temporary_settings({PREFECT_LOGGING_TO_API_BATCH_INTERVAL: 0.2}):
        yield


@pytest.mark.parametrize(
    ("parameters", "named"),
    [
        ({"config": "demoo"}, "unknown preset 'demoo'; presets: demo, didemo"),
        ({"config": "tiny", "stages": ["finetun"]}, "unknown stage(s) ['finetun']; stages: ingest"),
        ({"config": "tiny", "rerun": ["evaluat"]}, "unknown stage(s) ['evaluat']"),
        ({"config": "tiny", "overrides": ["finetune.optim.lrr=1"]}, "finetune.optim.lrr: unknown"),
        ({"config": "tiny", "stages": "finetune"}, "parameter stages: expected a list of names"),
    ],
)
def test_a_bad_parameter_fails_the_run_at_once_in_one_line(
    harness: None, parameters: dict, named: str
) -> None:
    started = time.monotonic()
    state = fineco(**parameters, return_state=True)
    assert state.is_failed()
    assert state.message.startswith("invalid parameters: ") and named in state.message
    assert "\n" not in state.message and "Traceback" not in state.message
    assert task_states(state.state_details.flow_run_id, wait_s=1) == {}  # no stage ran
    assert time.monotonic() - started < 30


def test_a_bad_study_parameter_fails_the_run_at_once(harness: None) -> None:
    state = fineco_study(strategies=["medain"], return_state=True)
    assert state.is_failed()
    assert "unknown strategy(ies) ['medain']; strategies: fixed_k, median" in state.message
    state = fineco_study(variants=["papr"], return_state=True)
    assert "unknown variant(s) ['papr']; variants: paper, paper-slr10, sim" in state.message


@task
def _stage() -> None:
    return None


@flow(name="killed")
def _killed_attempt() -> UUID:
    """A flow run whose first attempt was killed while a task ran: a task run left Running."""
    return get_run_context().flow_run.id


def _with_running_task(client) -> tuple[UUID, UUID, UUID]:
    flow_run_id = _killed_attempt()
    running = client.create_task_run(_stage, flow_run_id, "0", name="finetune[fineco]")
    client.set_task_run_state(running.id, Running(), force=True)
    done = client.create_task_run(_stage, flow_run_id, "1", name="decode[youcook2]")
    client.set_task_run_state(done.id, Completed(), force=True)
    return flow_run_id, running.id, done.id


def test_stale_task_runs_of_a_killed_attempt_are_marked_crashed(harness: None) -> None:
    with get_client(sync_client=True) as client:
        flow_run_id, running, done = _with_running_task(client)
        assert crash_stale_task_runs(flow_run_id, attempt=2) == ["finetune[fineco]"]
        crashed = client.read_task_run(running)
        assert crashed.state.is_crashed() and "attempt 2 resumes" in crashed.state.message
        assert client.read_task_run(done).state.is_completed()  # finished work is left alone
        assert crash_stale_task_runs(flow_run_id, attempt=3) == []


@pytest.fixture(scope="module")
def deployment(harness: None) -> UUID:
    """`fineco/full` on the test server (no worker: runs stay Scheduled unless a test runs them)."""
    return fineco.to_deployment(name="full", parameters={"config": "tiny"}).apply()


def _runs_of(client, deployment: UUID) -> int:
    runs = client.read_flow_runs(
        deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment]))
    )
    return len(runs)


def test_submit_checks_parameters_before_creating_a_run(deployment: UUID) -> None:
    lines: list[str] = []
    with get_client(sync_client=True) as client:
        before = _runs_of(client, deployment)
        with pytest.raises(ConfigError, match="unknown preset 'tinyy'; presets: "):
            submit("full", {"config": "tinyy"}, lines.append)
        with pytest.raises(ConfigError, match=r"no parameter\(s\) \['stage'\]"):
            submit("full", {"stage": ["decode"]}, lines.append)
        with pytest.raises(ConfigError, match=r"no deployment fineco/fulll on .*: fineco/full"):
            submit("fulll", {}, lines.append)
        assert _runs_of(client, deployment) == before  # nothing was submitted
        run = submit("full", {"stages": ["ingest"]}, lines.append)
        assert run.state.is_scheduled()
        assert run.parameters == {"config": "tiny", "stages": ["ingest"]}
        assert _runs_of(client, deployment) == before + 1
    assert lines[-1].startswith(f"submitted fineco/full: flow run {run.name}")


def test_resume_reschedules_with_the_runs_own_parameters_or_refuses(deployment: UUID) -> None:
    run = submit("full", {"overrides": ["decode.size=32"]}, print)
    with get_client(sync_client=True) as client:
        with pytest.raises(ConfigError, match=r"not finished: .* \(Scheduled\)\. If their"):
            resume(str(run.id))
        client.set_flow_run_state(run.id, Crashed(message="killed"), force=True)
        with pytest.raises(ConfigError, match=r"ran with config 'tiny', overrides \['decode"):
            resume(str(run.id), config="demo")
        with pytest.raises(ConfigError, match="a resumed run keeps its parameters"):
            resume(str(run.id), overrides=["decode.size=64"])
        resumed = resume(run.name, config="tiny", overrides=["decode.size=32"])  # by name
        assert resumed.previous_state == "Crashed" and resumed.flow_run.state.is_scheduled()
        client.set_flow_run_state(run.id, Running(), force=True)  # its worker was killed
        assert resume(str(run.id), force=True).previous_state == "Running"
        assert client.read_flow_run(run.id).state.is_scheduled()
        # a run it started on the GPU pool, left Running when the stack was killed
        placeholder = client.create_task_run(_stage, run.id, "gpu", name="finetune-pool-run")
        child = client.create_flow_run(
            _killed_attempt, parent_task_run_id=placeholder.id, state=Running()
        )
        client.set_flow_run_state(run.id, Crashed(message="killed"), force=True)
        with pytest.raises(ConfigError, match=rf"not finished: {child.name} \(Running\)"):
            resume(str(run.id))
        resume(str(run.id), force=True)
        assert client.read_flow_run(child.id).state.is_crashed()
        with pytest.raises(ConfigError, match="no flow run with id 00000000-"):
            resume("00000000-0000-0000-0000-000000000000")
        local = _killed_attempt()  # a flow run of a local process, not of a deployment
        client.set_flow_run_state(local, Crashed(message="killed"), force=True)
        with pytest.raises(ConfigError, match="has no deployment"):
            resume(str(local))


@task(task_run_name="finetune[fineco]")
def _logging_stage() -> None:
    import logging

    from flows.stage_logs import forward_stage_logs

    with forward_stage_logs():
        logging.getLogger("pipeline.training").info("step 3/7 loss 0.5")


@flow(name="watched")
def _watched() -> UUID:
    _logging_stage()
    return get_run_context().flow_run.id


def test_watch_prints_each_log_line_with_its_task_runs_label(harness: None) -> None:
    flow_run_id = _watched()
    APILogWorker.drain_all(timeout=5)
    lines: list[str] = []
    deadline = time.monotonic() + 20
    while not any("step 3/7" in line for line in lines) and time.monotonic() < deadline:
        lines.clear()
        watch(flow_run_id, lines.append, poll_s=0.1)
    stage = next(line for line in lines if "step 3/7" in line)
    assert stage.endswith("INFO    [finetune[fineco]] step 3/7 loss 0.5"), stage
    assert any("Finished in state Completed" in line for line in lines)


def test_a_held_back_progress_update_is_sent_once_the_interval_has_passed(harness, monkeypatch):
    monkeypatch.setattr(artifacts, "PROGRESS_MIN_INTERVAL_S", 0.3)
    sent = recorded_progress_updates(monkeypatch)

    @flow
    def held_back() -> list[float]:
        bar = ProgressArtifact("training steps")
        bar.update(2, 10)  # right after creation: held back, then sent by the timer
        bar.update(3, 10)  # the latest value is the one sent
        time.sleep(1.0)
        return list(sent)

    assert held_back() == [30.0]
