"""Why a row was flagged: which member fired, and the features that drive the autoencoder's score,
each with its value, its normal range (the 1st-99th percentile of normal training rows) and a
reason in words.

A feature's weight is its squared reconstruction error in units of its typical error on held-out
normal rows (the bundle's ``error_scale``, the unit of the anomaly score itself), so "40" reads as
"forty times the error this feature usually has".

A feature that never varies on normal rows (a flag that is always 0, a category normal rows never
take) has no typical error: its scale is the floor (``models.autoencoder.ERROR_SCALE_FLOOR``,
1e-6), so any change in it weighs hundreds of thousands, the same for every such change. Those changes come first, named
as what they are ("1 where normal rows are always 0"), ordered by how far the value is from the
normal one (in the scaler's units: log-compressed, so 0 -> 40 before 0 -> 1), then by weight; the
other features follow by weight. Only the explanation is ordered so: the scores are unchanged."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from threat_ensemble.data.categories import OTHER
from threat_ensemble.errors import quote
from threat_ensemble.models.fusion import CUTOFF, MEMBERS

MAX_EXPLAINED = 20  # --explain K takes at most this many features per row
NEVER_SEEN_DEVIATION = 1e-3  # a floored feature this far (scaler units) from its normal value has changed


def explanation_columns(
    ensemble: Any, features: pd.DataFrame, x_encoded: np.ndarray, scores: dict[str, np.ndarray], k: int, every_row: bool
) -> pd.DataFrame:
    """Columns to append to the scores, one row per scored row: ``fired`` (the members whose own
    score is at least 0.5) and, for rows flagged as attacks (every row with ``every_row``),
    ``explain_<i>_feature``, ``_value``, ``_error``, ``_normal_low``, ``_normal_high``, ``_reason``
    for the ``k`` features that explain the row best, first first (module docstring). Rows not
    explained have empty cells."""
    n = len(features)
    combos = np.array(  # every subset of the members, by its bit pattern
        [",".join(m for j, m in enumerate(MEMBERS) if code >> j & 1) for code in range(1 << len(MEMBERS))], dtype=object
    )
    code = sum((np.asarray(scores[m]) >= CUTOFF).astype(np.int64) << j for j, m in enumerate(MEMBERS))
    out = pd.DataFrame({"fired": combos[np.asarray(code, dtype=np.int64)]}, index=range(n))
    rows = np.arange(n) if every_row else np.flatnonzero(np.asarray(scores["verdict"]) == 1)
    x_rows = np.asarray(x_encoded[rows], dtype=np.float64)
    top, ratio, never = ranked_features(ensemble, x_rows, k)
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
    describe = _Describer(ensemble, encoder, ranges)
    at = np.arange(len(rows))
    for i in range(top.shape[1]):
        column_index = raw_of[top[:, i]]
        values = {
            "feature": encoded_names[top[:, i]],
            "value": raw[at, column_index],
            "error": ratio[at, top[:, i]],
            "normal_low": ranges[column_index, 0],
            "normal_high": ranges[column_index, 1],
            "reason": describe(top[:, i], x_rows[at, top[:, i]], raw[at, column_index], never[at, top[:, i]]),
        }
        for key, column_values in values.items():
            full = np.full(n, np.nan, dtype=np.float64 if key in ("error", "normal_low", "normal_high") else object)
            full[rows] = column_values
            out[f"explain_{i + 1}_{key}"] = full
    return out


def ranked_features(ensemble: Any, x_rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each row of ``x_rows`` (encoded), the ``k`` features that explain it, first first: those
    that never vary on normal rows and changed here, by their distance from the normal value, then
    by weight; then the others by weight. Returns (those indices, every feature's weight, which
    features changed where normal rows never vary), the last two of shape rows x features."""
    from threat_ensemble.models.autoencoder import ERROR_SCALE_FLOOR  # torch: only once a bundle is loaded

    n_features = len(ensemble.preprocessing.encoder.encoded_names)
    k = max(1, min(int(k), n_features))
    if len(x_rows) == 0:
        return np.zeros((0, k), np.int64), np.zeros((0, n_features)), np.zeros((0, n_features), bool)
    order, weights = ensemble.feature_errors(x_rows, n_features)  # every feature, by weight
    ratio = np.empty_like(weights, dtype=np.float64)
    np.put_along_axis(ratio, order, weights, axis=1)
    deviation = np.abs(ensemble.preprocessing.scaler.transform(x_rows).astype(np.float64))
    scale = getattr(ensemble, "error_scale", None)
    floored = (
        np.zeros(n_features, bool) if scale is None else np.asarray(scale, np.float64) <= ERROR_SCALE_FLOOR * (1 + 1e-9)
    )
    never = floored[None, :] & (deviation > NEVER_SEEN_DEVIATION)
    # stable sorts, least significant key first: weight, then distance (changed floored ones), then group
    order = np.argsort(-ratio, axis=1, kind="stable")
    for key in (np.where(never, -deviation, 0.0), -never.astype(np.int8)):
        order = np.take_along_axis(order, np.argsort(np.take_along_axis(key, order, axis=1), axis=1, kind="stable"), 1)
    return order[:, :k], ratio, never


class _Describer:
    """The reason column: a feature's value as a person reads it, against what normal rows have."""

    def __init__(self, ensemble: Any, encoder: Any, ranges: np.ndarray) -> None:
        scaler = ensemble.preprocessing.scaler
        center = np.asarray(scaler.center, np.float64)
        self.normal = np.sign(center) * np.expm1(np.abs(center)) if scaler.log_compress else center
        profile = ensemble.preprocessing.profile
        shares = profile.category_shares if profile is not None else {}
        position = {c: i for i, c in enumerate(encoder.feature_names)}
        self.kind: list[tuple[Any, ...]] = [("number", position[c], c) for c in encoder.numeric_columns]
        for column, cats in encoder.categories.items():
            for category in [*cats, OTHER]:
                self.kind.append(("category", position[column], column, category, shares.get(column, {}).get(category)))
        self.ranges = ranges
        self.cache: dict[tuple[Any, ...], str] = {}

    def __call__(self, features: np.ndarray, x: np.ndarray, raw: np.ndarray, never: np.ndarray) -> np.ndarray:
        out = np.empty(len(features), dtype=object)
        cache = self.cache
        for i, (j, v, r, s) in enumerate(zip(features.tolist(), x.tolist(), raw, never.tolist(), strict=True)):
            key = (j, v, s, None if self.kind[j][0] == "number" else _text(r))  # rows repeat: worded once
            text = cache.get(key)
            if text is None:
                text = cache[key] = self.one(j, v, r, s)
            out[i] = text
        return out

    def one(self, j: int, value: float, raw: Any, never: bool) -> str:
        kind = self.kind[j]
        if kind[0] == "number":
            shown = _number(value)
            if never:
                return f"{shown} where normal rows are always {_number(self.normal[j])}"
            low, high = self.ranges[kind[1]]
            if math.isnan(low) or math.isnan(high):
                return shown
            where = "above" if value > high else "below" if value < low else "within"
            return f"{shown}, {where} the normal {_number(low)} to {_number(high)}"
        _, _, column, category, share = kind
        text = quote(_text(raw), 60)
        set_here = value >= 0.5
        if category == OTHER:
            if never and set_here:
                return f"{text} where normal rows are always one of the training's categories"
            if never:
                return f"{text} where normal rows are never one of the training's categories"
            return f"{text}, not one of the training's categories" if set_here else f"{text}, a training category"
        if never:
            return f"{text} where normal rows are {'never' if set_here else 'always'} {quote(category, 60)}"
        if not set_here:
            return f"{text}, not {quote(category, 60)}"
        if share is None:
            return text
        return f"{text}, on {'under 0.1%' if share < 0.001 else f'{share:.1%}'} of training rows"


def _number(value: float) -> str:
    value = float(value)
    if math.isfinite(value) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.6g}"


def _text(raw: Any) -> str:
    if raw is None or (isinstance(raw, float) and math.isnan(raw)):
        return "(missing)"
    return str(raw).strip()


def _raw_column_index(encoder: Any) -> np.ndarray:
    """For each encoded column, the index of the table column it comes from."""
    position = {c: i for i, c in enumerate(encoder.feature_names)}
    index = [position[c] for c in encoder.numeric_columns]
    for column, cats in encoder.categories.items():
        index.extend([position[column]] * (len(cats) + 1))
    return np.asarray(index, dtype=np.int64)
