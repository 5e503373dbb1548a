"""Why a row was flagged: which member fired, and the features that drive the autoencoder's score,
each with its value and its normal range (the 1st-99th percentile of normal training rows).

A feature's weight is its squared reconstruction error in units of its typical error on held-out
normal rows (the bundle's ``error_scale``, the unit of the anomaly score itself), so "40" reads as
"forty times the error this feature usually has"."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from threat_ensemble.models.fusion import CUTOFF, MEMBERS

MAX_EXPLAINED = 20  # --explain K takes at most this many features per row


def explanation_columns(
    ensemble: Any, features: pd.DataFrame, x_encoded: np.ndarray, scores: dict[str, np.ndarray], k: int, every_row: bool
) -> pd.DataFrame:
    """Columns to append to the scores, one row per scored row: ``fired`` (the members whose own
    score is at least 0.5) and, for rows flagged as attacks (every row with ``every_row``),
    ``explain_<i>_feature``, ``_value``, ``_error``, ``_normal_low``, ``_normal_high`` for the ``k``
    features with the largest error, largest first. Rows not explained have empty cells."""
    n = len(features)
    combos = np.array(  # every subset of the members, by its bit pattern
        [",".join(m for j, m in enumerate(MEMBERS) if code >> j & 1) for code in range(1 << len(MEMBERS))], dtype=object
    )
    code = sum((np.asarray(scores[m]) >= CUTOFF).astype(np.int64) << j for j, m in enumerate(MEMBERS))
    out = pd.DataFrame({"fired": combos[np.asarray(code, dtype=np.int64)]}, index=range(n))
    rows = np.arange(n) if every_row else np.flatnonzero(np.asarray(scores["verdict"]) == 1)
    top, ratio = ensemble.feature_errors(x_encoded[rows], k)
    encoder = ensemble.preprocessing.encoder
    encoded_names = np.array(encoder.encoded_names, dtype=object)
    raw_of = _raw_column_index(encoder)
    raw = features.iloc[rows][encoder.feature_names].to_numpy(dtype=object)
    profile = ensemble.preprocessing.profile
    ranges = np.full((len(encoder.feature_names), 2), np.nan)
    if profile is not None:
        for i, column in enumerate(encoder.feature_names):
            if column in profile.normal_range:
                ranges[i] = profile.normal_range[column]
    for i in range(top.shape[1]):
        column_index = raw_of[top[:, i]]
        values = {
            "feature": encoded_names[top[:, i]],
            "value": raw[np.arange(len(rows)), column_index],
            "error": ratio[:, i],
            "normal_low": ranges[column_index, 0],
            "normal_high": ranges[column_index, 1],
        }
        for key, column_values in values.items():
            full = np.full(n, np.nan, dtype=object if key in ("feature", "value") else np.float64)
            full[rows] = column_values
            out[f"explain_{i + 1}_{key}"] = full
    return out


def _raw_column_index(encoder: Any) -> np.ndarray:
    """For each encoded column, the index of the table column it comes from."""
    position = {c: i for i, c in enumerate(encoder.feature_names)}
    index = [position[c] for c in encoder.numeric_columns]
    for column, cats in encoder.categories.items():
        index.extend([position[column]] * (len(cats) + 1))
    return np.asarray(index, dtype=np.int64)
