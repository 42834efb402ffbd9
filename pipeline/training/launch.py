"""Run a training stage as N torchrun processes (DDP), from inside the stage's cached build.

`launched(build, inputs, optim)` gives the build function `run_cached` calls. With one process
(`optim.nproc` 1, or "auto" without GPUs) that is `build(inputs, folder)` itself. With N it writes
the job (the build function's name, the stage inputs, the folder) to `folder/.ddp-job.pkl` and
runs

    python -m torch.distributed.run --standalone --nproc-per-node N -m pipeline.training.launch JOB

Every rank opens the process group (NCCL on GPUs, gloo on CPU) and runs the same build into the
same folder; rank 0 writes the files (training/ddp.py) and the build's result, which this process
reads back, so the stage's manifest is written here as for any stage. A killed or failed launch
leaves rank 0's checkpoints: the next run resumes from them, with any N.

The ranks' output is passed on line by line to this process's log (so Prefect shows it), and
rank 0's progress reports reach this process's listeners.

Multi-node: set FINECO_TORCHRUN_ARGS to torchrun's rendezvous flags (they replace
`--standalone`, e.g. `--nnodes 2 --rdzv-backend c10d --rdzv-endpoint head:29400 --rdzv-id ft1`)
with the artifact root on shared storage. The head node runs the stage; every other node starts
`torch.distributed.run` with the same flags on the job file the head logged (README, "Several
GPUs and nodes").
"""

from __future__ import annotations

import contextlib
import functools
import gc
import importlib
import json
import logging
import os
import pickle
import shlex
import subprocess
import sys
import traceback
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from pipeline.config import OptimConfig
from pipeline.devices import resolve_device
from pipeline.progress import listening
from pipeline.progress import report as report_progress
from pipeline.stage import StageResult
from pipeline.training.ddp import is_main, world_size
from storage.atomic import atomic_write_bytes

log = logging.getLogger(__name__)

Build = Callable[[Any, Path], StageResult]  # (stage inputs, stage folder) → the stage's result

JOB, RESULT = ".ddp-job.pkl", ".ddp-result.pkl"
PROGRESS = "FINECO-PROGRESS "  # the prefix of a rank-0 progress line on stdout
TORCHRUN_ARGS = "FINECO_TORCHRUN_ARGS"
# A rank waits this long in a collective (rank 0 validating an epoch, writing a checkpoint).
TIMEOUT = timedelta(hours=2)
STOP_WAIT_S = 30.0  # how long stopped ranks may take to exit before they are killed


def resolve_nproc(optim: OptimConfig) -> int:
    """`optim.nproc`, with "auto" = one process per visible GPU on a cuda device, else 1."""
    cuda = resolve_device(optim.device).type == "cuda"
    gpus = torch.cuda.device_count() if cuda else 0
    if optim.nproc != "auto":
        if cuda and optim.nproc > gpus:
            raise ValueError(
                f"optim.nproc={optim.nproc} processes on cuda, but {gpus} GPUs are visible "
                "(one process per GPU)"
            )
        return int(optim.nproc)
    return min(max(gpus, 1), optim.batch_size)  # every rank needs an item of each batch


def launched(build: Build, inputs: Any, optim: OptimConfig) -> Callable[[Path], StageResult]:
    """The build `run_cached` calls: in place for one process, else through torchrun."""
    nproc = resolve_nproc(optim)
    if nproc == 1 or world_size() > 1:  # one process, or already a rank of a launch
        return functools.partial(build, inputs)
    backend = "nccl" if resolve_device(optim.device).type == "cuda" else "gloo"
    return functools.partial(_launch, build, inputs, nproc, backend)


def torchrun_command(job: Path, nproc: int) -> list[str]:
    """The torchrun command line of a job (FINECO_TORCHRUN_ARGS replaces `--standalone`)."""
    rendezvous = shlex.split(os.environ.get(TORCHRUN_ARGS, "")) or ["--standalone"]
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        *rendezvous,
        f"--nproc-per-node={nproc}",
        "-m",
        __name__,
        str(job),
    ]


def _launch(build: Build, inputs: Any, nproc: int, backend: str, folder: Path) -> StageResult:
    job, result = folder / JOB, folder / RESULT
    result.unlink(missing_ok=True)
    name = f"{build.__module__}:{build.__qualname__}"
    atomic_write_bytes(job, pickle.dumps({"build": name, "inputs": inputs, "backend": backend}))
    command = torchrun_command(job, nproc)
    log.info("%d processes (%s): %s", nproc, backend, shlex.join(command))
    # torchrun would set 1 thread per rank (and say so); the cores are shared out instead.
    threads = os.environ.get("OMP_NUM_THREADS") or str(max(1, (os.cpu_count() or 1) // nproc))
    code = _run_relayed(command, {**os.environ, "OMP_NUM_THREADS": threads})
    if code != 0:
        raise RuntimeError(
            f"{getattr(inputs, 'stage', name)}: the {nproc}-process torchrun run exited with "
            f"{code} (the ranks' errors are in the log above); its checkpoints in {folder} are "
            "kept and the next run resumes from them"
        )
    try:
        done: StageResult = pickle.loads(result.read_bytes())
    except FileNotFoundError:
        raise RuntimeError(f"torchrun exited 0 but rank 0 wrote no result ({result})") from None
    result.unlink()
    job.unlink()
    return done


def _run_relayed(command: list[str], env: dict[str, str]) -> int:
    """Run `command`, passing its output lines to this log and its progress lines on."""
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1, env=env
    ) as process:
        assert process.stdout is not None
        try:
            for line in process.stdout:
                line = line.rstrip("\n")
                if line.startswith(PROGRESS):
                    what, done, total = json.loads(line.removeprefix(PROGRESS))
                    report_progress(what, done, total)
                elif line:
                    log.info("%s", line)
        except BaseException:  # cancelled or interrupted: stop the ranks, not just this process
            process.terminate()  # torchrun passes SIGTERM on to its ranks
            try:
                process.wait(timeout=STOP_WAIT_S)
            except subprocess.TimeoutExpired:
                process.kill()
            raise
        return process.wait()


def _print_progress(what: str, done: int, total: int) -> None:
    print(PROGRESS + json.dumps([what, done, total]), flush=True)


def main(argv: list[str]) -> int:
    """A rank's entry point: open the group, run the job's build, rank 0 saves its result."""
    job_path = Path(argv[0])
    job = pickle.loads(job_path.read_bytes())
    dist.init_process_group(job["backend"], timeout=TIMEOUT)
    level = logging.INFO if is_main() else logging.WARNING
    logging.basicConfig(level=level, format=f"rank {dist.get_rank()}: %(name)s: %(message)s")
    module, _, qualname = job["build"].partition(":")
    build: Build = functools.reduce(getattr, qualname.split("."), importlib.import_module(module))
    try:
        with listening(_print_progress) if is_main() else contextlib.nullcontext():
            result = build(job["inputs"], job_path.parent)
        if is_main():
            atomic_write_bytes(job_path.parent / RESULT, pickle.dumps(result))
    except BaseException as error:
        _drop_locals(error)  # the failed build's DDP model goes before the group (below)
        raise
    finally:
        # Gloo's group, if a DDP model's reducer drops the last reference to it, is destroyed
        # holding the GIL while it joins a thread that may wait for the GIL: the rank hangs. So
        # every DDP model (cycles too) is freed before the group is.
        gc.collect()
        dist.destroy_process_group()
    return 0


def _drop_locals(error: BaseException) -> None:
    """Free the locals of the frames an exception (and those it chains) holds on to."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        traceback.clear_frames(current.__traceback__)
        current = current.__cause__ or current.__context__


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
