"""The ensemble's input contract: which raw rows it takes. ``check_rows`` is the one check every
scoring path runs (score.py, the MLflow model, training's validation and test rows, the champion
comparison): the bundle's feature columns in training order, text that is really numbers converted,
numeric columns numeric, no binary cells, finite numbers unless imputing. Light (no torch), so
score.py refuses bad input before it loads a model."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import pandas as pd

from threat_ensemble.data.preprocessing import Preprocessing
from threat_ensemble.errors import InputError, counted, listed


@dataclass(frozen=True)
class CheckedRows:
    """Rows that passed :func:`check_rows`: ``frame`` holds exactly the bundle's feature columns, in
    training order. ``ThreatEnsemble.score`` takes them as they are (a raw frame is checked first)."""

    frame: pd.DataFrame
    source: str
    impute: bool = False

    def __len__(self) -> int:
        return len(self.frame)


def check_rows(
    preprocessing: Preprocessing,
    frame: pd.DataFrame,
    source: str,
    impute: bool = False,
    *,
    warn: bool = True,
    ignore_extra: bool = False,
) -> CheckedRows:
    """``frame``'s feature columns checked against ``preprocessing``: a missing column is an error
    naming it; extra columns are left out (with a warning unless ``ignore_extra``); text that is
    really numbers is converted; a column numeric in training must be numeric; non-finite numbers are
    refused unless ``impute`` (then counted in a warning: they are filled with training medians).
    ``warn=False``: no warnings (rows checked and warned about once already, or read from a table
    that training validated)."""
    from threat_ensemble.data.tables import check_non_finite, infer_numeric, refuse_binary

    frame = frame.rename(columns=str)
    expected = [str(c) for c in preprocessing.encoder.feature_names]
    missing = [c for c in expected if c not in frame.columns]
    if missing:
        raise InputError(f"{source}: missing feature columns {missing} (the bundle was trained on {len(expected)})")
    extra = [c for c in frame.columns if c not in expected]
    if extra and warn and not ignore_extra:
        warnings.warn(
            f"{source}: ignoring {counted(len(extra), 'column')} the bundle was not trained on: {listed(extra)}",
            stacklevel=2,
        )
    features = frame[expected].reset_index(drop=True)
    refuse_binary(features, source, " as in training")
    features = infer_numeric(features, source)
    numeric = list(preprocessing.encoder.numeric_columns)
    not_numeric = [c for c in numeric if not pd.api.types.is_numeric_dtype(features[c])]
    if not_numeric:
        raise InputError(f"{source}: column {not_numeric[0]!r} holds text; it was numeric in training")
    medians = "the bundle's training medians"
    check_non_finite(features[numeric], source, impute, warn=warn, medians=medians, stacklevel=3)
    return CheckedRows(features, source, impute)
