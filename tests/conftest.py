"""Shared fixtures: small labelled tables written by the tests themselves, and a SQLite MLflow store."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
NSL_KDD = SHARED / "data" / "nsl-kdd"

# Tiny models train fastest on one thread, and the suite runs on 2 cores (PLATFORM-NOTES.md).
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def small_frame() -> pd.DataFrame:
    from threat_ensemble.synthetic import make_default_dataset

    return make_default_dataset(3000, seed=7).drop(columns=["family"])


@pytest.fixture()
def small_csv(tmp_path: Path, small_frame: pd.DataFrame) -> Path:
    path = tmp_path / "flows.csv"
    small_frame.to_csv(path, index=False)
    return path


@pytest.fixture()
def tracking_uri(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def train_cmd(*args: str) -> list[str]:
    return [sys.executable, str(ROOT / "scripts" / "train.py"), *args]
