"""GPU telemetry on the dashboard (DESIGN.md §6): GPU utilisation and memory while GPU stages run.

Outside a flow or task run the lines go to this module's logger. Without nvidia-ml-py, an NVIDIA
driver or a visible GPU it logs one line and does nothing; sampling errors are logged, never
raised.
"""

from __future__ import annotations

import contextvars
import logging
import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from prefect.exceptions import MissingContextError
from prefect.logging import get_run_logger

log = logging.getLogger(__name__)

MIB = 2**20


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
