"""The local Prefect stack of `make demo`, started and stopped by PID: the same shape as the
compose stack (docker/compose.yaml) without containers.

`python -m flows.server up`:
1. `prefect server start` on 127.0.0.1:4200 (SQLite under the project's `PREFECT_HOME`) unless
   one already answers; waits until the API's health check passes;
2. the `cpu` and `gpu` process work pools (`gpu` with a concurrency limit of 1: one GPU stage at
   a time) and the deployments of `prefect.yaml` (`prefect --no-prompt deploy --all`);
3. a process worker on each pool. The cpu worker runs any number of flow runs at once, so a
   stage rerun starts while another run is going; it has `FINECO_GPU_POOL=gpu`, so `fineco/full`
   sends its GPU stages to the gpu pool's worker, as in compose.

Every process it starts is recorded in `<PREFECT_HOME>/pids/`; `python -m flows.server down`
stops exactly those (workers first). The API is reached through the Prefect client.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

from prefect import get_client
from prefect.settings import PREFECT_API_URL, temporary_settings

HEALTH_TIMEOUT_S = 120
READY_TIMEOUT_S = 120
WORKER_POLL_S = "1"  # PREFECT_WORKER_QUERY_SECONDS: a submitted run is picked up within ~1 s
GPU_POOL_ENV = "FINECO_GPU_POOL"  # the GPU stages' work pool (flows.pipeline_flow.with_gpu_pool)
SHARD_POOL = "gpu-shards"  # extract's shards, one worker per GPU (flows/extract_shards.py)
PROJECT = Path(__file__).resolve().parent.parent
STARTED = ("server", "serve", "cpu-worker", "gpu-worker")  # stopped in reverse order;
# "serve": the single `fineco serve` process of earlier versions of this file


def prefect_home() -> Path:
    return Path(os.environ.get("PREFECT_HOME", Path.cwd() / ".prefect")).resolve()


DEFAULT_API_URL = "http://127.0.0.1:4200/api"


def api_url() -> str:
    return PREFECT_API_URL.value() or DEFAULT_API_URL


@contextlib.contextmanager
def local_api() -> Iterator[None]:
    """PREFECT_API_URL set for this process and the ones it starts: 127.0.0.1:4200 unless set.
    (Unset, the Prefect client would start a temporary server of its own instead.)"""
    url = api_url()
    os.environ["PREFECT_API_URL"] = url  # for the server's and workers' processes
    with temporary_settings(updates={PREFECT_API_URL: url}):
        yield


def _pid_file(name: str) -> Path:
    return prefect_home() / "pids" / f"{name}.pid"


def healthy() -> bool:
    """Whether the API at PREFECT_API_URL answers its health check."""
    try:
        with get_client(sync_client=True) as client:
            return client.api_healthcheck() is None  # None: healthy; else the exception
    except Exception:
        return False


def _start(name: str, command: list[str], env: dict[str, str] | None = None) -> None:
    """Start `command` in its own session, log to `<home>/<name>.log`, record its PID."""
    log_path = prefect_home() / f"{name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )
    _pid_file(name).parent.mkdir(parents=True, exist_ok=True)
    _pid_file(name).write_text(str(process.pid))
    print(f"started {name} (pid {process.pid}, log {log_path})")


def _running(name: str) -> bool:
    path = _pid_file(name)
    if not path.is_file():
        return False
    try:
        os.kill(int(path.read_text()), 0)
    except (ProcessLookupError, ValueError):
        return False
    return True


def _wait(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            home = prefect_home()
            raise SystemExit(f"{what} did not come up within {timeout_s:.0f} s; see {home}")
        time.sleep(1)


def _workers_ready(since: datetime | None) -> bool:
    """Both pools have a worker that polled them (after `since`, when given: records of workers
    of an earlier `up` stay listed), and the deployments exist."""
    try:
        with get_client(sync_client=True) as client:
            pools_ready = all(
                any(
                    worker.last_heartbeat_time is not None
                    and (since is None or worker.last_heartbeat_time > since)
                    for worker in client.read_workers_for_work_pool(pool)
                )
                for pool in ("cpu", "gpu")
            )
            names = {deployment.name for deployment in client.read_deployments()}
    except Exception:
        return False
    return pools_ready and "full" in names


def _bin(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def setup_pools_and_deployments() -> None:
    """The compose `setup` service's steps: pools, the gpu pool's limit, `deploy --all`."""
    env = {**os.environ, "FINECO_HOME": str(PROJECT)}
    prefect = _bin("prefect")
    for pool in ("cpu", "gpu", SHARD_POOL):
        found = subprocess.run(
            [prefect, "work-pool", "inspect", pool], capture_output=True, env=env
        )
        if found.returncode != 0:
            create = [prefect, "work-pool", "create", pool, "--type", "process"]
            subprocess.run(create, check=True, capture_output=True, env=env)
    limit = [prefect, "work-pool", "set-concurrency-limit", "gpu", "1"]
    subprocess.run(limit, check=True, capture_output=True, env=env)
    deploy = subprocess.run(
        [prefect, "--no-prompt", "deploy", "--all"], cwd=PROJECT, env=env, capture_output=True
    )
    if deploy.returncode != 0:
        raise SystemExit(f"prefect deploy --all failed:\n{deploy.stdout.decode()[-3000:]}")
    print(f"work pools cpu, gpu (limit 1) and {SHARD_POOL}, deployments of prefect.yaml")


def up() -> None:
    """Server (unless one answers), pools and deployments, a worker per pool; each waited for."""
    started = datetime.now(UTC)
    if healthy():
        print(f"a Prefect server already answers at {api_url()}")
    else:
        _start(
            "server", [_bin("prefect"), "server", "start", "--host", "127.0.0.1", "--port", "4200"]
        )
        _wait(healthy, HEALTH_TIMEOUT_S, "the Prefect server")
    setup_pools_and_deployments()
    poll = {"PREFECT_WORKER_QUERY_SECONDS": WORKER_POLL_S, "FINECO_HOME": str(PROJECT)}
    since: datetime | None = None  # heartbeats to wait for: after this, when a worker starts
    if not _running("cpu-worker"):
        _start("cpu-worker", [_bin("fineco"), "worker"], {**poll, GPU_POOL_ENV: "gpu"})
        since = started
    if not _running("gpu-worker"):
        # no FINECO_GPU_POOL here even if the caller has one: its runs are the pool's runs
        _start("gpu-worker", [_bin("fineco"), "worker", "--gpu"], {**poll, GPU_POOL_ENV: ""})
        since = started
    _wait(lambda: _workers_ready(since), READY_TIMEOUT_S, "the workers and deployments")
    print(f"dashboard: {api_url().removesuffix('/api')}")


def down() -> None:
    """Stop the processes `up` started (workers, then the server), by recorded PID."""
    for name in reversed(STARTED):
        path = _pid_file(name)
        if not path.is_file():
            continue
        pid = int(path.read_text())
        try:
            os.killpg(pid, signal.SIGTERM)
            for _ in range(30):
                time.sleep(1)
                os.killpg(pid, 0)
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        path.unlink()
        print(f"stopped {name} (pid {pid})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("action", choices=["up", "down"])
    args = parser.parse_args()
    if args.action == "up":
        with local_api():
            up()
    else:
        down()


if __name__ == "__main__":
    main()
