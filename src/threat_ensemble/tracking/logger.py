"""Lightning's ``MLFlowLogger``, made to survive a tracking server that dies mid-run: MLflow's HTTP
retries are bounded (about a minute in all, not 12), the first failure is reported once, and from
then on the run trains, gates and writes its bundle without tracking. The run then exits
``EXIT_TRACKING_FAILED`` and says how to log it later (``--resume`` once the server is back)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from lightning.pytorch.loggers import MLFlowLogger
from lightning.pytorch.utilities import rank_zero_only

from threat_ensemble.errors import first_line

# MLflow's defaults retry each request up to 7 times with a doubling backoff and a 120 s timeout.
BOUNDED_HTTP = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "15",
}


def bound_http_retries() -> None:
    """Bound MLflow's HTTP retries for this process, unless the user set them."""
    for name, value in BOUNDED_HTTP.items():
        os.environ.setdefault(name, value)


class ResilientMLFlowLogger(MLFlowLogger):
    """An ``MLFlowLogger`` whose writes never fail the run. ``failure`` holds the first error."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.failure: str | None = None

    def guard(self, what: str, call: Callable[[], Any]) -> Any:
        """Run ``call`` unless tracking already failed; on its first failure, say so once."""
        if self.failure is not None:
            return None
        try:
            return call()
        except Exception as exc:
            self.failure = f"{what}: {first_line(exc, named=True)}"
            print(f"warning: MLflow tracking failed ({self.failure}); the run goes on without it")
            return None

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.guard("logging metrics", lambda: MLFlowLogger.log_metrics(self, metrics, step))

    @rank_zero_only
    def log_hyperparams(self, params: Any) -> None:
        self.guard("logging parameters", lambda: MLFlowLogger.log_hyperparams(self, params))

    @rank_zero_only
    def finalize(self, status: str = "success") -> None:
        self.guard("closing the run", lambda: MLFlowLogger.finalize(self, status))

    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        self.guard("logging checkpoints", lambda: MLFlowLogger.after_save_checkpoint(self, checkpoint_callback))
