"""threat-ensemble: a Lightning trainer for an autoencoder + random forest + isolation forest
threat-detection ensemble with a quality gate.

Importing the package is cheap; ``run`` and ``train`` load torch and Lightning when called.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["TrainConfig", "run", "train", "__version__"]

from threat_ensemble.config import TrainConfig


def run(*args: Any, **kwargs: Any) -> Any:
    """Train from arrays or a DataFrame; see :func:`threat_ensemble.pipeline.run`."""
    from threat_ensemble.pipeline import run as _run

    return _run(*args, **kwargs)


def train(cfg: TrainConfig) -> Any:
    """Train from a :class:`TrainConfig`; see :func:`threat_ensemble.pipeline.train`."""
    from threat_ensemble.pipeline import train as _train

    return _train(cfg)
