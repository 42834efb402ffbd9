"""Deployments of the `fineco` flow: `fineco/full`, one per stage, `fineco/study` (DESIGN §6).

A stage deployment runs the same flow with `stages=[<stage>]`: that stage runs (or is a cache
hit) and its upstream comes from cache. `fineco serve` serves them all from one process (no work
pool needed); `prefect.yaml` declares the same deployments for `prefect deploy` on work pools.
"""

from __future__ import annotations

from prefect import serve
from prefect.deployments.runner import RunnerDeployment

from flows.pipeline_flow import fineco
from flows.study_flow import fineco_study
from pipeline.config import STAGES

STAGE_DEPLOYMENTS = STAGES[1:]  # ingest is cheap and always part of its dataset's front end
DEFAULT_CONFIG = "demo"
STUDY_CONFIG = "study"


def deployments(config: str = DEFAULT_CONFIG) -> list[RunnerDeployment]:
    """`full` plus one deployment per stage, all with `config` as the default preset, and
    `study` (`fineco study` with the study preset)."""
    full = fineco.to_deployment(
        name="full",
        parameters={"config": config},
        description="Every stage of the FineCo pipeline (cached; rerun with the `rerun` list).",
    )
    stages = [
        fineco.to_deployment(
            name=stage,
            parameters={"config": config, "stages": [stage]},
            description=f"The {stage} stage; its upstream comes from cache (or runs first).",
        )
        for stage in STAGE_DEPLOYMENTS
    ]
    study = fineco_study.to_deployment(
        name="study",
        parameters={"config": STUDY_CONFIG},
        description="FineCo vs the baseline on the long-sparse benchmark (seeds, paired tests).",
    )
    return [full, *stages, study]


def serve_all(config: str = DEFAULT_CONFIG, limit: int = 1) -> None:
    """Serve every deployment from this process until interrupted (runs execute one at a time
    by default: the stages share the machine's cores and its GPU)."""
    serve(*deployments(config), limit=limit)
