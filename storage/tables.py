"""Parquet tables (videos, pairs, decode status, feature index), written atomically."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from storage.atomic import atomic_output


def write_table(frame: pd.DataFrame, path: Path) -> None:
    """Write `frame` as parquet via a temporary file and an atomic rename."""
    with atomic_output(path) as tmp:
        frame.to_parquet(tmp, index=False, engine="pyarrow")


def read_table(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise FileNotFoundError(f"table {path} does not exist (did its stage finish?)")
    return pd.read_parquet(path, engine="pyarrow")
