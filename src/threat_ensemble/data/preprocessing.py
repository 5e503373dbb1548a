"""Feature encoding and robust scaling, fitted on training rows only and stored as plain JSON."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from threat_ensemble.data.categories import OTHER, category_text
from threat_ensemble.data.profile import FeatureProfile
from threat_ensemble.data.tables import DataWarning, unusable_cells
from threat_ensemble.errors import InputError, counted, first_line, listed, quote

MAX_CATEGORIES = 64
# A text value longer than this is never kept as a category (it is encoded as __other__): thirty
# columns of 64 long values made a 75 MB preprocessing.json, over the loader's own bound.
MAX_CATEGORY_CHARS = 256


class CategoryCutWarning(DataWarning):
    """Text values longer than MAX_CATEGORY_CHARS, not kept as categories: the line names the
    columns and how many values of each."""


@dataclass
class FeatureEncoder:
    """Numeric columns pass through (missing values filled with training medians when allowed);
    text columns become one-hot columns of their most frequent training categories plus one
    ``__other__`` column that catches rare and never-seen values."""

    feature_names: list[str]
    numeric_columns: list[str]
    categories: dict[str, list[str]]
    medians: dict[str, float] = field(default_factory=dict)

    @classmethod
    def fit(cls, frame: pd.DataFrame, max_categories: int = MAX_CATEGORIES) -> FeatureEncoder:
        numeric = [c for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c])]
        categorical = [c for c in frame.columns if c not in numeric]
        categories, cut = {}, {}
        for column in categorical:
            counts = category_text(frame[column]).value_counts(sort=True)
            short = counts.index.str.len() <= MAX_CATEGORY_CHARS
            if not short.all():
                cut[str(column)] = int((~short).sum())
            kept = sorted(counts.index[short][:max_categories].tolist(), key=str)
            categories[column] = [str(v) for v in kept]
        if cut:
            columns = sorted(cut, key=lambda c: (-cut[c], c))
            shown = ", ".join(f"{quote(c, 60)} ({cut[c]:,})" for c in columns[:MAX_UNSEEN_COLUMNS])
            hidden = len(columns) - MAX_UNSEEN_COLUMNS
            more = f", and {counted(hidden, 'more column')}" if hidden > 0 else ""
            warnings.warn(
                CategoryCutWarning(
                    f"distinct text values longer than {MAX_CATEGORY_CHARS} characters are not kept as categories "
                    f"(encoded as {OTHER}): {shown}{more}"
                ),
                stacklevel=2,
            )
        medians = {}
        for column in numeric:
            values = frame[column].to_numpy(dtype=np.float64)
            finite = values[~unusable_cells(values)]
            medians[column] = float(np.median(finite)) if finite.size else 0.0
        return cls(list(map(str, frame.columns)), numeric, categories, medians)

    @property
    def encoded_names(self) -> list[str]:
        names = list(self.numeric_columns)
        for column, cats in self.categories.items():
            names.extend(f"{column}={c}" for c in cats)
            names.append(f"{column}={OTHER}")
        return names

    def _require_columns(self, frame: pd.DataFrame, source: str) -> None:
        missing = [c for c in self.feature_names if c not in frame.columns]
        if missing:
            raise InputError(f"{source}: missing feature columns {missing}")

    def check(self, frame: pd.DataFrame, source: str = "data") -> None:
        """Refuse ``frame`` where :meth:`transform` would (a feature column missing, text in a column
        that was numeric in training), without encoding it: only columns that are not of a numeric
        dtype are converted."""
        self._require_columns(frame, source)
        for column in self.numeric_columns:
            if not pd.api.types.is_numeric_dtype(frame[column]):
                try:
                    frame[column].to_numpy(dtype=np.float64)
                except (TypeError, ValueError):
                    raise InputError(f"{source}: column {quote(column)} must be numeric, as in training") from None

    def transform(self, frame: pd.DataFrame, source: str = "data") -> tuple[np.ndarray, UnseenCategories]:
        """Encode ``frame`` into a float32 matrix; also return its text values that are not training
        categories (:class:`UnseenCategories`)."""
        self._require_columns(frame, source)
        blocks = []
        if self.numeric_columns:
            numeric = frame[self.numeric_columns]
            try:
                values = numeric.to_numpy(dtype=np.float64)
            except (TypeError, ValueError):
                values = None
            if values is None:
                self.check(frame, source)  # refuses, naming the first column with text in it
                raise InputError(f"{source}: the columns that were numeric in training cannot be read as numbers")
            bad = unusable_cells(values)  # NaN, ±inf, or a value float32 would turn into inf
            if bad.any():
                fill = np.array([self.medians.get(c, 0.0) for c in self.numeric_columns])
                values = np.where(bad, fill[None, :], values)
            blocks.append(values.astype(np.float32))
        unseen = UnseenCategories()
        for column, cats in self.categories.items():
            text = category_text(frame[column]).to_numpy()
            codes = pd.Index(cats, dtype=object).get_indexer(text)  # -1 = not a kept category
            onehot = np.zeros((len(frame), len(cats) + 1), dtype=np.float32)
            onehot[np.arange(len(frame)), np.where(codes < 0, len(cats), codes)] = 1.0
            unseen.add(column, text[codes < 0])
            blocks.append(onehot)
        matrix = np.concatenate(blocks, axis=1) if blocks else np.zeros((len(frame), 0), np.float32)
        return matrix, unseen

    def count_unseen(self, frame: pd.DataFrame) -> UnseenCategories:
        """The text values of ``frame`` that are not training categories (encoded as ``__other__``)."""
        unseen = UnseenCategories()
        for column, cats in self.categories.items():
            text = category_text(frame[column])
            unseen.add(column, text[~text.isin(cats)].to_numpy())
        return unseen

    def to_dict(self) -> dict[str, Any]:
        return {
            "feature_names": self.feature_names,
            "numeric_columns": self.numeric_columns,
            "categories": self.categories,
            "medians": self.medians,
            "encoded_names": self.encoded_names,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureEncoder:
        return cls(
            feature_names=list(data["feature_names"]),
            numeric_columns=list(data["numeric_columns"]),
            categories={k: list(v) for k, v in data["categories"].items()},
            medians={k: float(v) for k, v in data.get("medians", {}).items()},
        )


MAX_UNSEEN_COLUMNS = 4  # columns the unseen-categories warning names (then how many more)
MAX_UNSEEN_VALUES = 3  # values it shows of each column, most frequent first (then how many more)
MAX_COUNTED_VALUES = 1000  # distinct unseen values counted per column; beyond, only the column's total


class UnseenCategoryWarning(DataWarning):
    """Text values never seen in training, encoded as ``__other__``: the line names the columns,
    how many in each and their most frequent values."""


@dataclass
class UnseenCategories:
    """The text values of a table that are not training categories (encoded as ``__other__``):
    ``counts`` by column, and ``values``, each column's distinct values with their counts (at most
    MAX_COUNTED_VALUES of them; a column with more is in ``uncounted``). A table read in chunks adds
    its chunks' up with ``+``."""

    counts: dict[str, int] = field(default_factory=dict)
    values: dict[str, dict[str, int]] = field(default_factory=dict)
    uncounted: set[str] = field(default_factory=set)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def add(self, column: str, values: np.ndarray) -> None:
        """Count ``values`` (the unseen cells of ``column``, as text)."""
        if len(values) == 0:
            return
        self.counts[column] = self.counts.get(column, 0) + len(values)
        counts = pd.Series(values, dtype=object).astype(str).value_counts(sort=False)  # hashed: no fixed-width copy
        self._merge(column, {str(value): int(count) for value, count in counts.items()})

    def _merge(self, column: str, counts: dict[str, int]) -> None:
        kept = self.values.setdefault(column, {})
        for value, count in counts.items():
            if value in kept or len(kept) < MAX_COUNTED_VALUES:
                kept[value] = kept.get(value, 0) + int(count)
            else:
                self.uncounted.add(column)

    def __add__(self, other: UnseenCategories) -> UnseenCategories:
        total = UnseenCategories(dict(self.counts), {c: dict(v) for c, v in self.values.items()}, set(self.uncounted))
        total.uncounted |= other.uncounted
        for column, count in other.counts.items():
            total.counts[column] = total.counts.get(column, 0) + count
            total._merge(column, other.values.get(column, {}))
        return total

    def __iadd__(self, other: UnseenCategories) -> UnseenCategories:
        """Add ``other``'s counts into this one, in place (an accumulator handed to a callee keeps them)."""
        total = self + other
        self.counts, self.values, self.uncounted = total.counts, total.values, total.uncounted
        return self

    def message(self, source: str) -> str:
        """One line: how many, then the columns (most unseen first) with a few of their values."""
        columns = sorted(self.counts, key=lambda c: (-self.counts[c], c))
        parts = []
        for column in columns[:MAX_UNSEEN_COLUMNS]:
            ranked = sorted(self.values.get(column, {}).items(), key=lambda item: (-item[1], item[0]))
            shown = [quote(value, 40) for value, _ in ranked[:MAX_UNSEEN_VALUES]]
            if column in self.uncounted:
                shown.append("...")
            elif len(ranked) > MAX_UNSEEN_VALUES:
                shown.append(f"and {len(ranked) - MAX_UNSEEN_VALUES} more")
            parts.append(f"{self.counts[column]:,} in {quote(column, 60)} ({', '.join(shown)})")
        if len(columns) > MAX_UNSEEN_COLUMNS:
            parts.append(f"and {counted(len(columns) - MAX_UNSEEN_COLUMNS, 'more column')}")
        return (
            f"{source}: {self.total:,} categorical values never seen in training were encoded as {OTHER}: "
            + ", ".join(parts)
        )


def warn_unseen(unseen: UnseenCategories, source: str) -> None:
    """The warning for text values never seen in training (encoded as ``__other__``), if any: one
    :class:`UnseenCategoryWarning` line naming the columns and a few values."""
    if unseen.total:
        warnings.warn(UnseenCategoryWarning(unseen.message(source)), stacklevel=3)


def signed_log1p(x: np.ndarray) -> np.ndarray:
    """``sign(x) * log(1 + |x|)``: compresses heavy tails (byte counts, durations) and keeps 0 at 0."""
    return np.sign(x) * np.log1p(np.abs(x))


SCALED_BOUND = 100.0  # scaled values are clipped to [-bound, bound] (recorded in the bundle and the ONNX graph)
RELATIVE_SPREAD_FLOOR = 1e-6  # a spread below this share of a column's magnitude is rounding, not spread


@dataclass
class RobustScaler:
    """Median/IQR scaling (the reference's), of ``signed_log1p`` values by default.

    Changes from the reference, all for heavy-tailed traffic features:

    - values are log-compressed first, so one 10^8-byte transfer does not dominate the
      reconstruction loss and the 99.5th-percentile threshold;
    - where the IQR is zero (a mostly-zero count) the scale falls back to the standard deviation
      instead of 1, and to 1 where there is no spread at all. The statistics are computed in
      float64 and a spread smaller than ``RELATIVE_SPREAD_FLOOR`` times the column's magnitude counts
      as none: a constant column's float32 standard deviation is rounding noise (7e-7 seen on a
      column of -1s), and dividing by it blew one row with a real value up 10^6-fold;
    - scaled values are clipped to ``[-clip, clip]``, so no single cell can dominate the loss.
      ``clip`` is part of the scaler's state (bundles saved before it had none: unbounded)."""

    center: np.ndarray
    scale: np.ndarray
    log_compress: bool = True
    clip: float | None = SCALED_BOUND

    @classmethod
    def fit(cls, x: np.ndarray, log_compress: bool = True, clip: float | None = SCALED_BOUND) -> RobustScaler:
        values = np.asarray(x, dtype=np.float64)
        values = signed_log1p(values) if log_compress else values
        q25, median, q75 = np.percentile(values, [25, 50, 75], axis=0)
        iqr = q75 - q25
        std = values.std(axis=0)
        magnitude = np.abs(values).max(axis=0) if len(values) else np.zeros(values.shape[1])
        floor = RELATIVE_SPREAD_FLOOR * np.maximum(magnitude, 1e-300)
        scale = np.where(iqr > floor, iqr, np.where(std > floor, std, 1.0))
        return cls(median.astype(np.float32), scale.astype(np.float32), log_compress, clip)

    def transform(self, x: np.ndarray) -> np.ndarray:
        """float32 scaled values, computed in float64 (the exported ONNX graph computes them the same way)."""
        values = np.asarray(x, dtype=np.float64)
        values = signed_log1p(values) if self.log_compress else values
        center, scale = self.center.astype(np.float64), self.scale.astype(np.float64)
        scaled = (values - center) / scale
        if self.clip is not None:
            scaled = np.clip(scaled, -self.clip, self.clip)
        return scaled.astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        return {
            "center": self.center.tolist(),
            "scale": self.scale.tolist(),
            "log_compress": self.log_compress,
            "clip": self.clip,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RobustScaler:
        clip = data.get("clip")
        return cls(
            np.asarray(data["center"], np.float32),
            np.asarray(data["scale"], np.float32),
            bool(data.get("log_compress", False)),
            None if clip is None else float(clip),
        )


@dataclass
class Preprocessing:
    """Everything needed to turn a raw feature table into each model's input."""

    encoder: FeatureEncoder
    scaler: RobustScaler
    profile: FeatureProfile | None = None  # normal ranges and training distribution (None before 0.2)

    def encode(self, frame: pd.DataFrame, source: str = "data") -> np.ndarray:
        matrix, unseen = self.encoder.transform(frame, source)
        warn_unseen(unseen, source)
        return matrix

    def to_dict(self) -> dict[str, Any]:
        data = {
            **self.encoder.to_dict(),
            "scaler": {**self.scaler.to_dict(), "n_features": len(self.scaler.center)},
        }
        if self.profile is not None:
            data["profile"] = self.profile.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: Any, source: str | Path = "preprocessing") -> Preprocessing:
        """The preprocessing stored as ``data`` (a bundle's preprocessing.json, a checkpoint's state),
        checked first (:func:`check_preprocessing`): a wrong shape is one :class:`InputError` line
        naming ``source`` and the field, never a traceback later."""
        check_preprocessing(data, source)
        try:
            profile = FeatureProfile.from_dict(data["profile"]) if data.get("profile") is not None else None
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            problem = first_line(exc, 120, True)
            raise InputError(f"{source}: field 'profile': not a feature profile ({problem})") from None
        if profile is not None:
            _check_profile(profile, data, source)
        return cls(FeatureEncoder.from_dict(data), RobustScaler.from_dict(data["scaler"]), profile)


MAX_STORED_FEATURES = 1_000_000  # input columns, or encoded ones, a preprocessing.json may declare


def _field(source: str | Path, name: str, expected: str, value: Any) -> InputError:
    shown = type(value).__name__ if isinstance(value, (dict, list)) else quote(value, 60)
    return InputError(f"{source}: field {name!r}: expected {expected}, got {shown}")


def _names(source: str | Path, name: str, value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _field(source, name, "a list of names (strings)", value)
    if len(value) > MAX_STORED_FEATURES:
        raise _field(source, name, f"at most {MAX_STORED_FEATURES} names", f"{len(value)} names")
    if len(set(value)) != len(value):
        raise InputError(f"{source}: field {name!r}: a name is repeated")
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_preprocessing(data: Any, source: str | Path = "preprocessing") -> None:
    """Refuse, in one line naming ``source`` and the field, stored preprocessing of the wrong shape:
    ``feature_names`` (names), ``numeric_columns`` and the keys of ``categories`` splitting them,
    each column's categories (names), ``medians`` (numbers by numeric column), ``scaler``
    (``center`` and ``scale``: numbers, as many as the encoded width; ``log_compress`` a boolean;
    ``clip`` a positive number or null; ``n_features`` the encoded width) and ``profile`` (an
    object, or null). Sizes are bounded by MAX_STORED_FEATURES."""
    if not isinstance(data, dict):
        raise InputError(f"{source}: expected a JSON object of preprocessing, got {type(data).__name__}")
    features = _names(source, "feature_names", data.get("feature_names"))
    numeric = _names(source, "numeric_columns", data.get("numeric_columns"))
    categories = data.get("categories")
    if not isinstance(categories, dict):
        raise _field(source, "categories", "an object of each text column's categories", categories)
    width = len(numeric)
    for column, cats in categories.items():
        _names(source, f"categories.{column}", cats)
        width += len(cats) + 1
        if width > MAX_STORED_FEATURES:
            raise _field(source, "categories", f"at most {MAX_STORED_FEATURES} encoded columns", f"{width}")
    known = set(features)
    unknown = [c for c in (*numeric, *categories) if c not in known]
    if unknown or set(numeric) & set(categories) or len(numeric) + len(categories) != len(features):
        raise InputError(
            f"{source}: fields 'numeric_columns' and 'categories' must split 'feature_names' "
            f"(each feature numeric or text, once){'; not features: ' + listed(unknown) if unknown else ''}"
        )
    medians = data.get("medians", {})
    numbers = set(numeric)
    if not isinstance(medians, dict) or not all(k in numbers and _is_number(v) for k, v in medians.items()):
        raise _field(source, "medians", "an object of numbers by numeric column", medians)
    scaler = data.get("scaler")
    if not isinstance(scaler, dict):
        raise _field(source, "scaler", "an object (center, scale, log_compress, clip)", scaler)
    for key in ("center", "scale"):
        values = scaler.get(key)
        if not isinstance(values, list) or not all(_is_number(v) for v in values):
            raise _field(source, f"scaler.{key}", f"a list of {width} numbers", values)
        if len(values) != width:
            raise InputError(
                f"{source}: field 'scaler.{key}': {len(values)} numbers, expected {width} (the encoded width)"
            )
    if not isinstance(scaler.get("log_compress", False), bool):
        raise _field(source, "scaler.log_compress", "true or false", scaler.get("log_compress"))
    clip = scaler.get("clip")
    if clip is not None and not (_is_number(clip) and math.isfinite(clip) and clip > 0):
        raise _field(source, "scaler.clip", "a positive number or null", clip)
    n_features = scaler.get("n_features", width)
    if not _is_number(n_features) or n_features != width:
        raise _field(source, "scaler.n_features", f"{width} (the encoded width)", n_features)
    profile = data.get("profile")
    if profile is not None and not isinstance(profile, dict):
        raise _field(source, "profile", "an object or null", profile)


def _check_profile(profile: FeatureProfile, data: dict[str, Any], source: str | Path) -> None:
    """The profile's columns are the preprocessing's own, each with as many shares as bins."""
    numeric, text = set(data["numeric_columns"]), set(data["categories"])
    for name, columns, known in (
        ("edges", profile.edges, numeric),
        ("shares", profile.shares, numeric),
        ("normal_range", profile.normal_range, numeric),
        ("missing_share", profile.missing_share, numeric),
        ("category_shares", profile.category_shares, text),
    ):
        unknown = [c for c in columns if c not in known]
        if unknown:
            others = listed(unknown)
            raise InputError(f"{source}: field 'profile.{name}': names columns that are not its features {others}")
    for column, cut in profile.edges.items():
        if len(profile.shares.get(column, ())) != len(cut) + 1:
            raise InputError(f"{source}: field 'profile.shares.{column}': expected {len(cut) + 1} shares (bins)")
    if any(len(pair) != 2 for pair in profile.normal_range.values()):
        raise InputError(f"{source}: field 'profile.normal_range': expected [low, high] for each column")
