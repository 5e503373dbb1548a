"""A table a trained ensemble is asked to score, read: its feature columns (converted as in training)
and its labels if it has any, read as the bundle's training table was. Light (no torch), so bad
input is refused at once; the ensemble checks the rows against its own contract
(``models.rows.check_rows``)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from threat_ensemble.errors import InputError
from threat_ensemble.limits import DEFAULT_MAX_DECOMPRESSED_MB

DEFAULT_LABEL = "label"  # taken as the labels when present and not a feature of the bundle


def read_features(
    data: str | Path,
    label_column: str | None,
    no_header: bool,
    drop_columns: list[str] | tuple[str, ...],
    bundle_features: list[str] | tuple[str, ...] = (),
    max_decompressed_mb: int = DEFAULT_MAX_DECOMPRESSED_MB,
    trained_label: str | None = None,
    trained_drops: list[str] | tuple[str, ...] = (),
) -> tuple[pd.Series | None, pd.DataFrame, str]:
    """The table's feature columns (numeric text converted as in training) and its labels, if any:
    ``label_column`` when given (it must exist), else the bundle's own label column
    (``trained_label``) or a column named ``label``, when present and not a feature of the bundle.
    ``drop_columns`` must each be a column; ``trained_drops`` (the bundle's own ``--drop-columns``)
    are dropped where the table has them and they are not one of the bundle's features."""
    from threat_ensemble.data.tables import infer_numeric, read_raw_table, resolve_drop_column, resolve_label_column

    source = str(data)
    frame = read_raw_table(data, no_header=no_header, max_decompressed_mb=max_decompressed_mb)
    label = None
    if label_column is not None:  # named explicitly: must exist, and not be a feature
        label = resolve_label_column(frame, str(label_column), source)
        features = [str(c) for c in bundle_features]
        if str(label) in features:
            trained = f"; the bundle's label column is {trained_label!r}" if trained_label is not None else ""
            raise InputError(
                f"{source}: --label-column {label_column}: column {str(label)!r} is one of the bundle's "
                f"{len(features)} feature columns, not its label{trained}"
            )
    else:
        candidates = [c for c in (trained_label, DEFAULT_LABEL) if c is not None]
        label = next((c for c in candidates if c in frame.columns and c not in bundle_features), None)
    dropped = []
    for name in drop_columns:
        resolved = resolve_drop_column(frame, str(name), source)
        if resolved != label:
            dropped.append(resolved)
    for name in trained_drops:
        try:
            resolved = resolve_drop_column(frame, str(name), source)
        except InputError:
            continue  # not in this table: nothing to drop
        if resolved != label and resolved not in dropped and resolved not in map(str, bundle_features):
            dropped.append(resolved)
    labels = frame[label].reset_index(drop=True) if label is not None else None
    features = frame.drop(columns=[c for c in [label, *dropped] if c is not None]).reset_index(drop=True)
    return labels, infer_numeric(features, source), source

