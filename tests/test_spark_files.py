"""Output folders for Spark, checked and replaced without pyspark: refused before any work when
writing there would destroy something, replaced only once the new one is complete."""

from __future__ import annotations

from pathlib import Path

import pytest

from threat_ensemble.errors import InputError
from threat_ensemble.spark.files import (
    SUCCESS_MARKER,
    check_input,
    check_output_folder,
    folder_written_whole,
    is_remote,
)


def test_output_folders_that_would_destroy_something_are_refused(tmp_path: Path) -> None:
    (tmp_path / "table.parquet").write_bytes(b"PAR1")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    (tmp_path / "logs").mkdir()
    (tmp_path / "bundle").mkdir()
    cases = {
        str(tmp_path / "table.parquet"): "is a file",
        str(tmp_path / "mine"): "holds other files",
        str(tmp_path / "scores.csv"): "not .csv",
        str(tmp_path / "logs"): "overlaps the input",
        str(tmp_path / "logs" / "out"): "overlaps the input",
        str(tmp_path / "bundle" / "scores"): "would break that bundle",
        str(tmp_path / "no" / "such" / "out"): "does not exist",
        " ": "empty",
    }
    for path, message in cases.items():
        with pytest.raises(InputError, match=message):
            check_output_folder("--output", path, inputs=(str(tmp_path / "logs"),), keep_out_of=(tmp_path / "bundle",))
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    (tmp_path / "spark-out").mkdir()
    (tmp_path / "spark-out" / SUCCESS_MARKER).touch()
    assert check_output_folder("--output", str(tmp_path / "spark-out")) == str(tmp_path / "spark-out")
    assert check_output_folder("--output", "s3a://bucket/features/") == "s3a://bucket/features/"


def test_inputs_must_exist_here_unless_spark_reads_them_elsewhere(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file or folder"):
        check_input("--input", str(tmp_path / "missing.log"))
    with pytest.raises(InputError, match="matches no file"):
        check_input("--input", str(tmp_path / "*.log"))
    check_input("--input", "hdfs://namenode/logs/*.gz")
    assert is_remote("s3a://b/k") and is_remote("gs://b/k")
    assert not is_remote("file:///tmp/x") and not is_remote("a.log")


def test_a_folder_is_replaced_only_once_the_new_one_is_whole(tmp_path: Path) -> None:
    out = tmp_path / "features"
    out.mkdir()
    (out / "part-0.parquet").write_text("old")
    with pytest.raises(RuntimeError), folder_written_whole(str(out)) as target:
        Path(target).mkdir()
        (Path(target) / "part-0.parquet").write_text("half")
        raise RuntimeError("the write failed")
    assert (out / "part-0.parquet").read_text() == "old"
    with folder_written_whole(str(out)) as target:
        Path(target).mkdir()
        (Path(target) / "part-0.parquet").write_text("new")
    assert (out / "part-0.parquet").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["features"]  # no temporary folder left
