"""The dashboard: flows/artifacts.py (artifacts, metrics rows), flows/telemetry.py (GPU
telemetry) and flows/stage_logs.py (stage-log forwarding).

API tests run small flows against the session's Prefect test server (conftest.py) and read
artifacts and logs back through the client; the rest need no server.
"""

import json
import logging
import threading
import time
import warnings
from types import SimpleNamespace
from uuid import UUID

import pytest
from prefect import flow, task
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.context import get_run_context
from prefect.logging.handlers import APILogWorker
from prefect.settings import PREFECT_LOGGING_TO_API_BATCH_INTERVAL, temporary_settings
from prefect_runs import recorded_progress_updates

from flows import artifacts, telemetry
from flows.artifacts import (
    ProgressArtifact,
    artifact_key,
    epoch_rows,
    metrics_rows,
    publish_markdown,
    publish_table,
)
from flows.stage_logs import forward_stage_logs
from flows.telemetry import gpu_telemetry, visible_gpu_indices

MIB = 2**20


@pytest.fixture(scope="module")
def harness(prefect_server):
    """The session's Prefect server, with logs sent to it in short batches."""
    with temporary_settings({PREFECT_LOGGING_TO_API_BATCH_INTERVAL: 0.2}):
        yield


def read_artifacts(flow_run_id: UUID):
    with get_client(sync_client=True) as client:
        return client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )


def read_logs(flow_run_id: UUID, until, timeout_s: float = 10.0):
    """The run's logs once `until(logs)` holds (logs reach the API in batches)."""
    APILogWorker.drain_all(timeout=5)  # send what is queued now
    deadline = time.monotonic() + timeout_s
    with get_client(sync_client=True) as client:
        while True:
            logs = client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))
            )
            if until(logs) or time.monotonic() > deadline:
                return logs
            time.sleep(0.2)


class FakeNvml:
    """The few pynvml calls the dashboard makes, over `count` GPUs."""

    def __init__(self, count: int = 2, fail_samples: bool = False) -> None:
        self.count, self.fail_samples = count, fail_samples
        self.initialised = 0

    def nvmlInit(self):
        self.initialised += 1

    def nvmlShutdown(self):
        self.initialised -= 1

    def nvmlDeviceGetCount(self):
        return self.count

    def nvmlDeviceGetHandleByIndex(self, index):
        return index

    def nvmlDeviceGetUtilizationRates(self, handle):
        if self.fail_samples:
            raise RuntimeError("NVML_ERROR_GPU_IS_LOST")
        return SimpleNamespace(gpu=40 + handle, memory=10)

    def nvmlDeviceGetMemoryInfo(self, handle):
        return SimpleNamespace(used=(handle + 1) * 1000 * MIB, total=81559 * MIB, free=0)


class NoDriverNvml(FakeNvml):
    def nvmlInit(self):
        raise RuntimeError("NVML Shared Library Not Found")


def telemetry_threads():
    return [thread for thread in threading.enumerate() if thread.name == "gpu-telemetry"]


METRICS = {
    "variant": "fineco",
    "plain": {"R@1": 12.345, "R@5": 40.0, "R@10": 61.66, "MedR": 7.5, "MeanR": 20.04},
    "dual_softmax": {"R@1": 15.0, "R@5": 45.55, "R@10": 66.6, "MedR": 6, "MeanR": 18.0},
    "mmpt": {"R@1": 13.0, "R@5": 41.0, "R@10": 62.0, "MedR": 7.0, "MeanR": 19.96},
    "mmpt_dual_softmax": {"R@1": 16.0, "R@5": 46.0, "R@10": 67.0, "MedR": 6.0, "MeanR": 17.0},
    "dual_softmax_temperature": 100.0,
    "frame_precision": {"k": 3, "precision_at_k": 0.5, "random_expectation": 0.2, "pairs": 9},
}


# --- no server needed ----------------------------------------------------------------------------


def test_metrics_rows_flattens_the_four_rankings_rounded():
    rows = metrics_rows(METRICS)
    assert [(row["ranking"], row["dual_softmax"]) for row in rows] == [
        ("ours", False),
        ("ours", True),
        ("MMPT", False),
        ("MMPT", True),
    ]
    assert rows[0] == {
        "variant": "fineco",
        "ranking": "ours",
        "dual_softmax": False,
        "R@1": 12.3,
        "R@5": 40.0,
        "R@10": 61.7,
        "MedR": 7.5,
        "MeanR": 20.0,
    }
    assert rows[1]["MedR"] == 6.0 and rows[1]["R@5"] == 45.5  # 45.55 is 45.549… as a float


def test_metrics_rows_skips_missing_sections_and_names_missing_keys():
    assert len(metrics_rows({"variant": "v", "plain": METRICS["plain"]})) == 1
    with pytest.raises(ValueError, match=r"'mmpt'.*MeanR"):
        metrics_rows({"variant": "v", "mmpt": {"R@1": 1, "R@5": 2, "R@10": 3, "MedR": 4}})


def test_artifact_key_keeps_lowercase_letters_digits_and_dashes():
    assert artifact_key("Retrieval Metrics_v1") == "retrieval-metrics-v1"
    assert artifact_key("--Decode__shards--") == "decode-shards"
    assert artifact_key("fineco-report") == "fineco-report"
    with pytest.raises(ValueError, match="'!!!'"):
        artifact_key("!!!")


def test_everything_is_a_quiet_no_op_outside_a_run(monkeypatch, caplog):
    def forbidden(*args, **kwargs):
        raise AssertionError("called the Prefect API outside a run")

    for name in ("create_progress_artifact", "update_progress_artifact"):
        monkeypatch.setattr(artifacts, name, forbidden)
    for name in ("create_table_artifact", "create_markdown_artifact"):
        monkeypatch.setattr(artifacts, name, forbidden)
    stage_logger = logging.getLogger("pipeline")
    handlers, level = list(stage_logger.handlers), stage_logger.level
    caplog.set_level(logging.DEBUG, logger="flows")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        progress = ProgressArtifact("decode")
        progress.update(3, 10)
        progress.finish()
        assert progress.artifact_id is None
        assert publish_table("metrics", [{"a": 1}], "d") is None
        assert publish_markdown("report", "# r", "d") is None
        with forward_stage_logs():
            assert stage_logger.handlers == handlers and stage_logger.level == level
            logging.getLogger("pipeline.x").info("not forwarded")
    assert {record.levelno for record in caplog.records} == {logging.DEBUG}


def real_gpu_present() -> bool:
    nvml = telemetry._load_nvml()
    if nvml is None or telemetry._open_gpus(nvml) is None:
        return False
    telemetry._shutdown(nvml)
    return True


def test_gpu_telemetry_without_gpu_logs_one_line_and_returns(caplog):
    if real_gpu_present():
        pytest.skip("this machine has an NVIDIA GPU")
    caplog.set_level(logging.INFO, logger="flows.telemetry")
    start = time.monotonic()
    with gpu_telemetry(interval_s=0.01):
        time.sleep(0.05)
    assert time.monotonic() - start < 1.0
    lines = [r.getMessage() for r in caplog.records if r.name == "flows.telemetry"]
    assert lines == ["no NVIDIA GPU visible; telemetry off"]
    assert not telemetry_threads()


@pytest.mark.parametrize("nvml", [None, NoDriverNvml()], ids=["no-pynvml", "no-driver"])
def test_gpu_telemetry_off_without_nvml(monkeypatch, caplog, nvml):
    monkeypatch.setattr(telemetry, "_load_nvml", lambda: nvml)
    caplog.set_level(logging.INFO, logger="flows.telemetry")
    with gpu_telemetry(interval_s=0.01):
        pass
    assert [r.getMessage() for r in caplog.records] == ["no NVIDIA GPU visible; telemetry off"]


def test_gpu_telemetry_samples_every_interval_and_stops_on_exit(monkeypatch, caplog):
    nvml = FakeNvml(count=2)
    monkeypatch.setattr(telemetry, "_load_nvml", lambda: nvml)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    caplog.set_level(logging.INFO, logger="flows.telemetry")
    with gpu_telemetry(interval_s=0.02):
        time.sleep(0.2)
        assert len(telemetry_threads()) == 1
        assert nvml.initialised == 1
    lines = [r.getMessage() for r in caplog.records]
    assert 3 <= len(lines) <= 15, lines
    assert lines[0] == (
        "GPU telemetry: GPU 0: 40% util, 1000/81559 MiB; GPU 1: 41% util, 2000/81559 MiB"
    )
    assert not telemetry_threads() and nvml.initialised == 0
    time.sleep(0.1)
    assert len(caplog.records) == len(lines), "logged after the block ended"


def test_gpu_telemetry_stops_promptly_with_a_long_interval(monkeypatch):
    monkeypatch.setattr(telemetry, "_load_nvml", lambda: FakeNvml())
    start = time.monotonic()
    with gpu_telemetry(interval_s=600.0, logger=logging.getLogger("test.telemetry")):
        pass
    assert time.monotonic() - start < 1.0 and not telemetry_threads()


def test_gpu_telemetry_respects_cuda_visible_devices(monkeypatch, caplog):
    monkeypatch.setattr(telemetry, "_load_nvml", lambda: FakeNvml(count=4))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2")
    caplog.set_level(logging.INFO, logger="test.telemetry")
    with gpu_telemetry(interval_s=5.0, logger=logging.getLogger("test.telemetry")):
        pass
    assert [r.getMessage() for r in caplog.records] == [
        "GPU telemetry: GPU 2: 42% util, 3000/81559 MiB"
    ]


def test_gpu_telemetry_errors_stay_in_the_thread(monkeypatch, caplog):
    monkeypatch.setattr(telemetry, "_load_nvml", lambda: FakeNvml(fail_samples=True))
    hook_calls = []
    monkeypatch.setattr(threading, "excepthook", hook_calls.append)
    caplog.set_level(logging.DEBUG, logger="flows.telemetry")
    with gpu_telemetry(interval_s=0.01):
        time.sleep(0.1)
    warnings_logged = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings_logged) == 1 and "GPU_IS_LOST" in warnings_logged[0].getMessage()
    assert not hook_calls and not telemetry_threads()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, [0, 1, 2]),
        ("", []),
        ("2,0", [2, 0]),
        ("0,7,1", [0]),  # CUDA stops at the first invalid index
        ("1,-1,2", [1]),
        ("0,0", [0]),
        ("GPU-8f0e5b1c-aaaa", [0, 1, 2]),  # UUIDs: not mapped, every GPU watched
    ],
)
def test_visible_gpu_indices(monkeypatch, value, expected):
    if value is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", value)
    assert visible_gpu_indices(3) == expected


@pytest.mark.gpu
def test_gpu_telemetry_on_a_real_gpu(caplog):
    if not real_gpu_present():
        pytest.skip("needs nvidia-ml-py and an NVIDIA GPU")
    caplog.set_level(logging.INFO, logger="flows.telemetry")
    with gpu_telemetry(interval_s=0.1):
        time.sleep(0.35)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) >= 2 and all(" MiB" in line and "% util" in line for line in lines)


# --- against the test server ---------------------------------------------------------------------


def test_artifacts_reach_the_api(harness, monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(artifacts, "_now", lambda: clock[0])
    sent = recorded_progress_updates(monkeypatch)
    rows = metrics_rows(METRICS)

    @flow
    def artifacts_flow() -> UUID:
        progress = ProgressArtifact("decode shards")
        for now, done in [(1000.5, 1), (1002.1, 3), (1003.0, 4), (1003.0, 10)]:
            clock[0] = now
            progress.update(done, 10)
        progress.finish()
        assert publish_table("Retrieval Metrics_v1", rows, "retrieval, fineco") is not None
        assert publish_markdown("fineco-report", "# FineCo\n\nR@1 12.3", "report") is not None
        return get_run_context().flow_run.id

    flow_run_id = artifacts_flow()
    assert sent == [30.0, 100.0]  # 1 s after creation: held back; 100 % always sent
    by_type = {artifact.type: artifact for artifact in read_artifacts(flow_run_id)}
    assert set(by_type) == {"progress", "table", "markdown"}
    assert by_type["progress"].data == 100.0
    assert by_type["progress"].description == "decode shards"
    assert by_type["table"].key == "retrieval-metrics-v1"
    assert json.loads(by_type["table"].data) == rows
    assert by_type["markdown"].key == "fineco-report"
    assert by_type["markdown"].data.startswith("# FineCo")


def test_stage_logs_and_telemetry_reach_the_run_logs(harness, monkeypatch, request):
    monkeypatch.setattr(telemetry, "_load_nvml", lambda: FakeNvml(count=1))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    stage_logger = logging.getLogger("pipeline")
    handlers_before, level_before = list(stage_logger.handlers), stage_logger.level
    models_logger = logging.getLogger("models")
    request.addfinalizer(lambda level=models_logger.level: models_logger.setLevel(level))
    models_logger.setLevel(logging.WARNING)  # a level the user chose is kept

    @task
    def stage_task() -> UUID:
        with forward_stage_logs(), gpu_telemetry(interval_s=0.05):
            logging.getLogger("pipeline.decode").info("decoded 3 shards")
            logging.getLogger("pipeline.decode").debug("debug stays local")
            logging.getLogger("unrelated.lib").warning("not a stage logger")
            logging.getLogger("models.s3dg").info("below the user's level for models")
            worker = threading.Thread(
                target=logging.getLogger("storage.shards").info, args=("written by a worker",)
            )
            worker.start()
            worker.join()
            time.sleep(0.1)
        logging.getLogger("models.s3dg").info("after the block: not forwarded")
        return get_run_context().task_run.id

    @flow
    def logs_flow() -> tuple[UUID, UUID]:
        return get_run_context().flow_run.id, stage_task()

    flow_run_id, task_run_id = logs_flow()
    wanted = {"decoded 3 shards", "written by a worker"}
    logs = read_logs(
        flow_run_id,
        until=lambda logs: (
            wanted <= {log.message for log in logs}
            and any(log.message.startswith("GPU telemetry") for log in logs)
        ),
    )
    by_message = {log.message: log for log in logs}
    for message in wanted:
        assert by_message[message].task_run_id == task_run_id, message
    assert by_message["decoded 3 shards"].name == "pipeline.decode"
    assert by_message["written by a worker"].name == "storage.shards"
    gpu_lines = [log for log in logs if log.message.startswith("GPU telemetry")]
    assert gpu_lines and all(log.task_run_id == task_run_id for log in gpu_lines)
    assert gpu_lines[0].message == "GPU telemetry: GPU 0: 40% util, 1000/81559 MiB"
    for message in (
        "debug stays local",
        "not a stage logger",
        "below the user's level for models",
        "after the block: not forwarded",
    ):
        assert message not in by_message
    assert stage_logger.handlers == handlers_before and stage_logger.level == level_before


def test_epoch_rows_are_percent_and_one_based():
    line = {"epoch": 0, "step": 38, "r1": 41.234, "r5": 70.0, "medr": 2.0, "best": True,
            "selector_precision": 0.6123, "selector_random": 0.147,
            "selector_entropy": 0.55555}  # fmt: skip
    bare = {"epoch": 1, "step": 76, "r1": 40.0, "r5": 69.0, "medr": 2.0, "selector_entropy": None}
    assert epoch_rows([line, bare]) == [
        {"epoch": 1, "R@1": 41.2, "R@5": 70.0, "MedR": 2.0, "selector_precision": 61.2,
         "selector_random": 14.7, "selector_entropy": 0.556},
        {"epoch": 2, "R@1": 40.0, "R@5": 69.0, "MedR": 2.0, "selector_precision": None,
         "selector_random": None, "selector_entropy": None},
    ]  # fmt: skip
