"""The ensemble as an MLflow pyfunc model: a real bundle trained by scripts/train.py, logged into
its own run, loaded back and compared row by row with the bundle and with score.py's output, then
registered with the gate result as tags."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from conftest import DEFAULT_EXPERIMENT
from threat_ensemble.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
MEMBERS = ("ae", "rf", "if", "ensemble")

pytestmark = pytest.mark.slow


class NetworkGuard:
    """Records (and refuses) every attempt to open an internet socket while it is active."""

    def __init__(self, mp: pytest.MonkeyPatch) -> None:
        self.attempts: list[Any] = []
        real_connect = socket.socket.connect

        def connect(sock: socket.socket, address: Any) -> Any:
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                self.attempts.append(address)
                raise OSError(f"network access attempted in a test: {address}")
            return real_connect(sock, address)

        def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
            self.attempts.append(host)
            raise OSError(f"name lookup attempted in a test: {host}")

        mp.setattr(socket.socket, "connect", connect)
        mp.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.fixture(scope="module")
def trained(default_bundle: dict[str, Any]) -> dict[str, Any]:
    """The session's default bundle (tests/conftest.py) and its MLflow run in a SQLite store with
    its own artifact folder."""
    return default_bundle


@pytest.fixture(scope="module")
def logged(trained: dict[str, Any]) -> dict[str, Any]:
    """The pyfunc logged into the training run, with no network allowed, recording what the
    global tracking URI was before and after."""
    import mlflow

    from threat_ensemble.tracking.pyfunc import log_pyfunc_model

    before = (mlflow.get_tracking_uri(), os.environ.get("MLFLOW_TRACKING_URI"))
    with pytest.MonkeyPatch.context() as mp:
        guard = NetworkGuard(mp)
        model_uri = log_pyfunc_model(trained["bundle"], trained["run_id"], trained["uri"])
    after = (mlflow.get_tracking_uri(), os.environ.get("MLFLOW_TRACKING_URI"))
    return {**trained, "model_uri": model_uri, "attempts": guard.attempts, "before": before, "after": after}


@pytest.fixture(autouse=True)
def _quiet_mlflow(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


@pytest.fixture(scope="module")
def rows() -> pd.DataFrame:
    """Rows of the default data the bundle never saw, with their label column."""
    from default_traffic import generate_default_traffic  # datasets/

    return generate_default_traffic(300, seed=5)


def load(uri: str, tracking_uri: str) -> Any:
    import mlflow

    from threat_ensemble.tracking.pyfunc import tracking_uri_set

    with tracking_uri_set(tracking_uri):
        return mlflow.pyfunc.load_model(uri)


def bundle_scores(bundle: Path, features: pd.DataFrame) -> dict[str, np.ndarray]:
    from threat_ensemble.models.ensemble import load_ensemble

    ensemble = load_ensemble(bundle)
    return ensemble.score(features)


def assert_same_scores(frame: pd.DataFrame, expected: dict[str, np.ndarray] | pd.DataFrame) -> None:
    assert list(frame.columns) == [*MEMBERS, "verdict"]
    for key in MEMBERS:
        assert frame[key].dtype == np.float64
        np.testing.assert_array_equal(frame[key].to_numpy(), np.asarray(expected[key], np.float64), err_msg=key)
    assert frame["verdict"].dtype == np.int64
    np.testing.assert_array_equal(frame["verdict"].to_numpy(), np.asarray(expected["verdict"]))


def test_logged_without_network_and_tracking_uri_left_alone(logged: dict[str, Any]) -> None:
    assert logged["attempts"] == []
    assert logged["after"] == logged["before"]
    assert logged["model_uri"].startswith("models:/")


def test_round_trip_matches_the_bundle(logged: dict[str, Any], rows: pd.DataFrame) -> None:
    """predict() on rows with a label column gives exactly the bundle's own scores on the features."""
    model = load(logged["model_uri"], logged["uri"])
    predicted = model.predict(rows)
    assert len(predicted) == len(rows)
    assert_same_scores(predicted, bundle_scores(logged["bundle"], rows.drop(columns=["label"])))
    assert 0 < predicted["verdict"].sum() < len(rows)


def test_round_trip_matches_score_py(logged: dict[str, Any], rows: pd.DataFrame, tmp_path: Path) -> None:
    """The same rows through score.py's code path (a CSV in, a CSV out) give the same scores."""
    from threat_ensemble.cli.score import score_file

    data, out = tmp_path / "rows.csv", tmp_path / "scores.csv"
    rows.to_csv(data, index=False)
    score_file(bundle=logged["bundle"], data=data, output=out)
    expected = pd.read_csv(out)
    predicted = load(logged["model_uri"], logged["uri"]).predict(pd.read_csv(data))
    for key in MEMBERS:
        np.testing.assert_allclose(predicted[key], expected[key], rtol=0, atol=1e-12, err_msg=key)
    np.testing.assert_array_equal(predicted["verdict"], expected["verdict"])


def test_explanations_through_the_model_match_score_py(
    logged: dict[str, Any], rows: pd.DataFrame, tmp_path: Path
) -> None:
    """params={'explain': K} adds score.py's --explain K columns, the same values."""
    from threat_ensemble.cli.score import score_file

    data, out = tmp_path / "rows.csv", tmp_path / "scores.csv"
    rows.to_csv(data, index=False)
    score_file(bundle=logged["bundle"], data=data, output=out, explain=2)
    expected = pd.read_csv(out)
    predicted = load(logged["model_uri"], logged["uri"]).predict(pd.read_csv(data), params={"explain": 2})
    columns = ["fired", *(f"explain_{i}_{k}" for i in (1, 2) for k in ("feature", "error", "normal_low"))]
    assert set(columns) <= set(predicted.columns)
    flagged = predicted["verdict"] == 1
    assert flagged.any() and predicted.loc[flagged, "explain_1_feature"].notna().all()
    assert predicted["explain_1_feature"].fillna("").tolist() == expected["explain_1_feature"].fillna("").tolist()
    np.testing.assert_allclose(predicted["explain_1_error"].astype(float), expected["explain_1_error"], rtol=1e-9)
    assert predicted["fired"].fillna("").tolist() == expected["fired"].fillna("").tolist()
    plain = load(logged["model_uri"], logged["uri"]).predict(pd.read_csv(data))
    assert list(plain.columns) == [*MEMBERS, "verdict"]  # no explanation unless asked


def test_runs_uri_loads_the_same_model(logged: dict[str, Any], rows: pd.DataFrame) -> None:
    model = load(f"runs:/{logged['run_id']}/model", logged["uri"])
    assert_same_scores(model.predict(rows), bundle_scores(logged["bundle"], rows.drop(columns=["label"])))


def test_missing_columns_are_named(logged: dict[str, Any], rows: pd.DataFrame) -> None:
    model = load(logged["model_uri"], logged["uri"])
    with pytest.raises(InputError, match=r"missing feature columns \['method', 'path_depth'\]"):
        model.predict(rows.drop(columns=["path_depth", "method"]))


def test_non_finite_cells_refused_unless_impute(logged: dict[str, Any], rows: pd.DataFrame) -> None:
    """Like score.py: a NaN is an error naming the column, and params={'impute': True} fills it."""
    model = load(logged["model_uri"], logged["uri"])
    broken = rows.head(20).copy()
    broken.loc[3, "path_entropy"] = np.nan
    with pytest.raises(InputError, match="path_entropy"):
        model.predict(broken)
    with pytest.warns(UserWarning, match="1 missing, infinite or out-of-range numeric cells will be filled"):
        assert len(model.predict(broken, params={"impute": True})) == 20


def test_model_folder_contents(logged: dict[str, Any], tmp_path: Path) -> None:
    """Code without caches, the verified bundle, and exactly the requirements we gave."""
    import mlflow

    from threat_ensemble.tracking.pyfunc import pip_requirements, tracking_uri_set

    with tracking_uri_set(logged["uri"]):
        local = Path(mlflow.artifacts.download_artifacts(logged["model_uri"], dst_path=str(tmp_path)))
    assert (local / "code" / "threat_ensemble" / "models" / "ensemble.py").is_file()
    assert not list((local / "code").rglob("__pycache__"))
    assert sorted(p.name for p in (local / "artifacts" / "bundle").iterdir()) == sorted(
        p.name for p in logged["bundle"].iterdir()
    )
    lines = [line for line in (local / "requirements.txt").read_text().splitlines() if line.strip()]
    assert lines == pip_requirements()
    assert (local / "input_example.json").is_file()
    assert (local / "threat_ensemble_model.py").is_file()  # logged as code: nothing of ours is pickled
    import hashlib

    digest = hashlib.sha256((logged["bundle"] / "manifest.json").read_bytes()).hexdigest()
    assert f"EnsembleModel(bundle_digest={digest!r})" in (local / "threat_ensemble_model.py").read_text()
    assert not list(local.glob("*.pkl"))


def test_loads_where_the_package_is_not_installed(logged: dict[str, Any], rows: pd.DataFrame, tmp_path: Path) -> None:
    """The model's own copy of threat_ensemble (code_paths) is what a bare environment imports."""
    import mlflow

    from threat_ensemble.tracking.pyfunc import tracking_uri_set

    with tracking_uri_set(logged["uri"]):
        local = mlflow.artifacts.download_artifacts(logged["model_uri"], dst_path=str(tmp_path / "model"))
    rows.to_parquet(tmp_path / "rows.parquet")
    child = f"""
import importlib.util, sys
sys.path[:] = [p for p in sys.path if not p.rstrip('/').endswith('/src')]
assert importlib.util.find_spec('threat_ensemble') is None, 'threat_ensemble is still importable'
import mlflow, pandas as pd
model = mlflow.pyfunc.load_model({str(local)!r})
model.predict(pd.read_parquet({str(tmp_path / "rows.parquet")!r})).to_parquet({str(tmp_path / "out.parquet")!r})
import threat_ensemble
assert threat_ensemble.__file__.startswith({str(local)!r}), threat_ensemble.__file__
"""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
    done = subprocess.run([sys.executable, "-c", child], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    predicted = pd.read_parquet(tmp_path / "out.parquet")
    assert_same_scores(predicted, bundle_scores(logged["bundle"], rows.drop(columns=["label"])))


def test_altered_model_refused_on_load(logged: dict[str, Any], tmp_path: Path) -> None:
    """load_context verifies the bundle's manifest before unpickling anything."""
    import mlflow

    from threat_ensemble.models.bundle import BundleError
    from threat_ensemble.tracking.pyfunc import tracking_uri_set

    with tracking_uri_set(logged["uri"]):
        local = Path(mlflow.artifacts.download_artifacts(logged["model_uri"], dst_path=str(tmp_path)))
    with open(local / "artifacts" / "bundle" / "random_forest.skops", "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(BundleError, match="random_forest.skops"):
        mlflow.pyfunc.load_model(str(local))


def test_altered_bundle_never_logged(trained: dict[str, Any], tmp_path: Path) -> None:
    from threat_ensemble.models.bundle import BundleError
    from threat_ensemble.tracking.pyfunc import log_pyfunc_model

    bundle = tmp_path / "bundle"
    shutil.copytree(trained["bundle"], bundle)
    (bundle / "threshold.json").write_text('{"threshold": 0.0}\n')
    with pytest.raises(BundleError, match="threshold.json"):
        log_pyfunc_model(bundle, trained["run_id"], trained["uri"])


def test_register_with_gate_tags(logged: dict[str, Any], rows: pd.DataFrame, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow import MlflowClient

    from threat_ensemble.tracking.pyfunc import register_model

    gate = logged["gate"]
    guard = NetworkGuard(monkeypatch)
    version = register_model(logged["model_uri"], "threat-ensemble-test", gate, logged["uri"])
    assert version == "1"
    assert register_model(logged["model_uri"], "threat-ensemble-test", gate, logged["uri"]) == "2"
    monkeypatch.undo()
    assert guard.attempts == []

    tags = MlflowClient(logged["uri"]).get_model_version("threat-ensemble-test", version).tags
    assert tags["gate_passed"] == str(gate["passed"]).lower()
    for name, g in gate["gates"].items():
        assert float(tags[f"gate.{name}.value"]) == pytest.approx(g["value"], rel=1e-5)
        assert float(tags[f"gate.{name}.min"]) == pytest.approx(g["min"])
        assert tags[f"gate.{name}.passed"] == str(g["passed"]).lower()
    assert float(tags["ensemble_f1"]) == pytest.approx(gate["metrics"]["f1"], rel=1e-5)
    assert float(tags["ensemble_pr_auc"]) == pytest.approx(gate["metrics"]["pr_auc"], rel=1e-5)
    assert tags["mlflow_run_id"] == logged["run_id"]

    model = load("models:/threat-ensemble-test/1", logged["uri"])
    assert_same_scores(model.predict(rows), bundle_scores(logged["bundle"], rows.drop(columns=["label"])))


def test_register_refuses_an_empty_name(logged: dict[str, Any]) -> None:
    from threat_ensemble.tracking.pyfunc import register_model

    with pytest.raises(InputError, match="empty"):
        register_model(logged["model_uri"], "  ", logged["gate"], logged["uri"])


@pytest.mark.parametrize("passed", [True, False])
def test_gate_tags_are_strings(passed: bool) -> None:
    from threat_ensemble.tracking.pyfunc import gate_tags

    gate = {
        "passed": passed,
        "gates": {
            "pr_auc": {"value": 0.91234567, "min": 0.85, "passed": True},
            "fpr": {"value": 0.03, "max": 0.02, "passed": passed},
        },
        "metrics": {"f1": 0.8, "pr_auc": 0.91234567, "recall": 0.7},
        "n_test": 450,
        "mlflow_run_id": None,
    }
    tags = gate_tags(gate)
    assert tags == {
        "gate_passed": str(passed).lower(),
        "gate.pr_auc.value": "0.912346",
        "gate.pr_auc.min": "0.85",
        "gate.pr_auc.passed": "true",
        "gate.fpr.value": "0.03",
        "gate.fpr.max": "0.02",
        "gate.fpr.passed": str(passed).lower(),
        "ensemble_f1": "0.8",
        "ensemble_pr_auc": "0.912346",
        "n_test": "450",
    }


def test_pip_requirements_are_installable_pins() -> None:
    from threat_ensemble.tracking.pyfunc import RUNTIME_PACKAGES, pip_requirements

    pins = pip_requirements()
    assert [p.split("==")[0] for p in pins] == list(RUNTIME_PACKAGES)
    assert all("+" not in p for p in pins)  # no local build tags such as torch's +cpu


def test_log_into_a_running_run_leaves_it_running(trained: dict[str, Any], rows: pd.DataFrame) -> None:
    """As from the training callback, while Lightning still owns the run."""
    from mlflow import MlflowClient

    from threat_ensemble.tracking.pyfunc import log_pyfunc_model

    client = MlflowClient(trained["uri"])
    run = client.create_run(client.get_experiment_by_name(DEFAULT_EXPERIMENT).experiment_id)
    model_uri = log_pyfunc_model(trained["bundle"], run.info.run_id, trained["uri"], artifact_path="ensemble")
    assert client.get_run(run.info.run_id).info.status == "RUNNING"
    model = load(f"runs:/{run.info.run_id}/ensemble", trained["uri"])
    assert_same_scores(
        model.predict(rows.head(50)), bundle_scores(trained["bundle"], rows.head(50).drop(columns=["label"]))
    )
    assert model.metadata.model_id == model_uri.split("/")[-1]
