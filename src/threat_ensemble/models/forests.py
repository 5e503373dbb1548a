"""The two tree models: how they are fitted (beside the autoencoder when cores are spare), how
they score, and how they are stored without pickle (skops, with an explicit list of trusted types:
loading a stranger's file may give wrong scores, never run code)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import IsolationForest, RandomForestClassifier
from sklearn.frozen import FrozenEstimator

from threat_ensemble.errors import InputError

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
    beside them, all of them (``every``, joblib's -1 by default) once it is done (``release``);
    ``cancel`` stops a fit between steps. The fitted forest does not depend on any of this: its
    trees are the same however the cores were shared (tested)."""

    def __init__(self, spare: int, every: int = -1) -> None:
        self.spare = max(1, int(spare))
        self.every = every
        self._released = threading.Event()
        self._cancelled = threading.Event()

    @classmethod
    def all_of(cls, n_jobs: int) -> CoreShare:
        """Every core of ``n_jobs`` from the start (a fit with no autoencoder beside it)."""
        cores = cls(1, n_jobs)
        cores.release()
        return cores

    def release(self) -> None:
        self._released.set()

    def cancel(self) -> None:
        self._cancelled.set()

    def n_jobs(self) -> int:
        if self._cancelled.is_set():
            raise ForestFitCancelled("forest fit cancelled: the run stopped")
        return self.every if self._released.is_set() else self.spare


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
    its evaluation; one forest calibrated on held-out rows is cheaper and honest. The trees grow
    in steps on the cores ``cores`` grants at each step (without it, all of ``n_jobs``), so a
    cancelled fit stops after the step in hand: a fit in one call could not be stopped."""
    forest = DeterministicForest(
        n_estimators=N_TREES,
        max_depth=RF_MAX_DEPTH,
        class_weight="balanced",
        random_state=seed,
        n_jobs=n_jobs,
        max_samples=MAX_ROWS_PER_TREE if len(x_train) > MAX_ROWS_PER_TREE else None,
    )
    cores = cores if cores is not None else CoreShare.all_of(n_jobs)
    _grow_in_steps(forest, x_train, y_train, cores)
    forest.set_params(n_jobs=cores.n_jobs())  # the calibration's prediction pass, too
    model: Any = forest
    if len(np.unique(y_cal)) >= 2:
        # A frozen forest's predictions do not depend on how the rows are split into folds, so one
        # fold holding every row gives the same calibration as the default five, without the
        # folds' "least populated class" warning on a small split; the split is not kept.
        one_fold = [(np.arange(0), np.arange(len(y_cal)))]
        model = CalibratedClassifierCV(FrozenEstimator(forest), method="isotonic", cv=one_fold).fit(x_cal, y_cal)
        model.set_params(cv=None)
    forest.set_params(n_jobs=n_jobs)  # what the saved model uses when it scores
    return model


def _grow_in_steps(forest: RandomForestClassifier, x: np.ndarray, y: np.ndarray, cores: CoreShare) -> None:
    """Fit ``forest`` TREES_PER_STEP trees at a time (warm start; two a core when more cores are
    granted, so none idles), asking ``cores`` before each step how many cores it may use, or
    whether the fit is cancelled (it then stops with ``ForestFitCancelled`` after the step in hand,
    a tree or two a core). scikit-learn draws each new tree's seed as an uninterrupted fit would,
    so the trees are the same as one ``fit``."""
    from joblib import effective_n_jobs
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
        grown = min(total, grown + max(TREES_PER_STEP, 2 * effective_n_jobs(n_jobs)))  # two trees a core
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


# The only types a stored forest may hold beyond those skops trusts by default (plain scikit-learn
# estimators, numpy arrays): the tree structure, the calibrated forest's wrapper and our forest.
# Anything else in a file is refused before a single object is built.
TRUSTED_TYPES = (
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.tree._tree.Tree",
    "threat_ensemble.models.forests.DeterministicForest",
)


class UntrustedModelError(InputError):
    """A stored forest that is not one of ours: unreadable, or holding types outside TRUSTED_TYPES."""


def forest_to_bytes(model: Any) -> bytes:
    """A fitted forest as skops bytes (a zip of JSON and numpy arrays; no pickle). skops does not
    share objects, so a calibrated forest is written without its ``estimator`` parameter, which
    holds the same frozen forest as the fitted calibrator (twice the bytes and the time);
    :func:`forest_from_bytes` puts it back."""
    import copy

    import skops.io as sio

    if getattr(model, "calibrated_classifiers_", None):
        model = copy.copy(model)
        model.estimator = None
    return sio.dumps(model)


def forest_from_bytes(data: bytes, source: str) -> Any:
    """The forest stored by :func:`forest_to_bytes`. Refuses (one line naming ``source``) a file
    that is not a skops archive or that holds any type outside skops' defaults and TRUSTED_TYPES."""
    import skops.io as sio
    from skops.io.exceptions import UntrustedTypesFoundException

    try:  # skops audits every type before it builds one object, and refuses any not trusted
        model = sio.loads(data, trusted=list(TRUSTED_TYPES))
    except UntrustedTypesFoundException:
        untrusted = sorted(set(sio.get_untrusted_types(data=data)) - set(TRUSTED_TYPES))
        shown = ", ".join(untrusted[:3]) + (f" and {len(untrusted) - 3} more" if len(untrusted) > 3 else "")
        raise UntrustedModelError(f"{source}: holds types this package does not trust ({shown}); not loaded") from None
    except Exception as exc:  # a damaged or foreign archive: skops raises many kinds
        raise UntrustedModelError(f"{source}: not a readable skops forest ({type(exc).__name__})") from None
    calibrated = getattr(model, "calibrated_classifiers_", None)
    if calibrated and getattr(model, "estimator", None) is None:
        model.estimator = calibrated[0].estimator
    return model
