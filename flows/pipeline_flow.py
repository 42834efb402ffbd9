"""The `fineco` Prefect flow: every stage of the pipeline as a cached, retryable task (DESIGN §6).

Parameters: `config` (preset name or YAML path), `stages` (default: all; upstream stages come from
cache or run first), `rerun` (stages built again even when complete), `overrides` (dotted
`key=value`). The stage order and wiring are `pipeline.runner`'s; this flow only decides how
each stage call runs: as a task named `<stage>[<dataset or variant>]`, with the dashboard's
artifacts (run progress, metric tables, the report) and stage logs forwarded to Prefect.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger

from flows.dashboard import (
    ProgressArtifact,
    forward_stage_logs,
    metrics_rows,
    publish_markdown,
    publish_table,
)
from flows.tasks import bound_stage_task
from pipeline.config import load_config
from pipeline.runner import (
    STAGES,
    Results,
    StageFunction,
    parse_stages,
    planned_calls,
    run_stages,
)
from storage.layout import Manifest, artifact_root


def _executor(artifacts: Path, rerun: set[str], progress: ProgressArtifact, total: int):
    """Each stage call becomes a task run; the progress artifact counts finished calls."""
    done: list[str] = []

    def execute(
        stage: str, label: str, function: StageFunction, arguments: dict[str, Any]
    ) -> Manifest:
        task = bound_stage_task(artifacts, stage, label, stage in rerun)
        manifest = task(stage, label, function, arguments, stage in rerun)
        done.append(f"{stage}[{label}]")
        progress.update(len(done), total)
        return manifest

    return execute


def publish_results(results: Results) -> None:
    """Metric tables per evaluated variant and the report, as dashboard artifacts."""
    for group, stages in results.items():
        if "evaluate" in stages:
            metrics = json.loads(stages["evaluate"].output("metrics").read_text())
            publish_table(f"metrics-{group}", metrics_rows(metrics), f"retrieval, {group}")
    if "report" in results:
        report = results["report"]["report"].output("report")
        publish_markdown("report", report.read_text(), f"FineCo report ({report})")


@flow(name="fineco")
def fineco(
    config: str = "demo",
    stages: list[str] | None = None,
    rerun: list[str] | None = None,
    overrides: list[str] | None = None,
) -> dict[str, dict[str, str]]:
    """Run the FineCo pipeline; returns the stage folders by group and stage."""
    logger = get_run_logger()
    settings = load_config(config, list(overrides or []))
    chosen = parse_stages(stages or STAGES)
    reruns = set(parse_stages(rerun or []))
    artifacts = artifact_root()
    logger.info("config %s, stages %s, rerun %s, artifacts %s", config, chosen, reruns, artifacts)
    total = planned_calls(settings, chosen)
    tracker = ProgressArtifact(f"fineco {settings.name}: {total} stage calls")
    with forward_stage_logs():
        results = run_stages(
            settings, chosen, artifacts, _executor(artifacts, reruns, tracker, total)
        )
    tracker.finish()
    publish_results(results)
    folders = {g: {s: m.path for s, m in stages.items()} for g, stages in results.items()}
    logger.info("results: %s", json.dumps(folders, indent=1))
    return folders
