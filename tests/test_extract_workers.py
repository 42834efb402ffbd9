"""Extract's shards on a work pool (issue 13): two process workers take disjoint shards and the
feature shards are those one process writes, byte for byte; a finished shard is never redone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prefect.settings import PREFECT_API_URL

from flows.extract_shards import DEPLOYMENT, fineco_extract_shard, pool_runner
from pipeline.config import ConfigError
from pipeline.config.loading import load_config
from pipeline.extract import _plan, extract_one_shard, run_extract
from pipeline.runner import built_extract_inputs, run_front_end

ROOT = Path(__file__).resolve().parent.parent
POOL = "shards-test"
DATASET = "youcook2"  # the tiny preset's: two frame shards


@pytest.fixture
def two_workers(prefect_server: None, fresh_root: Callable[[str], Path]) -> Iterator[Path]:
    """An artifact root, the shard deployment on POOL, and two `fineco worker --pool` workers."""
    root = fresh_root("workers")
    bin_dir = Path(sys.executable).parent
    env = {
        **os.environ,
        "PREFECT_API_URL": PREFECT_API_URL.value(),
        "FINECO_ARTIFACTS": str(root),
        "FINECO_HOME": str(ROOT),
        "PREFECT_RESULTS_LOCAL_STORAGE_PATH": str(root / "prefect-results"),
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
    }
    prefect = str(bin_dir / "prefect")
    subprocess.run([prefect, "work-pool", "create", POOL, "--type", "process"], env=env, check=True)
    deploy = [prefect, "--no-prompt", "deploy", "--name", "shard", "--pool", POOL]
    done = subprocess.run(deploy, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    workers = [
        subprocess.Popen(
            [str(bin_dir / "fineco"), "worker", "--pool", POOL],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        for _ in range(2)
    ]
    try:
        yield root
    finally:
        for worker in workers:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()


def extract_inputs(config, dataset: str, root: Path):
    """The stage's inputs after ingest and decode are built (as the submitting flow has them)."""
    run_front_end(config, dataset, "decode", root)
    return built_extract_inputs(config, dataset, root)


def _pool_records(inputs) -> dict[str, str]:  # feature shard name → its file's digest
    plan = _plan(inputs)
    return {record.name: record.digest for record in plan.pool.records()}


def test_two_workers_write_the_shards_one_process_writes(
    two_workers: Path, fresh_root: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = load_config("tiny")
    monkeypatch.setenv("FINECO_ARTIFACTS", str(two_workers))
    on_pool = extract_inputs(config, DATASET, two_workers)
    pending = [name for name, _ in _plan(on_pool).pending]
    assert len(pending) == 2
    runner = pool_runner(POOL, "tiny", DATASET, [], False, on_pool.key)
    manifest = run_extract(on_pool, shard_runner=runner)
    assert manifest.info.embedded_seconds == manifest.info.seconds > 0

    alone_root = fresh_root("alone")
    alone = run_extract(extract_inputs(config, DATASET, alone_root))
    assert _pool_records(on_pool) == _pool_records(extract_inputs(config, DATASET, alone_root))
    assert manifest.output_digests == alone.output_digests  # the same index

    from prefect import get_client

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs()
    shard_runs = [run for run in runs if run.name.startswith("extract-features-")]
    assert sorted(run.name.removeprefix("extract-") for run in shard_runs) == sorted(pending)
    assert all(run.state and run.state.is_completed() for run in shard_runs)
    # each worker takes one run at a time, so runs that overlap ran on both workers
    first, second = sorted(shard_runs, key=lambda run: run.start_time)
    assert second.start_time < first.end_time, "the shard runs ran one after the other"
    assert DEPLOYMENT == "fineco-extract/shard"


def test_a_finished_shard_is_not_embedded_again(fresh_artifacts: Path) -> None:
    """What a retried run or a restarted worker does with a shard the pool already holds."""
    inputs = extract_inputs(load_config("tiny"), DATASET, fresh_artifacts)
    name = _plan(inputs).pending[0][0]
    first = extract_one_shard(inputs, name)
    path = _plan(inputs).pool.shard_path(name)
    written = path.stat().st_mtime_ns
    again = extract_one_shard(inputs, name)
    assert again == first
    assert path.stat().st_mtime_ns == written
    with pytest.raises(ValueError, match="no frame shard makes features-nothing"):
        extract_one_shard(inputs, "features-nothing")


def test_a_worker_whose_inputs_differ_refuses_the_shard(
    fresh_artifacts: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker builds nothing: without the submitting run's decode it stops; with it, a stage
    key other than its own stops it too."""
    monkeypatch.setenv("FINECO_ARTIFACTS", str(fresh_artifacts))
    with pytest.raises(ConfigError, match="ingest of youcook2 is not built"):
        fineco_extract_shard.fn("tiny", DATASET, "features-x", stage_key="0" * 20)
    assert not (fresh_artifacts / "decode").exists()
    extract_inputs(load_config("tiny"), DATASET, fresh_artifacts)
    with pytest.raises(ConfigError, match="runs other code, config or artifact root"):
        fineco_extract_shard.fn("tiny", DATASET, "features-x", stage_key="0" * 20)


class _FakeClient:
    """read_flow_run gives each run's next state in turn; set_flow_run_state is recorded."""

    def __init__(self, states: dict) -> None:
        self.states, self.set = states, []

    def __enter__(self) -> _FakeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def read_flow_run(self, run_id):
        from types import SimpleNamespace

        queue = self.states[run_id]
        return SimpleNamespace(state=queue.pop(0) if len(queue) > 1 else queue[0])

    def set_flow_run_state(self, run_id, state) -> None:
        self.set.append((run_id, state.name))


def test_a_failed_shard_run_stops_the_stage_after_the_others_end(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from uuid import uuid4

    from prefect.states import Completed, Failed, Running

    from flows import extract_shards

    first, second = uuid4(), uuid4()
    client = _FakeClient(
        {first: [Failed(message="CUDA error")], second: [Running(), Running(), Completed()]}
    )
    monkeypatch.setattr(extract_shards, "get_client", lambda **_: client)
    monkeypatch.setattr(extract_shards, "POLL_S", 0.0)
    done = []
    with pytest.raises(RuntimeError, match=r"1 shard runs did not complete.*a: flow run .*CUDA"):
        for name in extract_shards._finished({first: "a", second: "b"}, POOL):
            done.append(name)
    assert done == ["b"]  # the second run was waited for before the stage stopped


def test_shard_runs_no_worker_takes_are_cancelled(monkeypatch: pytest.MonkeyPatch) -> None:
    from uuid import uuid4

    from prefect.states import Scheduled

    from flows import extract_shards

    run = uuid4()
    client = _FakeClient({run: [Scheduled()]})
    monkeypatch.setattr(extract_shards, "get_client", lambda **_: client)
    monkeypatch.setattr(extract_shards, "POLL_S", 0.0)
    monkeypatch.setattr(extract_shards, "PICKUP_TIMEOUT_S", 0.0)
    with pytest.raises(RuntimeError, match="no worker of work pool 'shards-test' took the 1"):
        list(extract_shards._finished({run: "a"}, POOL))
    assert client.set == [(run, "Cancelled")]
