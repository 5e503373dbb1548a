"""Training against a real MLflow tracking server over HTTP, and refusing one that is not there.

The server runs in its own process group and is stopped with SIGTERM to the whole group, so that
its worker processes stop with it. Its job-execution runner (huey consumers that keep spinning after SIGTERM and
compete with training for the two cores) is switched off: the tests need tracking only."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from conftest import logged_bundle, train_cmd
from threat_ensemble.models.bundle import BUNDLE_FILES, MANIFEST_FILE

SERVER_START_S = 60


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def _stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM to the server's process group; SIGKILL whatever is left after 15 s."""
    for sig, wait in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                proc.wait(timeout=5)
                return
            proc.poll()  # reap the leader so the group can disappear
            time.sleep(0.2)


@contextmanager
def running_server(root: Path) -> Iterator[dict]:
    """An MLflow server on a free port, in its own process group; skips the test if it cannot start."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    env.pop("MLFLOW_TRACKING_URI", None)
    log = open(root / "server.log", "wb")  # noqa: SIM115 - closed in the finally below
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--backend-store-uri",
        f"sqlite:///{root / 'server.db'}",
        "--artifacts-destination",
        str(root / "artifacts"),
        "--workers",
        "1",
    ]
    proc = subprocess.Popen(command, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + SERVER_START_S
        while not _healthy(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = (root / "server.log").read_text(errors="replace")[-800:]
                pytest.skip(f"MLflow server did not answer {url}/health within {SERVER_START_S}s; log tail: {tail}")
            time.sleep(0.5)
        yield {"url": url, "root": root, "server_proc": proc}
    finally:
        _stop_group(proc)
        log.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    with running_server(tmp_path_factory.mktemp("mlflow-server")) as running:
        yield running


@pytest.fixture(scope="module")
def trained(server: dict, tmp_path_factory: pytest.TempPathFactory) -> dict:
    work = tmp_path_factory.mktemp("train-over-http")
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    args = [
        "--default-rows",
        "3000",
        "--max-epochs",
        "2",
        "--quiet",
        "--tracking-uri",
        server["url"],
        "--experiment",
        "over-http",
        "--run-name",
        "http-run",
        "--output-dir",
        "bundle",
        "--checkpoint-dir",
        "ckpt",
    ]
    proc = subprocess.run(train_cmd(*args), cwd=work, env=env, capture_output=True, text=True, timeout=300)
    return {"proc": proc, "bundle": work / "bundle", "work": work, **server}


@pytest.mark.slow
def test_run_is_logged_to_the_server(trained: dict) -> None:
    from mlflow.tracking import MlflowClient

    proc = trained["proc"]
    assert proc.returncode in (0, 3), proc.stderr[-3000:]
    gate = json.loads((trained["bundle"] / "gate.json").read_text())
    client = MlflowClient(tracking_uri=trained["url"])
    run = client.get_run(gate["mlflow_run_id"])
    assert client.get_experiment(run.info.experiment_id).name == "over-http"
    assert run.info.run_name == "http-run" and run.info.status == "FINISHED"

    params = run.data.params
    assert params["epochs"] == "2" and params["seed"] == "42"
    assert int(params["n_samples"]) == 3000
    assert params["tracking_uri"] == trained["url"]
    assert len(params["data_fingerprint"]) == 64

    metrics = run.data.metrics
    assert metrics["ensemble_pr_auc"] == pytest.approx(gate["metrics"]["pr_auc"])
    assert metrics["ensemble_f1"] == pytest.approx(gate["metrics"]["f1"])
    assert metrics["rf_pr_auc"] == pytest.approx(gate["per_model"]["rf"]["pr_auc"])
    assert metrics["gate_passed"] == float(gate["passed"])
    for key in ("train_loss", "val_loss"):
        assert len(client.get_metric_history(run.info.run_id, key)) == 2, key
    assert run.data.tags["status"] == "completed"


@pytest.mark.slow
def test_bundle_artifacts_are_stored_by_the_server(trained: dict, tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    gate = json.loads((trained["bundle"] / "gate.json").read_text())
    client = MlflowClient(tracking_uri=trained["url"])
    run_id = gate["mlflow_run_id"]
    # the run's bundle/ refers to the one copy of the bundle, in the run's pyfunc model
    assert {a.path for a in client.list_artifacts(run_id, "bundle")} == {"bundle/model.json"}
    # Proxied through the server into --artifacts-destination, and downloadable byte for byte.
    local = logged_bundle(trained["url"], run_id, tmp_path)
    assert {*BUNDLE_FILES, MANIFEST_FILE} <= {p.name for p in local.iterdir()}
    assert (local / MANIFEST_FILE).read_bytes() == (trained["bundle"] / MANIFEST_FILE).read_bytes()
    stored = list((trained["root"] / "artifacts").rglob("random_forest.skops"))  # stored once
    assert len(stored) == 1 and stored[0].read_bytes() == (trained["bundle"] / "random_forest.skops").read_bytes()


def test_unreachable_server_fails_fast_with_one_line(tmp_path: Path) -> None:
    """A closed local port: exit 2 with one line naming the URI and why, before the run has a
    checkpoint folder (so before any training; without the check a run trains and its logger's
    bounded retries end in exit 0 and warnings), nothing written."""
    from in_process import run_train  # train.py's main in this process: no interpreter start and imports

    url = f"http://127.0.0.1:{free_port()}"
    proc = run_train(tmp_path, "--default-rows", "3000", "--max-epochs", "1", "--quiet", "--tracking-uri", url)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and url in lines[0], proc.stderr
    assert "cannot use the MLflow tracking server there (Connection refused)" in lines[0]
    assert "Traceback" not in proc.stderr and "epoch" not in proc.stdout
    assert not (tmp_path / "artifacts").exists() and not (tmp_path / "checkpoints").exists()


@pytest.mark.slow
def test_a_server_that_dies_mid_run_costs_about_a_minute_and_the_bundle_is_written(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    work = tmp_path_factory.mktemp("server-dies")
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    with running_server(tmp_path_factory.mktemp("dying-server")) as dying:
        args = ["--default-rows", "3000", "--max-epochs", "40", "--patience", "40", "--batch-size", "128"]
        args += ["--quiet", "--tracking-uri", dying["url"], "--output-dir", "bundle", "--checkpoint-dir", "ckpt"]
        proc = subprocess.Popen(
            train_cmd(*args), cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        deadline = time.monotonic() + 120
        while not (work / "ckpt" / "last.ckpt").exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        _stop_group(dying["server_proc"])  # the server dies while the autoencoder trains
        killed = time.monotonic()
    out, err = proc.communicate(timeout=600)
    took = time.monotonic() - killed
    assert proc.returncode == 5, err[-3000:]
    assert "Traceback" not in err and "warning: MLflow tracking failed (" in out
    assert "tracking failed: " in err and "--resume once the tracking server is back" in err
    assert took < 240, f"{took:.0f}s after the server died"  # MLflow's own retries took 12.5 minutes
    from threat_ensemble.models.bundle import verify_bundle

    verify_bundle(work / "bundle")
    assert json.loads((work / "bundle" / "gate.json").read_text())["passed"] is True
