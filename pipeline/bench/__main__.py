"""`python -m pipeline.bench JOB_JSON`: one measurement in a fresh process, printed as JSON.

The job runner of `process.py` starts this; `kind` names the bench (decode, extract, train).
Torch is imported by the extract and train measurements only, so a decode measurement's peak RSS
has none of its ~350 MB.
"""

from __future__ import annotations

import json
import sys

from pipeline.bench.decode import measure_decode
from pipeline.bench.extract import measure_extract
from pipeline.bench.gpu import measure_gpu
from pipeline.bench.memory import measure_memory
from pipeline.bench.train import measure_train


def main(argument: str) -> None:
    job = json.loads(argument)
    if job["kind"] == "extract":
        print(json.dumps(measure_extract(job)))
    elif job["kind"] == "train":
        print(json.dumps(measure_train(job)))
    elif job["kind"] == "gpu":
        print(json.dumps(measure_gpu(job)))
    elif job["kind"] == "memory":
        print(json.dumps(measure_memory(job)))
    elif job["kind"] == "decode":
        print(json.dumps(measure_decode(job)))
    else:
        raise ValueError(f"unknown bench job kind {job['kind']!r}")


if __name__ == "__main__":
    main(sys.argv[1])
