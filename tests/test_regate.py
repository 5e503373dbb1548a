"""Re-gating a bundle on new labelled traffic: ``score.py --gate FILE`` computes the gate through
the trainer's own function (evaluation.metrics.gate_report), so on the run's own test table it
gives the run's gate.json figures exactly, and on another table that table's gate, exit 0 / 3."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from in_process import run_main, run_train

pytestmark = pytest.mark.slow


def _score(cwd: Path, *args: str):
    from threat_ensemble.cli.score import main

    return run_main(main, cwd, *args)


@pytest.fixture(scope="module")
def run(small_frame: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A run on 2,400 rows gated on 600 others given as --test-data."""
    work = tmp_path_factory.mktemp("regate")
    small_frame.iloc[:2400].to_csv(work / "train.csv", index=False)
    small_frame.iloc[2400:].to_csv(work / "week.csv", index=False)
    proc = run_train(work, "--data", "train.csv", "--test-data", "week.csv", "--max-epochs", "2", "--quiet",
                     "--tracking-uri", f"sqlite:///{work / 'mlflow.db'}", "--output-dir", "bundle",
                     "--checkpoint-dir", "ckpt")  # fmt: skip
    gate = json.loads((work / "bundle" / "gate.json").read_text())
    assert proc.returncode == (0 if gate["passed"] else 3), proc.stderr[-2000:]
    return {"work": work, "gate": gate}


def test_the_runs_own_test_table_gives_the_runs_gate(run: dict) -> None:
    work = run["work"]
    proc = _score(work, "--bundle", "bundle", "--data", "week.csv", "--output", "s.csv", "--gate", "week-gate.json")
    again = json.loads((work / "week-gate.json").read_text())
    assert proc.returncode == (0 if again["passed"] else 3), proc.stderr[-2000:]
    trained = run["gate"]
    for key in ("metrics", "per_model", "gates", "passed", "confusion_matrix", "n_test"):
        assert again[key] == trained[key], key  # exactly: the same rows through the same function
    from threat_ensemble.models.bundle import read_bundle

    assert again["bundle_digest"] == read_bundle(work / "bundle").digest and again["test_source"].endswith("week.csv")
    assert "gate: PASSED" in proc.stdout or "gate: FAILED" in proc.stdout


def test_another_table_gets_its_own_gate_and_a_failed_gate_exits_3(run: dict, small_frame: pd.DataFrame) -> None:
    work = run["work"]
    flipped = small_frame.iloc[2400:].copy()
    flipped["label"] = 1 - flipped["label"]  # traffic the bundle gets all wrong
    flipped.to_csv(work / "flipped.csv", index=False)
    proc = _score(work, "--bundle", "bundle", "--data", "flipped.csv", "--output", "f.csv", "--gate", "f-gate.json")
    gate = json.loads((work / "f-gate.json").read_text())
    assert proc.returncode == 3 and gate["passed"] is False, proc.stderr[-2000:]
    assert gate["n_test"] == 600 and gate["metrics"]["f1"] < run["gate"]["metrics"]["f1"]
    assert set(gate["gates"]) == set(run["gate"]["gates"])  # held to the bounds it was trained under
    assert "gate: FAILED" in proc.stdout


def test_a_table_without_labels_cannot_be_gated(run: dict, small_frame: pd.DataFrame) -> None:
    work = run["work"]
    small_frame.iloc[2400:].drop(columns="label").to_csv(work / "unlabelled.csv", index=False)
    proc = _score(work, "--bundle", "bundle", "--data", "unlabelled.csv", "--output", "u.csv", "--gate", "u.json")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().startswith("error: ") and "--gate" in proc.stderr and "label" in proc.stderr
    assert not (work / "u.json").exists() and not (work / "u.csv").exists()  # refused before anything is written
