"""Shared fixtures: small labelled tables written by the tests themselves, a SQLite MLflow store,
and one default-data bundle trained once per session."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
# The NSL-KDD files the NSL-KDD tests train on: the folder THREAT_ENSEMBLE_NSL_KDD names, else
# shared/data/nsl-kdd beside the clone. Without them those tests are skipped, naming the variable.
NSL_KDD_VARIABLE = "THREAT_ENSEMBLE_NSL_KDD"
NSL_KDD_FILES = ("KDDTrain+_20Percent.txt", "KDDTest+.txt")
NSL_KDD = Path(os.environ.get(NSL_KDD_VARIABLE) or SHARED / "data" / "nsl-kdd").expanduser()
sys.path.insert(0, str(ROOT / "datasets"))  # default_traffic.py: the generator behind the default data set

# Tiny models train fastest on one thread: with torch's default of one thread per core, training a
# small model collapses (60 times slower seen) as soon as the other of the suite's 2 cores is busy.
os.environ.setdefault("OMP_NUM_THREADS", "1")


def nsl_kdd_missing() -> str | None:
    """Why the NSL-KDD tests cannot run (the reason they are skipped with), or None."""
    absent = [name for name in NSL_KDD_FILES if not (NSL_KDD / name).is_file()]
    if not absent:
        return None
    return (
        f"NSL-KDD data not present: no {' or '.join(absent)} in {NSL_KDD}; set {NSL_KDD_VARIABLE} to a folder "
        f"holding {' and '.join(NSL_KDD_FILES)}"
    )


@pytest.fixture(scope="session")
def small_frame() -> pd.DataFrame:
    from synthetic import make_default_dataset

    return make_default_dataset(3000, seed=7).drop(columns=["family"])


DEFAULT_EXPERIMENT = "threat-ensemble"


@pytest.fixture(scope="session")
def default_bundle(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One bundle of the built-in default data (3,000 rows, 2 epochs, stacked fusion, its ONNX graph
    exported), trained once per test session by scripts/train.py, its run in a SQLite store whose
    experiment keeps artifacts in its own folder. Several modules score with it instead of each
    training its own: read it, or copy it with :func:`copy_bundle` before changing anything."""
    from mlflow import MlflowClient

    work = tmp_path_factory.mktemp("default-bundle")
    uri = f"sqlite:///{work / 'mlflow.db'}"
    MlflowClient(uri).create_experiment(DEFAULT_EXPERIMENT, artifact_location=(work / "artifacts").as_uri())
    args = ("--default-rows", "3000", "--max-epochs", "2", "--quiet", "--export", "onnx", "--tracking-uri", uri,
            "--experiment", DEFAULT_EXPERIMENT, "--output-dir", "bundle", "--checkpoint-dir", "ckpt")  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(train_cmd(*args), cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode in (0, 3), proc.stderr[-3000:]
    gate = json.loads((work / "bundle" / "gate.json").read_text())
    assert proc.returncode == (0 if gate["passed"] else 3)
    return {"work": work, "bundle": work / "bundle", "uri": uri, "gate": gate, "run_id": gate["mlflow_run_id"]}


def copy_bundle(default_bundle: dict, work: Path, name: str = "bundle") -> Path:
    """A copy of the session's default bundle in ``work`` (a module's own folder)."""
    return Path(shutil.copytree(default_bundle["bundle"], work / name))


@pytest.fixture()
def small_csv(tmp_path: Path, small_frame: pd.DataFrame) -> Path:
    path = tmp_path / "flows.csv"
    small_frame.to_csv(path, index=False)
    return path


@pytest.fixture(scope="session")
def empty_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty SQLite MLflow store, its schema made once per test session (both xdist workers
    share it): creating a store runs MLflow's schema migrations, seconds of CPU and of waiting for
    the disk to sync each one (11 s seen on a busy machine; 5 s in memory, /dev/shm, where there
    is one), where a copy of this file takes milliseconds."""
    import tempfile

    import filelock
    from mlflow import MlflowClient

    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base  # the session's folder
    template = shared / "mlflow-empty.db"
    in_memory = Path("/dev/shm")
    with filelock.FileLock(f"{template}.lock"):
        if not template.is_file():
            scratch = in_memory if in_memory.is_dir() and os.access(in_memory, os.W_OK) else shared
            with tempfile.TemporaryDirectory(dir=scratch) as building:
                store = Path(building) / "mlflow.db"
                MlflowClient(f"sqlite:///{store}").search_experiments()  # creates and migrates it
                shutil.copyfile(store, shared / "mlflow-empty.db.part")
            (shared / "mlflow-empty.db.part").replace(template)
    return template


@pytest.fixture()
def tracking_uri(tmp_path: Path, empty_store: Path) -> str:
    """A SQLite MLflow store of the test's own at ``tmp_path / "mlflow.db"`` (a copy of
    ``empty_store``): its URI. A test that builds that URI itself can take the copy with
    ``@pytest.mark.usefixtures("tracking_uri")``."""
    shutil.copyfile(empty_store, tmp_path / "mlflow.db")
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def logged_bundle(tracking_uri: str, run_id: str, dst: Path) -> Path:
    """The bundle a training run logged to MLflow, downloaded to ``dst``: the run's ``bundle/``
    holds a reference (``model.json``) to the one copy, inside the run's pyfunc model."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri)
    reference = json.loads(Path(client.download_artifacts(run_id, "bundle/model.json", str(dst))).read_text())
    fetched = mlflow.artifacts.download_artifacts(
        artifact_uri=reference["bundle_uri"], dst_path=str(dst / "bundle-from-model"), tracking_uri=tracking_uri
    )
    return Path(fetched)


@contextmanager
def few_trees(n: int = 20) -> Iterator[None]:
    """Forests fitted inside grow ``n`` trees instead of ``forests.N_TREES`` (200): ten times less
    to fit, store and load, for tests about something else than the forests' size (the bundle's
    files, the steps that hand the forests on). The scoring code still assumes N_TREES trees
    (the stacked fusion's clipping of the vote share), the same at fitting and at scoring."""
    from threat_ensemble.models import forests

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(forests, "N_TREES", n)
        yield


@pytest.fixture()
def small_forests() -> Iterator[None]:
    """:func:`few_trees` for the whole test (``@pytest.mark.usefixtures("small_forests")``)."""
    with few_trees():
        yield


def saved_autoencoder(bundle: Path) -> dict:
    """A bundle's autoencoder: ``state_dict``, ``error_scale`` (tensors) and ``n_features``."""
    from threat_ensemble.models.autoencoder import autoencoder_from_bytes
    from threat_ensemble.models.bundle import AE_FILE

    net, scale = autoencoder_from_bytes((Path(bundle) / AE_FILE).read_bytes(), str(bundle))
    return {"state_dict": net.state_dict(), "error_scale": scale, "n_features": int(scale.numel())}


def train_cmd(*args: str, crash_at: str | None = None) -> list[str]:
    """train.py with ``args``; with ``crash_at``, killed with SIGKILL at that point (tests/crash_run.py)."""
    if crash_at:
        return [sys.executable, str(ROOT / "tests" / "crash_run.py"), crash_at, *args]
    return [sys.executable, str(ROOT / "scripts" / "train.py"), *args]


def fit_autoencoder(frame: pd.DataFrame, tmp_path: Path, max_epochs: int = 4, **trainer_args: object) -> tuple:
    """Fit the autoencoder on ``frame`` (label column ``label``) with a quiet CPU Trainer; any
    ``trainer_args`` override the defaults. Returns (model, datamodule, trainer)."""
    import lightning as L

    from threat_ensemble.data.datamodule import ThreatDataModule
    from threat_ensemble.data.tables import LabelledTable
    from threat_ensemble.models.autoencoder import AutoencoderModule

    table = LabelledTable(frame.drop(columns="label"), frame["label"].to_numpy(), "small")
    L.seed_everything(0, verbose=False)
    dm = ThreatDataModule(table, batch_size=128, seed=0)
    dm.setup("fit")
    model = AutoencoderModule(dm.n_features)
    options = {
        "max_epochs": max_epochs,
        "accelerator": "cpu",
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "num_sanity_val_steps": 0,
        "default_root_dir": tmp_path,
    }
    trainer = L.Trainer(**{**options, **trainer_args})
    trainer.fit(model, datamodule=dm)
    return model, dm, trainer
