"""Two processes on CPU (gloo): the autoencoder trained with DDP gives one bundle, one MLflow run,
forests fitted once, and a threshold equal to the single-process percentile on the same model.
DDP never runs inside the pytest process (with ``strategy="ddp"`` there, the rank-1 child re-runs the
pytest command, earlier tests included, and can be left running while the suite reports passed):
every run is a CLI subprocess."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import saved_autoencoder, train_cmd

pytestmark = pytest.mark.slow  # every test here trains end to end

ARGS = ["--default-rows", "3000", "--max-epochs", "3", "--accelerator", "cpu"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _two_nodes(args: list[str], work: Path) -> list[tuple[str, str]]:
    """``args`` run as node 0 and node 1 of a two-node DDP job on this machine; their (stdout, stderr),
    after checking that both exited 0 or 3 (the caller checks what the run produced)."""
    port = _free_port()
    procs = []
    for node in (0, 1):
        env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), NODE_RANK=str(node), WORLD_SIZE="2")
        pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
        procs.append(subprocess.Popen(args, cwd=work, env=env, text=True, **pipes))
    results = [p.communicate(timeout=300) for p in procs]
    for p, (_out, err) in zip(procs, results, strict=True):
        assert p.returncode in (0, 3), err[-4000:]
    return results


def _single_process_threshold(bundle: Path) -> tuple[float, float]:
    """Recompute, in this one process, the percentile over the whole autoencoder validation set."""
    from threat_ensemble.data.datamodule import ThreatDataModule
    from threat_ensemble.data.default_data import default_table
    from threat_ensemble.models.autoencoder import build_autoencoder, error_scale, feature_errors, reconstruction_error

    dm = ThreatDataModule(default_table(3000, 42), seed=42)
    dm.setup()
    saved = saved_autoencoder(bundle)
    net = build_autoencoder(saved["n_features"])
    net.load_state_dict(saved["state_dict"])
    scale = error_scale(feature_errors(net, dm.ae_val))
    assert saved["error_scale"].numpy() == pytest.approx(scale.numpy(), rel=1e-5)  # from every rank's rows
    errors = reconstruction_error(net, dm.ae_val, scale=scale).double().numpy()
    return float(np.percentile(errors, 99.5)), len(errors)


def _check_one_run(work: Path, gate: dict) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{work / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("threat-ensemble").experiment_id])
    assert [r.info.run_id for r in runs] == [gate["mlflow_run_id"]]
    assert runs[0].data.tags["status"] == "completed"


def test_ddp_spawn_two_processes(tmp_path: Path) -> None:
    proc = subprocess.run(
        train_cmd(
            *ARGS, "--devices", "2", "--strategy", "ddp_spawn", "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"
        ),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode in (0, 3), proc.stderr[-4000:]
    out = proc.stdout + proc.stderr
    # CPU ranks: torch's SyncBatchNorm is CUDA-only, so running statistics are averaged instead
    assert "distributed: 2 processes, BatchNorm statistics averaged before validation" in out
    # the tree stage runs in one process only: one start and one done line each
    assert out.count("random forest: fitting") == 1 and out.count("random forest: done in") == 1
    assert out.count("isolation forest: fitting") == 1 and out.count("isolation forest: done in") == 1
    bundle = tmp_path / "artifacts"
    threshold = json.loads((bundle / "threshold.json").read_text())
    expected, n_val = _single_process_threshold(bundle)
    assert threshold["n_val"] == n_val  # padding removed: each validation row counted once
    # same model, other batch composition: equal up to float summation order
    assert threshold["threshold"] == pytest.approx(expected, rel=1e-6)
    gate = json.loads((bundle / "gate.json").read_text())
    _check_one_run(tmp_path, gate)


def test_two_nodes_simulated_on_one_machine(tmp_path: Path) -> None:
    args = train_cmd(
        *ARGS,
        "--num-nodes",
        "2",
        "--devices",
        "1",
        "--strategy",
        "ddp",
        "--quiet",
        "--tracking-uri",
        f"sqlite:///{tmp_path / 'mlflow.db'}",
    )
    results = _two_nodes(args, tmp_path)
    gate = json.loads((tmp_path / "artifacts" / "gate.json").read_text())
    assert gate["mlflow_run_id"]
    assert "gate:" in results[0][0] and "gate:" not in results[1][0]  # node 1 prints no summary
    _check_one_run(tmp_path, gate)
    threshold = json.loads((tmp_path / "artifacts" / "threshold.json").read_text())
    expected, _ = _single_process_threshold(tmp_path / "artifacts")
    assert threshold["threshold"] == pytest.approx(expected, rel=1e-6)


def test_two_processes_stream_disjoint_row_groups(tmp_path: Path) -> None:
    """--stream with 2 DDP processes: each rank trains only the rows of its own share of row groups
    (disjoint shares, every row of a share once per epoch), and the threshold equals the
    single-process percentile over every autoencoder validation row on the same model."""
    import collections
    import hashlib

    from synthetic import make_default_dataset
    from test_stream import write_shards
    from threat_ensemble.data.stream import ROLE_AE_TRAIN, ParquetStream, assign_groups
    from threat_ensemble.models.autoencoder import reconstruction_error
    from threat_ensemble.models.ensemble import ThreatEnsemble

    write_shards(tmp_path / "flows", make_default_dataset(3000, seed=42), files=3, row_group=250)
    args = train_cmd(
        "--record-rows", str(tmp_path / "rows.txt"), "--data", "flows", "--stream", "--drop-columns", "family",
        "--max-epochs", "2", "--batch-size", "64", "--accelerator", "cpu", "--num-nodes", "2", "--devices", "1",
        "--strategy", "ddp", "--quiet", "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
        crash_at="none",
    )  # fmt: skip
    _two_nodes(args, tmp_path)
    bundle = tmp_path / "artifacts"
    _check_one_run(tmp_path, json.loads((bundle / "gate.json").read_text()))

    stream = ParquetStream(str(tmp_path / "flows"), drop_columns=["family"])
    stream.scan()
    ensemble = ThreatEnsemble.load(bundle)
    pre = ensemble.preprocessing

    def digests(group: int) -> collections.Counter:
        frame = next(stream.rows_by_role((ROLE_AE_TRAIN,), [group]))[0]
        rows = pre.scaler.transform(pre.encoder.transform(frame)[0])
        return collections.Counter(hashlib.sha1(r.tobytes()).hexdigest() for r in rows)

    rows = np.array([int((roles == ROLE_AE_TRAIN).sum()) for roles in stream.roles])
    shares = assign_groups(rows, 2)
    owned = [sum((digests(g) for g in share), collections.Counter()) for share in shares]
    assert not set(owned[0]) & set(owned[1])
    per_epoch = min(rows[share].sum() for share in shares) // 64 * 64  # both ranks: the same full batches
    for rank, path in enumerate((tmp_path / "rows.txt", tmp_path / "rows.txt.rank1")):
        lines = [line.split() for line in path.read_text().splitlines()]
        for epoch in (0, 1):
            seen = collections.Counter(d for e, d in lines if int(e) == epoch)
            assert seen.total() == per_epoch
            assert not seen - owned[rank]  # only rows of its own row groups, none more often than they occur
    # the threshold: the percentile over every autoencoder validation row, on the saved model
    scaled = pre.scaler.transform(pre.encoder.transform(stream.ae_val_frame)[0])
    scale = torch.as_tensor(ensemble.error_scale, dtype=torch.float64)
    errors = reconstruction_error(ensemble.autoencoder, torch.from_numpy(scaled), scale=scale).double().numpy()
    threshold = json.loads((bundle / "threshold.json").read_text())
    assert threshold["n_val"] == len(errors)
    assert threshold["threshold"] == pytest.approx(float(np.percentile(errors, 99.5)), rel=1e-6)


SPAWNED = '''
import logging, multiprocessing, sys, warnings

from threat_ensemble.console import ConsoleSettings, OneLineWarnings
from threat_ensemble.data.tables import DataWarning


def child(settings, levels):  # a fresh interpreter: unpickling ``settings`` applied them
    warnings.warn("chatter of a library", UserWarning)
    warnings.warn("a finding about the data", DataWarning)
    levels.put([logging.getLogger(name).level for name in ("lightning.pytorch", "mlflow")])


if __name__ == "__main__":
    quiet = sys.argv[1] == "quiet"
    if quiet:  # as train.py sets them for --quiet
        warnings.simplefilter("ignore")
        warnings.simplefilter("always", DataWarning)
    warnings.showwarning = OneLineWarnings(warnings.showwarning, DataWarning)
    settings = ConsoleSettings(quiet)
    spawn = multiprocessing.get_context("spawn")
    levels = spawn.Queue()
    process = spawn.Process(target=child, args=(settings, levels))
    process.start()
    print(levels.get())
    process.join()
'''


@pytest.mark.parametrize("quiet", [True, False])
def test_a_process_ddp_spawn_starts_gets_the_runs_console_settings(tmp_path: Path, quiet: bool) -> None:
    """``--strategy ddp_spawn`` printed Lightning's and MLflow's notices and deprecation warnings from
    the processes it starts, ``--quiet`` or not: those are fresh interpreters, without the warnings
    filters, display and log levels that train.py and the engine set. The trainer's callbacks are
    unpickled there first, and ``ConsoleSettings`` applies them when it is."""
    script = tmp_path / "spawned.py"
    script.write_text(SPAWNED)
    env = {**os.environ, "PYTHONWARNINGS": ""}
    mode = "quiet" if quiet else "loud"
    proc = subprocess.run([sys.executable, str(script), mode], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "warning: a finding about the data" in proc.stderr.splitlines()  # one line, as train.py prints it
    assert ("chatter of a library" in proc.stderr) is not quiet
    levels = json.loads(proc.stdout.strip().splitlines()[-1])
    if quiet:  # Lightning's and MLflow's notices off
        assert levels == [logging.WARNING] * 2
    else:  # as the libraries set them (Lightning: INFO)
        assert all(level < logging.WARNING for level in levels)
