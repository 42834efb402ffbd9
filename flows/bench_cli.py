"""`fineco bench decode|extract|memory|train|gpu`: the command line of pipeline/bench/."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.config import Config
from storage.layout import artifact_root

PAPER_CLIP = (30, 224)  # VideoCLIP's one-second clip: 30 frames at 224 px (frames, size)


def add_bench_parser(commands: Any, common: Callable[[argparse.ArgumentParser], None]) -> None:
    """The `bench` command and its targets; `common` adds --config and the overrides."""
    bench = commands.add_parser("bench", help="measure decode or extract speed and memory")
    targets = bench.add_subparsers(
        required=True, dest="what", metavar="decode|extract|memory|train|gpu"
    )
    for what, text in (("decode", "video length in s"), ("extract", "one-second clips")):
        target = targets.add_parser(what, help=f"benchmark the {what} stage")
        common(target)
        if what == "decode":
            target.add_argument("--video", type=Path, help="default: a generated 360p video")
        target.add_argument("--seconds", type=int, default=60, help=text)
        target.add_argument("--repeats", type=int, default=3)
        if what == "extract":
            target.add_argument("--demo-only", action="store_true", help="skip 30 × 224 px")
        target.set_defaults(command=run_bench)
    memory = targets.add_parser(
        "memory", help="peak RSS of decode + extract on a short and a long video (bounded?)"
    )
    common(memory)
    memory.add_argument(
        "--minutes", default="10,60", help="comma-separated video lengths (default 10,60)"
    )
    memory.set_defaults(command=run_bench)
    gpu = targets.add_parser("gpu", help="extract video-s/s and fine-tune step time, MFU")
    common(gpu)
    gpu.add_argument("--steps", type=int, default=5, help="timed steps (median)")
    gpu.add_argument(
        "--paper", action="store_true", help="30 × 224² clips, bert-base at K=256 (the GPU goals)"
    )
    gpu.add_argument("--batch", type=int, help="fine-tuning batch (default: the config's)")
    gpu.add_argument("--compile", action="store_true", help="also torch.compile the S3D-G")
    gpu.add_argument("--peak-tflops", type=float, help="the device's peak, for MFU")
    gpu.set_defaults(command=run_bench)
    train = targets.add_parser("train", help="fine-tuning steps/s and memory: demo and paper sizes")
    common(train)
    train.add_argument("--steps", type=int, default=3, help="timed steps per run")
    train.add_argument("--repeats", type=int, default=1, help="fresh-process runs per setting")
    train.add_argument("--demo-only", action="store_true", help="skip the paper-size settings")
    train.add_argument("--paper-batch", type=int, default=128, help="batch of the paper sizes")
    train.set_defaults(command=run_bench)


def run_bench(args: argparse.Namespace, config: Config) -> int:
    """Run the bench `args.what` names and print its table."""
    if args.what == "decode":
        from pipeline.bench.decode import bench_decode, format_bench, make_bench_video

        video = args.video
        if video is None:  # a realistic stand-in: 360p30 h264 with noise, rendered once
            video = artifact_root() / "bench" / f"testsrc2-{args.seconds}s-640x360.mp4"
            if not video.is_file():
                make_bench_video(video, args.seconds, 640, 360, 30)
        print(format_bench(bench_decode(video, config.decode, args.repeats)))
        return 0
    if args.what == "gpu":
        from pipeline.bench.gpu import bench_gpu, format_gpu_bench, paper_model

        clip = PAPER_CLIP if args.paper else (config.decode.frames_per_second, config.decode.size)
        model = paper_model() if args.paper else config.model
        batch = args.batch or config.finetune.optim.batch_size
        result = bench_gpu(
            config.extract,
            clip,
            model,
            config.finetune,
            batch,
            args.steps,
            args.compile,
            args.peak_tflops,
        )
        print(format_gpu_bench(result))
        return 0
    if args.what == "memory":
        from pipeline.bench.memory import bench_memory, format_memory_bench

        minutes = [float(part) for part in args.minutes.split(",") if part.strip()]
        folder = artifact_root() / "bench"
        result = bench_memory(minutes, config.decode, config.extract, folder)
        print(format_memory_bench(result))
        return 0
    if args.what == "train":
        from pipeline.bench.train import (
            TrainSetting,
            bench_train,
            format_train_bench,
            paper_settings,
        )

        demo = TrainSetting(config.name, config.model, config.finetune.optim.batch_size)
        settings = [demo] + ([] if args.demo_only else paper_settings(args.paper_batch))
        result = bench_train(settings, config.finetune, args.steps, args.repeats)
        print(format_train_bench(result))
        return 0
    from pipeline.bench.extract import bench_extract, format_extract_bench

    settings = [(config.decode.frames_per_second, config.decode.size)]
    settings += [] if args.demo_only else [PAPER_CLIP]
    result = bench_extract(
        config.extract, list(dict.fromkeys(settings)), args.seconds, args.repeats
    )
    print(format_extract_bench(result))
    return 0
