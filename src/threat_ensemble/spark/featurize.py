"""``featurize.py --engine spark``: the local featurizer's table, computed on Spark.

Each file is one task's input (``binaryFile``: its bytes, gzip unpacked in the task, so encoding and
damaged files are handled exactly as locally): the task parses it and computes every per-request
feature with :mod:`threat_ensemble.http.features`. The per-client windows of a stream (the files
given under one option, per log format) are Spark window functions partitioned by client and
ordered by time, so a client's requests are counted across rotated files and across machines.
A file's warnings and errors travel back as rows, never as a Java stack trace."""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from threat_ensemble.errors import InputError
from threat_ensemble.http.features import (
    FEATURE_COLUMNS,
    FLOAT_COLUMNS,
    MISSING,
    TEXT_COLUMNS,
    WINDOWS,
    FeaturizeWarning,
    decode_bytes,
    extract_features,
    has_windows,
    parse_text,
    request_ids,
    window_inputs,
)
from threat_ensemble.spark.files import check_input, folder_written_whole, is_remote, spark_path
from threat_ensemble.spark.session import spark_error

WINDOWED_FORMATS = ("common", "combined")  # the formats that record a client and a time
# Per file: where its rows go (group = option, arg = position on the command line), then one row per
# request (record from 1) or, with record 0, one note (a warning, or the error that stopped the file).
_KEYS = {"_group": "int", "_arg": "int", "source": "string", "record": "long", "_fmt": "string", "request": "string"}
_WINDOW_INPUTS = {"_client": "string", "_t": "long", "_status": "long", "_path": "string", "_ua": "string"}
_NOTES = {"_note": "string", "_failed": "boolean"}


def _feature_type(name: str) -> str:
    return "string" if name in TEXT_COLUMNS else "double" if name in FLOAT_COLUMNS else "long"


SCHEMA = ", ".join(
    f"`{name}` {kind}"
    for name, kind in {**_KEYS, **{c: _feature_type(c) for c in FEATURE_COLUMNS}, **_WINDOW_INPUTS, **_NOTES}.items()
)


def featurize_on_spark(
    spark: Any,
    groups: Sequence[tuple[Sequence[str], int | None]],
    out: str,
    *,
    fmt: str = "auto",
    ids: Sequence[str] = (),
    label_column: str = "label",
    window_scope: str = "stream",
    max_decompressed_mb: int = 1024,
) -> tuple[int, int]:
    """Featurize the files of each group (paths, label or None) into Parquet shards in ``out``;
    returns (rows, attack rows). Warnings are re-issued here (:class:`FeaturizeWarning`); the first
    file that cannot be read raises InputError, before anything is written."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    files = None
    given_args: list[str] = []
    for group, (paths, _label) in enumerate(groups):
        for given in paths:
            part = _read_files(spark, given).select(
                "path",
                "content",
                F.lit(group).alias("_group"),
                F.lit(len(given_args)).alias("_arg"),
                F.lit(given if not is_remote(given) and Path(given).is_file() else None).cast("string").alias("_given"),
            )
            files = part if files is None else files.unionByName(part)
            given_args.append(given)
    if files is None:
        raise InputError("give input files with --normal/--attack (labelled) or --input (unlabelled)")
    # One listing job for all inputs (binaryFile reads no content for it): a folder or glob with no file is named.
    found = {row["_arg"] for row in _collect(files.select("_arg").distinct())}
    for arg, given in enumerate(given_args):
        if arg not in found:
            raise InputError(f"{given}: holds no file")
    task = partial(
        featurize_batches,
        fmt=fmt,
        ids=tuple(ids),
        max_decompressed_mb=max_decompressed_mb,
        per_file=window_scope == "file",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # pyspark on a pandas release it has not been tested with
        parsed = files.mapInPandas(task, SCHEMA).persist(StorageLevel.MEMORY_AND_DISK)
    windowed = None
    try:
        notes = _collect(parsed.filter("record = 0").select("_arg", "_note", "_failed").orderBy("_arg"))
        for note in notes:
            if note["_failed"]:
                raise InputError(note["_note"])
        for note in notes:
            warnings.warn(note["_note"], FeaturizeWarning, stacklevel=2)
        rows = parsed.filter("record > 0")
        labels = [-1 if label is None else int(label) for _paths, label in groups]
        label = F.element_at(F.array(*[F.lit(v) for v in labels]), F.col("_group") + 1).cast("long")
        counts = _collect(rows.agg(F.count(F.lit(1)).alias("n"), F.sum((label == 1).cast("long")).alias("attack")))[0]
        if window_scope == "stream":
            # Kept: the sort below reads its input twice (a sample for its ranges, then the rows),
            # and the windows are the costly part.
            rows = windowed = stream_windows(rows).persist(StorageLevel.MEMORY_AND_DISK)
        columns = [F.col(c) for c in ids] + [F.col(c) for c in FEATURE_COLUMNS]
        if any(v >= 0 for v in labels):
            columns.append(label.alias(label_column))
        table = rows.orderBy("_arg", "source", "record").select(*columns)
        with folder_written_whole(out) as target:
            run_action(lambda: table.write.mode("errorifexists").parquet(target))
        return int(counts["n"]), int(counts["attack"] or 0)
    finally:
        if windowed is not None:
            windowed.unpersist()
        parsed.unpersist()


def _read_files(spark: Any, given: str) -> Any:
    """The files named by ``given`` (a file, a folder, read recursively, or a glob) as Spark's
    ``binaryFile`` rows (a path or glob that matches nothing is an InputError here)."""
    check_input("input", given)
    try:
        return spark.read.format("binaryFile").option("recursiveFileLookup", "true").load(spark_path(given))
    except Exception as exc:
        raise InputError(f"{given}: {spark_error(exc)}") from None


def run_action(action: Any) -> Any:
    """A Spark action whose failure is one line, not a Java stack trace."""
    try:
        return action()
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"Spark: {spark_error(exc)}") from None


def _collect(frame: Any) -> list[Any]:
    return run_action(frame.collect)


def featurize_batches(
    batches: Iterator[pd.DataFrame], *, fmt: str, ids: tuple[str, ...], max_decompressed_mb: int, per_file: bool
) -> Iterator[pd.DataFrame]:
    """The task: every file of each batch of ``binaryFile`` rows to its rows (see :data:`SCHEMA`)."""
    for batch in batches:
        frames = [
            featurize_one(path, content, group, arg, given, fmt, ids, max_decompressed_mb, per_file)
            for path, content, group, arg, given in zip(
                batch["path"], batch["content"], batch["_group"], batch["_arg"], batch["_given"], strict=True
            )
        ]
        if frames:
            yield plain_columns(pd.concat(frames, ignore_index=True))


def plain_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """Text columns as plain object arrays: pyspark's Arrow conversion does not take pandas 3's
    Arrow-backed string columns."""
    text = [c for c in frame.columns if not (pd.api.types.is_numeric_dtype(frame[c]) or frame[c].dtype == bool)]
    return frame.astype(dict.fromkeys(text, object)) if text else frame


def featurize_one(
    path: str,
    content: bytes,
    group: int,
    arg: int,
    given: str | None,
    fmt: str,
    ids: tuple[str, ...],
    max_decompressed_mb: int,
    per_file: bool,
) -> pd.DataFrame:
    """One file's rows: its requests' features (windows here only when ``per_file``), what the
    stream's windows need, and a note row per warning; only a note row when it cannot be read."""
    source = given if isinstance(given, str) else path
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            req = parse_text(decode_bytes(bytes(content), source, max_decompressed_mb), fmt, source)
    except InputError as exc:
        return _notes(group, arg, source, [str(exc)], failed=True)
    frame = extract_features(req, windows=per_file)
    n = len(frame)
    keys = pd.DataFrame(
        {
            "_group": np.full(n, group, dtype=np.int32),
            "_arg": np.full(n, arg, dtype=np.int32),
            "source": np.full(n, source, dtype=object),
            "record": np.arange(1, n + 1, dtype=np.int64),
            "_fmt": np.full(n, req.fmt, dtype=object),
            "request": request_ids(req, ["request"])["request"].to_numpy() if "request" in ids else np.full(n, ""),
        }
    )
    if has_windows(req) and not per_file:
        w = window_inputs(req)
        epoch = w["epoch"].to_numpy()
        inputs = pd.DataFrame(
            {
                "_client": w["client"].to_numpy(),
                "_t": epoch.astype(np.int64),  # whole seconds: logs record seconds, offsets minutes
                "_status": w["status"].to_numpy(),
                "_path": w["path"].to_numpy(),
                "_ua": w["user_agent"].to_numpy() if w["user_agent"] is not None else np.full(n, ""),
            }
        )
    else:
        inputs = pd.DataFrame(
            {
                "_client": np.full(n, ""),
                "_t": np.zeros(n, np.int64),
                "_status": np.zeros(n, np.int64),
                "_path": "",
                "_ua": "",
            }
        )
    rows = pd.concat([keys, frame, inputs], axis=1)
    rows["_note"] = None
    rows["_failed"] = False
    messages = [str(w.message) for w in caught if issubclass(w.category, FeaturizeWarning)]
    return (
        pd.concat([rows, _notes(group, arg, source, messages, failed=False)], ignore_index=True) if messages else rows
    )


def _notes(group: int, arg: int, source: str, messages: list[str], failed: bool) -> pd.DataFrame:
    """Rows that carry messages (record 0), every other column at a placeholder."""
    n = len(messages)
    columns: dict[str, Any] = {"_group": np.full(n, group, np.int32), "_arg": np.full(n, arg, np.int32)}
    columns.update(
        {"source": np.full(n, source, dtype=object), "record": np.zeros(n, np.int64), "_fmt": "", "request": ""}
    )
    for name in FEATURE_COLUMNS:
        kind = _feature_type(name)
        columns[name] = "" if kind == "string" else np.zeros(n, np.float64 if kind == "double" else np.int64)
    columns.update(
        {"_client": "", "_t": np.zeros(n, np.int64), "_status": np.zeros(n, np.int64), "_path": "", "_ua": ""}
    )
    columns.update({"_note": np.asarray(messages, dtype=object), "_failed": np.full(n, failed)})
    return pd.DataFrame(columns, index=range(n))


def stream_windows(rows: Any) -> Any:
    """The window columns of access-log rows, per stream (option and format) and client, over the
    trailing windows ``(t - w, t]`` with requests in the same second as one moment, equal to
    :func:`threat_ensemble.http.features.window_features` over the same rows."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    windowed = rows.filter(F.col("_fmt").isin(*WINDOWED_FORMATS))
    others = rows.filter(~F.col("_fmt").isin(*WINDOWED_FORMATS))
    client = Window.partitionBy("_group", "_fmt", "_client")
    by_time = client.orderBy("_t")

    def trailing(seconds: float) -> Any:  # whole seconds: (t - w, t] is [t - w + 1, t]
        return by_time.rangeBetween(-(int(seconds) - 1), 0)

    t = F.col("_t")
    out = windowed
    for name, seconds in WINDOWS.items():
        out = out.withColumn(f"req_count_{name}", F.count(F.lit(1)).over(trailing(seconds)))
    errors = F.sum((F.col("_status") >= 400).cast("long")).over(trailing(300))
    out = out.withColumn("error_rate_5m", errors / F.col("req_count_5m"))
    out = out.withColumn("distinct_paths_5m", F.size(F.collect_set("_path").over(trailing(300))).cast("long"))
    distinct_ua = F.size(F.collect_set("_ua").over(trailing(600))).cast("long")
    out = out.withColumn("distinct_ua_10m", F.when(F.col("_fmt") == "combined", distinct_ua).otherwise(F.lit(MISSING)))
    # Gaps between a client's consecutive moments: d = t - the latest earlier time (0 for the first).
    # The window (t0, t] holds m = count - 1 gaps; their squares are the squares of d at every
    # distinct time in it but the first, whose gap reaches back outside the window.
    earlier = F.max(t).over(by_time.rangeBetween(Window.unboundedPreceding, -1))
    out = out.withColumn("_d", (t - F.coalesce(earlier, t)).cast("double"))
    first_at_time = (
        F.row_number().over(Window.partitionBy("_group", "_fmt", "_client", "_t").orderBy("_arg", "record")) == 1
    )
    out = out.withColumn("_h", F.when(first_at_time, F.col("_d") * F.col("_d")).otherwise(F.lit(0.0)))
    ten = trailing(600)
    m = F.col("req_count_10m") - 1
    safe = F.greatest(m, F.lit(1))
    out = out.withColumn("_mean", (t - F.min(t).over(ten)).cast("double") / safe)
    out = out.withColumn("_d0", F.first("_d").over(ten))  # the same at every row of the first moment
    squares = F.sum("_h").over(ten) - F.col("_d0") * F.col("_d0")
    out = out.withColumn("_var", F.greatest(squares / safe - F.col("_mean") * F.col("_mean"), F.lit(0.0)))
    out = out.withColumn("iat_mean", F.when(m >= 1, F.col("_mean")).otherwise(F.lit(float(MISSING))))
    out = out.withColumn("iat_std", F.when(m >= 1, F.sqrt("_var")).otherwise(F.lit(float(MISSING))))
    return out.select(*rows.columns).unionByName(others)
