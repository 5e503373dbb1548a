"""What an MLflow run is called and records before training starts: the store's default URI and
artifact folder, the run's name, tags and params."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from threat_ensemble.config import TrainConfig


def default_tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI``, else a SQLite store ``mlflow.db`` in the working folder."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path('mlflow.db').resolve()}"


def artifact_location_for(uri: str) -> str | None:
    """For a SQLite store, keep artifacts in a folder beside the database, not in ./mlruns."""
    if uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///") :])
        return (db.parent / "mlartifacts").resolve().as_uri()
    return None


def git_commit() -> str:
    """The package's git commit, or ``unknown`` outside a checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
        return out.stdout.strip() if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def run_tags() -> dict[str, str]:
    """The tags a new run starts with (``status`` becomes the gate's verdict at the end)."""
    return {
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "git_commit": git_commit(),
        "status": "running",
    }


def default_run_name(cfg: TrainConfig) -> str:
    """A run name that tells runs apart in the MLflow UI: the data's name and the start time
    (MLflow's random names are drawn after the seed is set, so every run of a seed got the same)."""
    from datetime import datetime

    data = Path(cfg.data).name.split(".")[0] if cfg.data else f"default-{cfg.default_rows}"
    return f"{data[:40]}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def run_params(cfg: TrainConfig, summary: dict[str, Any]) -> dict[str, Any]:
    """The run's MLflow params: every option (lists joined, None as empty) and the data's counts."""
    params = {k: ("" if v is None else v) for k, v in cfg.to_dict().items()}
    params["drop_columns"] = ",".join(cfg.drop_columns)
    params["id_columns"] = ",".join(cfg.id_columns)
    params["data"] = cfg.data or f"default ({cfg.default_rows} rows, seed {cfg.seed})"
    params["epochs"] = cfg.max_epochs
    params.update(summary)
    return params
