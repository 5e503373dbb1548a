"""A compact profile of the training features, kept in the bundle: what "normal" looks like for each
feature (the explanations' normal range) and how each feature was distributed (the drift report's
reference). Plain numbers, stored in preprocessing.json; computed with vectorised numpy."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from threat_ensemble.data.categories import MISSING, OTHER, category_text
from threat_ensemble.data.tables import unusable_cells

# A numeric feature's bins for the drift report: cut at these quantiles of the training rows (ties merged).
PROFILE_QUANTILES = tuple(q / 10 for q in range(1, 10))
NORMAL_RANGE = (1.0, 99.0)  # percentiles of the normal training rows shown beside an explained value
PSI_FLOOR = 1e-4  # a bin's share is floored here, so an empty bin gives a large but finite index
DRIFT_THRESHOLD = 0.2  # PSI above this: the feature's distribution has moved (the usual rule of thumb)
# What the request extractor (http.features) writes for a feature the input's format does not have
# (a request body in an access log, a response in a raw dump): a value, not a measurement.
MISSING_VALUE = -1.0
SHOWN_SHIFTED, SHOWN_COVERAGE, SHOWN_ABSENT = 8, 4, 6  # features the drift line names of each kind


@dataclass
class FeatureProfile:
    """``edges``/``shares``: each numeric column's bin edges and the training rows' share per bin;
    ``category_shares``: each text column's training share per kept category and ``__other__``;
    ``normal_range``: each numeric column's 1st and 99th percentile over the normal training rows;
    ``missing_share``: each numeric column's share of MISSING_VALUE among its usable training values
    (empty in bundles written before it existed)."""

    edges: dict[str, list[float]]
    shares: dict[str, list[float]]
    category_shares: dict[str, dict[str, float]]
    normal_range: dict[str, list[float]]
    n_rows: int
    missing_share: dict[str, float] = field(default_factory=dict)

    @classmethod
    def fit(
        cls, frame: pd.DataFrame, y: np.ndarray, numeric_columns: list[str], categories: dict[str, list[str]]
    ) -> FeatureProfile:
        """The profile of ``frame`` (``y``: 0 = normal) over the encoder's numeric columns and kept
        text categories (``FeatureEncoder.numeric_columns`` and ``.categories``)."""
        edges, shares, normal_range, missing_share = {}, {}, {}, {}
        normal = np.asarray(y) == 0
        for column in numeric_columns:
            values = frame[column].to_numpy(dtype=np.float64)
            usable = ~unusable_cells(values)
            kept = values[usable]
            cut = np.unique(np.quantile(kept, PROFILE_QUANTILES)) if kept.size else np.array([])
            edges[column] = cut.tolist()
            shares[column] = _bin_shares(kept, cut).tolist()
            missing_share[column] = float(np.mean(kept == MISSING_VALUE)) if kept.size else 0.0
            normals = values[usable & normal]
            low, high = np.percentile(normals, NORMAL_RANGE) if normals.size else (math.nan, math.nan)
            normal_range[column] = [float(low), float(high)]
        category_shares = {column: _category_shares(frame[column], cats) for column, cats in categories.items()}
        return cls(edges, shares, category_shares, normal_range, int(len(frame)), missing_share)

    def to_dict(self) -> dict[str, Any]:
        return {
            "edges": self.edges,
            "shares": self.shares,
            "category_shares": self.category_shares,
            "normal_range": self.normal_range,
            "n_rows": self.n_rows,
            "missing_share": self.missing_share,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureProfile:
        return cls(
            edges={str(k): [float(x) for x in v] for k, v in data["edges"].items()},
            shares={str(k): [float(x) for x in v] for k, v in data["shares"].items()},
            category_shares={
                str(k): {str(c): float(s) for c, s in v.items()} for k, v in data["category_shares"].items()
            },
            normal_range={str(k): [_number(x) for x in v] for k, v in data["normal_range"].items()},
            n_rows=int(data["n_rows"]),
            missing_share={str(k): float(v) for k, v in data.get("missing_share", {}).items()},
        )

    def drift(self, frame: pd.DataFrame, threshold: float = DRIFT_THRESHOLD) -> dict[str, Any]:
        """The population stability index of each feature of ``frame`` against the training rows:
        ``sum((a - e) * ln(a / e))`` over the training bins (numbers) or categories (text), shares
        floored at PSI_FLOOR. Features above ``threshold`` are listed in ``drifted``, worst first,
        and each of them is one of three ``status``:

        - ``absent``: no value here but MISSING_VALUE (or no usable cell; a text column only
          ``__missing__``) where training had values: a feature this kind of input cannot have;
        - ``coverage``: its values are distributed as in training (``values_psi``, the index over
          the cells that are not MISSING_VALUE, is at most ``threshold``) and only the share of
          MISSING_VALUE moved (``missing_share`` here, ``training_missing_share``);
        - ``shifted``: its values moved (text columns, and bundles without ``missing_share``,
          have no other status).

        ``shifted``, ``coverage`` and ``absent`` list them by status, each worst first."""
        features: dict[str, dict[str, Any]] = {}
        for column in self.edges:
            features[column] = self._numeric_drift(column, frame[column].to_numpy(dtype=np.float64), threshold)
        for column, expected in self.category_shares.items():
            text = category_text(frame[column])
            actual = _category_shares(text, [c for c in expected if c != OTHER])
            names = list(expected)
            psi = _psi(np.array([actual[c] for c in names]), np.array([expected[c] for c in names]))
            absent = psi > threshold and bool((text == MISSING).all()) and expected.get(MISSING, 0.0) < 1.0
            features[column] = {"kind": "text", "psi": psi, "status": _status(psi, threshold, absent)}
        drifted = sorted((c for c, f in features.items() if f["psi"] > threshold), key=lambda c: -features[c]["psi"])
        by_status = {s: [c for c in drifted if features[c]["status"] == s] for s in ("shifted", "coverage", "absent")}
        return {
            "measure": "population stability index (PSI)",
            "threshold": threshold,
            "n_rows": int(len(frame)),
            "n_training_rows": self.n_rows,
            "drifted": drifted,
            **by_status,
            "features": features,
        }

    def _numeric_drift(self, column: str, values: np.ndarray, threshold: float) -> dict[str, Any]:
        cut, expected = np.asarray(self.edges[column]), np.asarray(self.shares[column])
        usable = values[~unusable_cells(values)]
        psi = _psi(_bin_shares(usable, cut), expected)
        present = usable[usable != MISSING_VALUE]
        found: dict[str, Any] = {"kind": "numeric", "psi": psi}
        trained_missing = self.missing_share.get(column)
        if trained_missing is None:  # a bundle from before missing_share: training had values if a cut is not -1
            absent = present.size == 0 and bool((cut != MISSING_VALUE).any())
            found["status"] = _status(psi, threshold, absent)
            return found
        found["missing_share"] = float(1.0 - present.size / usable.size) if usable.size else 1.0
        found["training_missing_share"] = trained_missing
        if present.size and trained_missing < 1.0:
            without = expected.copy()  # the training shares of the cells that are not MISSING_VALUE
            without[np.searchsorted(cut, MISSING_VALUE, side="left")] -= trained_missing
            without = np.maximum(without, 0.0) / max(1e-12, 1.0 - trained_missing)
            found["values_psi"] = _psi(_bin_shares(present, cut), without)
        absent = present.size == 0 and trained_missing < 1.0
        coverage = found.get("values_psi", math.inf) <= threshold
        found["status"] = _status(psi, threshold, absent, coverage)
        return found


def _status(psi: float, threshold: float, absent: bool, coverage: bool = False) -> str:
    if psi <= threshold:
        return "stable"
    return "absent" if absent else "coverage" if coverage else "shifted"


def drift_line(drift: dict[str, Any]) -> str:
    """The drift report in one line: how many features drifted; then the shifted ones, worst
    first with their index (the ones to look at); then those absent from this kind of input; then
    those whose values did not shift, only the share of rows without them (-1). A few of each by
    name. A report without statuses (read from an older file) lists every drifted feature as
    shifted."""
    features, threshold = drift["features"], drift["threshold"]
    n, drifted = len(features), drift["drifted"]
    if not drifted:
        return f"drift: none of {n} features has a PSI over {threshold:g}"
    shifted, absent, coverage = drift.get("shifted", drifted), drift.get("absent", []), drift.get("coverage", [])
    shown = [f"{c} {features[c]['psi']:.2f}" for c in shifted[:SHOWN_SHIFTED]]
    parts = [f"{len(shifted)} shifted ({_more(shown, len(shifted))})" if shifted else "none shifted in value"]
    if absent:
        parts.append(
            f"{len(absent)} absent from this kind of input (only -1 or empty here, values in training): "
            + _more(absent[:SHOWN_ABSENT], len(absent))
        )
    if coverage:
        shown = [
            f"{c} {features[c]['missing_share']:.0%} vs {features[c]['training_missing_share']:.0%}"
            for c in coverage[:SHOWN_COVERAGE]
        ]
        parts.append(
            f"{len(coverage)} unshifted but missing (-1) on another share of rows (here vs training): "
            + _more(shown, len(coverage))
        )
    return f"drift: {len(drifted)} of {n} features have a PSI over {threshold:g}: " + "; ".join(parts)


def _more(shown: list[str], total: int) -> str:
    return ", ".join(shown) + (f", and {total - len(shown)} more" if total > len(shown) else "")


def _number(value: Any) -> float:
    """A stored number; JSON's null (how a NaN is written) back to NaN."""
    return math.nan if value is None else float(value)


def _bin_shares(values: np.ndarray, cut: np.ndarray) -> np.ndarray:
    """Share of ``values`` in each bin ``(-inf, c0], (c0, c1], ..., (c_last, inf)``."""
    counts = np.bincount(np.searchsorted(cut, values, side="left"), minlength=len(cut) + 1).astype(np.float64)
    return counts / max(1, len(values))


def _category_shares(series: pd.Series, categories: list[str]) -> dict[str, float]:
    text = category_text(series)
    counts = text.value_counts()
    n = max(1, len(text))
    shares = {c: float(counts.get(c, 0)) / n for c in categories}
    shares[OTHER] = max(0.0, 1.0 - sum(shares.values()))
    return shares


def _psi(actual: np.ndarray, expected: np.ndarray) -> float:
    a = np.maximum(actual, PSI_FLOOR)
    e = np.maximum(expected, PSI_FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))
