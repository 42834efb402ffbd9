"""The compose stack without Docker (issue 12): each service's exact command from
docker/compose.yaml, run once against the session's Prefect server, does its job: `setup` creates
the pools and deployments, `synth` renders the data, the two workers take runs, and `demo` runs
`fineco/full` to its report, its GPU stages on the gpu pool.

Not run here: the `server` service's command (the session's server is the same
`prefect server start`, on another port and SQLite instead of PostgreSQL) and `postgres`.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from prefect.settings import PREFECT_API_URL
from test_docker import COMPOSE, ROOT, _command, _environment

CONFIG = "tiny"  # FINECO_CONFIG for the one-shot services (the compose default is demo)


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's `${NAME}`, `${NAME:-default}` (default when unset or empty) and
    `${NAME-default}` (default when unset)."""

    def value(match: re.Match[str]) -> str:
        name, operator, default = match.group(1), match.group(2) or "", match.group(3) or ""
        if operator == ":-":
            return env.get(name) or default
        if operator == "-":
            return env.get(name, default)
        return env.get(name, "")

    return re.sub(r"\$\{(\w+)(:-|-)?([^}]*)\}", value, text)


@pytest.fixture(scope="module")
def stack(
    prefect_server: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[dict, dict[str, str]]]:
    """The compose services and the environment that stands in for the compose network."""
    root = tmp_path_factory.mktemp("stack-artifacts")
    host = {"FINECO_CONFIG": CONFIG}  # what the host's shell would give compose
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    local = {
        "PREFECT_API_URL": PREFECT_API_URL.value(),  # the session's server, not server:4200
        "FINECO_ARTIFACTS": str(root),
        "PREFECT_RESULTS_LOCAL_STORAGE_PATH": str(root / "prefect-results"),
        "FINECO_HOME": str(ROOT),  # where the images keep the checkout (/app)
        "HOSTNAME": "stack-test",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    yield services, {**host, **local}


def _run_env(service: dict, env: dict[str, str]) -> dict[str, str]:
    own = {key: interpolate(value, env) for key, value in _environment(service).items()}
    return {**os.environ, **own, **{k: v for k, v in env.items() if k != "FINECO_CONFIG"}}


def _words(service: dict, env: dict[str, str]) -> list[str]:
    return [interpolate(word, env) for word in _command(service)]


def test_each_service_command_runs_the_demo_to_its_report(
    stack: tuple[dict, dict[str, str]],
) -> None:
    services, env = stack
    setup = services["setup"]["command"]
    assert setup[:2] == ["sh", "-ec"]
    done = subprocess.run(
        ["sh", "-ec", setup[2]],
        env=_run_env(services["setup"], env),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    synth = _words(services["synth"], env)
    assert synth == ["fineco", "synth", "--config", CONFIG]
    done = subprocess.run(
        synth, env=_run_env(services["synth"], env), capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]

    workers = [
        subprocess.Popen(
            _words(services[name], env),
            env=_run_env(services[name], env),
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        for name in ("cpu-worker", "gpu-worker")
    ]
    try:
        demo = _words(services["demo"], env)
        assert demo == ["fineco", "submit", "full", "--config", CONFIG, "--watch"]
        done = subprocess.run(
            demo, env=_run_env(services["demo"], env), capture_output=True, text=True, timeout=900
        )
    finally:
        for worker in workers:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert lines[-1].endswith(": Completed"), lines[-5:]
    assert any("[report[tiny]]" in line for line in lines), "report task's logs, labelled"
    for stage in ("extract", "pretrain", "finetune", "evaluate"):  # the gpu worker's runs
        assert any(f"running fineco/{stage} on work pool gpu" in line for line in lines), stage
    root = Path(env["FINECO_ARTIFACTS"])
    assert list(root.glob("report/*/report.md")), "the report was written"
