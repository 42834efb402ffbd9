"""The tiny random model the task-level tests share (a 2-layer BERT of width 32, 8 frames)."""

from __future__ import annotations

from models.s3dg import EMBEDDING_DIM
from pipeline.config import ModelConfig

FEATURE_DIM = EMBEDDING_DIM  # S3D-G features per second
TINY_MODEL = ModelConfig(
    random_init=True,
    random_hidden=32,
    random_layers=2,
    random_heads=2,
    random_intermediate=37,
    video_layers=1,
    max_video_len=8,
    max_text_tokens=16,
)
