"""docker/ and prefect.yaml checked against the project they package, without a Docker engine.

A small Dockerfile lint (pinned bases, no root, cached layers); then the images, the compose
stack and the deployments against the code: every packaged folder is in the image, every worker
command parses with the real command line or polls a pool that has deployments, the GPU stages
are deployed on the one-run pool, services share the server and the artifact volume.
`docker compose config` runs only where the compose plugin is installed (no daemon needed).
"""

from __future__ import annotations

import importlib
import json
import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

from flows.tasks import RESULTS_FOLDER
from pipeline.config import ExecutionConfig

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
COMPOSE = DOCKER / "compose.yaml"
DOCKERFILES = {"cpu": DOCKER / "Dockerfile.cpu", "gpu": DOCKER / "Dockerfile.gpu"}
SOURCE_DIRS = ("pipeline", "flows", "models", "storage")  # the lint's "source tree" copies
GPU_STAGES = ExecutionConfig().gpu_stages


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


def project_folders() -> set[str]:
    """The top-level folders pyproject.toml packages (its `packages.find` include patterns)."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    return {pattern.rstrip("*") for pattern in patterns}


@pytest.mark.parametrize("kind", sorted(DOCKERFILES))
def test_image_holds_every_package_the_project_installs(kind: str) -> None:
    """The editable install inside the image needs every packaged folder and prefect.yaml (the
    deployments); the build context must let them through and leave the venv and artifacts."""
    instructions = dockerfile_instructions(DOCKERFILES[kind].read_text())
    copied = {words.split()[0] for keyword, words in instructions if keyword == "COPY"}
    needed = {"pyproject.toml", "prefect.yaml", *project_folders()}
    assert needed <= copied, needed - copied
    # BuildKit reads <Dockerfile>.dockerignore beside the Dockerfile: an allowlist after "*".
    lines = (DOCKER / f"Dockerfile.{kind}.dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert patterns[0] == "*"
    assert {f"!{name}" for name in needed} <= set(patterns)
    assert not {"!.venv", "!artifacts"} & set(patterns)


# ------------------------------------------------------------------ compose.yaml and prefect.yaml


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def deployments() -> dict[str, dict]:
    data = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    return {item["name"]: item for item in data["deployments"]}


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


def _command(service: dict) -> list[str]:
    """The service's command as words (`sh -c "exec ..."` unwrapped, `$$` unescaped)."""
    command = service["command"]
    if isinstance(command, str):
        command = shlex.split(command)
    if command[:1] == ["sh"]:
        command = shlex.split(command[-1].removeprefix("exec "))
    return [word.replace("$$", "$") for word in command]


def _prefect_services(compose: dict) -> dict[str, dict]:
    return {name: s for name, s in compose["services"].items() if name != "postgres"}


def test_deployments_match_the_served_ones_and_load_the_flow(deployments: dict) -> None:
    """prefect.yaml deploys what `fineco serve` serves, with the same entrypoints and
    parameters; the stage deployments run the `fineco` flow on one stage, the study its flow."""
    from flows import deployments as served
    from flows.extract_shards import DEPLOYMENT_NAME, FLOW, fineco_extract_shard
    from flows.pipeline_flow import fineco
    from flows.study_flow import fineco_study

    assert set(deployments) == {"full", *served.STAGE_DEPLOYMENTS, "study", DEPLOYMENT_NAME}
    # fineco-extract/shard runs on a work pool of GPU workers only (execution.extract_pool)
    deployments = dict(deployments)  # the module's fixture stays whole
    shard = deployments.pop(DEPLOYMENT_NAME)
    path, _, attribute = shard["entrypoint"].partition(":")
    module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
    assert getattr(module, attribute) is fineco_extract_shard
    assert fineco_extract_shard.name == FLOW
    serving = {d.name: d for d in served.deployments()}
    assert set(serving) == set(deployments)
    for name, deployment in deployments.items():
        path, _, attribute = deployment["entrypoint"].partition(":")
        module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        flow = getattr(module, attribute)
        assert flow is (fineco_study if name == "study" else fineco), name
        assert flow.name == "fineco", name  # so the deployment is fineco/<name>
        assert deployment["parameters"] == serving[name].parameters, name
        stages = deployment["parameters"].get("stages")
        assert stages == (None if name in ("full", "study") else [name]), name


def test_gpu_stages_are_deployed_on_the_pool_limited_to_one_run(
    compose: dict, deployments: dict
) -> None:
    """The stages the flow sends to the GPU pool (execution.gpu_stages) are the ones deployed
    there, and the pool the compose setup limits to one run at a time is that pool."""
    gpu_pool = {d["work_pool"]["name"] for n, d in deployments.items() if n in GPU_STAGES}
    assert len(gpu_pool) == 1
    on_gpu = {n for n, d in deployments.items() if d["work_pool"]["name"] in gpu_pool}
    assert on_gpu == {*GPU_STAGES, "study"}  # the study trains in its own run
    script = compose["services"]["setup"]["command"][-1]
    (pool,) = gpu_pool
    assert f"set-concurrency-limit {pool} 1" in script
    created = set(re.findall(r"work-pool create (\S+)", script))
    assert created == {d["work_pool"]["name"] for d in deployments.values()}


def test_every_worker_command_runs(compose: dict, deployments: dict) -> None:
    """`fineco ...` commands parse with the real command line; `prefect worker start` polls a
    pool that has deployments."""
    from flows.cli import _parser

    pools = {d["work_pool"]["name"] for d in deployments.values()}
    commands = [_command(s) for n, s in _prefect_services(compose).items() if n != "server"]
    for path in DOCKERFILES.values():
        cmd = [a for k, a in dockerfile_instructions(path.read_text()) if k == "CMD"][-1]
        commands.append(json.loads(cmd))
    for words in commands:
        if words[0] == "fineco":
            _parser().parse_args(words[1:])  # exits on an unknown command or option
        elif words[:3] == ["prefect", "worker", "start"]:
            assert words[words.index("--pool") + 1] in pools, words


def test_services_share_the_server_and_the_artifact_volume(compose: dict) -> None:
    """Every Prefect service talks to the server service and sees the artifacts where
    FINECO_ARTIFACTS says (results stored there too); the server's database is the postgres
    service, started first."""
    services = compose["services"]
    server_command = _command(services["server"])
    port = int(server_command[server_command.index("--port") + 1])
    for name, service in _prefect_services(compose).items():
        env = _environment(service)
        api = urlparse(env["PREFECT_API_URL"])
        assert (api.hostname, api.port, api.path) == ("server", port, "/api"), name
        mount = _volume_targets(service)["artifacts"]
        assert env["FINECO_ARTIFACTS"] == mount, name
        assert env["PREFECT_RESULTS_LOCAL_STORAGE_PATH"] == f"{mount}/{RESULTS_FOLDER}", name
        assert env["DO_NOT_TRACK"] == "1" and "container_name" not in service, name
    database = urlparse(_environment(services["server"])["PREFECT_SERVER_DATABASE_CONNECTION_URL"])
    assert database.hostname == "postgres" and database.scheme == "postgresql+asyncpg"
    assert services["server"]["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_gpu_worker_reserves_one_nvidia_gpu_and_only_loopback_is_published(compose: dict) -> None:
    gpu_worker = compose["services"]["gpu-worker"]
    assert gpu_worker["build"]["dockerfile"].endswith("Dockerfile.gpu")
    devices = gpu_worker["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    published = {n: s["ports"] for n, s in compose["services"].items() if "ports" in s}
    assert all(port.startswith("127.0.0.1:") for ports in published.values() for port in ports)


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
