"""`fineco bench gpu`: the GPU path measured — extract throughput and fine-tuning step time, MFU.

Runs in a fresh process on `extract.device` / `finetune.optim.device` (a GPU when there is one;
the CPU with a tiny config, as the test does):

- extract: S3D-G (random weights) on one-second clips of F frames × S² (the paper: 30 × 224²), in
  fp32 and in the stage's precision (bf16 autocast and channels-last on a GPU; `--compile` adds
  torch.compile), after warm-up; video-seconds/s with the clips already on the device, so decode
  is not in the figure (`fineco bench decode` measures it).
- fine-tuning: full FineCo steps as the loop takes them (both encoders with PyTorch SDPA
  attention, the selector, L1 + L2, backward, clipping, Adam fused on a GPU, bf16 autocast), at
  the model and batch given; the median step, and MFU = the step's FLOPs (counted by
  torch.utils.flop_counter on one step) / step time / the device's peak. The peak is known for a
  few GPUs (dense bf16) or given with `--peak-tflops`; on the CPU MFU is n/a.
- a YouCookII-size fine-tune (9.6k pairs, 15 epochs) projected from the step time at the batch
  measured: steps × median step (no data loading or validation in it).
"""

from __future__ import annotations

import resource
import statistics
import time
from dataclasses import asdict
from typing import Any

from pipeline.bench.process import run_job, table
from pipeline.bench.train import PAPER_MODEL, _finetune, _random_batch, training_step
from pipeline.config import ExtractConfig, FinetuneConfig, ModelConfig

# Dense bf16 tensor-core peaks (vendor data sheets), by a substring of torch's device name.
PEAK_TFLOPS = {"H200": 989.4, "H100": 989.4, "A100": 312.0, "L40S": 362.1, "A10G": 70.0}
YOUCOOK_PAIRS, YOUCOOK_EPOCHS = 9600, 15


def bench_gpu(
    extract: ExtractConfig,
    clip: tuple[int, int],
    model: ModelConfig,
    finetune: FinetuneConfig,
    batch: int,
    steps: int,
    compile_extract: bool = False,
    peak_tflops: float | None = None,
) -> dict[str, Any]:
    """Measure in a fresh process; plain data back."""
    if steps < 1 or batch < 2:
        raise ValueError(f"steps must be >= 1 and batch >= 2, found {steps} and {batch}")
    job = {
        "kind": "gpu",
        "extract": {**asdict(extract), "weights": ""},
        "clip": list(clip),
        "model": asdict(model),
        "finetune": asdict(finetune),
        "batch": batch,
        "steps": steps,
        "compile": compile_extract,
        "peak_tflops": peak_tflops,
    }
    return run_job(job)


def paper_model(max_video_len: int = 256) -> ModelConfig:
    """bert-base sizes (VideoCLIP) at YouCookII FineCo's 256 frames, dropout as BERT's."""
    return ModelConfig(**{**asdict(PAPER_MODEL), "max_video_len": max_video_len})


def format_gpu_bench(result: dict[str, Any]) -> str:
    ex, tr = result["extract"], result["train"]
    frames, size = ex["clip"]
    head = f"GPU path on {result['device_name']} ({result['device']})"
    rows = [["measure", "value"]]
    for name, run in ex["runs"].items():
        rows.append([f"extract {frames}×{size}² {name}", f"{run['video_s_per_s']:.1f} video-s/s"])
    mfu = "n/a" if tr["mfu"] is None else f"{100 * tr['mfu']:.1f} %"
    rows += [
        [f"fine-tune step (batch {tr['batch']}, K={tr['frames']})", f"{tr['step_s'] * 1e3:.1f} ms"],
        ["fine-tune step FLOPs", f"{tr['flops'] / 1e9:.3f} GFLOP"],
        ["achieved", f"{tr['flops'] / tr['step_s'] / 1e12:.4f} TFLOP/s"],
        ["MFU" + (f" (peak {tr['peak_tflops']} TFLOP/s)" if tr["peak_tflops"] else ""), mfu],
        [
            f"YouCookII fine-tune ({YOUCOOK_PAIRS} pairs × {YOUCOOK_EPOCHS} epochs)",
            f"{tr['youcook_minutes']:.1f} min projected",
        ],
        ["attention", tr["attention"]],
        ["optimizer", tr["optimizer"]],
        ["peak GPU memory", f"{result['gpu_peak_mib']:.0f} MiB"],
        ["peak RSS", f"{result['rss_mib']:.0f} MiB"],
    ]
    return table(head, rows)


def measure_gpu(job: dict[str, Any]) -> dict[str, Any]:
    """Both measurements in this (fresh) process."""
    import torch

    from pipeline.devices import resolve_device

    extract = ExtractConfig(**job["extract"])
    device = resolve_device(extract.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    result = {
        "device": str(device),
        "device_name": name,
        "extract": _measure_extract(job, extract),
        "train": _measure_train(job, name),
        "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "gpu_peak_mib": torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else 0,
    }
    return result


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def _measure_extract(job: dict[str, Any], extract: ExtractConfig) -> dict[str, Any]:
    import dataclasses

    import torch

    from pipeline.video.backbone import load_backbone, weights_identity
    from storage.layout import artifact_root

    frames, size = job["clip"]
    identity = weights_identity(extract, frames, size, artifact_root())
    settings = {"fp32": dataclasses.replace(extract, precision="fp32"), "stage": extract}
    runs = {}
    for label, config in settings.items():
        backbone = load_backbone(config, identity)
        if job["compile"] and label == "stage":
            backbone = dataclasses.replace(backbone, model=torch.compile(backbone.model))
            label = "stage + compile"
        batch = config.batch_seconds
        clips = torch.randint(0, 256, (batch, 3, frames, size, size), dtype=torch.uint8)
        video = clips.to(backbone.device).float().div_(255.0)  # (B, 3, F, S, S), on the device
        if backbone.channels_last:
            video = video.contiguous(memory_format=torch.channels_last_3d)

        def forward(backbone=backbone, video=video) -> None:
            dtype = backbone.dtype
            with (
                torch.inference_mode(),
                torch.autocast(backbone.device.type, dtype=dtype, enabled=dtype is not None),
            ):
                backbone.model(video).video_embedding.float()

        forward()  # warm-up (and compilation)
        times = _timed(forward, job["steps"], backbone.device)
        dtype = str(backbone.dtype).removeprefix("torch.") if backbone.dtype else "fp32"
        runs[f"{label} ({dtype})"] = {"video_s_per_s": batch / statistics.median(times)}
    return {"clip": [frames, size], "batch_seconds": extract.batch_seconds, "runs": runs}


def _timed(step: Any, steps: int, device: Any) -> list[float]:
    times = []
    for _ in range(steps):
        _sync(device)
        started = time.perf_counter()
        step()
        _sync(device)
        times.append(time.perf_counter() - started)
    return times


def _measure_train(job: dict[str, Any], device_name: str) -> dict[str, Any]:
    import math

    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from pipeline.devices import resolve_device
    from pipeline.training.model_factory import build_model
    from pipeline.training.objectives import finetune_objective
    from pipeline.training.schedule import resolve_amp

    model_config, finetune = ModelConfig(**job["model"]), _finetune(job["finetune"])
    device = resolve_device(finetune.optim.device)
    amp = resolve_amp(finetune.optim.amp, device)
    model, _ = build_model(model_config)
    model.to(device).train()
    fused = device.type == "cuda"
    optimizer = torch.optim.Adam(model.parameters(), lr=finetune.optim.lr, fused=fused)
    objective = finetune_objective(finetune)
    batch = _random_batch(job["batch"], model_config, device)

    step = training_step(model, objective, batch, optimizer, amp, finetune.optim.grad_clip)
    with FlopCounterMode(display=False) as counter:
        step()  # also the warm-up
    flops = counter.get_total_flops()
    step_s = statistics.median(_timed(step, job["steps"], device))
    peak = job["peak_tflops"] or next(
        (tflops for key, tflops in PEAK_TFLOPS.items() if key in device_name), None
    )
    steps = YOUCOOK_EPOCHS * math.ceil(YOUCOOK_PAIRS / job["batch"])
    return {
        "batch": job["batch"],
        "frames": model_config.max_video_len,
        "step_s": step_s,
        "flops": flops,
        "peak_tflops": peak,
        "mfu": flops / step_s / (peak * 1e12) if peak else None,
        "youcook_minutes": steps * step_s / 60,
        "attention": model.text_encoder.bert.config._attn_implementation,
        "optimizer": f"Adam ({'fused' if fused else 'foreach'}), amp {amp or 'off'}",
    }
