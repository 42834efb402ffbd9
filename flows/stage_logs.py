"""Stage logs on the dashboard (DESIGN.md §6): records of the `pipeline`, `storage` and `models`
loggers go to the Prefect run they belong to while a run is active, through `get_run_logger()`.

Outside a flow or task run `forward_stage_logs` does nothing.
"""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from prefect import get_run_logger
from prefect.exceptions import MissingContextError
from prefect.logging.handlers import APILogHandler

log = logging.getLogger(__name__)

STAGE_LOGGERS = ("pipeline", "storage", "models")  # forwarded by `forward_stage_logs`


def _run_logger() -> Any | None:
    """`get_run_logger()` of the calling thread's flow or task run, or None outside a run."""
    try:
        return get_run_logger()
    except MissingContextError:
        return None


class _StageLogHandler(logging.Handler):
    """Hands each stage record to the API handlers of `get_run_logger()`'s logger, stamped with
    that run logger's run ids and names, so Prefect ships it as a log of that run.

    A record emitted in a thread that has no run context (a stage's worker thread) goes to the
    run logger of the run that most recently turned forwarding on; with no such run it is dropped.
    The record keeps its own logger name (`pipeline.decode`), and its console output is left to
    the logger's usual handlers (no second copy).
    """

    def __init__(self) -> None:
        super().__init__(level=logging.INFO)
        self.fallback: Any | None = None  # the run logger of the latest forwarding block

    def emit(self, record: logging.LogRecord) -> None:
        run_logger = _run_logger() or self.fallback
        if run_logger is None:
            return
        record = copy.copy(record)  # other handlers keep the record as it was
        record.__dict__.update(run_logger.extra)  # flow_run_id, task_run_id, run names
        for handler in run_logger.logger.handlers:
            if isinstance(handler, APILogHandler) and record.levelno >= handler.level:
                handler.handle(record)


class _StageLogForwarding:
    """One handler shared by every active `forward_stage_logs` (concurrent tasks, nesting)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active: list[tuple[object, Any]] = []  # (token, run logger)
        self._handler: _StageLogHandler | None = None
        self._attached: list[logging.Logger] = []
        self._levels: dict[logging.Logger, int] = {}  # loggers we set to INFO → their old level

    def start(self, run_logger: Any) -> object:
        token = object()
        with self._lock:
            if not self._active:
                self._attach()
            self._active.append((token, run_logger))
            assert self._handler is not None
            self._handler.fallback = run_logger
        return token

    def stop(self, token: object) -> None:
        with self._lock:
            self._active = [(t, run) for t, run in self._active if t is not token]
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

    Mechanism: a handler at INFO is added to each of those loggers, and one left at NOTSET under
    a root above INFO (Prefect's root is at WARNING) is set to INFO; both are undone when the
    last active block ends. The handler passes each record to the API handler of
    `get_run_logger()` in the emitting thread; records from threads without a run context go to
    the run logger of the run that entered this block. Records travel in Prefect's batches
    (PREFECT_LOGGING_TO_API_BATCH_INTERVAL, 2 s). Loggers already shipped to the API
    (PREFECT_LOGGING_EXTRA_LOGGERS) get no second handler. Outside a run this does nothing.
    """
    run_logger = _run_logger()
    if run_logger is None:
        log.debug("forward_stage_logs: not in a flow or task run; nothing forwarded")
        yield
        return
    token = _FORWARDING.start(run_logger)
    try:
        yield
    finally:
        _FORWARDING.stop(token)
