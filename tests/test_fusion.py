"""The default fusion is fitted on validation data only: test labels never change what is fitted."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import saved_autoencoder
from in_process import run_train

pytestmark = pytest.mark.slow  # every test here trains end to end


def _train(work: Path, test_file: str, out: str, *extra: str) -> dict:
    args = [
        "--data",
        "flows.csv",
        "--test-data",
        test_file,
        "--max-epochs",
        "3",
        "--quiet",
        "--tracking-uri",
        f"sqlite:///{work / 'mlflow.db'}",
        "--output-dir",
        out,
        "--checkpoint-dir",
        f"ck-{out}",
        *extra,
    ]
    proc = run_train(work, *args)
    assert proc.returncode in (0, 3), proc.stderr[-3000:]
    folder = work / out
    return {
        "threshold": json.loads((folder / "threshold.json").read_text()),
        "preprocessing": json.loads((folder / "preprocessing.json").read_text()),
        "gate": json.loads((folder / "gate.json").read_text()),
        "ae": saved_autoencoder(folder)["state_dict"],
        "ae_error_scale": saved_autoencoder(folder)["error_scale"],
    }


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from synthetic import make_default_dataset

    work = tmp_path_factory.mktemp("fusion")
    make_default_dataset(4000, seed=21).drop(columns="family").to_csv(work / "flows.csv", index=False)
    holdout = make_default_dataset(2000, seed=22).drop(columns="family")
    holdout.to_csv(work / "holdout.csv", index=False)
    shuffled = holdout.copy()
    shuffled["label"] = np.random.default_rng(0).permutation(shuffled["label"].to_numpy())
    shuffled.to_csv(work / "shuffled.csv", index=False)
    return work


def test_shuffling_test_labels_changes_nothing_fitted(work: Path) -> None:
    real = _train(work, "holdout.csv", "real")
    shuffled = _train(work, "shuffled.csv", "shuffled")
    assert real["threshold"] == shuffled["threshold"]  # AE threshold and the fitted fusion with its cut
    assert real["threshold"]["fusion"]["kind"] == "stack"
    assert real["preprocessing"] == shuffled["preprocessing"]
    for key, value in real["ae"].items():
        assert torch.equal(value, shuffled["ae"][key]), key
    assert torch.equal(real["ae_error_scale"], shuffled["ae_error_scale"])  # the score's unit, from training rows
    assert real["gate"]["metrics"] != shuffled["gate"]["metrics"]  # only the test metrics move
    assert shuffled["gate"]["metrics"]["pr_auc"] < real["gate"]["metrics"]["pr_auc"]


def test_fixed_fusion_is_the_reference_weighted_mean(work: Path) -> None:
    from threat_ensemble.data.tables import load_labelled_table
    from threat_ensemble.evaluation.metrics import binary_metrics
    from threat_ensemble.models.ensemble import load_ensemble

    fixed = _train(work, "holdout.csv", "fixed", "--fusion", "fixed", "--weights", "ae=0.4,rf=0.4,if=0.2")
    assert fixed["threshold"]["fusion"] == {"kind": "fixed", "weights": {"ae": 0.4, "rf": 0.4, "if": 0.2}}
    assert fixed["gate"]["fusion"] == "fixed"
    ensemble = load_ensemble(work / "fixed")
    holdout = load_labelled_table(work / "holdout.csv")
    scores = ensemble.score(holdout.features)
    by_hand = 0.4 * scores["ae"] + 0.4 * scores["rf"] + 0.2 * scores["if"]
    np.testing.assert_allclose(scores["ensemble"], by_hand, rtol=1e-12)
    assert binary_metrics(holdout.y, by_hand)["f1"] == pytest.approx(fixed["gate"]["metrics"]["f1"])
