"""Property tests for the table loader: whatever the bytes, the answer is either our own one-line
InputError naming the file, or a table the models can use."""

from __future__ import annotations

import gzip
import io
import os
import string
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from threat_ensemble.data.preprocessing import FeatureEncoder
from threat_ensemble.data.tables import LabelledTable, load_labelled_table, read_raw_table
from threat_ensemble.errors import InputError

pytestmark = pytest.mark.filterwarnings("ignore::threat_ensemble.data.tables.ImputeWarning")

SETTINGS = settings(
    max_examples=int(os.environ.get("TABLES_PROPERTY_EXAMPLES", "60")),  # raise it for a deeper search
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
SUFFIXES = (".csv", ".csv.gz", ".txt", ".parquet", ".npz")

# Cells that real exports contain: numbers, blanks, NaN/inf spellings, stray text, quotes, unicode.
CELLS = st.one_of(
    st.integers(-(10**6), 10**6).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["", "nan", "NaN", "inf", "-inf", "Infinity", "NA", "null", "N/A", "1e400", "0x1F"]),
    st.sampled_from(["tcp", "udp", "icmp", "normal", "attack", "oops", '"quoted, comma"', "é", " 1 ", "True"]),
    st.text(alphabet=string.printable.replace("\n", "").replace("\r", ""), max_size=6),
)
NAMES = st.one_of(
    st.sampled_from(["label", "a", "b", "a.1", "bytes", "proto", "", " label", "x y", "0", "1"]),
    st.text(alphabet=string.ascii_letters + string.digits + "_.- ", min_size=1, max_size=5),
)


def _check(path: Path, outcome: LabelledTable | InputError, impute: bool) -> None:
    """The invariant: a clean error of ours naming the file, or a usable table."""
    if isinstance(outcome, InputError):
        text = str(outcome)
        assert "\n" not in text, text
        assert str(path) in text, text
        return
    table = outcome
    assert table.features.shape[1] > 0
    assert len(table.y) == len(table.features) > 0
    assert set(np.unique(table.y).tolist()) <= {0, 1}
    assert table.features.columns.is_unique
    assert all(isinstance(c, str) for c in table.features.columns)
    numeric = table.features.select_dtypes(include="number")
    if not impute and numeric.shape[1]:
        assert np.isfinite(numeric.to_numpy(dtype=np.float64)).all()
    # ... and the encoder turns it into a finite matrix (text columns become categories).
    encoder = FeatureEncoder.fit(table.features)
    matrix, unseen = encoder.transform(table.features, table.source)
    assert matrix.shape == (len(table.y), len(encoder.encoded_names)) and unseen.total == 0
    assert np.isfinite(matrix).all()


def _load(path: Path, **kwargs: object) -> LabelledTable | InputError:
    try:
        return load_labelled_table(path, **kwargs)  # type: ignore[arg-type]
    except InputError as exc:
        return exc


@st.composite
def csv_texts(draw: st.DrawFn) -> str:
    n_cols = draw(st.integers(1, 5))
    header = draw(st.lists(NAMES, min_size=n_cols, max_size=n_cols))
    if draw(st.booleans()):
        header[draw(st.integers(0, n_cols - 1))] = "label"
    rows = draw(st.lists(st.lists(CELLS, min_size=n_cols, max_size=n_cols), min_size=0, max_size=12))
    if draw(st.booleans()) and rows:  # ragged rows, as broken exports have
        rows[draw(st.integers(0, len(rows) - 1))].append("extra")
    lines = [",".join(header), *(",".join(r) for r in rows)]
    return "\n".join(lines) + draw(st.sampled_from(["", "\n", "\n\n"]))


@SETTINGS
@given(text=csv_texts(), impute=st.booleans(), normal=st.sampled_from(["0", "normal", "1.0"]))
@example(text="label,a,b\n0,0,0,extra", impute=False, normal="0")  # found: pandas shifted the columns
@example(text="a,a.1,label\n1,2,0\n3,4,1\n", impute=False, normal="0")  # a genuine 'a.1' is no duplicate
def test_generated_csv_is_refused_cleanly_or_loads(text: str, impute: bool, normal: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "flows.csv"
        path.write_text(text, encoding="utf-8")
        _check(path, _load(path, normal_label=normal, impute=impute), impute)


@SETTINGS
@example(frame_rows=[(3.4028235677973366e38, None, 0)], suffix=".csv", impute=True)  # found: inf after float32
@given(
    frame_rows=st.lists(
        st.tuples(
            st.floats(allow_nan=True, allow_infinity=True),
            st.one_of(st.none(), st.sampled_from(["tcp", "udp", "7", ""])),
            st.sampled_from([0, 1, 2]),
        ),
        min_size=1,
        max_size=15,
    ),
    suffix=st.sampled_from([".csv", ".csv.gz", ".parquet"]),
    impute=st.booleans(),
)
def test_generated_frames_in_each_format(frame_rows: list[tuple], suffix: str, impute: bool) -> None:
    frame = pd.DataFrame(frame_rows, columns=["bytes", "proto", "label"])
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"t{suffix}"
        if suffix == ".parquet":
            frame.to_parquet(path)
        else:
            frame.to_csv(path, index=False, compression="gzip" if suffix.endswith(".gz") else None)
        outcome = _load(path, impute=impute)
        _check(path, outcome, impute)
        if not isinstance(outcome, InputError):
            assert outcome.y.tolist() == [int(v != 0) for v in frame["label"]]


@SETTINGS
@given(
    junk=st.one_of(
        st.binary(max_size=300),
        st.binary(max_size=200).map(lambda b: b"\x1f\x8b" + b),  # gzip magic, then garbage
        st.binary(max_size=200).map(lambda b: b"PAR1" + b + b"PAR1"),  # parquet magic around garbage
        st.binary(max_size=200).map(lambda b: b"PK\x03\x04" + b),  # zip (npz) magic, then garbage
        st.binary(max_size=200).map(lambda b: b"a,label\n" + b),  # a header, then junk
    ),
    suffix=st.sampled_from(SUFFIXES),
    no_header=st.booleans(),
)
def test_junk_bytes_never_escape_as_a_foreign_error(junk: bytes, suffix: str, no_header: bool) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"junk{suffix}"
        path.write_bytes(junk)
        try:
            frame = read_raw_table(path, no_header=no_header)
        except InputError as exc:
            _check(path, exc, impute=False)
            return
        assert frame.shape[0] > 0 and frame.shape[1] > 0 and frame.columns.is_unique
        label = "0" if no_header else "label"
        _check(path, _load(path, no_header=no_header, label_column=label), impute=False)


@SETTINGS
@given(
    payload=st.one_of(st.binary(max_size=200), csv_texts().map(lambda t: t.encode("utf-8"))),
)
def test_gzip_of_anything(payload: bytes) -> None:
    """A real gzip wrapping junk or generated CSV: the decompressed content is judged like a CSV."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "t.csv.gz"
        buffer = io.BytesIO()
        with gzip.GzipFile(fileobj=buffer, mode="wb") as fh:
            fh.write(payload)
        path.write_bytes(buffer.getvalue())
        _check(path, _load(path), impute=False)


@SETTINGS
@given(
    shape=st.tuples(st.integers(0, 6), st.integers(0, 4)),
    with_y=st.booleans(),
    with_names=st.booleans(),
    values=st.floats(allow_nan=True, allow_infinity=True),
)
def test_npz_archives(shape: tuple[int, int], with_y: bool, with_names: bool, values: float) -> None:
    rows, cols = shape
    arrays: dict[str, np.ndarray] = {"X": np.full((rows, cols), values)}
    if with_y:
        arrays["y"] = np.arange(rows) % 2
    if with_names:
        arrays["feature_names"] = np.array([f"c{i}" for i in range(cols)])
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "t.npz"
        np.savez(path, **arrays)
        _check(path, _load(path), impute=False)


def test_genuine_dotted_name_is_kept_and_real_repeat_refused(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("a,a.1,label\n1,2,0\n3,4,1\n")
    assert list(load_labelled_table(path).features.columns) == ["a", "a.1"]
    path.write_text("a,a,label\n1,2,0\n3,4,1\n")
    try:
        load_labelled_table(path)
    except InputError as exc:
        assert "duplicate column names ['a']" in str(exc)
    else:
        raise AssertionError("a repeated header name was accepted")
