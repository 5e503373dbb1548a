"""Unbounded or odd input ends in one line naming the file and the limit: gzip bombs, huge cells,
many extra columns, nested Parquet columns, labels that differ only by case, damaged checkpoints."""

from __future__ import annotations

import gzip
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import ROOT, train_cmd
from in_process import run_train
from threat_ensemble.data.tables import LabelCaseWarning, binary_labels, load_labelled_table, read_raw_table
from threat_ensemble.errors import InputError, listed, quote


def _gzip_bomb(path: Path, megabytes: int = 3) -> Path:
    """A few kB of gzip that expand to ``megabytes`` MB of CSV."""
    path.write_bytes(gzip.compress(("a,b,label\n" + "1,2,0\n" * (megabytes << 18)).encode()))
    return path


def test_a_gzip_table_is_refused_past_the_decompression_limit(tmp_path: Path) -> None:
    bomb = _gzip_bomb(tmp_path / "bomb.csv.gz")
    assert bomb.stat().st_size < 50_000
    with pytest.raises(InputError, match="bomb.csv.gz: expands beyond 1 MB when decompressed; raise --max-decompr"):
        read_raw_table(bomb, max_decompressed_mb=1)
    assert len(read_raw_table(bomb, max_decompressed_mb=8)) == 3 << 18  # under the limit it reads whole


@pytest.mark.parametrize("tool", ["train", "featurize"])
def test_train_and_featurize_bound_decompression_with_their_option(tmp_path: Path, tool: str) -> None:
    if tool == "featurize":
        line = '1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] "GET /a HTTP/1.0" 200 2326\n'
        bomb = tmp_path / "access.log.gz"
        bomb.write_bytes(gzip.compress((line * 30000).encode()) + gzip.compress(line.encode()))  # two members
        args = [str(ROOT / "scripts" / "featurize.py"), "--input", str(bomb), "--output", str(tmp_path / "f.csv")]
    else:
        bomb = _gzip_bomb(tmp_path / "bomb.csv.gz")
        args = train_cmd("--data", str(bomb))[1:]
    proc = subprocess.run(
        [sys.executable, *args, "--max-decompressed-mb", "1"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    expected = f"error: {bomb}: expands beyond 1 MB when decompressed; raise --max-decompressed-mb if that is expected"
    assert proc.returncode == 2 and proc.stderr.strip() == expected, proc.stderr[-2000:]
    if tool == "featurize":
        ok = subprocess.run([sys.executable, *args], cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert ok.returncode == 0 and "30001 unlabelled rows" in ok.stdout, ok.stderr  # every gzip member


def test_an_error_quotes_at_most_200_characters_of_a_value(tmp_path: Path) -> None:
    huge = "x" * 5_000_000
    frame = pd.DataFrame({"n": [1.0] * 20, "label": [0, 1] * 10})
    frame["n"] = frame["n"].astype(object)
    frame.loc[3, "n"] = huge
    frame.to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(InputError) as caught:
        load_labelled_table(tmp_path / "t.csv")
    message = str(caught.value)
    assert "data row 4 holds 'xxxx" in message and "... (5000002 characters)" in message
    assert len(message) < 400
    assert quote("y" * 10) == repr("y" * 10)
    assert listed([f"c{i}" for i in range(12)]) == "['c0', 'c1', 'c2', 'c3', 'c4', and 7 more]"


def test_labels_that_differ_only_by_case_are_counted_as_attacks_with_a_warning() -> None:
    labels = pd.Series(["normal", "Normal", " NORMAL ", "attack", "normal"])
    with pytest.warns(LabelCaseWarning) as caught:
        y = binary_labels(labels, "normal", "t.csv", "label")
    assert y.tolist() == [0, 1, 1, 1, 0]
    assert str(caught[0].message) == (
        "t.csv: label column 'label' holds ['NORMAL', 'Normal'] in 2 rows, which differ from --normal-label "
        "'normal' only by case; they count as attacks"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        binary_labels(pd.Series(["normal", "attack"]), "normal", "t.csv", "label")  # no near miss: no warning


@pytest.mark.parametrize(
    ("values", "kind"), [([[1, 2], [3]], "list<element: int64>"), ([{"x": 1}, {"x": 2}], "struct<x: int64>")]
)
def test_a_nested_parquet_column_is_refused_naming_it(tmp_path: Path, values: list, kind: str) -> None:
    frame = pd.DataFrame({"a": values * 50, "b": np.arange(100), "label": [0, 1] * 50})
    frame.to_parquet(tmp_path / "t.parquet")
    with pytest.raises(InputError, match=f"t.parquet: column 'a' holds {kind} values \\(a nested Parquet type\\)"):
        read_raw_table(tmp_path / "t.parquet")


@pytest.mark.slow
def test_a_damaged_last_checkpoint_falls_back_to_the_previous_one(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    base = ["--default-rows", "3000", "--max-epochs", "4", "--batch-size", "256", "--quiet", "--tracking-uri", uri]
    base += ["--output-dir", "bundle", "--checkpoint-dir", "ckpt"]
    # killed in the last epoch: last.ckpt is the resume point
    first = subprocess.run(train_cmd(*base, crash_at="train_epoch3"), cwd=tmp_path, capture_output=True, timeout=300)
    assert first.returncode == -9
    last = tmp_path / "ckpt" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:4000])  # a truncated write
    resumed = run_train(tmp_path, *base, "--resume")
    assert resumed.returncode in (0, 3), resumed.stderr[-3000:]
    assert "warning: ckpt/last.ckpt: unreadable (RuntimeError: " in resumed.stderr
    assert "; resuming from ckpt/autoencoder-epoch=003.ckpt instead" in resumed.stderr
    assert (tmp_path / "bundle" / "gate.json").is_file()
    for path in (tmp_path / "ckpt").glob("*.ckpt"):
        path.write_bytes(b"garbage")
    again = run_train(tmp_path, *base, "--resume")
    assert again.returncode == 2 and again.stderr.strip().startswith("error: --resume: ")
    assert "is unreadable" in again.stderr and "start afresh without --resume" in again.stderr


def test_a_full_disk_anywhere_in_an_error_chain_is_exit_2_naming_the_path(capsys: pytest.CaptureFixture[str]) -> None:
    import errno

    from threat_ensemble.errors import run_cli

    def save_checkpoint() -> int:
        try:
            raise OSError(errno.ENOSPC, "No space left on device", "ckpt/last.ckpt")
        except OSError as exc:
            raise RuntimeError("checkpoint save failed") from exc  # as libraries wrap it

    assert run_cli(save_checkpoint) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: ckpt/last.ckpt: No space left on device; nothing half-written was kept"

    def other_os_error() -> int:
        raise OSError(errno.EIO, "Input/output error")

    assert run_cli(other_os_error) == 1  # anything else stays "unexpected", with its traceback
    assert "Traceback" in capsys.readouterr().err
