"""Unbounded or odd input ends in one line naming the file and the limit: gzip bombs, huge cells,
many extra columns, nested Parquet columns, labels that differ only by case, damaged checkpoints."""

from __future__ import annotations

import gzip
import io
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import train_cmd
from in_process import run_main, run_train
from threat_ensemble.data.tables import LabelCaseWarning, binary_labels, load_labelled_table, read_raw_table
from threat_ensemble.errors import InputError, listed, quote


def _gzip_bomb(path: Path, rows: int = 3 << 18) -> Path:
    """A few kB of gzip that expand to 21 MB of CSV (over 9 bytes a field: more bytes than fields x 8)."""
    path.write_bytes(gzip.compress(("a,b,label\n" + "1.0000000000,2.0000000000,0\n" * rows).encode()))
    return path


def test_a_gzip_table_is_refused_past_the_decompression_limit(tmp_path: Path) -> None:
    bomb = _gzip_bomb(tmp_path / "bomb.csv.gz")
    assert bomb.stat().st_size < 100_000
    with pytest.raises(InputError, match="bomb.csv.gz: expands beyond 1 MB when decompressed; raise --max-decompr"):
        read_raw_table(bomb, max_decompressed_mb=1)
    assert len(read_raw_table(bomb, max_decompressed_mb=32)) == 3 << 18  # under the limit it reads whole


@pytest.mark.parametrize("tool", ["train", "featurize"])
def test_train_and_featurize_bound_decompression_with_their_option(tmp_path: Path, tool: str) -> None:
    """The option's bound, the CLIs' mains run in this process (tests/in_process.py)."""
    if tool == "featurize":
        from threat_ensemble.cli.featurize import main

        line = '1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] "GET /a HTTP/1.0" 200 2326\n'
        bomb = tmp_path / "access.log.gz"
        bomb.write_bytes(gzip.compress((line * 30000).encode()) + gzip.compress(line.encode()))  # two members
        args = ["--input", str(bomb), "--output", str(tmp_path / "f.csv")]
    else:
        from threat_ensemble.cli.train import main

        bomb = _gzip_bomb(tmp_path / "bomb.csv.gz")
        args = ["--data", str(bomb)]
    proc = run_main(main, tmp_path, *args, "--max-decompressed-mb", "1")
    expected = f"error: {bomb}: expands beyond 1 MB when decompressed; raise --max-decompressed-mb if that is expected"
    assert proc.returncode == 2 and proc.stderr.strip() == expected, proc.stderr[-2000:]
    if tool == "featurize":
        ok = run_main(main, tmp_path, *args)
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


# ---------------------------------------------------------------------- every reader bounded (issue 34)
ADDRESS_SPACE = 1 << 30  # train.py reads and refuses its data well within 1 GB of address space


def _limited(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """``python args`` under a 1 GB address-space limit (RLIMIT_AS): a reader that allocates what
    the file declares dies of MemoryError instead of being refused by its bound."""
    import resource

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300, preexec_fn=limit
    )


def _train_args(data: Path) -> list[str]:
    """train.py on ``data`` (its script and arguments, for :func:`_limited`)."""
    return train_cmd("--data", str(data), "--output-dir", "out", "--checkpoint-dir", "ckpt")[1:]


def _parquet_bomb(path: Path, rows: int = 64 << 20) -> Path:
    """A few hundred kB of Parquet that declare ``rows`` x 3 columns (1.5 GB in memory), one row group."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    chunks = rows >> 20
    nulls, zeros = pa.nulls(1 << 20, pa.float64()), pa.array(np.zeros(1 << 20, np.int8))
    table = pa.table({n: pa.chunked_array([c] * chunks) for n, c in (("a", nulls), ("b", nulls), ("label", zeros))})
    pq.write_table(table, path, row_group_size=rows)
    return path


def test_a_parquet_file_is_refused_by_its_declared_size_before_it_is_read(tmp_path: Path) -> None:
    bomb = _parquet_bomb(tmp_path / "bomb.parquet")
    assert bomb.stat().st_size < 2_000_000
    said = "67,108,864 rows x 3 columns take about 1,536 MB in memory, beyond --max-decompressed-mb 1024"
    train = _train_args(bomb)
    proc = _limited(train, tmp_path)
    assert proc.returncode == 2 and proc.stderr.strip() == f"error: {bomb}: {said}; raise it if that is expected"
    streamed = _limited([*train, "--stream"], tmp_path)  # a row group is read whole: bounded alike
    assert streamed.returncode == 2, streamed.stderr[-2000:]
    assert streamed.stderr.strip() == f"error: {bomb}: row group 0: {said}; raise it if that is expected"
    folder = tmp_path / "shards"
    folder.mkdir()
    bomb.rename(folder / "part-0.parquet")  # a folder's files add up
    proc = _limited([*train[:1], "--data", str(folder), *train[3:]], tmp_path)
    assert proc.returncode == 2 and proc.stderr.strip() == f"error: {folder}: {said}; raise it if that is expected"
    # score.py reads its table with data.inputs.read_features, under the same bound
    code = (
        "import sys; from threat_ensemble.data.inputs import read_features; from threat_ensemble.errors import "
        "InputError\ntry:\n    read_features(sys.argv[1], None, False, ())\nexcept InputError as e:\n    print(e)"
    )
    scored = _limited(["-c", code, str(folder)], tmp_path)
    assert scored.returncode == 0 and scored.stdout.strip() == f"{folder}: {said}; raise it if that is expected"


def test_a_parquet_file_under_the_bound_reads_whole(tmp_path: Path) -> None:
    frame = pd.DataFrame({"a": np.arange(4000.0), "label": [0, 1] * 2000})
    frame.to_parquet(tmp_path / "t.parquet")
    assert len(read_raw_table(tmp_path / "t.parquet", max_decompressed_mb=1)) == 4000  # 64 kB of cells
    frame = pd.concat([frame] * 50, ignore_index=True)  # 200,000 x 2 x 8 bytes = 3.1 MB
    frame.to_parquet(tmp_path / "t.parquet")
    with pytest.raises(InputError, match=r"t.parquet: 200,000 rows x 2 columns take about 4 MB in memory, beyond "):
        read_raw_table(tmp_path / "t.parquet", max_decompressed_mb=3)


def _npz_bomb(path: Path, shape: tuple[int, int]) -> Path:
    """An .npz whose X.npy header declares ``shape`` float64 (its data is a few bytes: numpy would
    allocate the whole array before finding out)."""
    import zipfile

    from numpy.lib import format as npy

    header = io.BytesIO()
    npy.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": shape})
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("X.npy", header.getvalue() + bytes(64))
    return path


def test_an_npz_archive_is_refused_by_its_headers_before_any_array_is_loaded(tmp_path: Path) -> None:
    bomb = _npz_bomb(tmp_path / "bomb.npz", (400_000_000, 3))
    train = _train_args(bomb)
    proc = _limited(train, tmp_path)
    expected = (
        f"error: {bomb}: its arrays take about 9,156 MB in memory (the largest: array 'X' of 400,000,000 x 3 "
        "float64), beyond --max-decompressed-mb 1024; raise it if that is expected"
    )
    assert proc.returncode == 2 and proc.stderr.strip() == expected, proc.stderr[-2000:]
    # a real one: 200,000 x 4 float64 is 6.1 MB in memory, and 25 kB compressed
    np.savez_compressed(tmp_path / "t.npz", X=np.zeros((200_000, 4)), y=np.tile([0, 1], 100_000))
    with pytest.raises(InputError, match=r"t.npz: its arrays take about 8 MB in memory \(the largest: array 'X' of"):
        read_raw_table(tmp_path / "t.npz", max_decompressed_mb=4)
    assert read_raw_table(tmp_path / "t.npz", max_decompressed_mb=8).shape == (200_000, 5)


def test_a_csv_is_refused_by_its_bytes_and_its_fields_before_pandas_parses_it(tmp_path: Path) -> None:
    sparse = tmp_path / "sparse.csv"  # 150 MB of empty fields: 150 million cells, 1.2 GB as float64
    with open(sparse, "wb") as fh:
        fh.write(b"a,b,label\n")
        for _ in range(50):
            fh.write(b",,\n" * 1_000_000)
    train = _train_args(sparse)
    proc = _limited(train, tmp_path)
    expected = (
        f"error: {sparse}: more than 134,217,728 fields (8 bytes each in memory), beyond --max-decompressed-mb "
        "1024; raise it if that is expected"
    )
    assert proc.returncode == 2 and proc.stderr.strip() == expected, proc.stderr[-2000:]
    proc = _limited([*train, "--max-decompressed-mb", "100"], tmp_path)  # more bytes than the bound: not read
    expected = f"error: {sparse}: 144 MB of text to read, beyond --max-decompressed-mb 100"
    expected += "; raise it if that is expected"
    assert proc.returncode == 2 and proc.stderr.strip() == expected, proc.stderr[-2000:]
    sparse.write_bytes(b"a,b,label\n" + b",,0\n" * 300_000)  # 900,001 fields: 6.9 MB in memory
    with pytest.raises(InputError, match="sparse.csv: more than 786,432 fields"):
        read_raw_table(sparse, max_decompressed_mb=6)
    assert read_raw_table(sparse, max_decompressed_mb=7).shape == (300_000, 3)
