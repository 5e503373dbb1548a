"""--checkpoint-every-n-steps: SIGKILL in the middle of an epoch, --resume, and the epoch goes on
from the last saved step: every row of it trained once (none twice, none skipped, counted by a
digest of each row), and the final model equal to an uninterrupted run's, bit for bit. Both for
in-memory data and for --stream (a Parquet dataset read a row group at a time)."""

from __future__ import annotations

import collections
import subprocess
from pathlib import Path

import pytest
import torch

from conftest import saved_autoencoder, train_cmd
from in_process import run_train

pytestmark = pytest.mark.slow

# batch 64: about 23 steps an epoch; step 30 is the 8th step of the second epoch, a saved step
ARGS = ["--default-rows", "3000", "--max-epochs", "3", "--batch-size", "64", "--quiet"]
ARGS += ["--checkpoint-every-n-steps", "5"]
KILL_AFTER_STEP = 30


def _args(work: Path, name: str, *extra: str) -> list[str]:
    if (work / "flows").is_dir():
        extra = ("--data", "flows", "--stream", "--drop-columns", "family", *extra)
    return [*ARGS, "--tracking-uri", f"sqlite:///{work / 'mlflow.db'}", "--output-dir", str(work / name),
            "--checkpoint-dir", str(work / f"{name}-ckpt"), *extra]  # fmt: skip


def _killed(work: Path, name: str, rows: Path) -> subprocess.CompletedProcess:
    """A real process, killed with SIGKILL before step KILL_AFTER_STEP (tests/crash_run.py)."""
    cmd = train_cmd("--record-rows", str(rows), *_args(work, name), crash_at=f"train_step{KILL_AFTER_STEP}")
    return subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=600)


def _here(
    work: Path, name: str, rows: Path, monkeypatch: pytest.MonkeyPatch, *extra: str
) -> subprocess.CompletedProcess:
    """A run that is not killed, in the test process (a process start and the imports saved),
    recording its rows as crash_run.py does."""
    from crash_run import record_rows
    from threat_ensemble.models.autoencoder import AutoencoderModule

    monkeypatch.setattr(AutoencoderModule, "training_step", AutoencoderModule.training_step)  # undone after
    record_rows(str(rows))
    try:
        return run_train(work, *_args(work, name, *extra))
    finally:
        monkeypatch.undo()


def _rows_by_epoch(path: Path) -> dict[int, collections.Counter]:
    epochs: dict[int, collections.Counter] = collections.defaultdict(collections.Counter)
    for line in path.read_text().splitlines():
        epoch, digest = line.split()
        epochs[int(epoch)][digest] += 1
    return dict(epochs)


@pytest.mark.parametrize("data", ["in memory", "streamed"])
def test_sigkill_mid_epoch_then_resume_trains_each_row_once_and_ends_equal(
    tmp_path: Path, data: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if data == "streamed":
        from synthetic import make_default_dataset
        from test_stream import write_shards

        write_shards(tmp_path / "flows", make_default_dataset(3000, seed=42), files=3, row_group=250)
    whole = _here(tmp_path, "whole", tmp_path / "whole-rows.txt", monkeypatch)
    assert whole.returncode in (0, 3), whole.stderr[-3000:]

    killed = _killed(tmp_path, "cut", tmp_path / "cut-rows.txt")
    assert killed.returncode == -9, killed.stderr[-3000:]
    assert (tmp_path / "cut-ckpt" / "last.ckpt").is_file()
    before = _rows_by_epoch(tmp_path / "cut-rows.txt")
    assert 0 < sum(before[1].values()) < sum(_rows_by_epoch(tmp_path / "whole-rows.txt")[1].values())  # mid-epoch

    resumed = _here(tmp_path, "cut", tmp_path / "cut-rows.txt", monkeypatch, "--resume")
    assert resumed.returncode == whole.returncode, resumed.stderr[-3000:]

    whole_rows, cut_rows = _rows_by_epoch(tmp_path / "whole-rows.txt"), _rows_by_epoch(tmp_path / "cut-rows.txt")
    assert sorted(cut_rows) == sorted(whole_rows) == [0, 1, 2]
    for epoch in whole_rows:  # the interrupted epoch included: the same rows, each as often
        assert cut_rows[epoch] == whole_rows[epoch], epoch
    a, b = saved_autoencoder(tmp_path / "whole")["state_dict"], saved_autoencoder(tmp_path / "cut")["state_dict"]
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert (tmp_path / "whole" / "gate.json").read_text().split('"mlflow_run_id"')[0] == (
        tmp_path / "cut" / "gate.json"
    ).read_text().split('"mlflow_run_id"')[0]
