"""The three fitted members and how a row becomes three scores and one verdict."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import IsolationForest, RandomForestClassifier
from sklearn.frozen import FrozenEstimator
from torch import nn

from threat_ensemble.model import build_autoencoder, reconstruction_error
from threat_ensemble.preprocessing import Preprocessing
from threat_ensemble.scoring import (
    CUTOFF,
    ae_score,
    apply_stacked_fusion,
    fit_stacked_fusion,
    fuse,
    if_score,
    stack_features,
    stack_inputs,
)

N_TREES = 200
RF_MAX_DEPTH = 20
# Each tree draws its bootstrap sample of at most this many rows. Small and mid-sized tables
# (NSL-KDD, the default data) are untouched; past it the forest's cost stops growing with the
# table, which is what keeps 100k- and 1M-row runs fast (benchmarks/bench_train.py).
MAX_ROWS_PER_TREE = 20000
# Trees fitted per call when the forest grows in steps (``CoreShare``): small enough that the
# forest takes up freed cores within a fraction of a second, large enough that the per-call
# checks cost nothing.
TREES_PER_STEP = 10


class ForestFitCancelled(RuntimeError):
    """The run the forests were being fitted for has failed or been interrupted."""


class CoreShare:
    """How many cores the forests may use right now: the spare ones while the autoencoder trains
    beside them, all of them once it is done (``release``); ``cancel`` stops a fit between steps.
    The fitted forest does not depend on any of this: its trees are the same however the cores
    were shared (tested)."""

    def __init__(self, spare: int) -> None:
        self.spare = max(1, int(spare))
        self._released = threading.Event()
        self._cancelled = threading.Event()

    def release(self) -> None:
        self._released.set()

    def cancel(self) -> None:
        self._cancelled.set()

    def n_jobs(self) -> int:
        if self._cancelled.is_set():
            raise ForestFitCancelled("forest fit cancelled: the run stopped")
        return -1 if self._released.is_set() else self.spare


class DeterministicForest(RandomForestClassifier):
    """A random forest whose votes are the same bits on every run. scikit-learn sums the trees'
    probabilities across threads in the order the threads finish, so the last bits of a vote vary
    from run to run, enough to flip an isotonic step or a tie in PR-AUC. Here the rows are split
    across the threads instead and each row's trees are summed in tree order: as fast, and
    repeatable."""

    def predict_proba(self, X: Any) -> np.ndarray:  # noqa: N803 (scikit-learn's name)
        from joblib import effective_n_jobs
        from scipy import sparse

        if sparse.issparse(X) or getattr(self, "n_outputs_", 1) != 1:
            return super().predict_proba(X)
        x = self._validate_X_predict(X)
        parts = np.array_split(np.arange(x.shape[0]), max(1, min(effective_n_jobs(self.n_jobs), x.shape[0] // 2048)))

        def vote(rows: np.ndarray) -> np.ndarray:
            chunk = np.ascontiguousarray(x[rows])
            total = np.zeros((len(rows), self.n_classes_), dtype=np.float64)
            for tree in self.estimators_:
                total += tree.predict_proba(chunk, check_input=False)
            return total / len(self.estimators_)

        if len(parts) == 1:
            return vote(parts[0])
        with ThreadPoolExecutor(len(parts)) as pool:  # tree prediction releases the GIL
            return np.concatenate(list(pool.map(vote, parts)))


def fit_random_forest(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_cal: np.ndarray,
    y_cal: np.ndarray,
    seed: int,
    n_jobs: int = -1,
    cores: CoreShare | None = None,
) -> Any:
    """One balanced forest fitted on the train split, then isotonic-calibrated on the validation
    split. The reference trains three forests for 3-fold calibration and lets SMOTE rows leak into
    its evaluation; one forest calibrated on held-out rows is cheaper and honest. With ``cores``
    the trees grow in steps on the cores it grants at each step."""
    forest = DeterministicForest(
        n_estimators=N_TREES,
        max_depth=RF_MAX_DEPTH,
        class_weight="balanced",
        random_state=seed,
        n_jobs=n_jobs,
        max_samples=MAX_ROWS_PER_TREE if len(x_train) > MAX_ROWS_PER_TREE else None,
    )
    if cores is None:
        forest.fit(x_train, y_train)
    else:
        _grow_in_steps(forest, x_train, y_train, cores)
        forest.set_params(n_jobs=cores.n_jobs())  # the calibration's prediction pass, too
    model: Any = forest
    if len(np.unique(y_cal)) >= 2:
        model = CalibratedClassifierCV(FrozenEstimator(forest), method="isotonic").fit(x_cal, y_cal)
    forest.set_params(n_jobs=n_jobs)  # what the saved model uses when it scores
    return model


def _grow_in_steps(forest: RandomForestClassifier, x: np.ndarray, y: np.ndarray, cores: CoreShare) -> None:
    """Fit ``forest`` TREES_PER_STEP trees at a time (warm start; more when many cores are spare,
    so none idles) while ``cores`` grants only the spare cores, then the rest in one step on all of
    them. scikit-learn draws each new tree's seed as an uninterrupted fit would, so the trees are
    the same as one ``fit``."""
    from sklearn.utils.class_weight import compute_class_weight

    total, preset = forest.n_estimators, forest.class_weight
    x = np.ascontiguousarray(x, dtype=np.float32)  # the forest's own dtype: converted once, not per step
    classes = np.unique(y)
    weights = compute_class_weight(preset, classes=classes, y=y) if preset == "balanced" else None
    # the same weights "balanced" gives, spelled out (scikit-learn warns about the preset with warm start)
    class_weight = dict(zip(classes.tolist(), weights.tolist(), strict=True)) if weights is not None else preset
    forest.set_params(warm_start=True, class_weight=class_weight)
    grown = 0
    while grown < total:
        n_jobs = cores.n_jobs()
        # all cores: the rest at once; otherwise at least two trees a granted core per step
        grown = total if n_jobs == -1 else min(total, grown + max(TREES_PER_STEP, 2 * n_jobs))
        forest.set_params(n_estimators=grown, n_jobs=n_jobs)
        forest.fit(x, y)
    forest.set_params(warm_start=False, class_weight=preset)


def fit_isolation_forest(
    x_normal: np.ndarray, seed: int, n_jobs: int = -1, cores: CoreShare | None = None
) -> IsolationForest:
    """Isolation forest on the normal training rows (unscaled), as in the reference. It is small
    (a few hundred rows a tree): one fit on the cores ``cores`` grants at its start."""
    forest = IsolationForest(
        n_estimators=N_TREES,
        contamination="auto",
        random_state=seed,
        n_jobs=cores.n_jobs() if cores is not None else n_jobs,
    )
    forest.fit(x_normal)
    return forest.set_params(n_jobs=n_jobs)


def timed(label: str, fn: Callable[[], Any], say: Callable[[str], None]) -> Any:
    """Run ``fn`` between two progress lines that give its wall time."""
    say(f"{label} ...")
    start = time.perf_counter()
    result = fn()
    say(f"{label.split(':')[0]}: done in {time.perf_counter() - start:.1f}s")
    return result


def forest_scores(random_forest: Any, x_encoded: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(calibrated attack probability, raw vote share) from one pass over the trees: the isotonic
    calibrator is applied to the vote the pass already gave, instead of asking the forest again
    (prediction is most of the validation stage's cost)."""
    calibrated = getattr(random_forest, "calibrated_classifiers_", None)
    forest = calibrated[0].estimator if calibrated else random_forest
    vote = forest.predict_proba(x_encoded)[:, 1].astype(np.float64)
    if not calibrated:
        return vote, vote
    if len(calibrated) != 1 or len(calibrated[0].calibrators) != 1:  # not the binary, single-fit case
        return random_forest.predict_proba(x_encoded)[:, 1].astype(np.float64), vote
    return np.clip(calibrated[0].calibrators[0].predict(vote), 0.0, 1.0), vote


@dataclass
class Ensemble:
    """Fitted members plus the preprocessing and the fusion that tie them together. ``fusion`` is
    ``{"kind": "fixed", "weights": {...}}`` (the reference's weighted mean) or a stacked fusion
    fitted on validation data (``scoring.fit_stacked_fusion``)."""

    preprocessing: Preprocessing
    autoencoder: nn.Module
    threshold: float
    random_forest: Any
    isolation_forest: IsolationForest
    fusion: dict[str, Any]
    error_scale: np.ndarray | None = None  # per-feature error scale of the autoencoder score (None: plain MSE)

    def member_scores(self, x_encoded: np.ndarray) -> dict[str, np.ndarray]:
        """Each member's score in [0, 1] (higher = more anomalous), plus the raw outputs the
        stacked fusion uses (``ae_error``, ``rf_vote``)."""
        scaled = torch.from_numpy(self.preprocessing.scaler.transform(x_encoded))
        scale = None if self.error_scale is None else torch.as_tensor(self.error_scale, dtype=torch.float64)
        errors = reconstruction_error(self.autoencoder, scaled, scale=scale).numpy()  # float64
        rf_probability, rf_vote = forest_scores(self.random_forest, x_encoded)
        return {
            "ae": ae_score(errors, self.threshold),
            "rf": rf_probability,
            "if": if_score(self.isolation_forest.decision_function(x_encoded)),
            "ae_error": errors,
            "rf_vote": rf_vote,
        }

    def fuse(self, scores: dict[str, np.ndarray]) -> np.ndarray:
        if self.fusion["kind"] == "fixed":
            return fuse(scores, self.fusion["weights"])
        return apply_stacked_fusion(self.fusion, stack_features(scores, N_TREES, stack_inputs(self.fusion)))

    def fit_fusion(self, x_val: np.ndarray, y_val: np.ndarray, target_fpr: float) -> dict[str, Any]:
        """Fit the stacked fusion on the labelled validation split (never on test data)."""
        self.fusion = fit_stacked_fusion(stack_features(self.member_scores(x_val), N_TREES), y_val, target_fpr)
        return self.fusion

    def score(self, x_encoded: np.ndarray) -> dict[str, np.ndarray]:
        """Member scores, the fused score and the 0/1 verdict (attack when fused >= 0.5)."""
        scores = self.member_scores(x_encoded)
        scores["ensemble"] = self.fuse(scores)
        scores["verdict"] = (scores["ensemble"] >= CUTOFF).astype(np.int64)
        return scores


def load_ensemble(bundle_dir: str | Path) -> Ensemble:
    """Load a bundle after verifying every file's sha256 against its manifest (joblib files run
    code when loaded, so nothing is unpickled before the check passes)."""
    import joblib

    from threat_ensemble.artifacts import (
        AE_FILE,
        GATE_FILE,
        IF_FILE,
        PREPROCESSING_FILE,
        RF_FILE,
        THRESHOLD_FILE,
        read_json,
        verify_bundle,
    )

    folder = Path(bundle_dir)
    verify_bundle(folder)
    saved = torch.load(folder / AE_FILE, weights_only=True, map_location="cpu")
    net = build_autoencoder(int(saved["n_features"]), tuple(saved["hidden"]))
    net.load_state_dict(saved["state_dict"])
    net.eval()
    thresholds = read_json(folder / THRESHOLD_FILE)
    fusion = thresholds.get("fusion") or {"kind": "fixed", "weights": dict(read_json(folder / GATE_FILE)["weights"])}
    return Ensemble(
        preprocessing=Preprocessing.from_dict(read_json(folder / PREPROCESSING_FILE)),
        autoencoder=net,
        threshold=float(thresholds["threshold"]),
        random_forest=joblib.load(folder / RF_FILE),
        isolation_forest=joblib.load(folder / IF_FILE),
        fusion=fusion,
        error_scale=np.asarray(saved["error_scale"], dtype=np.float64) if "error_scale" in saved else None,
    )
