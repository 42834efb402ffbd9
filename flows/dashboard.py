"""What the Prefect dashboard shows while the pipeline runs (DESIGN.md §6, "Dashboard").

- `ProgressArtifact`: a per-stage progress bar (a Prefect progress artifact, rate-limited updates).
- `publish_table` / `publish_markdown`: table and markdown artifacts (metrics, the report);
  `metrics_rows` flattens evaluate's `metrics.json` into table rows.
- `gpu_telemetry`: GPU utilisation and memory logged every few seconds while a GPU stage runs.
- `forward_stage_logs`: the stage loggers (`pipeline`, `storage`, `models`) shipped to the API so
  their records show in the run's logs.

Every function is safe outside a flow or task run: there it logs at debug level and does nothing
(no API call, no warning), except `gpu_telemetry`, which then logs to this module's logger. The
dashboard is a side channel: a failed API call is logged as a warning and never fails the stage.
Sync API throughout; the artifact calls pass `_sync=True` so they also block (rather than return
a coroutine) when called from an async flow.
"""

from __future__ import annotations

import contextvars
import copy
import logging
import os
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.context import FlowRunContext, TaskRunContext, get_run_context
from prefect.exceptions import MissingContextError
from prefect.logging import get_run_logger
from prefect.logging.handlers import APILogHandler

from pipeline.metrics import METRIC_KEYS

log = logging.getLogger(__name__)

STAGE_LOGGERS = ("pipeline", "storage", "models")  # forwarded by `forward_stage_logs`
PROGRESS_MIN_INTERVAL_S = 2.0  # at most one progress update per this many seconds (except 100 %)
MIB = 2**20

# evaluate's metrics.json section → (ranking, dual_softmax), in table order
_METRIC_SECTIONS = {
    "plain": ("ours", False),
    "dual_softmax": ("ours", True),
    "mmpt": ("MMPT", False),
    "mmpt_dual_softmax": ("MMPT", True),
}

_now = time.monotonic  # the clock of the progress rate limit (a seam for tests)


@dataclass(frozen=True)
class _RunIds:
    flow_run_id: UUID
    task_run_id: UUID | None  # None when in a flow run outside any task


def _run_ids() -> _RunIds | None:
    """Ids of the flow/task run this thread is in, or None outside a run."""
    try:
        context = get_run_context()
    except MissingContextError:
        return None
    if isinstance(context, TaskRunContext):
        return _RunIds(context.task_run.flow_run_id, context.task_run.id)
    if isinstance(context, FlowRunContext) and context.flow_run is not None:
        return _RunIds(context.flow_run.id, None)
    return None


def artifact_key(key: str) -> str:
    """A Prefect artifact key made from `key`: lowercase letters, digits and single dashes.

    Prefect rejects any other character, so the key is lowercased and every run of other
    characters becomes one dash, trimmed at both ends: "Retrieval Metrics_v1" →
    "retrieval-metrics-v1". Keyed artifacts are versioned under their key and listed on the
    dashboard's Artifacts page.
    """
    sanitised = re.sub(r"[^a-z0-9]+", "-", key.lower()).strip("-")
    if not sanitised:
        raise ValueError(f"artifact key {key!r} has no letter or digit to build a key from")
    return sanitised


class ProgressArtifact:
    """A progress bar on the run's page: created at 0 %, updated as work is done.

    Updates are sent at most once per `PROGRESS_MIN_INTERVAL_S` seconds (a shard loop can call
    `update` thousands of times); reaching 100 % is always sent. Thread-safe. Outside a run, or
    when creation failed, every method does nothing.
    """

    def __init__(self, description: str) -> None:
        self.description = description
        self.artifact_id: UUID | None = None
        self._lock = threading.Lock()
        self._sent = 0.0  # last progress sent, percent
        self._sent_at = _now()
        if _run_ids() is None:
            log.debug("progress %r: not in a flow or task run; no artifact", description)
            return
        try:
            self.artifact_id = create_progress_artifact(
                progress=0.0, description=description, _sync=True
            )
        except Exception as error:
            log.warning("progress %r: could not create the artifact: %s", description, error)

    def update(self, done: int, total: int) -> None:
        """Report `done` of `total` units finished (a `total` of 0 or less counts as finished)."""
        progress = 100.0 if total <= 0 else min(max(100.0 * done / total, 0.0), 100.0)
        with self._lock:
            if self.artifact_id is None or progress == self._sent:
                return
            if progress < 100.0 and _now() - self._sent_at < PROGRESS_MIN_INTERVAL_S:
                return
            self._sent, self._sent_at = progress, _now()
            try:
                update_progress_artifact(self.artifact_id, progress=progress, _sync=True)
            except Exception as error:
                log.warning("progress %r: update failed: %s", self.description, error)

    def finish(self) -> None:
        """Show 100 % (a no-op when already there)."""
        self.update(1, 1)


def publish_table(key: str, rows: list[dict[str, Any]], description: str) -> UUID | None:
    """A table artifact under `artifact_key(key)`, one row per dict; its id, or None."""
    if _run_ids() is None:
        log.debug("table %r: not in a flow or task run; not published", key)
        return None
    try:
        return create_table_artifact(
            table=rows, key=artifact_key(key), description=description, _sync=True
        )
    except Exception as error:
        log.warning("table %r: could not publish: %s", key, error)
        return None


def publish_markdown(key: str, markdown: str, description: str) -> UUID | None:
    """A markdown artifact under `artifact_key(key)`; its id, or None."""
    if _run_ids() is None:
        log.debug("markdown %r: not in a flow or task run; not published", key)
        return None
    try:
        return create_markdown_artifact(
            markdown=markdown, key=artifact_key(key), description=description, _sync=True
        )
    except Exception as error:
        log.warning("markdown %r: could not publish: %s", key, error)
        return None


def metrics_rows(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """Table rows of evaluate's `metrics.json`: one per ranking (ours, MMPT) × DualSoftmax.

    Each row is {"variant", "ranking", "dual_softmax", "R@1", "R@5", "R@10", "MedR", "MeanR"}
    with the metrics rounded to 1 decimal; QA and multiple choice give one row {"variant",
    "task", "accuracy"}. Sections missing from `metrics` are skipped;
    `frame_precision` is not a ranking metric and is left out.
    """
    if isinstance(metrics.get("accuracy"), int | float):  # QA and multiple choice
        row = {"variant": metrics.get("variant"), "task": metrics.get("task")}
        return [row | {"accuracy": round(float(metrics["accuracy"]), 1)}]
    rows = []
    for section, (ranking, dual_softmax) in _METRIC_SECTIONS.items():
        values = metrics.get(section)
        if values is None:
            continue
        missing = [name for name in METRIC_KEYS if name not in values]
        if missing:
            raise ValueError(
                f"metrics.json of {metrics.get('variant')!r}: section {section!r} lacks {missing}"
            )
        row = {"variant": metrics.get("variant"), "ranking": ranking, "dual_softmax": dual_softmax}
        rows.append(row | {name: round(float(values[name]), 1) for name in METRIC_KEYS})
    return rows


# --- GPU telemetry -----------------------------------------------------------------------------


def _load_nvml() -> Any | None:
    """The `pynvml` module (package nvidia-ml-py), or None when it is not installed."""
    try:
        import pynvml
    except ImportError:
        return None
    return pynvml


def visible_gpu_indices(count: int) -> list[int]:
    """NVML indices of the GPUs this process may use, following CUDA_VISIBLE_DEVICES.

    Unset: all `count` GPUs. A list of indices: those, up to the first invalid one (as CUDA
    does); an empty value: none. Anything else (GPU-/MIG- UUIDs): all GPUs. NVML numbers GPUs
    in PCI bus order, so the indices agree with CUDA's when CUDA_DEVICE_ORDER=PCI_BUS_ID.
    """
    raw = os.environ.get("CUDA_VISIBLE_DEVICES")
    if raw is None:
        return list(range(count))
    tokens = [token.strip() for token in raw.split(",") if token.strip()]
    if not all(re.fullmatch(r"-?\d+", token) for token in tokens):
        log.debug("CUDA_VISIBLE_DEVICES=%r holds no plain indices; watching every GPU", raw)
        return list(range(count))
    indices: list[int] = []
    for index in map(int, tokens):
        if not 0 <= index < count or index in indices:
            break
        indices.append(index)
    return indices


def _open_gpus(nvml: Any) -> list[tuple[int, Any]] | None:
    """Initialise NVML and return (index, handle) of each visible GPU, or None if there is none."""
    try:
        nvml.nvmlInit()
    except Exception as error:
        log.debug("NVML unavailable: %s", error)
        return None
    try:
        count = nvml.nvmlDeviceGetCount()
        gpus = [(i, nvml.nvmlDeviceGetHandleByIndex(i)) for i in visible_gpu_indices(count)]
    except Exception as error:
        log.debug("NVML could not list GPUs: %s", error)
        gpus = []
    if not gpus:
        _shutdown(nvml)
        return None
    return gpus


def _shutdown(nvml: Any) -> None:
    try:
        nvml.nvmlShutdown()
    except Exception as error:
        log.debug("NVML shutdown failed: %s", error)


def _describe(nvml: Any, gpus: list[tuple[int, Any]]) -> str:
    """One line for all GPUs: "GPU 0: 87% util, 12345/81559 MiB; GPU 1: ..."."""
    parts = []
    for index, handle in gpus:
        utilisation = nvml.nvmlDeviceGetUtilizationRates(handle).gpu
        memory = nvml.nvmlDeviceGetMemoryInfo(handle)
        parts.append(
            f"GPU {index}: {utilisation}% util, {memory.used // MIB}/{memory.total // MIB} MiB"
        )
    return "; ".join(parts)


def _sample_until(
    nvml: Any,
    gpus: list[tuple[int, Any]],
    interval_s: float,
    logger: logging.Logger | logging.LoggerAdapter,
    stop: threading.Event,
) -> None:
    """The telemetry thread: one line now and every `interval_s` until `stop` is set."""
    failures = 0
    while True:
        try:
            logger.info("GPU telemetry: %s", _describe(nvml, gpus))
        except Exception as error:  # never let the thread die with a traceback
            failures += 1
            level = logging.WARNING if failures == 1 else logging.DEBUG
            log.log(level, "GPU telemetry sample failed (%d so far): %s", failures, error)
        if stop.wait(interval_s):
            return


def _run_logger_or_module() -> logging.Logger | logging.LoggerAdapter:
    try:
        return get_run_logger()
    except MissingContextError:
        return log


@contextmanager
def gpu_telemetry(interval_s: float = 15.0, logger: logging.Logger | None = None) -> Iterator[None]:
    """Log utilisation (%) and memory used/total (MiB) of every visible GPU while the block runs.

    A daemon thread samples NVML at once and then every `interval_s` seconds, logging to
    `logger`, else the Prefect run logger (so the lines reach the run's logs), else this
    module's logger. Without nvidia-ml-py, an NVIDIA driver or a visible GPU it logs one info
    line and does nothing. The thread stops within moments of the block's end; its errors are
    logged, never raised.
    """
    if interval_s <= 0:
        raise ValueError(f"gpu_telemetry: interval_s must be > 0, found {interval_s}")
    sink = logger if logger is not None else _run_logger_or_module()
    nvml = _load_nvml()
    gpus = _open_gpus(nvml) if nvml is not None else None
    if gpus is None:
        sink.info("no NVIDIA GPU visible; telemetry off")
        yield
        return
    stop = threading.Event()
    # A copy of the caller's context, so the run logger and the API handler see the run.
    context = contextvars.copy_context()
    thread = threading.Thread(
        target=context.run,
        args=(_sample_until, nvml, gpus, interval_s, sink, stop),
        name="gpu-telemetry",
        daemon=True,
    )
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5.0)
        if thread.is_alive():  # stuck in an NVML call: leave NVML initialised for it
            log.debug("GPU telemetry thread still busy after 5 s; left running (daemon)")
        else:
            _shutdown(nvml)


# --- stage logs to the API -----------------------------------------------------------------------


class _StageLogHandler(APILogHandler):
    """Prefect's API log handler, for the stage loggers.

    A record emitted in a thread that has no run context (a stage's worker thread) is attributed
    to the run that most recently turned forwarding on; with no such run it is dropped silently
    instead of APILogHandler's "outside a run" warning.
    """

    def __init__(self) -> None:
        super().__init__(level=logging.INFO)
        self.fallback: _RunIds | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "flow_run_id", None) is None and _run_ids() is None:
            if self.fallback is None:
                return
            record = copy.copy(record)  # other handlers keep the record as it was
            record.flow_run_id = self.fallback.flow_run_id
            record.task_run_id = self.fallback.task_run_id
        super().emit(record)


class _StageLogForwarding:
    """One handler shared by every active `forward_stage_logs` (concurrent tasks, nesting)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active: list[tuple[object, _RunIds]] = []
        self._handler: _StageLogHandler | None = None
        self._attached: list[logging.Logger] = []
        self._levels: dict[logging.Logger, int] = {}  # loggers we set to INFO → their old level

    def start(self, ids: _RunIds) -> object:
        token = object()
        with self._lock:
            if not self._active:
                self._attach()
            self._active.append((token, ids))
            assert self._handler is not None
            self._handler.fallback = ids
        return token

    def stop(self, token: object) -> None:
        with self._lock:
            self._active = [(t, ids) for t, ids in self._active if t is not token]
            assert self._handler is not None
            if self._active:
                self._handler.fallback = self._active[-1][1]
                return
            for logger in self._attached:
                logger.removeHandler(self._handler)
            for logger, level in self._levels.items():
                logger.setLevel(level)
            self._handler, self._attached, self._levels = None, [], {}

    def _attach(self) -> None:
        self._handler = _StageLogHandler()
        for name in STAGE_LOGGERS:
            logger = logging.getLogger(name)
            # Prefect's root logger is at WARNING; a level set on the stage logger itself is kept.
            if logger.level == logging.NOTSET and logger.getEffectiveLevel() > logging.INFO:
                self._levels[logger] = logger.level
                logger.setLevel(logging.INFO)
            if _ships_to_api(logger):  # e.g. PREFECT_LOGGING_EXTRA_LOGGERS names it already
                continue
            logger.addHandler(self._handler)
            self._attached.append(logger)


def _ships_to_api(logger: logging.Logger) -> bool:
    """Whether a record of `logger` already reaches an APILogHandler."""
    current: logging.Logger | None = logger
    while current is not None:
        if any(isinstance(handler, APILogHandler) for handler in current.handlers):
            return True
        current = current.parent if current.propagate else None
    return False


_FORWARDING = _StageLogForwarding()


@contextmanager
def forward_stage_logs() -> Iterator[None]:
    """While active, INFO+ records of the `pipeline`, `storage` and `models` loggers also go to
    the Prefect API, attached to the emitting flow/task run, and show in the run's logs.

    Mechanism: a `prefect.logging.handlers.APILogHandler` (subclass) at INFO is added to each of
    those loggers, and one left at NOTSET under a root above INFO (Prefect's root is at WARNING)
    is set to INFO; both are undone when the last active block ends. The handler reads the flow
    and task run ids from the emitting thread's run context; records from threads without one
    go to the run that entered this block. Records travel in Prefect's batches
    (PREFECT_LOGGING_TO_API_BATCH_INTERVAL, 2 s). Loggers already shipped to the API
    (PREFECT_LOGGING_EXTRA_LOGGERS) get no second handler. Outside a run this does nothing.
    """
    ids = _run_ids()
    if ids is None:
        log.debug("forward_stage_logs: not in a flow or task run; nothing forwarded")
        yield
        return
    token = _FORWARDING.start(ids)
    try:
        yield
    finally:
        _FORWARDING.stop(token)
