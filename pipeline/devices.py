"""Which torch device a stage runs on: `auto` takes the GPU when there is one."""

from __future__ import annotations

import torch


def resolve_device(choice: str) -> torch.device:
    """`auto` → cuda if available, else cpu; `cuda` without a GPU is an error."""
    if choice == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device=cuda was asked for but no CUDA device is available")
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(choice)
