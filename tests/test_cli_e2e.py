"""End-to-end runs of scripts/train.py in a subprocess against a real SQLite MLflow store."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import NSL_KDD, ROOT, logged_bundle, nsl_kdd_missing, saved_autoencoder, train_cmd
from threat_ensemble.evaluation.metrics import binary_metrics
from threat_ensemble.models.bundle import BUNDLE_FILES, verify_bundle
from threat_ensemble.models.ensemble import load_ensemble

GATE_KEYS = {"passed", "gates", "metrics", "per_model", "confusion_matrix", "n_test", "weights", "mlflow_run_id"}
METRIC_KEYS = {"precision", "recall", "f1", "pr_auc", "roc_auc", "fpr"}


def _run(args: list[str], cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(train_cmd(*args), cwd=cwd, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    from synthetic import make_default_dataset

    work = tmp_path_factory.mktemp("e2e")
    make_default_dataset(4000, seed=11).drop(columns="family").to_csv(work / "flows.csv", index=False)
    make_default_dataset(1500, seed=12).drop(columns="family").to_csv(work / "holdout.csv", index=False)
    uri = f"sqlite:///{work / 'mlflow.db'}"
    args = [
        "--data",
        "flows.csv",
        "--test-data",
        "holdout.csv",
        "--label-column",
        "label",
        "--normal-label",
        "0",
        "--max-epochs",
        "3",
        "--tracking-uri",
        uri,
        "--run-name",
        "e2e",
        "--output-dir",
        "bundle",
        "--checkpoint-dir",
        "ckpt",
        "--register-model",
        "threat-e2e",
        "--register-anyway",
        "--quiet",
    ]
    proc = _run(args, work)
    return {"work": work, "proc": proc, "uri": uri, "bundle": work / "bundle"}


@pytest.mark.slow
def test_cli_exit_code_follows_the_gate(trained: dict) -> None:
    proc = trained["proc"]
    assert proc.returncode in (0, 3), proc.stderr[-3000:]
    gate = json.loads((trained["bundle"] / "gate.json").read_text())
    assert proc.returncode == (0 if gate["passed"] else 3)
    assert "Traceback" not in proc.stderr
    assert "ensemble" in proc.stdout and "mlflow run:" in proc.stdout
    # --quiet on a fresh store: none of the libraries' first-run notices (tables, experiment created)
    assert "INFO" not in proc.stderr and "Creating it" not in proc.stderr, proc.stderr[-3000:]


@pytest.mark.slow
def test_bundle_is_complete_and_loadable(trained: dict) -> None:
    bundle = trained["bundle"]
    manifest = verify_bundle(bundle)
    plots = {"pr_curves.png", "roc_curves.png", "ae_error_hist.png", "confusion_matrix.png", "loss_curves.png"}
    assert set(manifest["files"]) == {*BUNDLE_FILES, "config.yaml", *plots}
    assert len(manifest["data_fingerprint"]) == 64
    saved = saved_autoencoder(bundle)
    assert saved["n_features"] == len(saved["error_scale"])
    gate = json.loads((bundle / "gate.json").read_text())
    assert GATE_KEYS <= set(gate)
    assert set(gate["gates"]) == {"pr_auc", "f1"}
    assert METRIC_KEYS <= set(gate["metrics"])
    assert set(gate["per_model"]) == {"ae", "rf", "if"}
    assert gate["n_test"] == 1500
    assert gate["mlflow_run_id"] == manifest["mlflow_run_id"]
    (tn, fp), (fn, tp) = gate["confusion_matrix"]
    assert tn + fp + fn + tp == 1500
    for name in ("random_forest.skops", "isolation_forest.skops"):  # the bundle owns its bytes (a copy, not a link)
        copy, side = bundle / name, trained["work"] / "ckpt" / name
        assert copy.read_bytes() == side.read_bytes() and copy.stat().st_ino != side.stat().st_ino
        assert copy.stat().st_nlink == 1


@pytest.mark.slow
def test_bundle_reproduces_the_gate_metrics(trained: dict) -> None:
    from threat_ensemble.data.tables import load_labelled_table

    ensemble = load_ensemble(trained["bundle"])
    holdout = load_labelled_table(trained["work"] / "holdout.csv")
    scores = ensemble.score(holdout.features)
    gate = json.loads((trained["bundle"] / "gate.json").read_text())
    again = binary_metrics(holdout.y, scores["ensemble"])
    for key in METRIC_KEYS:
        assert again[key] == pytest.approx(gate["metrics"][key], abs=1e-9), key
    assert binary_metrics(holdout.y, scores["rf"])["f1"] == pytest.approx(gate["per_model"]["rf"]["f1"])
    for key in ("f1", "pr_auc"):  # the autoencoder scores with its per-feature error scale from the bundle
        assert binary_metrics(holdout.y, scores["ae"])[key] == pytest.approx(gate["per_model"]["ae"][key], abs=1e-9)
    assert ensemble.error_scale is not None and len(ensemble.error_scale) == ensemble.autoencoder[0].in_features


@pytest.mark.slow
def test_mlflow_run_holds_params_metrics_tags_and_bundle(trained: dict, tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    gate = json.loads((trained["bundle"] / "gate.json").read_text())
    client = MlflowClient(tracking_uri=trained["uri"])
    run = client.get_run(gate["mlflow_run_id"])
    params = run.data.params
    assert params["epochs"] == "3" and params["batch_size"] == "1024"
    assert int(params["n_samples"]) == 4000
    assert int(params["n_attack"]) + int(params["n_normal"]) == 4000
    assert int(params["n_features"]) == 29
    metrics = run.data.metrics
    assert metrics["ensemble_f1"] == pytest.approx(gate["metrics"]["f1"])
    assert metrics["ensemble_pr_auc"] == pytest.approx(gate["metrics"]["pr_auc"])
    assert metrics["rf_pr_auc"] == pytest.approx(gate["per_model"]["rf"]["pr_auc"])
    assert metrics["gate_passed"] == float(gate["passed"])
    assert "ae_threshold" in metrics and "ae_final_val_loss" in metrics
    for key in ("train_loss", "val_loss", "lr"):
        assert len(client.get_metric_history(run.info.run_id, key)) == 3, key
    assert run.data.tags["status"] == "completed"
    assert {"python_version", "platform", "git_commit"} <= set(run.data.tags)
    assert run.info.run_name == "e2e"
    # the run's bundle/ refers to the one copy of the bundle, in the run's pyfunc model
    assert {a.path for a in client.list_artifacts(run.info.run_id, "bundle")} == {"bundle/model.json"}
    logged = logged_bundle(trained["uri"], run.info.run_id, tmp_path)
    assert {*BUNDLE_FILES, "manifest.json"} <= {p.name for p in logged.iterdir()}
    verify_bundle(logged, expect_digest=run.data.tags["bundle_digest"])


@pytest.mark.slow
def test_failed_gate_exits_3(trained: dict) -> None:
    work = trained["work"]
    proc = _run(
        [
            "--data",
            "flows.csv",
            "--max-epochs",
            "2",
            "--min-pr-auc",
            "1.0",
            "--tracking-uri",
            trained["uri"],
            "--output-dir",
            "bundle-fail",
            "--checkpoint-dir",
            "ckpt-fail",
        ],
        work,
    )
    assert proc.returncode == 3, proc.stderr[-3000:]
    gate = json.loads((work / "bundle-fail" / "gate.json").read_text())
    assert gate["passed"] is False and gate["gates"]["pr_auc"]["passed"] is False
    out = proc.stdout + proc.stderr
    # not a terminal: one plain progress line per epoch, each with its own train loss, then the stages
    assert re.search(r"^epoch 1/2  train_loss [\d.]+  val_loss [\d.]+  lr ", out, re.M), out[-3000:]
    assert re.search(r"^epoch 2/2  train_loss [\d.]+  val_loss [\d.]+  lr ", out, re.M), out[-3000:]
    assert out.index("epoch 2/2") < out.index("random forest: done in") < out.index("ensemble: done in")
    # the fitted fusion says what it weighs, input by input, before the test rows are scored
    weights = r"^fusion: weights rf [-+][\d.]+, rf_share [-+][\d.]+, ae [-+][\d.]+, if [-+][\d.]+ \(standardised"
    assert re.search(weights, out, re.M), out[-3000:]
    assert out.index("fusion: weights") < out.index("ensemble: done in")
    assert "\r" not in out and "Tip:" not in out and "Downloading artifacts" not in out
    assert re.search(r"pr_auc .* >= 1\.0000 .* FAIL", proc.stdout), proc.stdout
    assert "gate: FAILED" in proc.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["--data", "missing.csv"], "missing.csv: no such file"),
        (["--weights", "ae=0,rf=0"], "sum to zero"),
        (["--min-pr-auc", "2"], "--min-pr-auc must be within [0, 1]"),
        (["--gpus", "1"], "--gpus 1: this machine has 0 CUDA GPU(s)"),
        (["--data", "flows.csv", "--label-column", "verdict"], "label column 'verdict' not found"),
        (["--max-epochs", "ten"], "--max-epochs: expected int"),
    ],
)
def test_usage_and_input_errors_exit_2_with_one_line(
    tmp_path: Path, small_csv: Path, args: list[str], message: str
) -> None:
    if torch.cuda.is_available() and args[0] == "--gpus":
        pytest.skip("this machine has a GPU")
    from in_process import run_train  # train.py's main in this process (no interpreter start and imports)

    assert small_csv == tmp_path / "flows.csv"
    proc = run_train(tmp_path, *args, "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and message in lines[-1]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "artifacts").exists()


HEAVY_MODULES = ("torch", "lightning", "mlflow", "pandas", "numpy", "sklearn", "pyarrow")


def test_help_is_fast_and_lists_the_contract() -> None:
    """--help imports none of the heavy libraries (seconds each on a 2-core machine; the time itself
    is measured by benchmarks/, not asserted here): ``-X importtime`` lists every module imported."""
    command = train_cmd("--help")
    proc = subprocess.run([command[0], "-X", "importtime", *command[1:]], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    assert "threat_ensemble.config" in imported  # the listing is there
    assert sorted(imported & set(HEAVY_MODULES)) == []
    for flag in (
        "--data",
        "--test-data",
        "--label-column",
        "--normal-label",
        "--no-header",
        "--drop-columns",
        "--gpus",
        "--max-epochs",
        "--weights",
        "--min-pr-auc",
        "--min-f1",
        "--output-dir",
        "--checkpoint-dir",
        "--tracking-uri",
        "--experiment",
        "--run-name",
        "--config",
    ):
        assert flag in proc.stdout
    assert "--drop-columns+" not in proc.stdout and "--drop-columns A,B" in proc.stdout  # the form we document


@pytest.mark.slow
def test_python_api_takes_arrays(tmp_path: Path, small_frame: pd.DataFrame, monkeypatch: pytest.MonkeyPatch) -> None:
    import threat_ensemble

    monkeypatch.chdir(tmp_path)
    X = small_frame.drop(columns=["label", "method", "file_extension"]).to_numpy(dtype=np.float64)
    y = small_frame["label"].to_numpy()
    result = threat_ensemble.run(
        X, y, max_epochs=2, tracking_uri=f"sqlite:///{tmp_path / 'api.db'}", output_dir="api-bundle", quiet=True
    )
    assert result.bundle_dir == (tmp_path / "api-bundle").resolve()
    assert set(result.per_model) == {"ae", "rf", "if"}
    assert result.metrics["pr_auc"] == pytest.approx(result.gate["metrics"]["pr_auc"])
    assert result.mlflow_run_id and result.exit_code in (0, 3)
    assert result.summary["n_samples"] == len(y)


def test_the_nsl_kdd_folder_is_read_from_the_environment_and_a_skip_names_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Outside a clone that sits beside shared/, THREAT_ENSEMBLE_NSL_KDD says where the files are."""
    import importlib.util
    import sys

    files = ("KDDTrain+_20Percent.txt", "KDDTest+.txt")
    monkeypatch.setenv("THREAT_ENSEMBLE_NSL_KDD", str(tmp_path))
    monkeypatch.setattr(sys, "path", list(sys.path))  # conftest adds datasets/ to it

    def ask() -> list[str]:
        """What a fresh import of conftest.py finds (its folder is read when it is imported)."""
        spec = importlib.util.spec_from_file_location("conftest_imported_again", ROOT / "tests" / "conftest.py")
        assert spec is not None and spec.loader is not None
        fresh = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(fresh)
        return [str(fresh.NSL_KDD), str(fresh.nsl_kdd_missing())]

    assert ask() == [
        str(tmp_path),
        f"NSL-KDD data not present: no {files[0]} or {files[1]} in {tmp_path}; set THREAT_ENSEMBLE_NSL_KDD to a "
        f"folder holding {files[0]} and {files[1]}",
    ]
    for name in files:
        (tmp_path / name).write_text("")
    assert ask() == [str(tmp_path), "None"]


@pytest.mark.slow
@pytest.mark.skipif(nsl_kdd_missing() is not None, reason=nsl_kdd_missing() or "")
def test_nsl_kdd_trains_and_is_gated_on_the_independent_test_file(tmp_path: Path) -> None:
    proc = _run(
        [
            "--data",
            str(NSL_KDD / "KDDTrain+_20Percent.txt"),
            "--test-data",
            str(NSL_KDD / "KDDTest+.txt"),
            "--no-header",
            "--label-column",
            "41",
            "--normal-label",
            "normal",
            "--drop-columns",
            "42",
            "--max-epochs",
            "3",
            "--tracking-uri",
            f"sqlite:///{tmp_path / 'kdd.db'}",
            "--quiet",
        ],
        tmp_path,
    )
    assert proc.returncode in (0, 3), proc.stderr[-3000:]
    gate = json.loads((tmp_path / "artifacts" / "gate.json").read_text())
    assert gate["n_test"] == 22544
    assert gate["per_model"]["rf"]["pr_auc"] > 0.9
    assert gate["metrics"]["pr_auc"] > 0.85


@pytest.mark.slow
def test_run_logs_plots_and_a_registered_pyfunc_model(trained: dict) -> None:
    from mlflow.tracking import MlflowClient

    gate = json.loads((trained["bundle"] / "gate.json").read_text())
    manifest = verify_bundle(trained["bundle"])
    assert {"pr_curves.png", "roc_curves.png", "ae_error_hist.png", "confusion_matrix.png"} <= set(manifest["files"])
    client = MlflowClient(tracking_uri=trained["uri"])
    plots = {a.path for a in client.list_artifacts(gate["mlflow_run_id"], "plots")}
    assert "plots/pr_curves.png" in plots
    versions = client.search_model_versions("name='threat-e2e'")
    assert len(versions) == 1 and versions[0].run_id == gate["mlflow_run_id"]
    assert versions[0].tags["gate_passed"] == str(gate["passed"]).lower()
    assert float(versions[0].tags["gate.f1.value"]) == pytest.approx(gate["gates"]["f1"]["value"], rel=1e-5)


@pytest.mark.slow
def test_bundle_config_round_trips_into_config(trained: dict) -> None:
    from threat_ensemble.cli.train import parse_config

    cfg, _ = parse_config(["--config", str(trained["bundle"] / "config.yaml")])
    assert cfg.max_epochs == 3 and cfg.test_data == "holdout.csv" and cfg.register_model == "threat-e2e"
