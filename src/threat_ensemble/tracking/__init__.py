"""MLflow: the tracking store check, the resilient logger, the pyfunc model and the registry."""

from __future__ import annotations

import os

OFFLINE_MLFLOW = {
    "MLFLOW_DISABLE_TELEMETRY": "true",  # no network at run time: MLflow 3 otherwise sends usage telemetry
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",  # its per-file download bar is noise in a training log
}


def offline_mlflow() -> None:
    """Call before MLflow is imported for a run (the user's own settings win)."""
    for name, value in OFFLINE_MLFLOW.items():
        os.environ.setdefault(name, value)
