"""What every bench shares: measuring in a fresh interpreter, and aligned text tables.

Each measurement runs in a new Python process (`python -m pipeline.bench JOB_JSON`, see
`__main__.py`) so its peak RSS (`getrusage`, which only ever grows within a process) is its own.
A plain subprocess rather than multiprocessing: spawn would re-run an unguarded __main__ script
of the caller, and fork would start the child at the caller's RSS.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from pipeline.video.probe import last_line


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """Run one measurement job in a new interpreter and return what it printed."""
    root = str(Path(__file__).resolve().parents[2])
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])),
    }
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.bench", json.dumps(job)],
        capture_output=True,
        env=env,
        check=False,
    )
    if result.returncode < 0:
        name = signal.Signals(-result.returncode).name
        hint = " (out of memory?)" if name == "SIGKILL" else ""
        raise RuntimeError(f"bench job {job['kind']} was killed by {name}{hint}")
    if result.returncode != 0:
        raise RuntimeError(f"bench job {job} failed: {last_line(result.stderr)}")
    return json.loads(result.stdout)


def table(head: str, rows: list[list[str]]) -> str:
    """`head`, then `rows` (the first is the header) as aligned columns."""
    columns = rows[0]
    widths = [max(len(row[i]) for row in rows) for i in range(len(columns))]
    lines = [head]
    for number, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:])]
        lines.append("  ".join(cells))
        if number == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)
