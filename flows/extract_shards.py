"""Extract's shards on a work pool of GPU workers: N workers, one per GPU, embed disjoint shards.

With `execution.extract_pool` set, the extract stage (in the `fineco` flow) submits each pending
frame shard as a run of the deployment `fineco-extract/shard` on that pool and waits for them.
Each run embeds one shard (`pipeline.extract.extract_one_shard`) into the shared artifact root's
shard pool; a shard that is already there (a retried run, or one a restarted worker finished) is
skipped. The stage then reads every record back from the pool and writes its index, exactly as
when it embeds the shards itself, so the features do not depend on how many workers ran.

Start one worker per GPU, each pinned to its device and taking one run at a time:

    fineco worker --pool gpu-shards --device 0      # and --device 1, ... on the same host

(`prefect.yaml` deploys `fineco-extract/shard` on the pool `gpu-shards`.)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from uuid import UUID

import pandas as pd
from prefect import flow, get_client, get_run_logger
from prefect.deployments import run_deployment
from prefect.states import Cancelled

from flows.api import check_deployment_pool
from flows.parameters import check_pipeline
from pipeline.config import ConfigError
from pipeline.extract import GroupRunner, ShardWork, extract_one_shard
from pipeline.runner import built_extract_inputs
from storage.layout import artifact_root

log = logging.getLogger(__name__)

FLOW, DEPLOYMENT_NAME = "fineco-extract", "shard"
DEPLOYMENT = f"{FLOW}/{DEPLOYMENT_NAME}"
POLL_S = 1.0
PICKUP_TIMEOUT_S = 600.0  # no run of the pool started in this long: no worker is serving it


@flow(name=FLOW, validate_parameters=False, retries=1, retry_delay_seconds=5)
def fineco_extract_shard(
    config: str,
    dataset: str,
    shard: str,
    overrides: list[str] | None = None,
    synthetic: bool = False,
    stage_key: str = "",
) -> str:
    """Embed feature shard `shard` of `dataset`'s extract stage under `config`; returns the
    shard file's digest. `stage_key`: the submitting stage's cache key, which this run's inputs
    must give too (a worker on other code or another artifact root would embed other features)."""
    request = check_pipeline(config, ["extract"], [], overrides, synthetic)
    inputs = built_extract_inputs(request.settings, dataset, artifact_root())
    if stage_key and inputs.key != stage_key:
        raise ConfigError(
            f"extract {dataset}: this worker's inputs have cache key {inputs.key}, the stage that "
            f"submitted shard {shard} has {stage_key}: the worker runs other code, config or "
            f"artifact root ({artifact_root()}); update its checkout or FINECO_ARTIFACTS"
        )
    record = extract_one_shard(inputs, shard)
    get_run_logger().info("%s: %s (%d videos)", shard, record.digest[:16], len(record.rows))
    return record.digest


def pool_runner(
    pool: str, config: str, dataset: str, overrides: list[str], synthetic: bool, key: str = ""
) -> GroupRunner:
    """The extract stage's shard runner that submits each pending shard to `pool`; `key`, the
    stage's cache key, is checked by each run."""

    def run(groups: list[tuple[str, pd.DataFrame]], work: ShardWork) -> Iterator[str]:
        if not groups:
            return
        check_deployment_pool(DEPLOYMENT, pool, "execution.extract_pool")
        log.info("extract %s: %d shards to work pool %s", dataset, len(groups), pool)
        runs: dict[UUID, str] = {}
        for name, _ in groups:
            parameters = {
                "config": config,
                "dataset": dataset,
                "shard": name,
                "overrides": overrides,
                "synthetic": synthetic,
                "stage_key": key,
            }
            submitted = run_deployment(
                DEPLOYMENT, parameters=parameters, timeout=0, flow_run_name=f"extract-{name}"
            )
            runs[submitted.id] = name
        yield from _finished(runs, pool)

    return run


def _finished(runs: dict[UUID, str], pool: str) -> Iterator[str]:
    """Each shard's name as its run completes. A run that ends otherwise stops the stage once
    every other run has ended (so no shard is being written when a rerun cleans the pool). Runs
    that no worker takes within PICKUP_TIMEOUT_S are cancelled, and the stage stops."""
    waiting, failures = dict(runs), []
    submitted = time.monotonic()
    with get_client(sync_client=True) as client:
        while waiting:
            unstarted = []
            for run_id, name in list(waiting.items()):
                state = client.read_flow_run(run_id).state
                if state is None or state.is_scheduled():
                    unstarted.append(run_id)
                if state is None or not state.is_final():
                    continue
                del waiting[run_id]
                if state.is_completed():
                    yield name
                else:
                    failures.append(
                        f"{name}: flow run {run_id} ended {state.name} ({state.message})"
                    )
            idle = bool(waiting) and len(unstarted) == len(waiting)
            if idle and time.monotonic() - submitted > PICKUP_TIMEOUT_S:
                for run_id in unstarted:
                    client.set_flow_run_state(run_id, Cancelled(message="no worker took it"))
                raise RuntimeError(
                    f"extract: no worker of work pool {pool!r} took the {len(unstarted)} "
                    f"remaining shard runs in {PICKUP_TIMEOUT_S:.0f} s (cancelled); start one per "
                    f"GPU: fineco worker --pool {pool} --device N"
                )
            if waiting:
                time.sleep(POLL_S)
    if failures:
        raise RuntimeError(
            f"extract: {len(failures)} shard runs did not complete; finished shards are kept and "
            "a rerun submits only the others. " + "; ".join(failures)
        )
