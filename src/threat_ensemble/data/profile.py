"""A compact profile of the training features, kept in the bundle: what "normal" looks like for each
feature (the explanations' normal range) and how each feature was distributed (the drift report's
reference). Plain numbers, stored in preprocessing.json; computed with vectorised numpy."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from threat_ensemble.data.categories import OTHER, category_text
from threat_ensemble.data.tables import unusable_cells

# A numeric feature's bins for the drift report: cut at these quantiles of the training rows (ties merged).
PROFILE_QUANTILES = tuple(q / 10 for q in range(1, 10))
NORMAL_RANGE = (1.0, 99.0)  # percentiles of the normal training rows shown beside an explained value
PSI_FLOOR = 1e-4  # a bin's share is floored here, so an empty bin gives a large but finite index
DRIFT_THRESHOLD = 0.2  # PSI above this: the feature's distribution has moved (the usual rule of thumb)


@dataclass
class FeatureProfile:
    """``edges``/``shares``: each numeric column's bin edges and the training rows' share per bin;
    ``category_shares``: each text column's training share per kept category and ``__other__``;
    ``normal_range``: each numeric column's 1st and 99th percentile over the normal training rows."""

    edges: dict[str, list[float]]
    shares: dict[str, list[float]]
    category_shares: dict[str, dict[str, float]]
    normal_range: dict[str, list[float]]
    n_rows: int

    @classmethod
    def fit(
        cls, frame: pd.DataFrame, y: np.ndarray, numeric_columns: list[str], categories: dict[str, list[str]]
    ) -> FeatureProfile:
        """The profile of ``frame`` (``y``: 0 = normal) over the encoder's numeric columns and kept
        text categories (``FeatureEncoder.numeric_columns`` and ``.categories``)."""
        edges, shares, normal_range = {}, {}, {}
        normal = np.asarray(y) == 0
        for column in numeric_columns:
            values = frame[column].to_numpy(dtype=np.float64)
            usable = ~unusable_cells(values)
            kept = values[usable]
            cut = np.unique(np.quantile(kept, PROFILE_QUANTILES)) if kept.size else np.array([])
            edges[column] = cut.tolist()
            shares[column] = _bin_shares(kept, cut).tolist()
            normals = values[usable & normal]
            low, high = np.percentile(normals, NORMAL_RANGE) if normals.size else (math.nan, math.nan)
            normal_range[column] = [float(low), float(high)]
        category_shares = {column: _category_shares(frame[column], cats) for column, cats in categories.items()}
        return cls(edges, shares, category_shares, normal_range, int(len(frame)))

    def to_dict(self) -> dict[str, Any]:
        return {
            "edges": self.edges,
            "shares": self.shares,
            "category_shares": self.category_shares,
            "normal_range": self.normal_range,
            "n_rows": self.n_rows,
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
        )

    def drift(self, frame: pd.DataFrame, threshold: float = DRIFT_THRESHOLD) -> dict[str, Any]:
        """The population stability index of each feature of ``frame`` against the training rows:
        ``sum((a - e) * ln(a / e))`` over the training bins (numbers) or categories (text), shares
        floored at PSI_FLOOR. Features above ``threshold`` are listed in ``drifted``, worst first."""
        features: dict[str, dict[str, Any]] = {}
        for column, cut in self.edges.items():
            values = frame[column].to_numpy(dtype=np.float64)
            actual = _bin_shares(values[~unusable_cells(values)], np.asarray(cut))
            features[column] = {"kind": "numeric", "psi": _psi(actual, np.asarray(self.shares[column]))}
        for column, expected in self.category_shares.items():
            actual = _category_shares(frame[column], [c for c in expected if c != OTHER])
            names = list(expected)
            features[column] = {
                "kind": "text",
                "psi": _psi(np.array([actual[c] for c in names]), np.array([expected[c] for c in names])),
            }
        drifted = sorted((c for c, f in features.items() if f["psi"] > threshold), key=lambda c: -features[c]["psi"])
        return {
            "measure": "population stability index (PSI)",
            "threshold": threshold,
            "n_rows": int(len(frame)),
            "n_training_rows": self.n_rows,
            "drifted": drifted,
            "features": features,
        }


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
