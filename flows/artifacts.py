"""Dashboard artifacts (DESIGN.md §6): progress bars, metric tables, the report as markdown.

- `ProgressArtifact`: a per-stage progress bar (a Prefect progress artifact, rate-limited updates).
- `publish_table` / `publish_markdown`: table and markdown artifacts (metrics, the report);
  `metrics_rows` flattens evaluate's `metrics.json` into table rows.

Every function is safe outside a flow or task run: there it logs at debug level and does nothing
(no API call, no warning). The dashboard is a side channel: a failed API call is logged as a
warning and never fails the stage. The artifact calls pass `_sync=True` so they also block
(rather than return a coroutine) when called from an async flow.
"""

from __future__ import annotations

import contextvars
import logging
import re
import threading
import time
from typing import Any
from uuid import UUID

from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)

from flows.run_context import run_ids
from pipeline.evaluation.retrieval_metrics import METRIC_KEYS

log = logging.getLogger(__name__)

PROGRESS_MIN_INTERVAL_S = 2.0  # at most one progress update per this many seconds (except 100 %)

# evaluate's metrics.json section → (ranking, dual_softmax), in table order
_METRIC_SECTIONS = {
    "plain": ("ours", False),
    "dual_softmax": ("ours", True),
    "mmpt": ("MMPT", False),
    "mmpt_dual_softmax": ("MMPT", True),
}

_now = time.monotonic  # the clock of the progress rate limit (a seam for tests)


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
    `update` thousands of times). An update held back by that limit is not lost: a timer sends
    the latest value when the interval has passed, so the bar lags the work by at most the
    interval. Reaching 100 % is always sent at once. Thread-safe. Outside a run, or when creation
    failed, every method does nothing.
    """

    def __init__(self, description: str) -> None:
        self.description = description
        self.artifact_id: UUID | None = None
        self._lock = threading.Lock()
        self._sent = 0.0  # last progress sent, percent
        self._sent_at = _now()
        self._latest = 0.0  # last progress reported, percent
        self._timer: threading.Timer | None = None
        if run_ids() is None:
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
            if self.artifact_id is None:
                return
            self._latest = max(self._latest, progress)  # never backwards
            wait = PROGRESS_MIN_INTERVAL_S - (_now() - self._sent_at)
            if progress < 100.0 and wait > 0:
                if self._timer is None:  # send whatever is latest once the interval has passed
                    # with this thread's context: the run's settings (API URL) included
                    flush = contextvars.copy_context().run
                    self._timer = threading.Timer(wait, flush, args=(self._flush,))
                    self._timer.daemon = True
                    self._timer.start()
                return
            self._send_locked()

    def _flush(self) -> None:
        with self._lock:
            self._timer = None
            self._send_locked()

    def _send_locked(self) -> None:
        if self.artifact_id is None or self._latest == self._sent:
            return
        self._sent, self._sent_at = self._latest, _now()
        try:
            update_progress_artifact(self.artifact_id, progress=self._sent, _sync=True)
        except Exception as error:
            log.warning("progress %r: update failed: %s", self.description, error)

    def finish(self) -> None:
        """Show 100 % (a no-op when already there) and stop the pending timer."""
        self.update(1, 1)
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None


def publish_table(key: str, rows: list[dict[str, Any]], description: str) -> UUID | None:
    """A table artifact under `artifact_key(key)`, one row per dict; its id, or None."""
    if run_ids() is None:
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
    if run_ids() is None:
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


def epoch_rows(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Table rows of finetune's `epochs.jsonl` (per-epoch validation): epoch (1-based), R@1/5,
    MedR (QA: accuracy), the selector's precision@k with a random choice's expectation
    (percent), its entropy."""
    rows = []
    for line in lines:
        row: dict[str, Any] = {"epoch": line["epoch"] + 1}
        shown = {"accuracy": "accuracy"} if "accuracy" in line else _EPOCH_METRICS
        row |= {name: round(float(line[key]), 1) for name, key in shown.items()}
        for name in ("selector_precision", "selector_random"):
            value = line.get(name)
            row[name] = None if value is None else round(100 * float(value), 1)
        entropy = line.get("selector_entropy")
        row["selector_entropy"] = None if entropy is None else round(float(entropy), 3)
        rows.append(row)
    return rows


_EPOCH_METRICS = {"R@1": "r1", "R@5": "r5", "MedR": "medr"}
