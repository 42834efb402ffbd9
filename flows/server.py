"""The embedded Prefect server and deployment server of `make demo`, started and stopped by PID.

`python -m flows.server up` starts `prefect server start` on 127.0.0.1:4200 (SQLite under the
project's `PREFECT_HOME`) unless one already answers, waits for `/api/health`, then starts
`fineco serve` and waits until its deployments are registered. Every process it starts is
recorded in `<PREFECT_HOME>/pids/`; `python -m flows.server down` stops exactly those.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

API_URL = os.environ.get("PREFECT_API_URL", "http://127.0.0.1:4200/api")
DASHBOARD_URL = API_URL.removesuffix("/api")
HEALTH_TIMEOUT_S = 120
DEPLOYMENTS_TIMEOUT_S = 120


def prefect_home() -> Path:
    return Path(os.environ.get("PREFECT_HOME", Path.cwd() / ".prefect")).resolve()


def _pid_file(name: str) -> Path:
    return prefect_home() / "pids" / f"{name}.pid"


def healthy() -> bool:
    try:
        with urllib.request.urlopen(f"{API_URL}/health", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _start(name: str, command: list[str]) -> None:
    """Start `command` in its own session, log to `<home>/<name>.log`, record its PID."""
    log_path = prefect_home() / f"{name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
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


def _wait(check, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            home = prefect_home()
            raise SystemExit(f"{what} did not come up within {timeout_s:.0f} s; see {home}")
        time.sleep(1)


def _deployments_ready() -> bool:
    request = urllib.request.Request(
        f"{API_URL}/deployments/filter",
        data=json.dumps({"limit": 50}).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            names = {item["name"] for item in json.load(response)}
    except (urllib.error.URLError, OSError, ValueError):
        return False
    return "full" in names


def up(config: str) -> None:
    """Server (unless one answers) + `fineco serve`, each waited for."""
    if healthy():
        print(f"a Prefect server already answers at {API_URL}")
    else:
        prefect = str(Path(sys.executable).with_name("prefect"))
        _start("server", [prefect, "server", "start", "--host", "127.0.0.1", "--port", "4200"])
        _wait(healthy, HEALTH_TIMEOUT_S, "the Prefect server")
    if not _running("serve"):
        fineco = str(Path(sys.executable).with_name("fineco"))
        _start("serve", [fineco, "serve", "--config", config])
    _wait(_deployments_ready, DEPLOYMENTS_TIMEOUT_S, "the fineco deployments")
    print(f"dashboard: {DASHBOARD_URL}")


def down() -> None:
    """Stop the processes `up` started (serve first, then the server), by recorded PID."""
    for name in ("serve", "server"):
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
    parser.add_argument("--config", default="demo")
    args = parser.parse_args()
    if args.action == "up":
        up(args.config)
    else:
        down()


if __name__ == "__main__":
    main()
