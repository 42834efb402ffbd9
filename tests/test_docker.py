"""Static checks of docker/: the compose file's structure and a small Dockerfile lint.

No Docker engine is needed (none runs where these tests run): compose.yaml is read with
yaml.safe_load, the Dockerfiles are parsed here, and `docker compose config` runs only where the
compose plugin is installed (it parses and interpolates without contacting a daemon).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
COMPOSE = DOCKER / "compose.yaml"
DOCKERFILES = {"cpu": DOCKER / "Dockerfile.cpu", "gpu": DOCKER / "Dockerfile.gpu"}
SOURCE_DIRS = ("pipeline", "flows", "models", "storage")
PREFECT_SERVICES = ("server", "setup", "cpu-worker", "gpu-worker")
ARTIFACTS_MOUNT = "/artifacts"


# ------------------------------------------------------------------ Dockerfile lint


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # comments and blank lines may sit inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        whole = pending + line
        pending = ""
        keyword, _, arguments = whole.partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
    if pending:
        keyword, _, arguments = pending.strip().partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
    return instructions


def _substitute_args(value: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), value)


def _image_tag(image: str) -> str | None:
    """The tag of `name[:tag][@digest]`, "@digest" for a digest-only pin, None when unpinned."""
    name, _, digest = image.partition("@")
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        return last.split(":", 1)[1]
    return "@" + digest if digest else None


def _run_commands(arguments: str) -> list[str]:
    """The commands of a RUN, split on && ; and |, so each `pip install` is checked by itself."""
    return [part.strip() for part in re.split(r"&&|;|\|\|?", arguments) if part.strip()]


def _lint_from(arguments: str, args: dict[str, str], stage_names: set[str]) -> list[str]:
    words = [w for w in arguments.split() if not w.startswith("--")]
    image = _substitute_args(words[0], args)
    if len(words) >= 3 and words[1].upper() == "AS":
        stage_names.add(words[2])
    if image in stage_names or image == "scratch":
        return []
    tag = _image_tag(image)
    if tag is None or "$" in image:
        return [f"FROM {image}: pin a tag or digest"]
    if tag == "latest":
        return [f"FROM {image}: 'latest' is not a pin"]
    return []


def _lint_run(arguments: str) -> list[str]:
    problems = []
    if "apt-get install" in arguments:
        if "--no-install-recommends" not in arguments:
            problems.append("apt-get install without --no-install-recommends")
        if "rm -rf /var/lib/apt/lists" not in arguments:
            problems.append("apt-get install without removing /var/lib/apt/lists in that RUN")
        if "apt-get update" not in arguments:
            problems.append("apt-get install without apt-get update in that RUN")
    for command in _run_commands(arguments):
        if re.search(r"\bpip3? install\b", command) and "--no-cache-dir" not in command:
            problems.append(f"`{command}`: pip install without --no-cache-dir")
    return problems


def _lint_layer_order(instructions: list[tuple[str, str]]) -> list[str]:
    """pyproject.toml copied, and the dependencies installed, before the source tree."""

    def copies(*names: str) -> list[int]:
        return [
            index
            for index, (keyword, arguments) in enumerate(instructions)
            if keyword == "COPY"
            and any(w.rstrip("/") in names for w in arguments.split()[:-1] if w[:2] != "--")
        ]

    pyproject_at = min(copies("pyproject.toml"), default=None)
    source_at = min(copies(".", *SOURCE_DIRS), default=None)
    if pyproject_at is None:
        return ["pyproject.toml is never copied by itself"]
    if source_at is None:
        return []
    installs_between = [
        index
        for index, (keyword, arguments) in enumerate(instructions)
        if keyword == "RUN" and "pip install" in arguments and pyproject_at < index < source_at
    ]
    if pyproject_at > source_at or not installs_between:
        return ["copy pyproject.toml and install the dependencies before copying the source tree"]
    return []


def lint_dockerfile(text: str, *, require_non_root: bool = True) -> list[str]:
    """Problems found in a Dockerfile (an empty list means it passes)."""
    instructions = dockerfile_instructions(text)
    problems: list[str] = []
    args: dict[str, str] = {}
    stage_names: set[str] = set()
    for keyword, arguments in instructions:
        if keyword == "ARG":
            name, _, default = arguments.partition("=")
            args.setdefault(name.strip(), default.strip().strip("\"'"))
        elif keyword == "FROM":
            problems += _lint_from(arguments, args, stage_names)
        elif keyword == "ADD" and re.search(r"\b(https?|ftp)://", arguments):
            problems.append(f"ADD {arguments}: fetch URLs in a RUN, checked, not with ADD")
        elif keyword == "RUN":
            problems += _lint_run(arguments)
    users = [arguments for keyword, arguments in instructions if keyword == "USER"]
    if require_non_root and (not users or users[-1].split(":")[0] in ("root", "0")):
        problems.append("the image runs as root: add a USER with a non-root user last")
    return problems + _lint_layer_order(instructions)


GOOD_DOCKERFILE = """\
FROM python:3.11.14-slim-bookworm
RUN apt-get update \\
    && apt-get install -y --no-install-recommends ffmpeg \\
    && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml ./
RUN pip install --no-cache-dir -r requirements.txt
COPY pipeline ./pipeline
RUN pip install --no-cache-dir --no-deps -e .
USER 1000:1000
"""


def test_lint_accepts_a_good_dockerfile() -> None:
    assert lint_dockerfile(GOOD_DOCKERFILE) == []


@pytest.mark.parametrize(
    ("bad", "problem"),
    [
        ("FROM python:3.11.14-slim-bookworm", "FROM python:latest"),
        ("FROM python:3.11.14-slim-bookworm", "FROM python"),
        ("FROM python:3.11.14-slim-bookworm", "FROM registry.local:5000/python"),
        ("--no-install-recommends ", ""),
        ("\\\n    && rm -rf /var/lib/apt/lists/*", ""),
        ("RUN pip install --no-cache-dir --no-deps -e .", "RUN pip install --no-deps -e ."),
        ("USER 1000:1000", "USER root"),
        ("USER 1000:1000", ""),
        ("COPY pyproject.toml ./", "COPY . ./"),
        (
            "COPY pyproject.toml ./\nRUN pip install --no-cache-dir -r requirements.txt\n",
            "RUN pip install --no-cache-dir -r requirements.txt\nCOPY pyproject.toml ./\n",
        ),
        ("USER 1000:1000", "USER 1000:1000\nADD https://example.com/w.pth /w.pth"),
    ],
)
def test_lint_flags_each_bad_habit(bad: str, problem: str) -> None:
    assert bad in GOOD_DOCKERFILE
    assert lint_dockerfile(GOOD_DOCKERFILE.replace(bad, problem, 1)) != []


def test_lint_resolves_arg_defaults_in_from() -> None:
    pinned = "ARG BASE=python:3.11.14-slim-bookworm\n" + GOOD_DOCKERFILE.replace(
        "FROM python:3.11.14-slim-bookworm", "FROM ${BASE}"
    )
    assert lint_dockerfile(pinned) == []
    assert lint_dockerfile(pinned.replace("3.11.14-slim-bookworm", "latest")) != []


@pytest.mark.parametrize("kind", sorted(DOCKERFILES))
def test_dockerfile_passes_lint(kind: str) -> None:
    assert lint_dockerfile(DOCKERFILES[kind].read_text()) == []


@pytest.mark.parametrize("kind", sorted(DOCKERFILES))
def test_dockerfile_installs_the_project_with_ffmpeg_and_pinnable_torch(kind: str) -> None:
    instructions = dockerfile_instructions(DOCKERFILES[kind].read_text())
    text = "\n".join(f"{keyword} {arguments}" for keyword, arguments in instructions)
    assert re.search(r"apt-get install [^\n]*\bffmpeg\b", text)  # ffmpeg + ffprobe
    assert "ARG TORCH_SPEC=" in text and "ARG TORCH_INDEX_URL=" in text
    assert '"$TORCH_SPEC"' in text and '"$TORCH_INDEX_URL"' in text
    assert re.search(r"pip install [^\n]*-e \.", text)
    assert ("WORKDIR", "/app") in instructions
    env = " ".join(arguments for keyword, arguments in instructions if keyword == "ENV")
    assert f"FINECO_ARTIFACTS={ARTIFACTS_MOUNT}" in env and "DO_NOT_TRACK=1" in env
    copied = {words.split()[0] for keyword, words in instructions if keyword == "COPY"}
    assert {"pyproject.toml", "prefect.yaml", *SOURCE_DIRS} <= copied


def test_cpu_image_uses_the_cpu_torch_index_and_runs_a_cpu_worker() -> None:
    instructions = dockerfile_instructions(DOCKERFILES["cpu"].read_text())
    assert instructions[0][0] == "FROM" and instructions[0][1].startswith("python:3.11")
    assert ("ARG", 'TORCH_INDEX_URL="https://download.pytorch.org/whl/cpu"') in instructions
    cmd = [arguments for keyword, arguments in instructions if keyword == "CMD"][-1]
    assert cmd.startswith('["prefect", "worker", "start", "--pool", "cpu", "--type", "process"')


def test_gpu_image_is_cuda_based_and_runs_the_gpu_worker() -> None:
    instructions = dockerfile_instructions(DOCKERFILES["gpu"].read_text())
    base = instructions[0][1]
    assert re.fullmatch(
        r"(nvidia/cuda:12\.\d+(\.\d+)?-cudnn-runtime-ubuntu22\.04|"
        r"pytorch/pytorch:[\w.]+-cuda12\.\d+-cudnn9-runtime)",
        base,
    ), base
    assert re.search(r"\bpython3\.11\b", " ".join(a for k, a in instructions if k == "RUN"))
    cmd = [arguments for keyword, arguments in instructions if keyword == "CMD"][-1]
    assert cmd == '["fineco", "worker", "--gpu"]'


@pytest.mark.parametrize("kind", sorted(DOCKERFILES))
def test_build_context_leaves_out_the_venv_and_artifacts(kind: str) -> None:
    # BuildKit reads <Dockerfile>.dockerignore beside the Dockerfile; it allowlists what is copied.
    patterns = (DOCKER / f"Dockerfile.{kind}.dockerignore").read_text().split("\n")
    patterns = [p.strip() for p in patterns if p.strip() and not p.startswith("#")]
    assert patterns[0] == "*"
    assert {"!pyproject.toml", "!prefect.yaml", *(f"!{d}" for d in SOURCE_DIRS)} <= set(patterns)
    assert not {"!.venv", "!artifacts"} & set(patterns)


# ------------------------------------------------------------------ compose.yaml


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def _environment(service: dict) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):  # the `- KEY=value` form
        env = dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def _volume_targets(service: dict) -> dict[str, str]:
    """Named volume -> mount path, for the short and the long volume syntax."""
    targets = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target = volume.split(":")[:2]
        else:
            source, target = volume["source"], volume["target"]
        targets[source] = target
    return targets


def test_compose_has_every_service(compose: dict) -> None:
    assert set(compose["services"]) >= {"postgres", *PREFECT_SERVICES}
    assert {"artifacts", "postgres"} <= set(compose["volumes"])


@pytest.mark.parametrize("name", PREFECT_SERVICES)
def test_prefect_services_share_server_artifacts_and_telemetry_settings(
    compose: dict, name: str
) -> None:
    service = compose["services"][name]
    env = _environment(service)
    api = urlparse(env["PREFECT_API_URL"])
    assert api.hostname == "server" and api.port == 4200 and api.path == "/api"
    assert env["DO_NOT_TRACK"] == "1"
    assert env["FINECO_ARTIFACTS"] == ARTIFACTS_MOUNT
    assert env["PREFECT_RESULTS_LOCAL_STORAGE_PATH"] == f"{ARTIFACTS_MOUNT}/prefect-results"
    assert _volume_targets(service)["artifacts"] == ARTIFACTS_MOUNT
    assert "container_name" not in service  # would stop `--scale`


def test_server_runs_on_healthy_postgres_without_analytics(compose: dict) -> None:
    services = compose["services"]
    server = services["server"]
    assert server["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert re.fullmatch(r"postgres:1[4-9][\w.-]*", services["postgres"]["image"])  # >= 14.9
    env = _environment(server)
    database = urlparse(env["PREFECT_SERVER_DATABASE_CONNECTION_URL"])
    assert database.scheme == "postgresql+asyncpg" and database.hostname == "postgres"
    assert env["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"
    assert urlparse(env["PREFECT_UI_API_URL"]).path == "/api"
    command = " ".join(server["command"])
    assert "prefect server start" in command and "--host 0.0.0.0" in command
    health = " ".join(server["healthcheck"]["test"])
    assert "/api/health" in health and "urllib" in health


def test_setup_creates_pools_limits_gpu_and_deploys(compose: dict) -> None:
    setup = compose["services"]["setup"]
    assert setup["depends_on"]["server"]["condition"] == "service_healthy"
    script = " ".join(setup["command"])
    assert re.search(r"work-pool create cpu --type process", script)
    assert re.search(r"work-pool create gpu --type process", script)
    assert "work-pool set-concurrency-limit gpu 1" in script
    assert "prefect --no-prompt deploy --all" in script
    for worker in ("cpu-worker", "gpu-worker"):
        condition = compose["services"][worker]["depends_on"]["setup"]["condition"]
        assert condition == "service_completed_successfully"


def test_workers_poll_their_pools(compose: dict) -> None:
    services = compose["services"]
    cpu_command = " ".join(services["cpu-worker"]["command"])
    assert "prefect worker start --pool cpu --type process" in cpu_command
    assert services["gpu-worker"]["command"] == ["fineco", "worker", "--gpu"]


def test_gpu_worker_reserves_one_nvidia_gpu(compose: dict) -> None:
    gpu_worker = compose["services"]["gpu-worker"]
    assert gpu_worker["build"]["dockerfile"].endswith("Dockerfile.gpu")
    devices = gpu_worker["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    for name in ("server", "setup", "cpu-worker"):
        assert compose["services"][name]["build"]["dockerfile"].endswith("Dockerfile.cpu")


def test_ports_are_published_on_loopback_only(compose: dict) -> None:
    published = {
        name: service["ports"]
        for name, service in compose["services"].items()
        if "ports" in service
    }
    assert published == {"server": ["127.0.0.1:4200:4200"]}


# ------------------------------------------------------------------ docker compose config


def _compose_plugin_works() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        version = subprocess.run(
            ["docker", "compose", "version"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return version.returncode == 0


@pytest.mark.skipif(not _compose_plugin_works(), reason="no `docker compose` plugin on PATH")
def test_docker_compose_config_accepts_the_file() -> None:
    # `docker compose config` validates against the compose spec without a daemon (checked with
    # compose v2.40 and no engine running).
    result = subprocess.run(
        ["docker", "compose", "-f", str(COMPOSE), "config", "-q"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
