"""`fineco/study`: the study of `fineco study` as a Prefect flow (issue 11; DESIGN.md §6).

A flow of its own under the flow name `fineco`, so that its deployment reads `fineco/study`
beside `fineco/full` and the stage deployments. Every stage call of the study (benchmark, front
ends, one pretraining per seed, each fine-tune and evaluation, the study stage) runs as a cached,
retryable task named `<stage>[<label>]`, with a progress bar over all of them; study.md is
published as a markdown artifact. It runs in the process that executes the flow: deploy it on
the GPU pool to train on a GPU (the stage-by-stage GPU dispatch of `fineco/full` does not apply).
"""

from __future__ import annotations

from pathlib import Path

from prefect import State, flow, get_run_logger
from prefect.states import Failed

from flows.artifacts import ProgressArtifact, publish_markdown
from flows.parameters import check_study
from flows.run_states import begin_attempt
from flows.stage_logs import forward_stage_logs
from flows.tasks import bound_stage_task
from pipeline.config import ConfigError, ExecutionConfig
from pipeline.runner import StageFunction
from pipeline.stage import StageInputs
from pipeline.study import run_study
from pipeline.study_plan import planned_study_calls
from storage.layout import Manifest, artifact_root


def _task_executor(
    execution: ExecutionConfig, artifacts: Path, progress: ProgressArtifact, total: int, rerun: bool
):
    """Each stage call as a task run, with GPU telemetry on the GPU stages (`rerun`: the study
    stage is built again)."""
    done = 0

    def execute(label: str, function: StageFunction, inputs: StageInputs) -> Manifest:
        nonlocal done
        again = rerun and inputs.stage == "study"
        task = bound_stage_task(artifacts, inputs.stage, label, again)
        gpu = inputs.stage in execution.gpu_stages
        telemetry = execution.telemetry_interval_s if gpu else 0.0
        manifest = task(label, function, inputs, again, telemetry)
        done += 1
        progress.update(done, total)
        return manifest

    return execute


@flow(name="fineco", validate_parameters=False)  # checked by its first step
def fineco_study(
    config: str = "study",
    seeds: int = 3,
    strategies: list[str] | None = None,
    variants: list[str] | None = None,
    quick: bool = False,
    overrides: list[str] | None = None,
    rerun_analysis: bool = False,
) -> str | State:
    """FineCo vs the baseline on the long-sparse benchmark, `seeds` seeds; returns study.json's
    path. `strategies` default ["median"], `variants` default paper and sim; `quick`: one seed
    on a smaller benchmark; `rerun_analysis`: build the study stage again (the runs stay cached).
    A bad parameter ends the run Failed at once, with a one-line message.
    """
    logger = get_run_logger()
    try:
        request = check_study(config, seeds, strategies, variants, quick, overrides, rerun_analysis)
    except ConfigError as error:
        logger.error("invalid parameters: %s", error)
        return Failed(message=f"invalid parameters: {error}")
    begin_attempt(logger)
    assert request is not None  # the config was read
    settings, seed_list = request.settings, request.seeds
    chosen_strategies, chosen_variants = request.strategies, request.variants
    artifacts = artifact_root()
    total = planned_study_calls(len(seed_list), chosen_strategies, chosen_variants)
    logger.info(
        "study %s: seeds %s, strategies %s, variants %s, %d stage calls, artifacts %s",
        config,
        seed_list,
        chosen_strategies,
        chosen_variants,
        total,
        artifacts,
    )
    progress = ProgressArtifact(f"fineco study {settings.name}: {total} stage calls")
    execute = _task_executor(settings.execution, artifacts, progress, total, rerun_analysis)
    with forward_stage_logs():
        manifest = run_study(
            settings, artifacts, seed_list, chosen_strategies, execute, chosen_variants
        )
    progress.finish()
    study_md = manifest.output("markdown")
    publish_markdown("study", study_md.read_text(), f"FineCo study ({study_md})")
    logger.info("study: %s", manifest.output("study"))
    return str(manifest.output("study"))
