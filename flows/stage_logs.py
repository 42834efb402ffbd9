"""Stage logs on the dashboard (DESIGN.md §6): the `pipeline`, `storage` and `models` loggers
shipped to the Prefect API while a run is active, so their records show in the run's logs.

Outside a flow or task run `forward_stage_logs` does nothing.
"""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from prefect.logging.handlers import APILogHandler

from flows.run_context import RunIds, run_ids

log = logging.getLogger(__name__)

STAGE_LOGGERS = ("pipeline", "storage", "models")  # forwarded by `forward_stage_logs`


class _StageLogHandler(APILogHandler):
    """Prefect's API log handler, for the stage loggers.

    A record emitted in a thread that has no run context (a stage's worker thread) is attributed
    to the run that most recently turned forwarding on; with no such run it is dropped silently
    instead of APILogHandler's "outside a run" warning.
    """

    def __init__(self) -> None:
        super().__init__(level=logging.INFO)
        self.fallback: RunIds | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "flow_run_id", None) is None and run_ids() is None:
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
        self._active: list[tuple[object, RunIds]] = []
        self._handler: _StageLogHandler | None = None
        self._attached: list[logging.Logger] = []
        self._levels: dict[logging.Logger, int] = {}  # loggers we set to INFO → their old level

    def start(self, ids: RunIds) -> object:
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
    ids = run_ids()
    if ids is None:
        log.debug("forward_stage_logs: not in a flow or task run; nothing forwarded")
        yield
        return
    token = _FORWARDING.start(ids)
    try:
        yield
    finally:
        _FORWARDING.stop(token)
