"""The tables a training run reads: ``--data``/``--test-data`` files, the built-in default data,
``--stream`` Parquet streams (scanned once before training), or arrays given to ``run()``."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np
import pandas as pd

from threat_ensemble.config import TrainConfig
from threat_ensemble.data.tables import (
    LabelledTable,
    check_same_columns,
    labelled_table_from_frame,
    load_labelled_table,
)
from threat_ensemble.errors import InputError

if TYPE_CHECKING:
    from threat_ensemble.data.stream import ParquetStream

Table: TypeAlias = "LabelledTable | ParquetStream"  # a table in memory, or a scanned Parquet stream (--stream)
Progress: TypeAlias = "Callable[[str], None] | None"


def table_options(cfg: TrainConfig) -> dict[str, Any]:
    """How every table of a run is read: its label column and normal label, the columns that are not
    features (``--drop-columns`` and ``--id-columns``), and ``--impute``."""
    return {
        "label_column": cfg.label_column,
        "normal_label": cfg.normal_label,
        "drop_columns": [*cfg.drop_columns, *cfg.id_columns],
        "impute": cfg.impute,
    }


def load_inputs(cfg: TrainConfig, progress: Progress = None) -> tuple[Table, Table | None]:
    """The training table (a file or the built-in default data) and the optional test table;
    ``progress`` takes the lines of a ``--stream`` scan."""
    options = {
        **table_options(cfg),
        "max_decompressed_mb": cfg.max_decompressed_mb,
    }
    if cfg.stream:
        return load_streams(cfg, progress)
    if cfg.data is None:
        from threat_ensemble.data.default_data import default_table

        table = default_table(cfg.default_rows, cfg.seed)
    else:
        table = load_labelled_table(cfg.data, no_header=cfg.no_header, **options)
    test = None
    if cfg.test_data is not None:
        test = load_labelled_table(cfg.test_data, no_header=cfg.no_header, **options)
        if test.n_attack == 0 or test.n_normal == 0:
            raise InputError(f"{test.source}: the test data needs both normal and attack rows")
        check_same_columns(table.features, test.features, test.source)  # before Lightning is imported
    return table, test


def load_streams(cfg: TrainConfig, progress: Progress = None) -> tuple[ParquetStream, ParquetStream | None]:
    """``--stream``: the training data (and --test-data) as Parquet streams, scanned once: every row
    group read and checked, the rows split and the bounded samples drawn, before any training."""
    from threat_ensemble.data.stream import ParquetStream

    assert cfg.data is not None
    options: dict[str, Any] = {
        **table_options(cfg),
        "seed": cfg.seed,
        "max_decompressed_mb": cfg.max_decompressed_mb,  # each row group is read whole: bounded alike
    }
    stream = ParquetStream(cfg.data, split_key=cfg.split_key, sample_rows=cfg.sample_rows, **options)
    stream.scan(progress=progress)
    stream.check_splits(with_test=cfg.test_data is None)  # at once, not after fitting on the samples
    test = None
    if cfg.test_data is not None:
        test = ParquetStream(cfg.test_data, test_only=True, **options)
        test.scan(progress=progress)
        if test.n_attack == 0 or test.n_normal == 0:
            raise InputError(f"{test.source}: the test data needs both normal and attack rows")
        columns = [pd.DataFrame(columns=s.feature_names) for s in (stream, test)]
        check_same_columns(*columns, test.source)
        differ = sorted(stream.numeric ^ test.numeric)
        if differ:
            kind = "numbers" if differ[0] in stream.numeric else "text"
            raise InputError(f"{test.source}: column {differ[0]!r} holds {kind} in the training data but not here")
    return stream, test


def describe_tables(table: Table, test: Table | None, normal_label: str) -> str:
    """The class counts the run uses: a wrong --normal-label shows here, before any training."""
    line = (
        f"data: {table.source}: {table.n_rows} rows, {table.n_normal} normal (label {normal_label!r}) "
        f"and {table.n_attack} attack, {table.n_features} feature columns"
    )
    if test is not None:
        line += f"; test data: {test.source}: {test.n_normal} normal and {test.n_attack} attack rows"
    return line


def table_from_memory(
    X: np.ndarray | pd.DataFrame,
    y: np.ndarray | pd.Series | None,
    feature_names: list[str] | None,
    cfg: TrainConfig,
    source: str,
) -> LabelledTable:
    if isinstance(X, pd.DataFrame):
        frame = X.copy()
    else:
        array = np.asarray(X)
        if array.ndim != 2:
            raise InputError(f"{source}: expected a 2-D array (rows x features), got shape {array.shape}")
        names = feature_names or [f"f{i}" for i in range(array.shape[1])]
        if len(names) != array.shape[1]:
            raise InputError(f"{source}: {len(names)} feature names for {array.shape[1]} columns")
        frame = pd.DataFrame(array, columns=names)
    label_column = cfg.label_column
    if y is not None:
        labels = np.asarray(y)
        if labels.ndim != 1 or len(labels) != len(frame):
            raise InputError(f"{source}: y must be 1-D with {len(frame)} entries, got shape {labels.shape}")
        label_column = "__label__"
        frame[label_column] = labels
    return labelled_table_from_frame(
        frame,
        source=source,
        **{**table_options(cfg), "label_column": label_column},
    )
