"""The training schedule and precision: VideoCLIP's warm-up and polynomial decay, and AMP's dtype.

`lr_factor` multiplies the base lr after each optimizer step (linear warm-up from 0, then
`(1 - progress) ** power` down to 0 at the decay's horizon: the run's end, or `decay_steps`, as
MMPT's `total_num_update` of 1e6 steps, which keeps the lr near constant); `effective_warmup`
shortens a warm-up that would not end before a short run does; `check_decay` refuses a decay
horizon inside the warm-up and warns of one shorter than the run; `resolve_amp` picks the autocast
dtype for a device.
"""

from __future__ import annotations

import logging

import torch

log = logging.getLogger(__name__)


def lr_factor(step: int, warmup_steps: int, total_steps: int, power: float) -> float:
    """Multiplier of the base lr after `step` optimizer steps: linear warm-up from 0 over
    `warmup_steps`, then `(1 - progress) ** power` down to 0 at `total_steps` (the convention of
    transformers' `get_polynomial_decay_schedule_with_warmup` with lr_end = 0)."""
    if step < warmup_steps:
        return step / warmup_steps
    if step >= total_steps:
        return 0.0
    progress = (step - warmup_steps) / (total_steps - warmup_steps)
    return (1.0 - progress) ** power


def check_decay(decay_steps: int, warmup: int, total_steps: int) -> None:
    """`optim.decay_steps` (0 = the run) must end after the warm-up; one that ends before the
    run does leaves the lr at 0 for the rest of it, which is allowed but said."""
    if decay_steps and decay_steps <= warmup:
        raise ValueError(
            f"optim.decay_steps = {decay_steps} must exceed the warm-up ({warmup} steps), or be 0"
        )
    if decay_steps and decay_steps < total_steps:
        log.warning(
            "optim.decay_steps = %d ends before the run's %d steps: the lr is 0 after it",
            decay_steps,
            total_steps,
        )


def effective_warmup(warmup_steps: int, total_steps: int) -> int:
    """`warmup_steps`, or a tenth of the run (at least 1) when it would not end before the run."""
    if warmup_steps < total_steps:
        return warmup_steps
    clamped = max(1, total_steps // 10)
    log.warning(
        "warmup_steps=%d is not below the run's %d steps; warming up over %d steps instead",
        warmup_steps,
        total_steps,
        clamped,
    )
    return clamped


def resolve_amp(choice: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, None for fp32. `auto`: bf16 on a GPU that supports it, else fp16
    (with a loss scaler); off on CPU."""
    if choice == "off":
        return None
    if device.type != "cuda":
        if choice == "fp16":
            raise ValueError(f"amp=fp16 needs a CUDA device; this run is on {device}")
        return torch.bfloat16 if choice == "bf16" else None
    if choice == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if choice == "bf16" else torch.float16
