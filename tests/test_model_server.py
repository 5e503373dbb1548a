"""The registered model served by MLflow's own server (``mlflow models serve``, in this
environment, on 127.0.0.1): a real server process answers a JSON request with the scores
score.py writes for the same rows, and is stopped by its PID."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import ROOT, train_cmd

pytestmark = pytest.mark.slow

NAME = "threat-served"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _post(url: str, payload: dict, timeout: float = 60) -> dict:
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (127.0.0.1 only)
        return json.loads(response.read())


def _wait_until_up(url: str, server: subprocess.Popen, log: Path, limit: float = 180) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"the model server exited with {server.returncode}: {log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.5)
    pytest.fail(f"the model server did not answer /ping within {limit} s: {log.read_text()[-3000:]}")


def _stop(server: subprocess.Popen) -> None:
    """SIGTERM to the server's process group (its PID), SIGKILL if it lingers."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if server.poll() is not None:
            return
        try:
            os.killpg(server.pid, sig)
            server.wait(timeout=30)
        except ProcessLookupError:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            continue


def test_mlflow_models_serve_answers_with_score_py_scores(tmp_path: Path) -> None:
    from default_traffic import generate_default_traffic  # datasets/
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    MlflowClient(uri).create_experiment("served", artifact_location=(tmp_path / "artifacts").as_uri())
    trained = subprocess.run(
        train_cmd("--default-rows", "3000", "--max-epochs", "2", "--quiet", "--tracking-uri", uri,
                  "--experiment", "served", "--register-model", NAME, "--register-anyway",
                  "--output-dir", "bundle", "--checkpoint-dir", "ckpt"),  # fmt: skip
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert trained.returncode in (0, 3), trained.stderr[-3000:]
    assert f"registered model {NAME!r} version 1" in trained.stdout

    rows = generate_default_traffic(200, seed=11)
    rows.to_csv(tmp_path / "rows.csv", index=False)
    scored = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "score.py"), "--bundle", "bundle", "--data", "rows.csv",
         "--output", "scores.csv"],  # fmt: skip
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert scored.returncode == 0, scored.stderr
    expected = pd.read_csv(tmp_path / "scores.csv")

    port = _free_port()
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    log = tmp_path / "server.log"
    mlflow_cli = Path(sys.executable).with_name("mlflow")
    command = [str(mlflow_cli), "models", "serve", "-m", f"models:/{NAME}/1", "--env-manager", "local",
               "-h", "127.0.0.1", "-p", str(port), "-w", "1"]  # fmt: skip
    with open(log, "wb") as out:
        server = subprocess.Popen(
            command,
            cwd=tmp_path,
            # the server starts uvicorn from PATH: this environment's, activated or not
            env={**os.environ, "MLFLOW_TRACKING_URI": uri, "PATH": path},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped with its workers below
        )
    try:
        _wait_until_up(f"http://127.0.0.1:{port}/ping", server, log)
        features = rows.drop(columns="label")
        payload = {"dataframe_split": json.loads(features.to_json(orient="split", index=False))}
        answer = _post(f"http://127.0.0.1:{port}/invocations", payload)
    finally:
        _stop(server)
    assert server.returncode is not None  # stopped by its PID

    served = pd.DataFrame(answer["predictions"])
    assert len(served) == len(expected) == 200
    assert served["verdict"].astype(int).tolist() == expected["verdict"].tolist()
    assert 0 < expected["verdict"].sum() < 200
    for key in ("ae", "rf", "if", "ensemble"):
        np.testing.assert_allclose(served[key].to_numpy(float), expected[key].to_numpy(float), rtol=0, atol=1e-9)
