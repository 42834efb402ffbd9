"""The S3D-G backbone of the extract stage: the public weights, or a calibrated random init.

With `extract.weights` the file must be `s3d_howto100m.pth` (loaded with `weights_only=True`,
`strict=True`). Without it — nothing can be downloaded here — the backbone is randomly initialised
from `extract.init_seed`. A plain random S3D-G is useless as a feature extractor: with BatchNorm's
default statistics the activations drift with depth and every clip maps to nearly the same vector
(measured on the demo data: cosine 1.000 between any two seconds, 7 % 1-NN concept accuracy
against 4 % chance). So the random backbone's BatchNorm statistics are calibrated on seeded
smooth-noise clips of the pipeline's clip shape — data-independent and deterministic — which gives
features that separate the demo's concepts (same-concept cosine 0.90 vs 0.79, 93 % 1-NN accuracy).
Manifests record `random_init` and the calibration recipe either way.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.s3dg import S3D, calibrate_batch_norm
from pipeline.config import ExtractConfig
from pipeline.devices import resolve_device
from storage.digests import file_digest
from storage.layout import expand_path

log = logging.getLogger(__name__)

# Smooth noise: uniform noise on a coarse (T/4, 4, 4) grid per colour, trilinearly upsampled.
CALIBRATION = {"recipe": "smooth-noise-v1", "batches": 4, "batch_size": 8}


def calibration_clips(seed: int, calibration: dict[str, Any]) -> Iterator[torch.Tensor]:
    """Seeded smooth-noise clips (B, 3, F, S, S) in [0, 1] for BatchNorm calibration."""
    generator = torch.Generator().manual_seed(seed)
    frames, size, batch = calibration["frames"], calibration["size"], calibration["batch_size"]
    for _ in range(calibration["batches"]):
        coarse = torch.rand(batch, 3, max(frames // 4, 1), 4, 4, generator=generator)
        yield torch.nn.functional.interpolate(
            coarse, size=(frames, size, size), mode="trilinear", align_corners=False
        )  # (B, 3, F, S, S)


class WeightsError(ValueError):
    """A weights file that is missing or does not fit the S3D-G architecture."""


@dataclass(frozen=True)
class Backbone:
    """The S3D-G model ready to run, and the facts about its weights that manifests record."""

    model: S3D
    device: torch.device
    weights: dict[str, Any]  # {"random_init": bool, "path": str, "sha256": str, "seed": int}
    dtype: torch.dtype | None = None  # the forward's autocast dtype; None = fp32
    channels_last: bool = False  # clips in torch.channels_last_3d (GPU)


def backbone_recipe(config: ExtractConfig, frames: int, size: int) -> dict[str, Any]:
    """How the parameters are made, apart from a weights file's content: the init seed and the
    clip shape a random init's BatchNorm statistics are calibrated at, or a file."""
    if not config.weights:
        calibration = {**CALIBRATION, "frames": frames, "size": size}
        return {"random_init": True, "seed": config.init_seed, "calibration": calibration}
    return {"random_init": False}


def weights_identity(
    config: ExtractConfig, frames: int, size: int, artifacts: Path
) -> dict[str, Any]:
    """What determines the backbone's parameters: the recipe, and a weights file's digest (and
    path, for the record)."""
    recipe = backbone_recipe(config, frames, size)
    if recipe["random_init"]:
        return recipe
    path = weights_path(config, artifacts)
    return {**recipe, "path": str(path), "sha256": file_digest(path)}


def weights_path(config: ExtractConfig, artifacts: Path) -> Path:
    """`extract.weights` with `{artifacts}` (the run's artifact root) expanded; it must exist."""
    path = expand_path(config.weights, artifacts)
    if not path.is_file():
        raise WeightsError(
            f"extract.weights = {config.weights!r}: S3D weights file {path} does not exist"
        )
    return path


def load_backbone(config: ExtractConfig, identity: dict[str, Any]) -> Backbone:
    """Build S3D-G; load `s3d_howto100m.pth` strictly when given, else seed a random init."""
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.init_seed)
    model = S3D()
    if not identity["random_init"]:
        state = torch.load(identity["path"], map_location="cpu", weights_only=True)
        missing, unexpected = _key_mismatch(model, state)
        if missing or unexpected:
            raise WeightsError(
                f"{identity['path']} does not match S3D-G (s3d_howto100m.pth layout): "
                f"{len(missing)} missing keys {missing[:8]}, "
                f"{len(unexpected)} unexpected keys {unexpected[:8]}"
            )
        model.load_state_dict(state, strict=True)
    else:
        log.warning(
            "extract: no S3D weights file given; the backbone is RANDOMLY initialised "
            "(BatchNorm statistics calibrated on seeded smooth-noise clips)"
        )
        calibrate_batch_norm(model, calibration_clips(identity["seed"], identity["calibration"]))
    device = resolve_device(config.device)
    channels_last = device.type == "cuda"
    model = model.eval().to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last_3d)
    dtype = autocast_dtype(config.precision, device)
    return Backbone(model, device, identity, dtype, channels_last)


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """`extract.precision` on `device`: auto = bf16 on a GPU, fp32 (None) on the CPU."""
    if precision == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    return {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]


def _key_mismatch(model: torch.nn.Module, state: Any) -> tuple[list[str], list[str]]:
    if not isinstance(state, dict):
        return sorted(model.state_dict()), [f"<a {type(state).__name__}, not a state dict>"]
    expected = set(model.state_dict())
    return sorted(expected - set(state)), sorted(set(state) - expected)


def embed_clips(backbone: Backbone, clips: np.ndarray) -> np.ndarray:
    """(B, F, S, S, 3) uint8 clips → (B, 512) float16 L2-normalised `video_embedding` rows."""
    video = torch.from_numpy(clips).to(backbone.device, non_blocking=True)
    video = video.permute(0, 4, 1, 2, 3).float().div_(255.0)  # (B, 3, F, S, S) in [0, 1]
    if backbone.channels_last:
        video = video.contiguous(memory_format=torch.channels_last_3d)
    dtype = backbone.dtype
    with (
        torch.inference_mode(),
        torch.autocast(backbone.device.type, dtype=dtype, enabled=dtype is not None),
    ):
        embedding = backbone.model(video).video_embedding.float()  # (B, 512)
    embedding = torch.nn.functional.normalize(embedding, dim=1)
    return embedding.to(torch.float16).cpu().numpy()
