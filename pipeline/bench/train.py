"""Training benchmark printed by `fineco bench train`: steps/s and peak memory of fine-tuning.

Each setting runs in a fresh process (`process.run_job`) so its peak memory is its
own: the demo's model and batch, and the paper's sizes — a 12-layer text and 6-layer video BERT,
H=768, batch 128, max_video_len 32 and 256 — with random weights (speed does not depend on them).
One step is a full FineCo fine-tuning step: both encoders, the frame selector, L1 + L2, backward,
gradient clipping and Adam, with the AMP the training loop would use on this device. Inputs are
random features and token ids at full length (K = max_video_len, L = max_text_tokens + 2).
"""

from __future__ import annotations

import dataclasses
import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from pipeline.bench.process import run_job, table
from pipeline.config import FinetuneConfig, ModelConfig

# bert-base-uncased sizes (VideoCLIP, paper §4.2): text 12 layers, video 6, H=768.
PAPER_MODEL = ModelConfig(
    random_init=True,
    random_hidden=768,
    random_layers=12,
    random_heads=12,
    random_intermediate=3072,
    video_layers=6,
)
PAPER_BATCH = 128


@dataclass(frozen=True)
class TrainSetting:
    name: str
    model: ModelConfig
    batch_size: int


def paper_settings(batch_size: int = PAPER_BATCH) -> list[TrainSetting]:
    """bert-base sizes at K = 32 and 256 (the paper's batch is 128; smaller fits a CPU's RAM)."""
    return [
        TrainSetting(f"paper K={k}", dataclasses.replace(PAPER_MODEL, max_video_len=k), batch_size)
        for k in (32, 256)
    ]


def bench_train(
    settings: list[TrainSetting], finetune: FinetuneConfig, steps: int, repeats: int
) -> dict[str, Any]:
    """Median step time of each setting over `repeats` fresh processes of `steps` steps."""
    if steps < 1 or repeats < 1:
        raise ValueError(f"steps and repeats must be >= 1, found {steps} and {repeats}")
    runs: dict[str, list[dict[str, Any]]] = {setting.name: [] for setting in settings}
    failures: dict[str, str] = {}
    for _ in range(repeats):
        for setting in settings:
            job = {
                "kind": "train",
                "model": asdict(setting.model),
                "batch_size": setting.batch_size,
                "finetune": asdict(finetune),
                "steps": steps,
            }
            try:
                runs[setting.name].append(run_job(job))
            except RuntimeError as error:  # e.g. killed for memory: report it, keep the others
                failures[setting.name] = str(error)
    results = {}
    for name, measured in runs.items():
        if not measured:
            results[name] = {"error": failures[name]}
            continue
        step_s = statistics.median(run["step_s"] for run in measured)
        results[name] = {
            **{key: measured[0][key] for key in ("batch", "frames", "tokens", "parameters")},
            "step_s": step_s,
            "steps_per_s": 1.0 / step_s,
            "pairs_per_s": measured[0]["batch"] / step_s,
            "rss_mib": max(run["rss_mib"] for run in measured),
            "gpu_peak_mib": max(run["gpu_peak_mib"] for run in measured),
        }
    first = next(run[0] for run in runs.values() if run)
    return {
        "device": first["device"],
        "amp": first["amp"],
        "threads": first["threads"],
        "steps": steps,
        "repeats": repeats,
        "settings": results,
    }


def format_train_bench(result: dict[str, Any]) -> str:
    head = (
        f"train bench: FineCo fine-tuning steps on {result['device']} (amp {result['amp']}, "
        f"{result['threads']} threads); median of {result['repeats']} runs of "
        f"{result['steps']} steps (median step) after one warm-up step"
    )
    rows = [["setting", "params", "B", "K", "L", "s/step", "steps/s", "pairs/s", "RSS MiB"]]
    rows[0].append("GPU MiB")
    failed = []
    for name, row in result["settings"].items():
        if "error" in row:
            rows.append([name, *["-"] * 9])
            failed.append(f"{name}: {row['error']}")
            continue
        rows.append(
            [
                name,
                f"{row['parameters'] / 1e6:.1f}M",
                str(row["batch"]),
                str(row["frames"]),
                str(row["tokens"]),
                f"{row['step_s']:.3f}",
                f"{row['steps_per_s']:.2f}",
                f"{row['pairs_per_s']:.1f}",
                f"{row['rss_mib']:.0f}",
                f"{row['gpu_peak_mib']:.0f}" if row["gpu_peak_mib"] else "-",
            ]
        )
    return "\n".join([table(head, rows), *failed])


def measure_train(job: dict[str, Any]) -> dict[str, Any]:
    """Time `steps` training steps after one warm-up step (run in a fresh process)."""
    import torch

    from pipeline.devices import resolve_device
    from pipeline.training.model_factory import build_model
    from pipeline.training.objectives import finetune_objective
    from pipeline.training.schedule import resolve_amp

    model_config, finetune = ModelConfig(**job["model"]), _finetune(job["finetune"])
    device = resolve_device(finetune.optim.device)
    amp = resolve_amp(finetune.optim.amp, device)
    model, facts = build_model(model_config)
    model.to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=finetune.optim.lr, betas=(0.9, 0.98))
    objective = finetune_objective(finetune)
    batch = _random_batch(job["batch_size"], model_config, device)

    step = training_step(model, objective, batch, optimizer, amp, finetune.optim.grad_clip)
    step()  # warm-up: allocator, kernels, Adam state
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(job["steps"]):
        started = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    gpu = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else 0.0
    return {
        "step_s": statistics.median(times),
        "batch": batch.size,
        "frames": batch.video.shape[1],
        "tokens": batch.text_ids.shape[1],
        "parameters": facts["parameters"],
        "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "gpu_peak_mib": gpu,
        "device": str(device),
        "amp": str(amp).replace("torch.", "") if amp is not None else "off",
        "threads": torch.get_num_threads(),
    }


def training_step(
    model: Any, objective: Any, batch: Any, optimizer: Any, amp: Any, grad_clip: float
) -> Callable[[], None]:
    """One full step as the training loop takes it: the loss under autocast (`amp` None: off),
    backward, clipping at `grad_clip` (0 = none, as in the loop), the optimizer."""
    import math

    import torch

    max_norm = grad_clip or math.inf

    def step() -> None:
        with torch.autocast(batch.video.device.type, dtype=amp, enabled=amp is not None):
            loss = objective(model, batch).total
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
        optimizer.step()

    return step


def _random_batch(size: int, model: ModelConfig, device: Any) -> Any:
    import torch

    from models.s3dg import EMBEDDING_DIM
    from pipeline.training.data import Batch

    generator = torch.Generator().manual_seed(0)
    frames, tokens = model.max_video_len, model.max_text_tokens + 2
    video = torch.nn.functional.normalize(
        torch.randn(size, frames, EMBEDDING_DIM, generator=generator), dim=-1
    )
    text_ids = torch.randint(1000, 2000, (size, tokens), generator=generator)
    text_ids[:, 0], text_ids[:, -1] = 101, 102  # [CLS] ... [SEP]
    batch = Batch(
        video=video,
        video_mask=torch.ones(size, frames, dtype=torch.bool),
        text_ids=text_ids,
        text_mask=torch.ones(size, tokens, dtype=torch.bool),
        true_lengths=torch.full((size,), frames, dtype=torch.long),
        index=torch.arange(size),
    )
    return batch.to(device)


def _finetune(data: dict[str, Any]) -> FinetuneConfig:
    """The section sent to the measuring process as JSON, validated back (nested sections too)."""
    from pydantic import TypeAdapter

    return TypeAdapter(FinetuneConfig).validate_python(data)
