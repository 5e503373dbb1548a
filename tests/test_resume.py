"""Kill a training subprocess with SIGKILL at controlled points, resume it, and compare the bundle
with an uninterrupted run of the same seed."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import pytest
import torch

from conftest import saved_autoencoder, train_cmd
from in_process import run_train

pytestmark = pytest.mark.slow  # every test here trains end to end

# batch 256: several batches an epoch, so a kill lands mid-epoch
ARGS = ["--default-rows", "3000", "--max-epochs", "4", "--batch-size", "256", "--quiet"]


def _run(work: Path, *extra: str, crash_at: str | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    args = [
        *ARGS,
        "--tracking-uri",
        f"sqlite:///{work / 'mlflow.db'}",
        "--output-dir",
        str(work / "bundle"),
        "--checkpoint-dir",
        str(work / "ckpt"),
        *extra,
    ]
    cmd = train_cmd(*args, crash_at=crash_at)
    return subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=timeout)


def _run_here(work: Path, *extra: str) -> subprocess.CompletedProcess:
    """As :func:`_run`, in the test process: for runs that are not killed."""
    folders = ("--output-dir", str(work / "bundle"), "--checkpoint-dir", str(work / "ckpt"))
    return run_train(work, *ARGS, "--tracking-uri", f"sqlite:///{work / 'mlflow.db'}", *folders, *extra)


def _bundle(work: Path) -> dict:
    folder = work / "bundle"
    gate = json.loads((folder / "gate.json").read_text())
    run_id = gate.pop("mlflow_run_id")
    return {
        "gate": gate,
        "run_id": run_id,
        "threshold": json.loads((folder / "threshold.json").read_text()),
        "preprocessing": json.loads((folder / "preprocessing.json").read_text()),
        "ae": saved_autoencoder(folder)["state_dict"],
        "trees": _tree_outputs(folder, len(json.loads((folder / "preprocessing.json").read_text())["encoded_names"])),
    }


def _tree_outputs(folder: Path, width: int) -> dict:
    """What the fitted forests compute on fixed inputs."""
    import numpy as np

    from threat_ensemble.models.forests import forest_from_bytes

    x = np.random.default_rng(0).normal(size=(256, width)) * 5
    rf = forest_from_bytes((folder / "random_forest.skops").read_bytes(), "rf")
    iso = forest_from_bytes((folder / "isolation_forest.skops").read_bytes(), "if")
    return {"rf": rf.predict_proba(x).tolist(), "if": iso.decision_function(x).tolist()}


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict:
    work = tmp_path_factory.mktemp("uninterrupted")
    proc = _run_here(work)  # in the test process; the runs it is compared with are real processes
    assert proc.returncode in (0, 3), proc.stderr[-3000:]
    return _bundle(work)


def _runs_in_store(work: Path) -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{work / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("threat-ensemble")
    return client.search_runs([experiment.experiment_id])


@pytest.mark.parametrize("crash_at", ["train_epoch2", "after_random_forest", "validation", "bundle"])
def test_sigkill_then_resume_equals_an_uninterrupted_run(tmp_path: Path, reference: dict, crash_at: str) -> None:
    killed = _run(tmp_path, crash_at=crash_at)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert not (tmp_path / "bundle").exists()  # never a partial bundle
    resumed = _run_here(tmp_path, "--resume")
    assert resumed.returncode in (0, 3), resumed.stderr[-3000:]
    got = _bundle(tmp_path)
    assert got["threshold"] == reference["threshold"]  # identical, not approximately
    assert got["gate"] == reference["gate"]
    assert got["preprocessing"] == reference["preprocessing"]
    for key, value in reference["ae"].items():
        assert torch.equal(got["ae"][key], value), key
    assert got["trees"] == reference["trees"]
    runs = _runs_in_store(tmp_path)
    assert [r.info.run_id for r in runs] == [got["run_id"]]  # one run, continued
    assert runs[0].data.tags["status"] == "completed"
    if crash_at != "train_epoch2":
        assert "autoencoder already trained" not in resumed.stdout  # quiet, but never retrained:
        history = [m.step for m in _client(tmp_path).get_metric_history(got["run_id"], "val_loss")]
        assert len(history) == 4


def _client(work: Path):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{work / 'mlflow.db'}")


def test_resume_refuses_changed_data_or_options(tmp_path: Path) -> None:
    killed = _run(tmp_path, crash_at="train_epoch1")
    assert killed.returncode == -signal.SIGKILL
    changed = _run_here(tmp_path, "--resume", "--lr", "0.01")
    assert changed.returncode == 2
    assert "--resume refused: --lr was 0.003, now 0.01" in changed.stderr.strip().splitlines()[-1]
    other_data = _run_here(tmp_path, "--resume", "--seed", "42", "--default-rows", "3001")
    assert other_data.returncode == 2
    assert "training data differs (fingerprint mismatch)" in other_data.stderr
    anyway = _run_here(tmp_path, "--resume", "--lr", "0.01", "--resume-anyway")
    assert anyway.returncode in (0, 3), anyway.stderr[-3000:]
    assert "resuming anyway" in anyway.stderr
    import yaml

    gate = json.loads((tmp_path / "bundle" / "gate.json").read_text())
    assert anyway.returncode == (0 if gate["passed"] else 3)
    assert yaml.safe_load((tmp_path / "bundle" / "config.yaml").read_text())["autoencoder"]["lr"] == 0.01


def test_resume_with_nothing_to_resume_is_a_clear_error(tmp_path: Path) -> None:
    proc = _run_here(tmp_path, "--resume")
    assert proc.returncode == 2
    assert "nothing to resume" in proc.stderr


def test_checkpoints_load_weights_only(tmp_path: Path) -> None:
    killed = _run(tmp_path, crash_at="after_random_forest")
    assert killed.returncode == -signal.SIGKILL
    checkpoint = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)
    assert "best_state_dict" in checkpoint
    state = json.loads((tmp_path / "ckpt" / "run_state.json").read_text())
    assert set(state["trees"]) == {"random_forest"}  # the forest is a hashed side file, not in the checkpoint


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"])
def test_a_stop_signal_stops_with_a_message_and_resume_completes(
    tmp_path: Path, reference: dict, sig: signal.Signals, code: int
) -> None:
    args = [
        *ARGS,
        "--max-epochs",
        "60",
        "--patience",
        "60",
        "--tracking-uri",
        f"sqlite:///{tmp_path / 'mlflow.db'}",
        "--output-dir",
        str(tmp_path / "bundle"),
        "--checkpoint-dir",
        str(tmp_path / "ckpt"),
    ]
    proc = subprocess.Popen(
        train_cmd(*args), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    ckpt = tmp_path / "ckpt" / "last.ckpt"
    import time

    deadline = time.time() + 120
    while not ckpt.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err[-3000:]
    assert f"stopped: received {sig.name}; checkpoints are in" in err and "--resume" in err
    assert "Traceback" not in err and not (tmp_path / "bundle").exists()
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    run_id = json.loads((tmp_path / "ckpt" / "run_state.json").read_text())["mlflow_run_id"]
    run = client.get_run(run_id)
    assert (run.info.status, run.data.tags["status"]) == ("KILLED", "interrupted")  # to be continued, not failed
    resumed = run_train(tmp_path, *args, "--resume")
    assert resumed.returncode in (0, 3), resumed.stderr[-3000:]
    assert (tmp_path / "bundle" / "gate.json").exists()


def _val_loss_epochs(work: Path, run_id: str) -> int:
    return len(_client(work).get_metric_history(run_id, "val_loss"))


def test_an_early_stopped_run_resumed_after_training_trains_no_further_epoch(tmp_path: Path) -> None:
    """Stopped early (patience 1 of 30 epochs), killed in the tree stage: the resume goes through
    Lightning's ckpt_path and straight to the tree stage and the gate, with no new epoch."""
    extra = ("--max-epochs", "30", "--patience", "1", "--lr", "0.05")
    killed = _run(tmp_path, *extra, crash_at="after_random_forest")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    state = json.loads((tmp_path / "ckpt" / "run_state.json").read_text())
    epochs = _val_loss_epochs(tmp_path, state["mlflow_run_id"])
    assert epochs < 30  # it did stop early
    # an early stop ends on an epoch that did not improve: last.ckpt is that epoch, the best is older
    assert torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)["epoch"] == epochs - 1
    best = [p.name for p in (tmp_path / "ckpt").glob("autoencoder-epoch=*.ckpt")]
    assert len(best) == 1 and best[0] < f"autoencoder-epoch={epochs:03d}.ckpt", best
    resumed = _run_here(tmp_path, *extra, "--resume")
    assert resumed.returncode in (0, 3), resumed.stderr[-3000:]
    gate = json.loads((tmp_path / "bundle" / "gate.json").read_text())
    assert gate["mlflow_run_id"] == state["mlflow_run_id"]
    assert _val_loss_epochs(tmp_path, state["mlflow_run_id"]) == epochs
    final = _client(tmp_path).get_run(state["mlflow_run_id"]).data.metrics
    assert "ae_final_val_loss" in final and final["ensemble_f1"] == gate["metrics"]["f1"]


@pytest.mark.parametrize("stage", ["after_random_forest", "validation"], ids=["tree stage", "gate's test loop"])
def test_sigterm_in_the_tree_stage_stops_with_a_message_and_resume_completes(
    tmp_path: Path, reference: dict, stage: str
) -> None:
    """In the gate's test loop Lightning's own SIGTERM handler is installed again (it only sets a flag
    there): the stop is at once all the same, before any bundle is written."""
    stopped = _run(tmp_path, crash_at=f"{stage}+sigterm")
    assert stopped.returncode == 143, stopped.stderr[-3000:]
    assert "stopped: received SIGTERM; checkpoints are in" in stopped.stderr and "Traceback" not in stopped.stderr
    assert not (tmp_path / "bundle").exists()
    run_id = json.loads((tmp_path / "ckpt" / "run_state.json").read_text())["mlflow_run_id"]
    assert _client(tmp_path).get_run(run_id).info.status == "KILLED"
    resumed = _run_here(tmp_path, "--resume")
    assert resumed.returncode in (0, 3), resumed.stderr[-3000:]
    assert _bundle(tmp_path)["gate"] == reference["gate"]


def test_resume_anyway_on_data_of_another_width_is_one_line_before_training(tmp_path: Path) -> None:
    """--resume-anyway takes other data, but no checkpoint continues an autoencoder of another input
    width: one line naming the checkpoint and both widths (was Lightning's size-mismatch traceback)."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(1)
    y = (rng.random(800) < 0.2).astype(int)
    narrow = pd.DataFrame({"a": rng.normal(size=800) + 2 * y, "b": rng.normal(size=800), "label": y})
    narrow.to_csv(tmp_path / "narrow.csv", index=False)
    narrow.assign(c=rng.normal(size=800)).to_csv(tmp_path / "wide.csv", index=False)
    base = ["--max-epochs", "1", "--quiet", "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"]
    base += ["--output-dir", "bundle", "--checkpoint-dir", "ckpt"]
    first = run_train(tmp_path, "--data", "narrow.csv", *base)
    assert first.returncode in (0, 3), first.stderr[-3000:]
    before = (tmp_path / "bundle" / "manifest.json").read_bytes()
    resumed = run_train(tmp_path, "--data", "wide.csv", *base, "--resume", "--resume-anyway")
    assert resumed.returncode == 2, resumed.stderr[-3000:]
    assert resumed.stderr.strip().splitlines()[-1] == (
        "error: --resume: ckpt/last.ckpt holds an autoencoder of 2 inputs but this data encodes to 3 (other columns "
        "or categories); no checkpoint continues on data of another shape, even with --resume-anyway: start afresh "
        "without --resume"
    )
    assert "Traceback" not in resumed.stderr and (tmp_path / "bundle" / "manifest.json").read_bytes() == before
