"""Rows a trained ensemble is asked to score: the table's feature columns (read and converted as in
training) and its labels if it has any, encoded with the bundle's own preprocessing. Shared by
``scripts/score.py`` and the MLflow model; light (no torch), so bad input is refused at once."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from threat_ensemble.data.preprocessing import Preprocessing
from threat_ensemble.errors import InputError, counted, listed
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


def encode_frame(
    preprocessing: Preprocessing, frame: pd.DataFrame, source: str, impute: bool
) -> tuple[pd.DataFrame, np.ndarray]:
    """``frame``'s checked feature columns and their encoding, as score.py encodes a table: only the
    bundle's feature columns (a missing one is refused, others are left out without a word), text
    that is really numbers converted, non-finite numbers refused unless ``impute``."""
    from threat_ensemble.data.tables import infer_numeric

    frame = frame.rename(columns=str)
    own = [c for c in map(str, preprocessing.encoder.feature_names) if c in frame.columns]
    features = infer_numeric(frame[own].reset_index(drop=True), source)
    checked = checked_features(preprocessing, features, source, impute)
    return checked, preprocessing.encode(checked, source)


def checked_features(preprocessing: Preprocessing, features: pd.DataFrame, source: str, impute: bool) -> pd.DataFrame:
    """The bundle's feature columns of ``features``, in training order: missing columns are an
    error naming them, extra columns are ignored with a warning, non-finite numbers are refused
    unless ``impute``."""
    from threat_ensemble.data.tables import count_non_finite, non_finite_message, refuse_binary

    expected = list(preprocessing.encoder.feature_names)
    missing = [c for c in expected if c not in features.columns]
    if missing:
        raise InputError(f"{source}: missing feature columns {missing} (the bundle was trained on {len(expected)})")
    extra = [c for c in features.columns if c not in expected]
    if extra:
        warnings.warn(
            f"{source}: ignoring {counted(len(extra), 'column')} the bundle was not trained on: {listed(extra)}",
            stacklevel=2,
        )
    features = features[expected]
    refuse_binary(features, source, " as in training")
    numeric = list(preprocessing.encoder.numeric_columns)
    not_numeric = [c for c in numeric if not pd.api.types.is_numeric_dtype(features[c])]
    if not_numeric:
        raise InputError(f"{source}: column {not_numeric[0]!r} holds text; it was numeric in training")
    if impute:
        n_bad = count_non_finite(features[numeric])
        if n_bad:
            warnings.warn(
                f"{source}: --impute: filled {n_bad} missing, infinite or out-of-range numeric cells with "
                "training medians",
                stacklevel=2,
            )
    else:
        problem = non_finite_message(features[numeric], source)
        if problem:
            raise InputError(problem.replace("training medians", "the bundle's training medians"))
    return features
