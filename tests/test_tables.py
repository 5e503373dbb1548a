from __future__ import annotations

import gzip
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from threat_ensemble.data.tables import (
    check_same_columns,
    fingerprint,
    load_labelled_table,
    read_raw_table,
)
from threat_ensemble.errors import InputError


def _frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "bytes": [10.0, 20.0, 30.0, 40.0],
            "proto": ["tcp", "udp", "tcp", "icmp"],
            "label": ["normal", "attack", "normal", "dos"],
        }
    )


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz", ".parquet"])
def test_reads_each_table_format(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"t{suffix}"
    frame = _frame()
    if suffix == ".parquet":
        frame.to_parquet(path)
    else:
        frame.to_csv(path, index=False)
    table = load_labelled_table(path, normal_label="normal")
    assert table.y.tolist() == [0, 1, 0, 1]
    assert list(table.features.columns) == ["bytes", "proto"]
    assert table.features["bytes"].tolist() == [10.0, 20.0, 30.0, 40.0]


def test_reads_npz_with_and_without_feature_names(tmp_path: Path) -> None:
    X = np.arange(12, dtype=float).reshape(4, 3)
    y = np.array([0, 1, 0, 1])
    np.savez(tmp_path / "a.npz", X=X, y=y, feature_names=np.array(["a", "b", "c"]))
    table = load_labelled_table(tmp_path / "a.npz")
    assert list(table.features.columns) == ["a", "b", "c"]
    assert table.y.tolist() == [0, 1, 0, 1]
    np.savez(tmp_path / "b.npz", X=X, y=y)
    assert list(load_labelled_table(tmp_path / "b.npz").features.columns) == ["f0", "f1", "f2"]


def test_no_header_label_by_index_and_drop_columns(tmp_path: Path) -> None:
    path = tmp_path / "kdd.txt"
    path.write_text("0,tcp,5,normal,20\n1,udp,6,neptune,19\n2,tcp,7,normal,21\n")
    table = load_labelled_table(path, no_header=True, label_column="3", normal_label="normal", drop_columns=["4"])
    assert list(table.features.columns) == ["0", "1", "2"]
    assert table.y.tolist() == [0, 1, 0]


def test_numeric_labels_compare_as_numbers(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("x,label\n1,0.0\n2,1.0\n3,0\n")
    assert load_labelled_table(path, normal_label="0").y.tolist() == [0, 1, 0]


def test_fingerprint_changes_with_any_value() -> None:
    frame = _frame().drop(columns="label")
    y = np.array([0, 1, 0, 1])
    base = fingerprint(frame, y)
    assert base == fingerprint(frame.copy(), y.copy())
    changed = frame.copy()
    changed.loc[2, "bytes"] = 31.0
    assert fingerprint(changed, y) != base
    assert fingerprint(frame, y[::-1].copy()) != base


def _write(tmp_path: Path, name: str, content: bytes | str) -> Path:
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


BAD_INPUTS = [
    ("missing file", "nope.csv", None, {}, "no such file"),
    ("empty file", "e.csv", "", {}, "file is empty"),
    ("header only", "h.csv", "a,b,label\n", {}, "header but no data rows"),
    ("unknown extension", "t.xlsx", "a,b\n1,2\n", {}, "unknown extension '.xlsx'"),
    ("not gzip", "t.csv.gz", "a,label\n1,0\n", {}, "not a gzip file"),
    ("corrupt parquet", "t.parquet", b"PAR1 garbage", {}, "not a readable Parquet file"),
    ("corrupt npz", "t.npz", b"PK\x03\x04 garbage", {}, "not a readable .npz archive"),
    ("label missing", "t.csv", "a,b\n1,2\n3,4\n", {}, "label column 'label' not found"),
    ("duplicate columns", "t.csv", "a,a,label\n1,2,0\n3,4,1\n", {}, "duplicate column names \\['a'\\]"),
    (
        "number column with text",
        "t.csv",
        "a,label\n" + "".join(f"{i},0\n" for i in range(30)) + "oops,1\n",
        {},
        "column 'a' is numeric but data row 31 holds 'oops'",
    ),
    ("nan refused", "t.csv", "a,label\n1,0\n,1\n3,0\n", {}, "column 'a' holds nan in data row 2.*--impute"),
    ("inf refused", "t.csv", "a,label\n1,0\ninf,1\n3,0\n", {}, "column 'a' holds inf in data row 2"),
    ("drop unknown column", "t.csv", "a,label\n1,0\n2,1\n", {"drop_columns": ["zz"]}, "--drop-columns names 'zz'"),
    ("label is dropped", "t.csv", "a,label\n1,0\n2,1\n", {"drop_columns": ["label"]}, "names the label column"),
    ("empty label", "t.csv", "a,label\n1,0\n2,\n", {}, "label column 'label' is empty in data row 2"),
]


@pytest.mark.parametrize("case, name, content, kwargs, message", BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_gets_one_clear_line(
    tmp_path: Path, case: str, name: str, content: str | bytes | None, kwargs: dict, message: str
) -> None:
    path = tmp_path / name if content is None else _write(tmp_path, name, content)
    with pytest.raises(InputError, match=message) as info:
        load_labelled_table(path, **kwargs)
    text = str(info.value)
    assert "\n" not in text
    assert str(path) in text


def test_nan_is_accepted_with_impute(tmp_path: Path) -> None:
    path = _write(tmp_path, "t.csv", "a,label\n1,0\n,1\n3,0\n")
    table = load_labelled_table(path, impute=True)
    assert np.isnan(table.features["a"].iloc[1])


def test_unreadable_file(tmp_path: Path) -> None:
    import os

    if os.geteuid() == 0:
        pytest.skip("root reads any file")
    path = _write(tmp_path, "t.csv", "a,label\n1,0\n")
    path.chmod(0)
    with pytest.raises(InputError, match="permission denied"):
        read_raw_table(path)


def test_real_gzip_reads(tmp_path: Path) -> None:
    path = tmp_path / "t.csv.gz"
    with gzip.open(path, "wt") as fh:
        fh.write("a,label\n1,0\n2,1\n")
    assert load_labelled_table(path).y.tolist() == [0, 1]


def test_test_columns_must_match() -> None:
    train = pd.DataFrame({"a": [1], "b": [2]})
    with pytest.raises(InputError, match=r"missing \['b'\]; unexpected \['c'\]"):
        check_same_columns(train, pd.DataFrame({"a": [1], "c": [2]}), "test.csv")
    reordered = check_same_columns(train, pd.DataFrame({"b": [2], "a": [1]}), "test.csv")
    assert list(reordered.columns) == ["a", "b"]


def _mixed_labels(n: int = 10) -> list[str]:
    """The labels of the finding: numbers written two ways, and text."""
    return ["0", "0.0", "1", "1.0", "attack"] * n


def test_numbers_in_a_text_label_column_compare_as_numbers_and_the_mix_is_counted(tmp_path: Path) -> None:
    from threat_ensemble.data.tables import LabelMixWarning

    labels = _mixed_labels()
    path = _write(tmp_path, "t.csv", "x,label\n" + "".join(f"{i},{label}\n" for i, label in enumerate(labels)))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = load_labelled_table(path, normal_label="0")
    assert table.y.tolist() == [0, 0, 1, 1, 1] * 10  # '0.0' is normal, as '0' is
    assert [w.category for w in caught] == [LabelMixWarning]
    message = str(caught[0].message)
    assert message == (
        f"{path}: label column 'label' mixes numbers (40 rows: '0', '0.0', '1', '1.0') and text (10 rows: "
        "'attack'); --normal-label '0' matches 20 rows of the numbers (compared as numbers) and 0 of the text"
    )
    with pytest.warns(LabelMixWarning):
        assert load_labelled_table(path, normal_label="0.0").y.tolist() == [0, 0, 1, 1, 1] * 10
    # all numbers, written as text (a Parquet string column): compared as numbers, nothing to warn about
    frame = pd.DataFrame({"x": range(40), "label": [v for v in labels if v != "attack"]})
    frame.to_parquet(tmp_path / "t.parquet")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_labelled_table(tmp_path / "t.parquet", normal_label="0").y.tolist() == [0, 0, 1, 1] * 10
    # text labels stay text: 'normal' is normal, '0' is not
    text = _write(tmp_path, "text.csv", "x,label\n1,normal\n2,0\n3,Normal\n")
    with pytest.warns(LabelMixWarning):
        assert load_labelled_table(text, normal_label="normal").y.tolist() == [0, 1, 1]


def test_a_streamed_label_column_compares_numbers_as_numbers_and_counts_the_whole_dataset(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from threat_ensemble.data.stream import ParquetStream
    from threat_ensemble.data.tables import LabelMixWarning

    labels = _mixed_labels(40)
    frame = pd.DataFrame({"x": np.arange(len(labels), dtype=float), "label": labels})
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp_path / "t.parquet", row_group_size=50)
    stream = ParquetStream(str(tmp_path / "t.parquet"), normal_label="0")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        stream.scan()
    assert (stream.n_normal, stream.n_attack) == (80, 120)
    mixes = [str(w.message) for w in caught if isinstance(w.message, LabelMixWarning)]
    assert mixes == [
        f"{tmp_path / 't.parquet'}: label column 'label' mixes numbers (160 rows: '0', '0.0', '1', '1.0') and text "
        "(40 rows: 'attack'); --normal-label '0' matches 80 rows of the numbers (compared as numbers) and 0 of the text"
    ]


def test_a_parquet_binary_column_is_text_when_utf8_and_refused_only_where_it_is_used(tmp_path: Path) -> None:
    from threat_ensemble.data.inputs import read_features
    from threat_ensemble.models.rows import check_rows

    frame = pd.DataFrame({"a": np.arange(60.0), "label": [0, 1] * 30})
    frame["name"] = [b"tcp", b"udp", "\u00e9t\u00e9".encode()] * 20  # text stored as binary
    frame["blob"] = [b"ok", None, b"\xff\x00"] * 20  # bytes that are not text
    frame.to_parquet(tmp_path / "t.parquet")
    raw = read_raw_table(tmp_path / "t.parquet")
    assert raw["name"].tolist()[:3] == ["tcp", "udp", "\u00e9t\u00e9"]
    table = load_labelled_table(tmp_path / "t.parquet", drop_columns=["blob"])  # not a feature: never looked at
    assert list(table.features.columns) == ["a", "name"]
    expected = (
        "t.parquet: column 'blob' holds binary values that are not UTF-8 text (data row 3: b'\\xff\\x00'); "
        "expected numbers or text (--drop-columns it if it is not a feature)"
    )
    with pytest.raises(InputError) as caught:
        load_labelled_table(tmp_path / "t.parquet")
    assert str(caught.value).endswith(expected)
    with pytest.raises(InputError, match="column 'blob' holds binary values .*; expected numbers or text$"):
        load_labelled_table(tmp_path / "t.parquet", label_column="blob")
    # score.py reads every column, and checks only the bundle's features
    labels, features, _ = read_features(tmp_path / "t.parquet", None, False, (), bundle_features=["a", "name"])
    assert list(features.columns) == ["a", "name", "blob"] and labels is not None

    class Bundle:  # the part of a Preprocessing that check_rows reads
        class encoder:  # noqa: N801
            feature_names, numeric_columns = ["a", "name"], ["a"]

    with pytest.warns(UserWarning, match=r"ignoring 1 column the bundle was not trained on: \['blob'\]"):
        assert list(check_rows(Bundle, features, "t.parquet").frame.columns) == ["a", "name"]
    Bundle.encoder.feature_names = ["a", "blob"]
    with pytest.raises(InputError, match=r"column 'blob' holds binary values .*; expected numbers or text as in tr"):
        with pytest.warns(UserWarning, match="ignoring 1 column"):
            check_rows(Bundle, features, "t.parquet")


def test_timestamp_and_half_text_numeric_columns_say_they_are_taken_as_categories(tmp_path: Path) -> None:
    """They became categories without a word (issue 34): one line per such column, none for a plain
    text column or a numeric one."""
    from threat_ensemble.data.tables import TextCategoryWarning

    n = 60
    frame = pd.DataFrame(
        {
            "ts": pd.date_range("2026-12-01 10:00", periods=n, freq="min").astype(str),
            "seen": ["06/Dec/2026:13:01:49 +0000"] * n,
            "bytes": ["unknown" if i % 4 == 0 else str(i) for i in range(n)],
            "proto": ["tcp", "udp", "icmp"] * (n // 3),
            "port": list(range(n)),
            "label": [0, 1] * (n // 2),
        }
    )
    frame.to_csv(tmp_path / "t.csv", index=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = load_labelled_table(tmp_path / "t.csv")
    lines = [str(w.message) for w in caught if issubclass(w.category, TextCategoryWarning)]
    source = str(tmp_path / "t.csv")
    assert lines == [
        f"{source}: column 'ts' looks like timestamps: taken as a text category (60 distinct values); "
        "convert it to numbers or drop it (--drop-columns)",
        f"{source}: column 'seen' looks like timestamps: taken as a text category (1 distinct value); "
        "convert it to numbers or drop it (--drop-columns)",
        f"{source}: column 'bytes' is 75% numbers and 25% text ('unknown'): taken as a text category "
        "(46 distinct values); make every cell a number, or drop it (--drop-columns)",
    ]
    assert not pd.api.types.is_numeric_dtype(table.features["proto"])
    assert pd.api.types.is_numeric_dtype(table.features["port"])
