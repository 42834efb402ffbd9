"""The training loop's records: `metrics.jsonl` (a line per step), `epochs.jsonl` (a line per
validated epoch), their truncation when a run resumes, and the progress log lines."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from storage.atomic import atomic_write_text, fsync_path

log = logging.getLogger("pipeline.training.loop")  # the loop's progress lines, as before


def append_line(path: Path, record: dict[str, Any]) -> None:
    """Append one JSON line to `path` and make it durable."""
    with path.open("a") as handle:
        handle.write(json.dumps(record) + "\n")
    fsync_path(path)


def read_lines(path: Path) -> list[dict[str, Any]]:
    """Every JSON line of `path` ([] when it does not exist)."""
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def log_epoch(epoch: int, epochs: int, record: dict[str, Any]) -> None:
    shown = ", ".join(
        f"{name} {value:.4g}" if isinstance(value, float) else f"{name} {value}"
        for name, value in record.items()
    )
    log.info("epoch %d/%d: %s", epoch + 1, epochs, shown)


class StepLog:
    """The periodic progress log line, with steps per second since the previous one."""

    def __init__(self, step: int) -> None:
        self.step, self.time = step, time.perf_counter()

    def log(self, line: dict[str, Any], total_steps: int) -> None:
        now = time.perf_counter()
        rate = (line["step"] - self.step) / max(now - self.time, 1e-9)
        self.step, self.time = line["step"], now
        grad_norm = "n/a" if line["grad_norm"] is None else f"{line['grad_norm']:.3f}"
        log.info(
            "step %d/%d  epoch %d  loss %.4f  lr %.3e  grad_norm %s  %.2f steps/s",
            line["step"],
            total_steps,
            line["epoch"],
            line["loss"],
            line["lr"],
            grad_norm,
            rate,
        )


def truncate_metrics(path: Path, step: int) -> None:
    """Drop the lines of `path` after `step` (and a torn last line), atomically, so a resumed run
    appends without duplicates."""
    if not path.is_file():
        return
    lines = path.read_text().splitlines()
    kept = []
    for number, line in enumerate(lines):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines) - 1:  # a write cut short by a kill
                break
            raise ValueError(f"{path}: line {number + 1} is not JSON: {line[:80]!r}") from None
        if record["step"] <= step:
            kept.append(line)
    if len(kept) != len(lines):
        atomic_write_text(path, "".join(line + "\n" for line in kept))
