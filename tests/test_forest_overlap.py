"""The forests fit on the cores the autoencoder leaves idle, during training, and come out the same."""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from lightning.pytorch.callbacks import Callback

import threat_ensemble.callbacks.end_of_fit as callbacks
from conftest import fit_autoencoder
from threat_ensemble.checkpointing import RunState
from threat_ensemble.models.forests import fit_random_forest


def _forest_callback(tmp_path: Path) -> callbacks.ForestCallback:
    return callbacks.ForestCallback(
        seed=5, state=RunState("fp", {}), checkpoint_dir=tmp_path / "ckpt", outcome=callbacks.FitOutcome(), quiet=True
    )


def _record_fitting_threads(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    threads: dict[str, str] = {}
    for name in ("fit_random_forest", "fit_isolation_forest"):
        real = getattr(callbacks, name)

        def recording(*args: Any, _real: Any = real, _name: str = name, **kwargs: Any) -> Any:
            threads[_name] = threading.current_thread().name
            return _real(*args, **kwargs)

        monkeypatch.setattr(callbacks, name, recording)
    return threads


@pytest.mark.usefixtures("small_forests")  # 20 trees: still grown in steps of 10
def test_forests_fit_beside_the_autoencoder_and_equal_a_fit_after_it(
    small_frame: pd.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    monkeypatch.setattr(callbacks, "spare_cores", lambda trainer: 1)  # as on any machine with 2+ cores
    threads = _record_fitting_threads(monkeypatch)
    forests = _forest_callback(tmp_path)
    said: list[str] = []
    forests.say = said.append
    _, dm, _ = fit_autoencoder(small_frame, tmp_path, max_epochs=2, callbacks=[forests])
    assert threads["fit_random_forest"].startswith("forests") and threads["fit_isolation_forest"].startswith("forests")
    assert said[0] == "forests: fitting on 1 spare core while the autoencoder trains"
    assert re.fullmatch(r"random forest: done in \d+\.\ds beside the autoencoder \(\d+\.\ds after it\)", said[1])
    assert said[2].startswith("isolation forest: done in ")
    assert set(forests.outcome.forests) == {"random_forest", "isolation_forest"}
    assert set(forests.state.trees) == {"random_forest", "isolation_forest"}  # side files saved, hashes kept
    after = fit_random_forest(dm.x_train, dm.y_train, dm.x_val, dm.y_val, seed=5)
    assert np.array_equal(
        forests.outcome.forests["random_forest"].predict_proba(dm.x_val), after.predict_proba(dm.x_val)
    )


@pytest.mark.usefixtures("small_forests")  # 20 trees: still grown in steps of 10
def test_without_a_spare_core_the_forests_fit_after_training(
    small_frame: pd.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(callbacks, "spare_cores", lambda trainer: 0)
    threads = _record_fitting_threads(monkeypatch)
    forests = _forest_callback(tmp_path)
    fit_autoencoder(small_frame, tmp_path, max_epochs=1, callbacks=[forests])
    assert threads == {"fit_random_forest": "MainThread", "fit_isolation_forest": "MainThread"}


class _FailAtEpoch(Callback):
    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        if trainer.current_epoch == 1:
            raise RuntimeError("training failed")


def test_a_failed_training_stops_the_background_forests(
    small_frame: pd.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from threat_ensemble.models.forests import ForestFitCancelled

    monkeypatch.setattr(callbacks, "spare_cores", lambda trainer: 1)
    outcome: list[BaseException | None] = []
    real = callbacks.fit_random_forest

    def recording(*args: Any, **kwargs: Any) -> Any:
        try:
            model = real(*args, **kwargs)
        except BaseException as exc:
            outcome.append(exc)
            raise
        outcome.append(None)
        return model

    monkeypatch.setattr(callbacks, "fit_random_forest", recording)
    forests = _forest_callback(tmp_path)
    with pytest.raises(RuntimeError, match="training failed"):
        fit_autoencoder(small_frame, tmp_path, max_epochs=3, callbacks=[forests, _FailAtEpoch()])
    assert forests._executor is not None
    forests._executor.shutdown(wait=True)  # returns once the fit stopped at its next step
    assert len(outcome) == 1 and isinstance(outcome[0], ForestFitCancelled)
    assert not forests.outcome.forests and not forests.state.trees  # nothing half-fitted kept or saved
    assert not any(t.name.startswith("forests") for t in threading.enumerate())


def test_spare_cores_counts_the_torch_threads_of_each_cpu_process(monkeypatch: pytest.MonkeyPatch) -> None:
    import lightning as L

    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False)
    monkeypatch.setattr(callbacks.os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 3)
    assert callbacks.spare_cores(trainer) == 5


def test_calibration_on_a_small_split_gives_the_default_folds_result_without_their_warning() -> None:
    """A frozen forest is calibrated on one fold holding every row: the same model as the default
    five folds, without their "least populated class" warning on a split with 3 attack rows."""
    import warnings

    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.frozen import FrozenEstimator

    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 5)).astype(np.float32)
    y = (x[:, 0] > 1.0).astype(int)
    x_cal = rng.normal(size=(60, 5)).astype(np.float32)
    y_cal = np.zeros(60, dtype=int)
    y_cal[:3] = 1
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = fit_random_forest(x, y, x_cal, y_cal, seed=0, n_jobs=1)
    assert [str(w.message) for w in caught] == []
    assert isinstance(model, CalibratedClassifierCV) and model.get_params()["cv"] is None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        default = CalibratedClassifierCV(FrozenEstimator(model.estimator.estimator), method="isotonic").fit(
            x_cal, y_cal
        )
    assert np.array_equal(model.predict_proba(x), default.predict_proba(x))


@pytest.mark.usefixtures("small_forests")  # 20 trees: still grown in steps of 10
def test_a_forest_stored_by_the_previous_release_loads_and_scores_the_same() -> None:
    """Format-2 bundles written before the frozen forest's duplicate was dropped (plain skops dump of
    the calibrated forest) still load, with the same scores; the new files are about half the size."""
    import skops.io as sio

    from threat_ensemble.models.forests import forest_from_bytes, forest_to_bytes

    rng = np.random.default_rng(1)
    x = rng.normal(size=(600, 6)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 1.0).astype(int)
    model = fit_random_forest(x[:400], y[:400], x[400:], y[400:], seed=0, n_jobs=1)
    old, new = sio.dumps(model), forest_to_bytes(model)
    assert len(new) < 0.6 * len(old)
    for data in (old, new):
        loaded = forest_from_bytes(data, "rf.skops")
        assert np.array_equal(loaded.predict_proba(x), model.predict_proba(x))
        assert loaded.estimator is loaded.calibrated_classifiers_[0].estimator or data is old
