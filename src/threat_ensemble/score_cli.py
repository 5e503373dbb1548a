"""``scripts/score.py``: score a table with a trained bundle.

The bundle is verified against its manifest before anything is unpickled, the table is read by the
training reader and encoded with the bundle's own preprocessing, and the output CSV appears whole
or not at all (written beside its destination, then renamed)."""

from __future__ import annotations

import argparse
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from threat_ensemble.errors import InputError, OneLineParser, listed, run_cli
from threat_ensemble.limits import DEFAULT_MAX_DECOMPRESSED_MB
from threat_ensemble.preprocessing import Preprocessing

DEFAULT_LABEL = "label"
DEFAULT_NORMAL_LABEL = "0"
SCORE_COLUMNS = ("ae", "rf", "if", "ae_error", "rf_vote", "ensemble", "verdict")  # what the output adds


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="score.py",
        description="Score every row of a feature table with a trained model bundle: each model's "
        "normalised score, the fused ensemble score and the 0/1 verdict (1 = attack).",
        epilog="exit status: 0 scored, 2 usage or input error (or a bundle that fails its manifest), "
        "1 unexpected error",
    )
    parser.add_argument("--bundle", required=True, metavar="DIR", help="bundle folder written by train.py")
    parser.add_argument(
        "--data", required=True, metavar="PATH", help="table to score: .csv, .csv.gz, .txt, .parquet or .npz"
    )
    parser.add_argument(
        "--output",
        required=True,
        metavar="FILE",
        help="where to write the scores: .csv, .csv.gz or .parquet (the format the name says; written whole "
        "or not at all, never over the input, the bundle or a non-regular file)",
    )
    parser.add_argument(
        "--label-column",
        metavar="NAME|INDEX",
        help=f"label column, kept out of the features and copied to the output; with labels the run also "
        f"prints each model's detection metrics on them; optional (default: {DEFAULT_LABEL!r} when present "
        f"and not a feature of the bundle)",
    )
    parser.add_argument(
        "--normal-label",
        default=DEFAULT_NORMAL_LABEL,
        metavar="VALUE",
        help=f"label of normal rows, for the metrics; any other value is an attack (default {DEFAULT_NORMAL_LABEL!r})",
    )
    parser.add_argument(
        "--expect-digest",
        metavar="SHA256",
        help="refuse the bundle unless its manifest's sha256 is this (train.py prints it as 'bundle digest'; "
        "MLflow has it as the run's and the model version's bundle_digest tag)",
    )
    parser.add_argument(
        "--max-decompressed-mb",
        type=int,
        default=DEFAULT_MAX_DECOMPRESSED_MB,
        metavar="MB",
        help=f"refuse a .csv.gz table that expands beyond this many MB (default {DEFAULT_MAX_DECOMPRESSED_MB})",
    )
    parser.add_argument("--no-header", action="store_true", help="the CSV has no header row (columns named 0, 1, ...)")
    parser.add_argument("--drop-columns", default="", metavar="A,B", help="comma-separated columns to ignore")
    parser.add_argument(
        "--impute",
        action="store_true",
        help="fill missing or infinite numeric cells with the training medians instead of refusing",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the scoring CLI; returns the exit status."""
    return run_cli(lambda: _main(argv))


def _main(argv: list[str] | None) -> int:
    args = _parse(argv)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scored = score_file(
            bundle=args.bundle,
            data=args.data,
            output=args.output,
            label_column=args.label_column,
            no_header=args.no_header,
            drop_columns=[c.strip() for c in args.drop_columns.split(",") if c.strip()],
            impute=args.impute,
            normal_label=args.normal_label,
            expect_digest=args.expect_digest,
            max_decompressed_mb=args.max_decompressed_mb,
        )
    for item in caught:
        if issubclass(item.category, UserWarning):
            print(f"warning: {str(item.message).strip().splitlines()[0]}", file=sys.stderr)
    print(f"scored {scored.n_rows} rows -> {args.output}")
    if scored.metrics is not None:
        from threat_ensemble.console import detection_table

        title = f"detection on {args.data} (label column {scored.label_column!r}, normal = {args.normal_label!r})"
        print(detection_table(scored.metrics, title))
    return 0


def _parse(argv: list[str] | None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


@dataclass
class Scored:
    """What :func:`score_file` wrote: the row count and, when the table had labels, each model's
    and the ensemble's detection metrics on them (``scoring.binary_metrics``)."""

    n_rows: int
    label_column: str | None = None
    metrics: dict[str, dict[str, Any]] | None = None


def score_file(
    *,
    bundle: str | Path,
    data: str | Path,
    output: str | Path,
    label_column: str | None = None,
    no_header: bool = False,
    drop_columns: list[str] | tuple[str, ...] = (),
    impute: bool = False,
    normal_label: str = DEFAULT_NORMAL_LABEL,
    expect_digest: str | None = None,
    max_decompressed_mb: int = DEFAULT_MAX_DECOMPRESSED_MB,
) -> Scored:
    """Score ``data`` with ``bundle`` into ``output``; returns the number of rows written and, for
    a labelled table, the detection metrics of each model on it.

    Everything that can be refused (output path, manifest, table, columns) is checked before the
    slow import of torch/Lightning/scikit-learn, so bad input answers in about a second."""
    from threat_ensemble.artifacts import PREPROCESSING_FILE, read_bundle
    from threat_ensemble.tables import check_output_table, write_table_atomically

    out = check_output_table(output, inputs=(data,), keep_out_of=(Path(bundle),))
    verified = read_bundle(bundle, expect_digest)  # every byte checked once; parsed from these bytes
    preprocessing = Preprocessing.from_dict(verified.json(PREPROCESSING_FILE))
    labels, features, source = read_features(
        data,
        label_column,
        no_header,
        drop_columns,
        bundle_features=preprocessing.encoder.feature_names,
        max_decompressed_mb=max_decompressed_mb,
    )
    x = encode_features(preprocessing, features, source, impute)
    y = _labels_for_metrics(labels, normal_label, source)

    from threat_ensemble.models.ensemble import ThreatEnsemble

    # loaded again from disk, pinned to the digest just checked: a bundle swapped in between is refused
    scores = ThreatEnsemble.load(bundle, expect_digest=verified.digest).score(x)
    result = pd.DataFrame(index=range(len(features)))
    if labels is not None:
        result[str(labels.name)] = labels.to_numpy()
    for key, values in scores.items():
        column = np.asarray(values)
        result[key] = column.astype(np.int64) if key == "verdict" else column
    write_table_atomically(result, out)
    if labels is None or y is None:
        return Scored(len(result))
    from threat_ensemble.scoring import detection_metrics

    return Scored(len(result), str(labels.name), detection_metrics(y, scores))


def _labels_for_metrics(labels: pd.Series | None, normal_label: str, source: str) -> np.ndarray | None:
    """0/1 labels for the metrics (before any slow work, so a wrong --normal-label answers at once);
    None, with a warning, when a label cell is empty (the labels are still copied through)."""
    if labels is None:
        return None
    from threat_ensemble.tables import binary_labels

    column = str(labels.name)
    if labels.isna().any():
        warnings.warn(f"{source}: label column {column!r} has empty cells; no detection metrics", stacklevel=2)
        return None
    y = binary_labels(labels, normal_label, source, column)
    if y.min() == y.max():
        kind = "attacks" if y[0] else "normal rows"
        warnings.warn(
            f"{source}: label column {column!r} holds only {kind} (normal = {normal_label!r}); "
            "PR-AUC and ROC-AUC need both",
            stacklevel=2,
        )
    return y


def read_features(
    data: str | Path,
    label_column: str | None,
    no_header: bool,
    drop_columns: list[str] | tuple[str, ...],
    bundle_features: list[str] | tuple[str, ...] = (),
    max_decompressed_mb: int = DEFAULT_MAX_DECOMPRESSED_MB,
) -> tuple[pd.Series | None, pd.DataFrame, str]:
    """The table's feature columns (numeric text converted as in training) and its labels, if any.
    A column named ``label`` is taken as the labels only when the bundle does not use it as a feature."""
    from threat_ensemble.tables import infer_numeric, read_raw_table, resolve_drop_column, resolve_label_column

    source = str(data)
    frame = read_raw_table(data, no_header=no_header, max_decompressed_mb=max_decompressed_mb)
    label = None
    if label_column is not None:  # named explicitly: must exist
        label = resolve_label_column(frame, str(label_column), source)
    elif DEFAULT_LABEL in frame.columns and DEFAULT_LABEL not in bundle_features:
        label = DEFAULT_LABEL
    if label is not None and str(label) in SCORE_COLUMNS:
        raise InputError(
            f"{source}: label column {str(label)!r} has the name of an output column "
            f"({', '.join(SCORE_COLUMNS)}); rename it"
        )
    dropped = []
    for name in drop_columns:
        resolved = resolve_drop_column(frame, str(name), source)
        if resolved != label:
            dropped.append(resolved)
    labels = frame[label].reset_index(drop=True) if label is not None else None
    features = frame.drop(columns=[c for c in [label, *dropped] if c is not None]).reset_index(drop=True)
    return labels, infer_numeric(features, source), source


def encode_features(preprocessing: Preprocessing, features: pd.DataFrame, source: str, impute: bool) -> np.ndarray:
    """Encode with the bundle's preprocessing: missing columns are an error naming them, extra
    columns are ignored with a warning, non-finite numbers are refused unless ``impute``."""
    from threat_ensemble.tables import count_non_finite, non_finite_message

    expected = list(preprocessing.encoder.feature_names)
    missing = [c for c in expected if c not in features.columns]
    if missing:
        raise InputError(f"{source}: missing feature columns {missing} (the bundle was trained on {len(expected)})")
    extra = [c for c in features.columns if c not in expected]
    if extra:
        warnings.warn(
            f"{source}: ignoring {len(extra)} columns the bundle was not trained on: {listed(extra)}", stacklevel=2
        )
    features = features[expected]
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
    return preprocessing.encode(features, source)
