"""Reading labelled feature tables from disk, with errors that name the file, column and value."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import re
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from threat_ensemble.errors import InputError, counted, first_line, listed, quote

# Output tables are written by threat_ensemble.files; cli/score.py still imports these two from here.
from threat_ensemble.limits import DEFAULT_MAX_DECOMPRESSED_MB

SUPPORTED = (".csv", ".csv.gz", ".parquet", ".npz", ".txt")

# A text column counts as numeric when at least this share of its values parse as numbers;
# the rest are then typos or export damage, not categories.
NUMERIC_SHARE = 0.9
# Each stratified split must see both classes, and the autoencoder needs enough normal rows to
# hold out a validation set for its threshold. (Here rather than in data.py, which imports
# Lightning, so that these refusals come in under a second.)
MIN_NORMAL_ROWS = 50
MIN_ATTACK_ROWS = 10
FLOAT32_MAX = float(np.finfo(np.float32).max)


class DataWarning(UserWarning):
    """Something about the user's data worth a line (the CLIs print these as ``warning: ...``)."""


class ImputeWarning(DataWarning):
    """``--impute`` filled missing or infinite numeric cells; the message says how many."""


class TextCategoryWarning(DataWarning):
    """A column taken as a text category though it looks like timestamps or mostly numbers: one line
    per column at training, saying what it looks like and what to do (a stream warns once per column)."""

    def __init__(self, message: str, column: str) -> None:
        super().__init__(message)
        self.column = column


class LabelCaseWarning(DataWarning):
    """Labels that differ from --normal-label only by case: counted as attacks, said out loud."""


class LabelMixWarning(DataWarning):
    """A label column holding both numbers and text: each number compares with --normal-label as a
    number (``0``, ``0.0`` and `` 0`` are one label), each text as text; the line counts each kind
    and how many of each are normal. Streams add up their row groups' (:meth:`merged`) and warn once."""

    def __init__(self, source: str, column: str, normal_label: str, kinds: dict[str, tuple[int, int, list[str]]]):
        super().__init__(source, column, normal_label, kinds)
        self.source, self.column, self.normal_label = source, column, normal_label
        self.kinds = kinds  # "numbers"/"text" -> (rows, normal rows, a few distinct values)

    def merged(self, other: LabelMixWarning, source: str) -> LabelMixWarning:
        kinds = {}
        for kind in ("numbers", "text"):
            (rows, normal, shown), (rows2, normal2, shown2) = self.kinds[kind], other.kinds[kind]
            kinds[kind] = (rows + rows2, normal + normal2, sorted(set(shown) | set(shown2))[: MAX_SHOWN_LABELS + 1])
        return LabelMixWarning(source, self.column, self.normal_label, kinds)

    def __str__(self) -> str:
        parts = []
        for kind in ("numbers", "text"):
            rows, _, shown = self.kinds[kind]
            values = ", ".join(quote(v, 40) for v in shown[:MAX_SHOWN_LABELS])
            parts.append(f"{kind} ({rows:,} rows: {values}{', ...' if len(shown) > MAX_SHOWN_LABELS else ''})")
        (_, normal_numbers, _), (_, normal_text, _) = self.kinds["numbers"], self.kinds["text"]
        return (
            f"{self.source}: label column {quote(self.column)} mixes {parts[0]} and {parts[1]}; "
            f"--normal-label {quote(self.normal_label)} matches {normal_numbers:,} rows of the numbers "
            f"(compared as numbers) and {normal_text:,} of the text"
        )


MAX_SHOWN_LABELS = 5  # distinct label values a LabelMixWarning shows of each kind


@dataclass
class LabelledTable:
    """Feature columns and binary labels (1 = attack) read from one file."""

    features: pd.DataFrame
    y: np.ndarray
    source: str

    @property
    def n_rows(self) -> int:
        return len(self.y)

    @property
    def n_features(self) -> int:
        return int(self.features.shape[1])

    @property
    def n_attack(self) -> int:
        return int(self.y.sum())

    @property
    def n_normal(self) -> int:
        return int(len(self.y) - self.y.sum())


def _suffix(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(".csv.gz"):
        return ".csv.gz"
    return path.suffix.lower()


def read_raw_table(
    path: str | Path, *, no_header: bool = False, max_decompressed_mb: int = DEFAULT_MAX_DECOMPRESSED_MB
) -> pd.DataFrame:
    """Read a ``.csv``/``.csv.gz``/``.txt``/``.parquet``/``.npz`` file, or a folder (or glob) of
    Parquet files, into a DataFrame of all its columns."""
    p = Path(path)
    if p.is_dir() or (not p.exists() and any(ch in str(path) for ch in "*?[")):
        frame = _read_parquet_dataset(str(path), max_decompressed_mb)
        frame.columns = [str(c) for c in frame.columns]
        return frame
    if not p.exists():
        raise InputError(f"{p}: no such file")
    if not p.is_file():
        raise InputError(f"{p}: not a file")
    suffix = _suffix(p)
    if suffix not in SUPPORTED:
        raise InputError(f"{p}: unknown extension {p.suffix!r}; expected one of {', '.join(SUPPORTED)}")
    try:
        if suffix == ".parquet":
            frame = _read_parquet(p, max_decompressed_mb)
        elif suffix == ".npz":
            frame = _read_npz(p, max_decompressed_mb)
        else:
            frame = _read_csv(p, suffix, no_header, max_decompressed_mb)
    except PermissionError:
        raise InputError(f"{p}: cannot be read (permission denied)") from None
    if frame.shape[1] == 0:
        raise InputError(f"{p}: no columns found")
    if len(frame) == 0:
        raise InputError(f"{p}: has a header but no data rows")
    duplicated = frame.columns[frame.columns.duplicated()].tolist()
    if duplicated:
        raise InputError(duplicate_names_message(p, duplicated))
    frame.columns = [str(c) for c in frame.columns]
    return frame


class DecompressionLimit(InputError):
    """An input that would take more than --max-decompressed-mb: a compressed file that expands
    beyond it, or a table whose declared or counted size in memory is larger."""


# A table cell in memory: a float64, an int64, or a pointer to a (shared) string object. What a
# table takes is bounded by its cells x this before it is read (Parquet's and .npz's declared
# shapes; a CSV's fields, counted in a first pass that keeps nothing).
CELL_BYTES = 8


def decompression_limit_error(p: Path | str, limit_mb: int) -> DecompressionLimit:
    return DecompressionLimit(
        f"{p}: expands beyond {limit_mb} MB when decompressed; raise --max-decompressed-mb if that is expected"
    )


def size_limit_error(p: Path | str, what: str, limit_mb: int) -> DecompressionLimit:
    """One line naming the file, what it would take and the bound, with the option that raises it."""
    return DecompressionLimit(f"{p}: {what}, beyond --max-decompressed-mb {limit_mb}; raise it if that is expected")


def _mb(n_bytes: int) -> str:
    return f"{-(-n_bytes // (1 << 20)):,} MB"


def check_declared_size(p: Path | str, rows: int, columns: int, data_bytes: int, limit_mb: int) -> None:
    """Refuse, before anything is allocated, a table that declares more than ``limit_mb``: its
    ``rows`` x ``columns`` cells at :data:`CELL_BYTES` each, or its ``data_bytes`` once decompressed."""
    need = max(rows * columns * CELL_BYTES, data_bytes)
    if need > limit_mb << 20:
        raise size_limit_error(p, f"{rows:,} rows x {columns:,} columns take about {_mb(need)} in memory", limit_mb)


class _BoundedReader(io.RawIOBase):
    """A binary stream that refuses to yield more than ``limit`` bytes (a gzip bomb stops there)
    and, with ``cells_error``, more CSV fields (commas and line endings) than ``limit`` bytes hold
    at :data:`CELL_BYTES` a field (a sparse CSV, ``,,,,``, stops there)."""

    def __init__(self, raw: Any, limit: int, error: InputError, cells_error: InputError | None = None) -> None:
        self.raw, self.limit, self.error, self.total = raw, limit, error, 0
        self.cells_error, self.cells, self.max_cells = cells_error, 0, limit // CELL_BYTES

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = self.raw.readinto(buffer)
        self.total += n or 0
        if self.total > self.limit:
            raise self.error
        if n and self.cells_error is not None:
            chunk = memoryview(buffer)[:n].tobytes()
            self.cells += chunk.count(b",") + chunk.count(b"\n") + chunk.count(b"\r") - chunk.count(b"\r\n")
            if self.cells > self.max_cells:
                raise self.cells_error
        return n


def gunzip_bounded(data: bytes, limit_mb: int, source: str) -> bytes:
    """``gzip.decompress`` (every member) that stops once the output passes ``limit_mb``."""
    import zlib

    limit, parts, total = limit_mb << 20, [], 0
    while data:
        inflater = zlib.decompressobj(wbits=31)
        chunk = inflater.decompress(data, limit - total + 1)
        total += len(chunk)
        if total > limit or inflater.unconsumed_tail:
            raise decompression_limit_error(source, limit_mb)
        if not inflater.eof:
            raise EOFError("compressed file ended before the end-of-stream marker was reached")
        parts.append(chunk)
        data = inflater.unused_data.lstrip(b"\0")
    return b"".join(parts)


def _read_csv(p: Path, suffix: str, no_header: bool, max_decompressed_mb: int) -> pd.DataFrame:
    if p.stat().st_size == 0:
        raise InputError(f"{p}: file is empty")
    if suffix == ".csv.gz":
        with open(p, "rb") as fh:
            if fh.read(2) != b"\x1f\x8b":
                raise InputError(f"{p}: not a gzip file, though its name ends in .gz")
    compression = "gzip" if suffix == ".csv.gz" else None
    limit = max_decompressed_mb << 20
    if not compression and p.stat().st_size > limit:
        raise size_limit_error(p, f"{_mb(p.stat().st_size)} of text to read", max_decompressed_mb)
    cells = size_limit_error(
        p, f"more than {limit // CELL_BYTES:,} fields ({CELL_BYTES} bytes each in memory)", max_decompressed_mb
    )
    too_big = (
        decompression_limit_error(p, max_decompressed_mb)
        if compression
        else size_limit_error(p, "grew while it was read", max_decompressed_mb)
    )

    def bounded(stack: contextlib.ExitStack, count_cells: bool) -> Any:
        raw = stack.enter_context(gzip.open(p, "rb") if compression else open(p, "rb", buffering=0))  # noqa: SIM115
        return _BoundedReader(raw, limit, too_big, cells if count_cells else None)

    try:
        with contextlib.ExitStack() as stack:  # first count its bytes and fields, keeping none of them
            counter, buffer = bounded(stack, count_cells=True), bytearray(1 << 20)
            while counter.readinto(buffer):
                pass
        with contextlib.ExitStack() as stack:
            frame = pd.read_csv(
                io.BufferedReader(bounded(stack, count_cells=False), 1 << 20),
                header=None if no_header else "infer",
                low_memory=False,
                skipinitialspace=True,
            )
    except pd.errors.EmptyDataError:
        raise InputError(f"{p}: file is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError, gzip.BadGzipFile, EOFError, OSError) as exc:
        raise InputError(f"{p}: cannot be parsed as CSV ({first_line(exc, limit=None)})") from None
    if not frame.index.equals(pd.RangeIndex(len(frame))):
        # pandas silently turns the first field(s) into an index when the first data row has more
        # fields than the header, shifting every value one column left: refuse instead.
        n_fields = frame.shape[1] + frame.index.nlevels
        raise InputError(
            f"{p}: data row 1 has {n_fields} fields but the header names {frame.shape[1]} columns; "
            "expected one field per column"
        )
    if not no_header:
        _check_csv_header(p, frame, compression)
    return frame


def _check_csv_header(p: Path, frame: pd.DataFrame, compression: str | None) -> None:
    """pandas renames a repeated header name to ``name.1``: compare with the raw header row, so a
    real repeat is refused and a genuine ``name.1`` column is not."""
    names = [str(c) for c in frame.columns]
    mangled = [n for n in names if "." in n and n.rsplit(".", 1)[1].isdigit() and n.rsplit(".", 1)[0] in names]
    if not mangled:
        return
    try:
        raw = pd.read_csv(p, header=None, nrows=1, dtype=str, compression=compression, skipinitialspace=True)
        cells = [str(c) for c in raw.iloc[0].tolist() if isinstance(c, str)]
        repeated = sorted({c for c in cells if cells.count(c) > 1})
    except (ValueError, OSError, IndexError):  # cannot re-read the header: trust pandas' renaming
        repeated = sorted({n.rsplit(".", 1)[0] for n in mangled})
    if repeated:
        raise InputError(duplicate_names_message(p, repeated))


def duplicate_names_message(p: Path, repeated: list[Any]) -> str:
    """Repeated column names; numbers among them mean the header row is data (a file without one)."""
    hint = "; no header? try --no-header" if any(_is_number(str(name)) for name in repeated) else ""
    return f"{p}: duplicate column names {repeated}; each column needs its own name{hint}"


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def parquet_declared_size(p: Path) -> tuple[int, int, int]:
    """A Parquet file's rows, columns and uncompressed data bytes, from its footer alone."""
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(p).metadata
    data_bytes = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    return meta.num_rows, meta.num_columns, data_bytes


def _read_parquet(
    p: Path, max_decompressed_mb: int = DEFAULT_MAX_DECOMPRESSED_MB, checked: bool = False
) -> pd.DataFrame:
    """One Parquet file, whole; refused before it is read when its footer declares more than
    ``max_decompressed_mb`` (``checked``: a dataset's total was checked already)."""
    try:
        import pyarrow.parquet as pq

        if not checked:
            check_declared_size(p, *parquet_declared_size(p), max_decompressed_mb)
        schema = pq.read_schema(p)
        nested = [f for f in schema if pa_is_nested(f.type)]
        if nested:
            raise InputError(
                f"{p}: column {quote(nested[0].name)} holds {nested[0].type} values (a nested Parquet type); "
                "expected numbers or text in every column"
            )
        return decode_binary_columns(pd.read_parquet(p))
    except InputError:
        raise
    except ImportError as exc:
        raise InputError(f"{p}: reading Parquet needs pyarrow ({exc})") from None
    except Exception as exc:  # pyarrow raises its own ArrowInvalid/OSError family
        raise InputError(f"{p}: not a readable Parquet file ({first_line(exc, limit=None)})") from None


def parquet_files(spec: str) -> list[Path]:
    """The Parquet files of a folder (its subfolders too, as a partitioned dataset has them), the
    file ``spec`` itself, or the files of a glob pattern (only when no such file or folder exists),
    in name order; an error naming ``spec`` when there are none."""
    import glob

    p = Path(spec)
    if p.is_dir():
        found = sorted(f for f in p.rglob("*.parquet") if f.is_file() and not f.name.startswith((".", "_")))
        files = _each_file_once(found, p, spec)
        where = f"{p}: a folder with no Parquet files (*.parquet) in it"
    elif p.is_file():  # a file that exists is that file, whatever its name holds ('[', '*', '?')
        files = [p] if p.name.lower().endswith(".parquet") else []
        where = f"{p}: not a Parquet file (*.parquet)"
    else:
        found = sorted(Path(f) for f in glob.glob(spec, recursive=True) if f.endswith(".parquet") and Path(f).is_file())
        files = _each_file_once(found, _pattern_root(spec), spec)
        where = f"{spec}: no Parquet file matches this pattern"
    if not files:
        raise InputError(where)
    return files


def _pattern_root(spec: str) -> Path:
    """The folder a glob pattern searches: its path up to the first part with a wildcard."""
    import glob

    parts = Path(spec).parts
    fixed = [part for part in parts[: next((i for i, q in enumerate(parts) if glob.has_magic(q)), len(parts))]]
    return Path(*fixed) if fixed else Path(".")


def _each_file_once(found: list[Path], root: Path, spec: str) -> list[Path]:
    """``found`` (in name order) with every file once, however many links or folder loops lead to it,
    and without the files a link leads to outside ``root`` (the folder given): a pattern that followed
    a symlink loop read one file 41 times, copies landing in both training and test rows."""
    base = root.resolve()
    seen: set[Path] = set()
    kept, outside = [], set()
    for f in found:
        real = f.resolve()
        if real != base and base not in real.parents:
            outside.add(real)
            continue
        if real not in seen:
            seen.add(real)
            kept.append(f)
    if outside:
        warnings.warn(
            f"{spec}: {counted(len(outside), 'Parquet file')} reached through a link out of {root} not read",
            stacklevel=3,
        )
    return kept


def check_parquet_dataset(spec: str, required: str | None = None) -> tuple[list[Path], Any]:
    """The files of a sharded Parquet dataset and their common schema, after checking up front (file
    metadata only) that each one is readable, holds the ``required`` column (the label) and has the
    first one's columns, with a text column never numeric in another file. One line naming the
    first file that differs."""
    import pyarrow.parquet as pq
    import pyarrow.types as pat

    files = parquet_files(spec)
    schemas = []
    for f in files:
        try:
            schemas.append(pq.read_schema(f))
        except Exception as exc:  # pyarrow's ArrowInvalid/OSError family: a damaged or foreign file
            raise InputError(f"{f}: not a readable Parquet file ({first_line(exc)})") from None
        if required is not None and required not in schemas[-1].names:
            raise InputError(f"{f}: no column {quote(required)} in this shard; every file needs the label column")
    reference = schemas[0]
    nested = [field for field in reference if pa_is_nested(field.type)]
    if nested:
        raise InputError(
            f"{files[0]}: column {quote(nested[0].name)} holds {nested[0].type} values (a nested Parquet type); "
            "expected numbers or text in every column"
        )
    kinds = {field.name: pat.is_string(field.type) or pat.is_large_string(field.type) for field in reference}
    for f, schema in zip(files[1:], schemas[1:], strict=True):
        missing = [n for n in reference.names if n not in schema.names]
        extra = [n for n in schema.names if n not in reference.names]
        if missing or extra:
            parts = ([f"missing {listed(missing)}"] if missing else []) + ([f"extra {listed(extra)}"] if extra else [])
            raise InputError(f"{f}: its columns differ from {files[0].name}'s: {'; '.join(parts)}")
        for field in schema:
            text = pat.is_string(field.type) or pat.is_large_string(field.type)
            if text != kinds[field.name]:
                raise InputError(
                    f"{f}: column {quote(field.name)} is {field.type} here but "
                    f"{reference.field(field.name).type} in {files[0].name}"
                )
    return files, reference


def _read_parquet_dataset(spec: str, max_decompressed_mb: int = DEFAULT_MAX_DECOMPRESSED_MB) -> pd.DataFrame:
    """Every file of a sharded Parquet dataset (checked by :func:`check_parquet_dataset`), as one
    frame; refused before any is read when their footers declare more than ``max_decompressed_mb``."""
    files, reference = check_parquet_dataset(spec)
    rows = data_bytes = 0
    for f in files:
        n, _, size = parquet_declared_size(f)
        rows, data_bytes = rows + n, data_bytes + size
    check_declared_size(spec, rows, len(reference.names), data_bytes, max_decompressed_mb)
    frames = [_read_parquet(f, checked=True) for f in files]
    frame = pd.concat([x[reference.names] for x in frames], ignore_index=True)
    if len(frame) == 0:
        raise InputError(f"{spec}: its {len(files)} Parquet files hold no rows")
    return frame


def pa_is_nested(kind: Any) -> bool:
    """A pyarrow type that is not a plain value: list, struct, map, union or dictionary of those."""
    import pyarrow.types as pat

    return bool(
        pat.is_list(kind)
        or pat.is_large_list(kind)
        or pat.is_fixed_size_list(kind)
        or pat.is_struct(kind)
        or pat.is_map(kind)
        or pat.is_union(kind)
    )


def _npz_declared_size(p: Path, limit_mb: int) -> None:
    """Refuse an ``.npz`` whose arrays declare more than ``limit_mb`` (their headers' shapes and
    dtypes, and each member's size once decompressed, read without loading any array)."""
    from numpy.lib import format as npy

    total, largest = 0, (0, "")
    with zipfile.ZipFile(p) as archive:
        for info in archive.infolist():
            size, shown = info.file_size, f"member {quote(info.filename)} of {info.file_size:,} bytes"
            if info.filename.endswith(".npy"):
                with archive.open(info) as fh:
                    version = npy.read_magic(fh)
                    read_header = npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0
                    shape, _, dtype = read_header(fh)
                count = 1
                for n in shape:
                    count *= int(n)
                size = max(size, count * dtype.itemsize)
                dims = " x ".join(f"{int(n):,}" for n in shape) or "1"
                shown = f"array {quote(info.filename[:-4])} of {dims} {dtype}"
            total += size
            largest = max(largest, (size, shown))
    if total > limit_mb << 20:
        raise size_limit_error(p, f"its arrays take about {_mb(total)} in memory (the largest: {largest[1]})", limit_mb)


def _read_npz(p: Path, max_decompressed_mb: int = DEFAULT_MAX_DECOMPRESSED_MB) -> pd.DataFrame:
    try:
        _npz_declared_size(p, max_decompressed_mb)
        with np.load(p, allow_pickle=False) as archive:
            arrays = {k: archive[k] for k in archive.files}
    except InputError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise InputError(f"{p}: not a readable .npz archive ({first_line(exc, limit=None)})") from None
    if "X" not in arrays:
        raise InputError(f"{p}: .npz archive has no array 'X' (found: {sorted(arrays)})")
    X = arrays["X"]
    if X.ndim != 2:
        raise InputError(f"{p}: array 'X' must be 2-D (rows x features), got shape {X.shape}")
    if "feature_names" in arrays:
        names = [str(n) for n in arrays["feature_names"].tolist()]
        if len(names) != X.shape[1]:
            raise InputError(f"{p}: 'feature_names' has {len(names)} names but 'X' has {X.shape[1]} columns")
    else:
        names = [f"f{i}" for i in range(X.shape[1])]
    frame = pd.DataFrame(X, columns=names)
    if "y" in arrays:
        y = arrays["y"]
        if y.ndim != 1 or len(y) != len(X):
            raise InputError(f"{p}: array 'y' must be 1-D with {len(X)} entries, got shape {y.shape}")
        if "label" in frame.columns:
            raise InputError(f"{p}: a feature is named 'label', which clashes with the labels array 'y'")
        frame["label"] = y
    return frame


def resolve_label_column(frame: pd.DataFrame, label_column: str, source: str) -> str:
    """Find the label column by name, or by 0-based index when no column has that name."""
    if label_column in frame.columns:
        return label_column
    if label_column.lstrip("-").isdigit():
        index = int(label_column)
        if -frame.shape[1] <= index < frame.shape[1]:
            return str(frame.columns[index])
    count = frame.shape[1]
    shown = ", ".join(str(c)[:60] for c in frame.columns[:8]) + (f", ...; {count} in all" if count > 8 else "")
    numbered = ""
    if label_column.lstrip("-").isdigit():  # an index past the table's columns
        numbers = f"{count} columns are numbered 0 to {count - 1}" if count > 1 else "one column is numbered 0"
        numbered = f": no column has that name, and the table's {numbers}"
    raise InputError(f"{source}: label column {quote(label_column)} not found{numbered} (columns: {shown})")


def binary_labels(values: pd.Series, normal_label: str, source: str, column: str, warn: bool = True) -> np.ndarray:
    """Map labels to 0 (equal to ``normal_label``) and 1 (anything else). Numbers compare as numbers
    (``--normal-label 0`` matches ``0``, ``0.0`` and ``0e0``), in a numeric column and in a text one
    alike; a column that mixes numbers and text gets one :class:`LabelMixWarning` line counting each."""
    if values.isna().any():
        row = int(np.flatnonzero(values.isna().to_numpy())[0])
        raise InputError(f"{source}: label column {quote(column)} is empty in data row {row + 1}")
    if pd.api.types.is_numeric_dtype(values):
        try:
            normal = float(normal_label)
        except ValueError:
            raise InputError(
                f"{source}: label column {quote(column)} is numeric but --normal-label is {quote(normal_label)}"
            ) from None
        is_normal = values.to_numpy(dtype=float) == normal
    else:  # text: a cell that is a number compares as a number when --normal-label is one ('0.0' is '0')
        text = values.astype(str).str.strip()
        wanted = str(normal_label).strip()
        numbers = pd.to_numeric(text, errors="coerce").to_numpy(dtype=float)
        is_number = ~np.isnan(numbers)
        try:
            normal = float(wanted)
        except ValueError:
            normal = None
        is_text_normal = text.to_numpy() == wanted
        is_normal = np.where(is_number, numbers == normal, is_text_normal) if normal is not None else is_text_normal
        if warn and is_number.any() and not is_number.all():
            kinds = {
                kind: (int(mask.sum()), int((is_normal & mask).sum()), _few(text[mask]))
                for kind, mask in (("numbers", is_number), ("text", ~is_number))
            }
            warnings.warn(LabelMixWarning(source, column, wanted, kinds), stacklevel=2)
        near = text[~is_normal & ~is_number & (text.str.casefold() == wanted.casefold()).to_numpy()]
        if len(near) and warn:
            warnings.warn(
                f"{source}: label column {quote(column)} holds {listed(sorted(near.unique()))} in {len(near)} rows, "
                f"which differ from --normal-label {quote(wanted)} only by case; they count as attacks",
                LabelCaseWarning,
                stacklevel=2,
            )
    return (~is_normal).astype(np.int64)


def _few(values: pd.Series) -> list[str]:
    """A few of the distinct values, in order (one more than shown, so the line knows there are more)."""
    return sorted(values.unique())[: MAX_SHOWN_LABELS + 1]


def decode_binary_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """Parquet's binary columns arrive as ``bytes``: one whose every value is UTF-8 becomes text (it
    is text stored as binary); any other keeps its bytes, refused by :func:`refuse_binary` where it
    is used (a feature, the label), never where it is not (a dropped column, one a bundle ignores)."""
    for column in frame.columns:
        series = frame[column]
        if series.dtype != object or pd.api.types.infer_dtype(series, skipna=True) != "bytes":
            continue
        try:
            frame[column] = series.map(lambda v: v.decode("utf-8") if isinstance(v, bytes) else v)
        except UnicodeDecodeError:
            continue
    return frame


def _holds_bytes(series: pd.Series) -> bool:
    return series.dtype == object and pd.api.types.infer_dtype(series, skipna=True) in ("bytes", "mixed")


def _is_utf8(value: bytes) -> bool:
    try:
        bytes(value).decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def refuse_binary(frame: pd.DataFrame, source: str, hint: str) -> None:
    """One line naming the first column of ``frame`` that holds binary values (bytes that are not
    UTF-8 text, as a Parquet binary column can), its row and value; ``hint`` says what to do."""
    for column in frame.columns:
        series = frame[column]
        if not _holds_bytes(series):
            continue
        is_bytes = series.map(lambda v: isinstance(v, bytes | bytearray)).to_numpy(dtype=bool)
        if is_bytes.any():
            rows = np.flatnonzero(is_bytes)
            row = next((int(r) for r in rows if not _is_utf8(series.iloc[r])), int(rows[0]))
            raise InputError(
                f"{source}: column {quote(column)} holds binary values that are not UTF-8 text (data row {row + 1}: "
                f"{quote(bytes(series.iloc[row]), 60)}); expected numbers or text{hint}"
            )


def infer_numeric(frame: pd.DataFrame, source: str, text_columns: frozenset[str] = frozenset()) -> pd.DataFrame:
    """Convert text columns that are really numbers; refuse columns that are numbers with stray text.
    ``text_columns`` are known to be text (an earlier part of the same data decided) and left as they are."""
    out = frame.copy()
    for column in out.columns:
        series = out[column]
        if column in text_columns:
            continue
        if pd.api.types.is_bool_dtype(series):
            out[column] = series.astype(np.float64)
            continue
        if pd.api.types.is_numeric_dtype(series) or _holds_bytes(series):  # bytes: refused where used
            continue
        text = series.astype("string").str.strip()
        present = text.notna() & (text != "")
        parsed = pd.to_numeric(text.where(present), errors="coerce")
        n_present = int(present.sum())
        n_numeric = int(parsed.notna().sum())
        if n_present and n_numeric == n_present:
            out[column] = parsed.astype(np.float64)
        elif n_present and n_numeric >= NUMERIC_SHARE * n_present:
            bad = present & parsed.isna()
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise InputError(
                f"{source}: column {quote(column)} is numeric but data row {row + 1} holds "
                f"{quote(text.iloc[row])} ({int(bad.sum())} such rows); expected a number"
            )
    return out


_DATE = r"(\d{4}-\d{1,2}-\d{1,2}|\d{1,2}/\d{1,2}/\d{2,4}|\d{1,2}/[A-Za-z]{3}/\d{4})"
_TIME = r"\d{1,2}:\d{2}(:\d{2}([.,]\d+)?)?"
_ZONE = r"(\s*(Z|UTC|GMT|[+-]\d{2}:?\d{2}))?"
TIMESTAMP = re.compile(rf"\[?({_DATE}([T ]|:)?({_TIME})?|{_TIME}){_ZONE}\]?", re.ASCII)
TIMESTAMP_SHARE = 0.9  # of a text column's values (up to SAMPLED of them) that look like timestamps
HALF_NUMERIC_SHARE = 0.5  # from here up to NUMERIC_SHARE (refused above that), a column is said to be mostly numbers
SAMPLED = 1000


def text_category_notes(features: pd.DataFrame, source: str) -> list[TextCategoryWarning]:
    """One line for each text column (taken as a category) that looks like timestamps or is mostly
    numbers, saying so and what to do; the numeric columns ``infer_numeric`` made are not looked at."""
    notes = []
    for column in features.columns:
        series = features[column]
        if pd.api.types.is_numeric_dtype(series) or _holds_bytes(series):
            continue
        text = series.astype("string").str.strip()
        text = text[text.notna() & (text != "")]
        if text.empty:
            continue
        distinct = int(text.nunique())
        category = f"taken as a text category ({distinct} distinct value{'s' if distinct != 1 else ''})"
        sample = text.iloc[:SAMPLED]
        if sample.map(lambda v: TIMESTAMP.fullmatch(v) is not None).mean() >= TIMESTAMP_SHARE:
            line = f"{source}: column {quote(column)} looks like timestamps: {category}; convert it to numbers "
            notes.append(TextCategoryWarning(line + "or drop it (--drop-columns)", str(column)))
            continue
        numeric = pd.to_numeric(text, errors="coerce").notna()
        if HALF_NUMERIC_SHARE <= numeric.mean() < 1.0:
            share = int(100 * numeric.mean())
            words = text[~numeric].unique()
            words = ", ".join(quote(str(v), 30) for v in words[:3]) + (", ..." if len(words) > 3 else "")
            line = f"{source}: column {quote(column)} is {share}% numbers and {100 - share}% text ({words}): "
            line += f"{category}; make every cell a number, or drop it (--drop-columns)"
            notes.append(TextCategoryWarning(line, str(column)))
    return notes


def unusable_cells(values: np.ndarray) -> np.ndarray:
    """Cells the models cannot take: NaN, ±inf, or beyond float32 (the encoded matrix's type),
    where a value such as 1e39 would become inf."""
    with np.errstate(invalid="ignore"):
        return ~np.isfinite(values) | (np.abs(values) > FLOAT32_MAX)


def non_finite_message(frame: pd.DataFrame, source: str) -> str | None:
    """Name the first missing/infinite/out-of-range numeric cell and the count, or None when all are usable."""
    numeric = frame.select_dtypes(include="number")
    if numeric.shape[1] == 0:
        return None
    values = numeric.to_numpy(dtype=np.float64)
    bad = unusable_cells(values)
    if not bad.any():
        return None
    rows, cols = np.nonzero(bad)
    value = values[rows[0], cols[0]]
    shown = f"{value:g} (beyond the float32 range of the models)" if np.isfinite(value) else f"{value}"
    return (
        f"{source}: column {quote(numeric.columns[cols[0]])} holds {shown} in data row "
        f"{rows[0] + 1} ({int(bad.sum())} missing, infinite or out-of-range cells in all); pass --impute to "
        "fill them with training medians"
    )


def count_non_finite(frame: pd.DataFrame) -> int:
    """How many numeric cells are missing, infinite or out of range (what ``--impute`` will fill)."""
    numeric = frame.select_dtypes(include="number")
    if numeric.shape[1] == 0:
        return 0
    return int(unusable_cells(numeric.to_numpy(dtype=np.float64)).sum())


def check_class_counts(table: LabelledTable) -> None:
    """Refuse label sets the split and the models cannot use, saying how many rows are needed."""
    if table.n_normal == 0:
        raise InputError(f"{table.source}: no normal rows (check --label-column and --normal-label)")
    if table.n_attack == 0:
        raise InputError(f"{table.source}: no attack rows; every label equals --normal-label")
    if table.n_normal < MIN_NORMAL_ROWS:
        raise InputError(
            f"{table.source}: {table.n_normal} normal rows; the autoencoder needs at least "
            f"{MIN_NORMAL_ROWS} to train and hold out a validation set"
        )
    if table.n_attack < MIN_ATTACK_ROWS:
        raise InputError(
            f"{table.source}: {table.n_attack} attack rows; at least {MIN_ATTACK_ROWS} are needed "
            "to stratify train/validation/test splits"
        )


def load_labelled_table(
    path: str | Path,
    *,
    label_column: str = "label",
    normal_label: str = "0",
    no_header: bool = False,
    drop_columns: list[str] | tuple[str, ...] = (),
    impute: bool = False,
    max_decompressed_mb: int = DEFAULT_MAX_DECOMPRESSED_MB,
) -> LabelledTable:
    """Read a file and split it into feature columns and binary labels, refusing unusable input."""
    source = str(path)
    frame = read_raw_table(path, no_header=no_header, max_decompressed_mb=max_decompressed_mb)
    return labelled_table_from_frame(
        frame,
        source=source,
        label_column=label_column,
        normal_label=normal_label,
        drop_columns=drop_columns,
        impute=impute,
    )


def labelled_table_from_frame(
    frame: pd.DataFrame,
    *,
    source: str,
    label_column: str = "label",
    normal_label: str = "0",
    drop_columns: list[str] | tuple[str, ...] = (),
    impute: bool = False,
    text_columns: frozenset[str] = frozenset(),
    warn: bool = True,
) -> LabelledTable:
    """The frame's features and binary labels, checked; ``warn=False`` for a part of data whose
    warnings were given already (a streamed dataset's row group read again)."""
    frame = frame.copy()
    frame.columns = [str(c) for c in frame.columns]
    label, to_drop = label_and_drops(frame, label_column, drop_columns, source)
    features = frame.drop(columns=[label, *to_drop])
    refuse_binary(frame[[label]], source, "")
    refuse_binary(features, source, " (--drop-columns it if it is not a feature)")
    y = binary_labels(frame[label], normal_label, source, label, warn)
    if features.shape[1] == 0:
        raise InputError(f"{source}: no feature columns left after removing the label and dropped columns")
    features = infer_numeric(features, source, text_columns)
    if warn:
        for note in text_category_notes(features, source):
            warnings.warn(note, stacklevel=2)
    check_non_finite(features, source, impute, warn=warn, stacklevel=3)
    return LabelledTable(features=features.reset_index(drop=True), y=y, source=source)


def label_and_drops(
    frame: pd.DataFrame, label_column: str, drop_columns: list[str] | tuple[str, ...], source: str
) -> tuple[str, list[str]]:
    """The label column (by name, or by 0-based index; it must exist) and the ``--drop-columns``
    (each must be a column, and none the label), as training resolves them on ``frame`` (its
    column names strings)."""
    label = resolve_label_column(frame, str(label_column), source)
    dropped = []
    for name in drop_columns:
        resolved = resolve_drop_column(frame, str(name), source)
        if resolved == label:
            raise InputError(f"{source}: --drop-columns names the label column {quote(name)}")
        dropped.append(resolved)
    return label, dropped


def check_non_finite(
    features: pd.DataFrame,
    source: str,
    impute: bool,
    *,
    warn: bool = True,
    medians: str = "training medians",
    stacklevel: int = 2,
) -> None:
    """Numeric cells the models cannot take (NaN, inf, beyond float32): without ``impute``, an
    error naming the first and the count; with it, an :class:`ImputeWarning` counting the cells
    that will be filled with ``medians`` (none when ``warn`` is False)."""
    if impute:
        n_bad = count_non_finite(features) if warn else 0
        if n_bad:
            warnings.warn(
                f"{source}: --impute: {n_bad} missing, infinite or out-of-range numeric cells will be filled "
                f"with {medians}",
                ImputeWarning,
                stacklevel=stacklevel,
            )
        return
    problem = non_finite_message(features, source)
    if problem:
        raise InputError(problem.replace("training medians", medians))


def resolve_drop_column(frame: pd.DataFrame, name: str, source: str) -> str:
    if name in frame.columns:
        return name
    if name.lstrip("-").isdigit() and -frame.shape[1] <= int(name) < frame.shape[1]:
        return str(frame.columns[int(name)])
    raise InputError(f"{source}: --drop-columns names {quote(name)}, which is not a column")


def check_same_columns(train: pd.DataFrame, test: pd.DataFrame, source: str) -> pd.DataFrame:
    """Return ``test`` with the training column order, or name the columns that differ."""
    missing = [c for c in train.columns if c not in test.columns]
    extra = [c for c in test.columns if c not in train.columns]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing {missing}")
        if extra:
            parts.append(f"unexpected {extra}")
        raise InputError(f"{source}: columns differ from the training data: {'; '.join(parts)}")
    return test[list(train.columns)]


def fingerprint(features: pd.DataFrame, y: np.ndarray) -> str:
    """A sha256 over the feature values, column names and labels: identifies the training data."""
    digest = hashlib.sha256()
    digest.update("\x1f".join(map(str, features.columns)).encode())
    digest.update(pd.util.hash_pandas_object(features, index=False).to_numpy().tobytes())
    digest.update(np.ascontiguousarray(y, dtype=np.int64).tobytes())
    return digest.hexdigest()
