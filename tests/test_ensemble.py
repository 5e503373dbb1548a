from __future__ import annotations

import numpy as np
import pytest

from conftest import few_trees
from threat_ensemble.models import forests
from threat_ensemble.models.forests import fit_random_forest, forest_scores


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3000, 8))
    y = (x[:, 0] + 0.8 * x[:, 1] + rng.normal(scale=0.8, size=3000) > 1.2).astype(np.int64)
    return x, y


@pytest.mark.usefixtures("small_forests")  # the calibration, not the size
def test_one_pass_gives_the_calibrated_probability_and_the_raw_vote(data: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = data
    forest = fit_random_forest(x[:2000], y[:2000], x[2000:2500], y[2000:2500], seed=0, n_jobs=1)
    probability, vote = forest_scores(forest, x[2500:])
    assert probability == pytest.approx(forest.predict_proba(x[2500:])[:, 1], abs=1e-12)
    inner = forest.calibrated_classifiers_[0].estimator
    assert vote == pytest.approx(inner.predict_proba(x[2500:])[:, 1], abs=1e-12)
    assert not np.allclose(probability, vote)  # calibration did move the scores


@pytest.mark.usefixtures("small_forests")  # the calibration, not the size
def test_an_uncalibrated_forest_gives_its_vote_twice(data: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = data
    normal_only = np.zeros(500, dtype=np.int64)  # one class: no calibration is possible
    forest = fit_random_forest(x[:2000], y[:2000], x[2000:2500], normal_only, seed=0, n_jobs=1)
    probability, vote = forest_scores(forest, x[2500:])
    assert probability == pytest.approx(forest.predict_proba(x[2500:])[:, 1])
    assert np.array_equal(probability, vote)


def test_forest_votes_are_the_same_bits_every_time(data: tuple[np.ndarray, np.ndarray]) -> None:
    from sklearn.ensemble import RandomForestClassifier

    from threat_ensemble.models.forests import DeterministicForest

    x, y = data
    x_big = np.repeat(x, 3, axis=0)  # enough rows for several threads
    ours = DeterministicForest(n_estimators=60, max_depth=8, random_state=0, n_jobs=2).fit(x[:2000], y[:2000])
    first = ours.predict_proba(x_big)
    for _ in range(5):
        assert np.array_equal(ours.predict_proba(x_big), first)  # scikit-learn's own varies in the last bits
    sklearn_forest = RandomForestClassifier(n_estimators=60, max_depth=8, random_state=0, n_jobs=2)
    sklearn_forest.fit(x[:2000], y[:2000])
    assert np.allclose(first, sklearn_forest.predict_proba(x_big), rtol=0, atol=1e-12)  # same trees, same votes
    with few_trees():
        calibrated = fit_random_forest(x[:2000], y[:2000], x[2000:2500], y[2000:2500], seed=0, n_jobs=2)
    assert isinstance(calibrated.calibrated_classifiers_[0].estimator.estimator, DeterministicForest)


def test_a_forest_grown_in_steps_on_shared_cores_is_the_forest_of_one_fit(
    data: tuple[np.ndarray, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    import warnings

    from threat_ensemble.models.forests import CoreShare, fit_isolation_forest

    x, y = data
    monkeypatch.setattr(forests, "N_TREES", 130)  # ten one-core steps, the rest on all cores in steps
    whole = fit_random_forest(x[:2000], y[:2000], x[2000:2500], y[2000:2500], seed=3, n_jobs=1)
    cores = CoreShare(spare=1)
    granted = []
    real_n_jobs = cores.n_jobs

    def n_jobs_then_release() -> int:  # the autoencoder "finishes" halfway through the forest
        granted.append(real_n_jobs())
        if len(granted) == 10:
            cores.release()
        return granted[-1]

    cores.n_jobs = n_jobs_then_release  # type: ignore[method-assign]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warm-start warning about the "balanced" preset
        stepped = fit_random_forest(x[:2000], y[:2000], x[2000:2500], y[2000:2500], seed=3, n_jobs=1, cores=cores)
    # one core a step, then the rest of the trees on all cores, still in steps, and the calibration
    from joblib import effective_n_jobs
    from sklearn.base import clone

    steps_on_all = -(-(forests.N_TREES - 100) // max(10, 2 * effective_n_jobs(-1)))
    assert granted[:10] == [1] * 10 and granted[10:] == [-1] * (steps_on_all + 1)
    assert np.array_equal(stepped.predict_proba(x[2500:]), whole.predict_proba(x[2500:]))
    inner, inner_whole = (f.calibrated_classifiers_[0].estimator.estimator for f in (stepped, whole))
    assert len(inner.estimators_) == forests.N_TREES == 130
    assert inner.get_params() == inner_whole.get_params()  # warm_start, class_weight, n_jobs put back
    one_call = clone(inner_whole).fit(x[:2000], y[:2000])  # the forest of one fit, not grown in steps
    assert np.array_equal(one_call.predict_proba(x[2500:]), inner.predict_proba(x[2500:]))
    iso, iso_whole = fit_isolation_forest(x[:500], 3, cores=CoreShare(1)), fit_isolation_forest(x[:500], 3)
    assert np.array_equal(iso.decision_function(x[2500:]), iso_whole.decision_function(x[2500:]))


def test_a_cancelled_core_share_stops_the_forest_between_steps(data: tuple[np.ndarray, np.ndarray]) -> None:
    from threat_ensemble.models.forests import CoreShare, ForestFitCancelled

    x, y = data
    cores = CoreShare(spare=1)
    cores.cancel()
    with pytest.raises(ForestFitCancelled):
        fit_random_forest(x[:2000], y[:2000], x[2000:2500], y[2000:2500], seed=3, n_jobs=1, cores=cores)


def test_a_fit_on_all_cores_grows_in_steps_and_a_cancel_stops_it_after_the_step_in_hand(
    data: tuple[np.ndarray, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGTERM in the tree stage took 5.7 s to stop: on all cores the forest was fitted in one call,
    which nothing could stop. Now every fit grows in steps and a cancel between two steps stops it."""
    from threat_ensemble.models.forests import N_TREES, CoreShare, DeterministicForest, ForestFitCancelled

    x, y = data
    grown: list[int] = []
    real_fit = DeterministicForest.fit

    def counted_fit(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        grown.append(self.n_estimators)
        return real_fit(self, *args, **kwargs)

    monkeypatch.setattr(DeterministicForest, "fit", counted_fit)
    fit_random_forest(x[:1000], y[:1000], x[1000:1300], y[1000:1300], seed=1, n_jobs=1)  # no CoreShare given
    assert grown == list(range(10, N_TREES + 1, 10))  # on one core: ten trees a step

    grown.clear()
    cores = CoreShare.all_of(1)
    asked = []
    real_n_jobs = cores.n_jobs

    def cancel_during_the_third_step() -> int:
        asked.append(len(grown))
        if len(grown) == 3:  # SIGTERM came while the third step was growing
            cores.cancel()
        return real_n_jobs()

    cores.n_jobs = cancel_during_the_third_step  # type: ignore[method-assign]
    with pytest.raises(ForestFitCancelled):
        fit_random_forest(x[:1000], y[:1000], x[1000:1300], y[1000:1300], seed=1, n_jobs=1, cores=cores)
    assert grown == [10, 20, 30]  # stopped before a fourth step, 170 trees short


def test_with_many_spare_cores_each_step_keeps_them_all_busy(data: tuple[np.ndarray, np.ndarray]) -> None:
    from threat_ensemble.models.forests import CoreShare

    x, y = data
    cores = CoreShare(spare=8)
    sizes: list[int] = []
    real_n_jobs = cores.n_jobs

    def record() -> int:
        sizes.append(real_n_jobs())
        return sizes[-1]

    cores.n_jobs = record  # type: ignore[method-assign]
    forest = fit_random_forest(x[:1000], y[:1000], x[1000:1300], y[1000:1300], seed=1, n_jobs=1, cores=cores)
    assert sizes == [8] * 13 + [8]  # 200 trees in steps of 16 (2 a core), then the calibration
    assert len(forest.calibrated_classifiers_[0].estimator.estimator.estimators_) == 200


def test_a_fusion_of_an_unknown_kind_is_refused_by_name(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A threshold.json whose fusion is of a kind this code does not know is named as such (was
    'not finite: fusion parameters', which sent the reader after the numbers)."""
    from types import SimpleNamespace

    from threat_ensemble.models.bundle import BundleError
    from threat_ensemble.models.ensemble import _require_finite

    scaler = SimpleNamespace(center=np.zeros(2), scale=np.ones(2), clip=None)
    with pytest.raises(BundleError) as refused:
        _require_finite(tmp_path, 1.0, {"kind": "exec", "weights": {"ae": 1.0}}, SimpleNamespace(scaler=scaler))
    assert str(refused.value) == (
        f"{tmp_path}: unknown fusion kind 'exec' in threshold.json; this code knows fixed, stack"
    )
    _require_finite(tmp_path, 1.0, {"kind": "fixed", "weights": {"ae": 1.0}}, SimpleNamespace(scaler=scaler))
