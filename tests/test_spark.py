"""Featurizing and scoring on Spark (local mode) against the local featurizer and score.py: the
same table row for row and column for column, and bad input answered the local way. Skipped
where pyspark or Java is missing; CI installs the [spark] extra."""

from __future__ import annotations

import gzip
import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from in_process import run_main
from rotated_logs import STRADDLER, write_rotated_logs

pytest.importorskip("pyspark")
if shutil.which("java") is None:
    pytest.skip("Spark needs Java", allow_module_level=True)

from threat_ensemble.errors import InputError  # noqa: E402
from threat_ensemble.http.features import FeaturizeWarning, featurize_files  # noqa: E402

pytestmark = pytest.mark.slow
IDS = ("source", "record", "request")
RAW_DUMP = (
    "GET http://localhost:8080/tienda1/index.jsp?id=2&x=%2527 HTTP/1.1\nUser-Agent: Mozilla/5.0\nHost: localhost\n\n"
    "POST http://localhost:8080/tienda1/anadir.jsp HTTP/1.1\nUser-Agent: Mozilla/5.0\nContent-Length: 17\n\n"
    "id=3&nombre=Vino\n"
)
ATTACK_LOG = '203.0.113.66 - - [01/Mar/2026:23:59:58 +0000] "GET /etc/passwd HTTP/1.0" 404 0\n' * 3


@pytest.fixture(scope="module")
def spark():  # noqa: ANN201
    from threat_ensemble.spark.session import spark_session

    with spark_session("local[2]", "threat-ensemble tests") as session:
        yield session


@pytest.fixture(scope="module")
def traffic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A raw dump and one server's rotated logs (normal), a common-format log (attack)."""
    folder = tmp_path_factory.mktemp("traffic")
    write_rotated_logs(folder)
    (folder / "dump.txt").write_text(RAW_DUMP, encoding="latin-1")
    (folder / "attack.log").write_text(ATTACK_LOG, encoding="latin-1")
    return folder


def _local(folder: Path, groups: list[tuple[list[str], int]], scope: str) -> pd.DataFrame:
    frames = []
    for paths, label in groups:
        for frame in featurize_files([str(folder / p) for p in paths], ids=IDS, window_scope=scope):
            frame["label"] = label
            frames.append(frame)
    return pd.concat(frames, ignore_index=True)


@pytest.mark.parametrize("scope", ["stream", "file"])
def test_spark_featurizer_equals_the_local_one(spark, traffic: Path, scope: str) -> None:  # noqa: ANN001
    from threat_ensemble.spark.featurize import featurize_on_spark

    groups = [(["dump.txt", "access.log.1", "access.log.2.gz"], 0), (["attack.log"], 1)]
    with pytest.warns(FeaturizeWarning) as local_warnings:
        local = _local(traffic, groups, scope)
    out = traffic / f"spark-{scope}"
    spark_groups = [([str(traffic / p) for p in paths], label) for paths, label in groups]
    with pytest.warns(FeaturizeWarning) as spark_warnings:
        n_rows, n_attack = featurize_on_spark(spark, spark_groups, str(out), ids=IDS, window_scope=scope)
    assert [str(w.message) for w in spark_warnings] == [str(w.message) for w in local_warnings]
    assert (n_rows, n_attack) == (len(local), 3)
    shards = sorted(out.glob("part-*.parquet"))
    assert shards and (out / "_SUCCESS").exists()
    table = pd.concat([pd.read_parquet(p) for p in shards], ignore_index=True)
    assert list(table.columns) == list(local.columns)
    for column in local.columns:  # every column, row for row: exact, floats included
        expected, got = local[column].to_numpy(), table[column].to_numpy()
        if local[column].dtype.kind in "if":
            np.testing.assert_array_equal(got.astype(local[column].dtype), expected, err_msg=column)
        else:
            assert got.astype(object).tolist() == expected.astype(object).tolist(), column
    # the client active across the rotation keeps its window in the stream, loses it per file
    rows = table[(table["source"].str.endswith("access.log.2.gz")) & table["request"].notna()]
    clients = pd.Series(gzip.decompress((traffic / "access.log.2.gz").read_bytes()).decode("latin-1").splitlines())
    first = rows.iloc[int(np.flatnonzero(clients[clients.str.contains(" - - ")].str.split(" ").str[0] == STRADDLER)[0])]
    assert first["req_count_5m"] == (15 if scope == "stream" else 1)


def test_spark_featurizer_refuses_a_truncated_gzip_like_the_local_one(spark, traffic: Path, tmp_path: Path) -> None:  # noqa: ANN001
    from threat_ensemble.spark.featurize import featurize_on_spark

    broken = tmp_path / "cut.log.gz"
    broken.write_bytes((traffic / "access.log.2.gz").read_bytes()[:-40])
    with pytest.raises(InputError) as local:
        featurize_files([broken])
    out = tmp_path / "out"
    with pytest.raises(InputError) as on_spark, warnings.catch_warnings():
        warnings.simplefilter("ignore", FeaturizeWarning)
        featurize_on_spark(spark, [([str(traffic / "access.log.1"), str(broken)], None)], str(out))
    assert str(on_spark.value) == str(local.value) and str(broken) in str(on_spark.value)
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["cut.log.gz"]  # nothing written


def test_an_input_folder_without_files_is_named(spark, traffic: Path, tmp_path: Path) -> None:  # noqa: ANN001
    from threat_ensemble.spark.featurize import featurize_on_spark

    empty = tmp_path / "empty"
    (empty / "inner").mkdir(parents=True)
    out = tmp_path / "out"
    with pytest.raises(InputError, match=f"^{re.escape(str(empty))}: holds no file$"):
        featurize_on_spark(spark, [([str(traffic / "access.log.1")], 0), ([str(empty)], 1)], str(out))
    assert not out.exists()


def test_the_command_line_on_spark_answers_bad_input_in_one_line(spark, traffic: Path, tmp_path: Path, capfd) -> None:  # noqa: ANN001
    """The featurize CLI on Spark (the module's session): one line naming the file, exit 2, and
    nothing from Java or Python's tracebacks on the console (file descriptors 1 and 2 read too)."""
    from threat_ensemble.cli.featurize import main

    broken = tmp_path / "cut.log.gz"
    broken.write_bytes((traffic / "access.log.2.gz").read_bytes()[:-40])
    proc = run_main(main, tmp_path, "--input", str(traffic / "access.log.1"), str(broken), "--output", "out",
                    "--engine", "spark")  # fmt: skip
    console = capfd.readouterr()
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith(f"error: {broken}: damaged gzip file"), proc.stderr
    assert all(line.startswith(("warning: ", "error: ")) for line in lines), proc.stderr
    for text in (console.out, console.err):
        assert "Traceback" not in text and "java." not in text and "Exception" not in text, text[-2000:]
    assert proc.stdout == "" and not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def bundle(default_bundle: dict) -> Path:
    return default_bundle["bundle"]


def test_spark_scoring_equals_score_py(spark, bundle: Path, tmp_path: Path) -> None:  # noqa: ANN001
    from threat_ensemble.cli.score import main
    from threat_ensemble.data.default_data import default_table

    table = default_table(2500, 11)
    rows = table.features.copy()
    rows["label"], rows["rid"] = table.y, np.arange(len(rows)) * 7
    half = len(rows) // 2
    (tmp_path / "rows").mkdir()
    rows.iloc[:half].to_parquet(tmp_path / "rows" / "part-0.parquet")
    rows.iloc[half:].to_parquet(tmp_path / "rows" / "part-1.parquet")
    rows.to_parquet(tmp_path / "rows.parquet")
    local = run_main(main, tmp_path, "--bundle", str(bundle), "--data", "rows.parquet", "--output", "py.parquet",
                     "--id-columns", "rid")  # fmt: skip
    assert local.returncode == 0, local.stderr
    done = run_main(main, tmp_path, "--bundle", str(bundle), "--data", "rows", "--output", "scores",
                    "--id-columns", "rid", "--engine", "spark")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"scored {len(rows)} rows -> scores" and done.stderr == ""
    expected = pd.read_parquet(tmp_path / "py.parquet")
    got = pd.read_parquet(tmp_path / "scores").set_index("rid").loc[expected["rid"]].reset_index()
    assert list(got.columns) == ["rid", "label", "ae", "rf", "if", "ensemble", "verdict"]
    for column in ("label", "ae", "rf", "if", "ensemble", "verdict"):
        np.testing.assert_array_equal(got[column].to_numpy(), expected[column].to_numpy(), err_msg=column)
    again = run_main(main, tmp_path, "--bundle", str(bundle), "--data", "rows", "--output", "scores",
                     "--engine", "spark", "--explain", "3")  # fmt: skip
    assert again.returncode == 2 and "--explain is not available with --engine spark" in again.stderr
    inside = run_main(main, tmp_path, "--bundle", str(bundle), "--data", "rows", "--output", str(bundle / "s"),
                      "--engine", "spark")  # fmt: skip
    assert inside.returncode == 2 and "inside" in inside.stderr
