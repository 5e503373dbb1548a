"""Same seed, same data, CPU: two CLI runs must agree exactly on every gate number, so a gate
verdict can be reproduced and a changed number always means a changed input or code."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from conftest import train_cmd

pytestmark = pytest.mark.slow


def _start(work: Path, name: str) -> subprocess.Popen:
    args = [
        "--default-rows",
        "3000",
        "--max-epochs",
        "3",
        "--seed",
        "7",
        "--gpus",
        "0",
        "--quiet",
        "--tracking-uri",
        f"sqlite:///{work / f'{name}.db'}",
        "--output-dir",
        f"bundle-{name}",
        "--checkpoint-dir",
        f"ckpt-{name}",
    ]
    return subprocess.Popen(train_cmd(*args), cwd=work, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_same_seed_gives_identical_gate_metrics(tmp_path: Path) -> None:
    # Both runs at once: it halves the wall time, and shows that concurrent runs do not disturb each other.
    procs = {name: _start(tmp_path, name) for name in ("first", "second")}
    for name, proc in procs.items():
        _, err = proc.communicate(timeout=400)
        assert proc.returncode in (0, 3), f"{name}: {err[-3000:]}"
    gates = [json.loads((tmp_path / f"bundle-{n}" / "gate.json").read_text()) for n in procs]
    thresholds = [json.loads((tmp_path / f"bundle-{n}" / "threshold.json").read_text()) for n in procs]
    first, second = gates
    for key in ("metrics", "per_model", "gates", "confusion_matrix", "n_test", "passed", "weights"):
        assert first[key] == second[key], key
    assert thresholds[0]["threshold"] == thresholds[1]["threshold"]
    assert first["mlflow_run_id"] != second["mlflow_run_id"]
