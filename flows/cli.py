"""The `fineco` command line: synthesise data, run stages locally, benchmark.

    fineco synth --config demo
    fineco run --config demo [--stages ingest,decode,extract] [--videos DIR] [key=value ...]
    fineco run --config msrvtt_qa --synthetic   (a paper preset on synthetic data)
    fineco bench decode|extract --config demo

Overrides are dotted `key=value` pairs (`decode.size=112`). Stage code logs through `logging`;
this module only wires arguments to the stage functions and prints summaries.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from uuid import UUID

from flows.bench_cli import add_bench_parser
from pipeline.config import Config, ConfigError
from pipeline.config.loading import load_config
from storage.layout import artifact_root, expand_path

log = logging.getLogger("fineco")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # the Prefect client's every request
    try:
        config = load_config(args.config, args.overrides) if args.needs_config else None
        return args.command(args, config)
    except (ConfigError, FileNotFoundError, ValueError, RuntimeError) as error:
        log.error("%s", error)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fineco", description=__doc__.split("\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.set_defaults(needs_config=True)
    commands = parser.add_subparsers(required=True, metavar="command")

    synth = commands.add_parser("synth", help="render the synthetic datasets of a config")
    _common(synth)
    synth.set_defaults(command=_synth)

    run = commands.add_parser("run", help="run pipeline stages locally (cached)")
    _common(run)
    run.add_argument(
        "--stages",
        help="comma-separated stages to run; their upstream comes from cache or runs first "
        "(default: all; with --videos: ingest,decode,extract)",
    )
    run.add_argument("--videos", type=Path, help="a folder of your own videos (no captions)")
    run.add_argument(
        "--nproc",
        type=int,
        help="train (pretrain, finetune) in N DDP processes under torchrun; default: the "
        "config's optim.nproc (auto: one per GPU)",
    )
    run.add_argument(
        "--synthetic",
        action="store_true",
        help="run on `fineco synth`'s sets in each dataset's format, with offline weights",
    )
    run.set_defaults(command=_run)

    study = commands.add_parser(
        "study", help="FineCo vs the baseline on the long-sparse benchmark: seeds, paired tests"
    )
    study.add_argument("--config", default="study", help="preset name or YAML path")
    study.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    study.add_argument("--seeds", type=int, default=3, help="training seeds 0..N-1 (default 3)")
    study.add_argument(
        "--strategies",
        default="median",
        help="FineCo's positive-frame strategies, comma-separated (first: the main one)",
    )
    study.add_argument(
        "--variants",
        default="paper,sim",
        help="FineCo variants: paper, paper-slr10 (selector lr x10), sim (positives by <h_k, t>)",
    )
    study.add_argument("--quick", action="store_true", help="one seed, a smaller benchmark")
    study.set_defaults(command=_study)

    serve = commands.add_parser("serve", help="serve the Prefect deployments fineco/full, ...")
    _common(serve)
    serve.add_argument("--limit", type=int, default=1, help="flow runs at a time")
    serve.set_defaults(command=_serve)

    worker = commands.add_parser("worker", help="start a Prefect process worker (cpu or gpu pool)")
    _common(worker)
    worker.add_argument("--gpu", action="store_true", help="the gpu pool, one run at a time")
    worker.add_argument(
        "--pool", help="another process pool, one run at a time (e.g. gpu-shards: extract's shards)"
    )
    worker.add_argument(
        "--device", help="CUDA_VISIBLE_DEVICES of the worker's runs (one worker per GPU)"
    )
    worker.set_defaults(command=_worker)

    submit = commands.add_parser(
        "submit", help="check parameters, then run a deployment (fineco/full, a stage, study)"
    )
    submit.add_argument("deployment", nargs="?", default="full", help="full (default), a stage")
    submit.add_argument("--config", help="preset name or YAML path (default: the deployment's)")
    submit.add_argument("--stages", help="comma-separated stages (fineco/full)")
    submit.add_argument("--rerun", help="comma-separated stages built again even when cached")
    submit.add_argument("--synthetic", action="store_true", help="on `fineco synth`'s sets")
    submit.add_argument(
        "--param", action="append", default=[], metavar="NAME=JSON", help="any flow parameter"
    )
    submit.add_argument("--watch", action="store_true", help="print its logs until it ends")
    submit.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    submit.set_defaults(command=_submit, needs_config=False)

    resume = commands.add_parser("resume", help="retry a crashed/failed flow run from its cache")
    resume.add_argument("flow_run", help="flow-run id or name")
    resume.add_argument("--config", help="refused unless it is the run's own")
    resume.add_argument(
        "--force", action="store_true", help="the run still shows Running but its process is gone"
    )
    resume.add_argument("--watch", action="store_true", help="print its logs until it ends")
    resume.add_argument(
        "overrides", nargs="*", metavar="key=value", help="refused unless the run's"
    )
    resume.set_defaults(command=_resume, needs_config=False)

    add_bench_parser(commands, _common)
    return parser


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="demo", help="preset name or YAML path")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")


def _synth(args: argparse.Namespace, config: Config) -> int:
    from pipeline.synth.sets import summary_lines, synthesize

    out_dir = expand_path(config.synth.out_dir, artifact_root())
    started = time.perf_counter()
    summary = synthesize(config.synth, out_dir)
    print(f"synthetic data in {out_dir} ({time.perf_counter() - started:.1f} s):")
    for line in summary_lines(summary):
        print(line)
    return 0


def _run(args: argparse.Namespace, config: Config) -> int:
    from pipeline.config import STAGES
    from pipeline.config.runs import (
        parse_stages,
        with_processes,
        with_synthetic_data,
        with_video_folder,
    )
    from pipeline.runner import FRONT_END, run_stages

    stages = parse_stages(args.stages or STAGES)
    if args.nproc is not None:
        config = with_processes(config, args.nproc)
    if args.synthetic:
        config = with_synthetic_data(config)
    if args.videos is not None:
        config = with_video_folder(config, args.videos)
        stages = parse_stages(args.stages or FRONT_END)
    started = time.perf_counter()
    results = run_stages(config, stages, artifact_root())
    for dataset, manifests in results.items():
        for stage, manifest in manifests.items():
            facts = dataclasses.asdict(manifest.info)
            print(f"{dataset:>12} {stage:<8} {manifest.path}  {_facts(facts)}")
            for video_id, why in facts.get("bad_videos", {}).items():
                print(f"{'':>12} {'':<8} bad video {video_id}: {why}")
    if "report" in results:
        print(f"report: {results['report']['report'].output('report')}")
    print(f"done in {time.perf_counter() - started:.1f} s")
    return 0


def _study(args: argparse.Namespace, config: Config) -> int:
    from pipeline.study import run_study
    from pipeline.study_plan import study_settings

    settings, seeds = study_settings(args.config, args.overrides, args.seeds, args.quick)
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    started = time.perf_counter()
    manifest = run_study(settings, artifact_root(), seeds, strategies, variants=variants)
    print(manifest.output("markdown").read_text())
    print(f"study: {manifest.output('study')} ({time.perf_counter() - started:.1f} s)")
    return 0


def _serve(args: argparse.Namespace, config: Config) -> int:
    from flows.deployments import serve_all

    serve_all(args.config, args.limit)
    return 0


def _prefect(*arguments: str) -> list[str]:
    return [str(Path(sys.executable).with_name("prefect")), *arguments]


def _worker(args: argparse.Namespace, config: Config) -> int:
    """Create the pool if needed (gpu: concurrency limit 1) and run a process worker on it."""
    import socket
    import subprocess

    if args.gpu and args.pool:
        raise ConfigError("fineco worker: give --gpu or --pool, not both")
    pool = args.pool or ("gpu" if args.gpu else "cpu")
    subprocess.run(_prefect("work-pool", "create", pool, "--type", "process"), check=False)
    if args.gpu:
        limit = _prefect("work-pool", "set-concurrency-limit", pool, "1")
        subprocess.run(limit, check=True)
    env = dict(os.environ)
    suffix = ""
    if args.device is not None:
        env["CUDA_VISIBLE_DEVICES"] = args.device
        suffix = f"-device{args.device}"
    name = f"{pool}-{socket.gethostname()}{suffix}"
    start = _prefect("worker", "start", "--pool", pool, "--type", "process", "--name", name)
    one_at_a_time = args.gpu or args.pool
    return subprocess.call([*start, *(["--limit", "1"] if one_at_a_time else [])], env=env)


def _submit_parameters(args: argparse.Namespace) -> dict[str, object]:
    """The flow parameters given on the command line (the deployment's defaults fill the rest)."""
    import json

    from pipeline.config.runs import parse_stages

    parameters: dict[str, object] = {}
    if args.config is not None:
        parameters["config"] = args.config
    if args.stages:
        parameters["stages"] = parse_stages(args.stages)
    if args.rerun:
        parameters["rerun"] = parse_stages(args.rerun)
    if args.synthetic:
        parameters["synthetic"] = True
    if args.overrides:
        parameters["overrides"] = list(args.overrides)
    for item in args.param:
        name, separator, value = item.partition("=")
        if not separator:
            raise ConfigError(f"--param {item!r} is not of the form NAME=JSON")
        try:
            parameters[name] = json.loads(value)
        except json.JSONDecodeError:
            parameters[name] = value  # a bare word: the string itself
    return parameters


def _submit(args: argparse.Namespace, config: Config | None) -> int:
    """Check the parameters as the flow's first step will, submit, optionally watch."""
    from flows.submit import submit

    if "=" in args.deployment:  # `fineco submit key=value ...`: an override, deployment full
        args.overrides, args.deployment = [args.deployment, *args.overrides], "full"
    run = submit(args.deployment, _submit_parameters(args), print)
    return _watched(run.id) if args.watch else 0


def _watched(flow_run_id: UUID) -> int:
    """Print the run's logs until it ends; 0 when it completed."""
    from flows.submit import watch

    run = watch(flow_run_id, print)
    state = run.state
    assert state is not None  # watch returns a final run
    print(f"flow run {run.name}: {state.name}" + (f": {state.message}" if state.message else ""))
    return 0 if state.is_completed() else 1


def _resume(args: argparse.Namespace, config: Config | None) -> int:
    """Re-run a flow run with its own parameters: completed stages are cache hits, a killed
    training stage resumes from its last checkpoint (its stage folder keeps them)."""
    from flows.run_states import resume

    resumed = resume(args.flow_run, args.config, args.overrides, args.force)
    run = resumed.flow_run
    print(f"flow run {run.name} ({run.id}) was {resumed.previous_state}: scheduled again")
    return _watched(run.id) if args.watch else 0


def _facts(info: dict) -> str:
    keys = ("videos", "pairs", "seconds", "status_counts", "random_init", "embedded_seconds")
    return ", ".join(f"{key}={info[key]}" for key in keys if key in info)


if __name__ == "__main__":
    sys.exit(main())
