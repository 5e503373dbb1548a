"""MLflow: the tracking store check, the resilient logger, the pyfunc model and the registry."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

OFFLINE_MLFLOW = {
    "MLFLOW_DISABLE_TELEMETRY": "true",  # no network at run time: MLflow 3 otherwise sends usage telemetry
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",  # its per-file download bar is noise in a training log
}


def offline_mlflow() -> None:
    """Call before MLflow is imported for a run (the user's own settings win)."""
    for name, value in OFFLINE_MLFLOW.items():
        os.environ.setdefault(name, value)


@contextmanager
def tracking_uri_kept() -> Iterator[None]:
    """Leave MLflow's process-wide tracking URI as the block found it: the fluent API's, and
    ``MLFLOW_TRACKING_URI``, which MLflow sets so that subprocesses inherit it. Lightning's MLflow
    logger points both at the run's store; a run called from Python (a notebook, a test process)
    left them there, so the caller's next subprocess or MLflow call went to that store, or to a
    server that had since gone."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    utils = sys.modules.get("mlflow.tracking._tracking_service.utils")  # not imported here: seconds
    previous = getattr(utils, "_tracking_uri", None)
    try:
        yield
    finally:
        utils = sys.modules.get("mlflow.tracking._tracking_service.utils")
        if utils is not None and getattr(utils, "_tracking_uri", None) != previous:
            utils.set_tracking_uri(previous)
        if env is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = env
