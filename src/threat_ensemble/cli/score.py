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

from threat_ensemble.cli import add_decompression_limit
from threat_ensemble.data.inputs import DEFAULT_LABEL, encode_features, read_features
from threat_ensemble.data.preprocessing import Preprocessing
from threat_ensemble.errors import OneLineParser, check_path, run_cli
from threat_ensemble.limits import DEFAULT_MAX_DECOMPRESSED_MB
from threat_ensemble.models.fusion import SCORE_COLUMNS

OUTPUT_PREFIX = "score_"  # on every output column when the labels carry an output's name


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
        metavar="VALUE",
        help="label of normal rows, for the metrics; any other value is an attack (default: the bundle's own, "
        "as trained with train.py --normal-label)",
    )
    parser.add_argument(
        "--expect-digest",
        metavar="SHA256",
        help="refuse the bundle unless its manifest's sha256 is this (train.py prints it as 'bundle digest'; "
        "MLflow has it as the run's and the model version's bundle_digest tag)",
    )
    add_decompression_limit(parser)
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

        title = f"detection on {args.data} (label column {scored.label_column!r}, normal = {scored.normal_label!r})"
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
    normal_label: str | None = None


def score_file(
    *,
    bundle: str | Path,
    data: str | Path,
    output: str | Path,
    label_column: str | None = None,
    no_header: bool = False,
    drop_columns: list[str] | tuple[str, ...] = (),
    impute: bool = False,
    normal_label: str | None = None,
    expect_digest: str | None = None,
    max_decompressed_mb: int = DEFAULT_MAX_DECOMPRESSED_MB,
) -> Scored:
    """Score ``data`` with ``bundle`` into ``output``; returns the number of rows written and, for
    a labelled table, the detection metrics of each model on it.

    Everything that can be refused (output path, manifest, table, columns) is checked before the
    slow import of torch/Lightning/scikit-learn, so bad input answers in about a second."""
    from threat_ensemble.data.tables import check_output_table, write_table_atomically
    from threat_ensemble.models.bundle import PREPROCESSING_FILE, read_bundle

    for option, value in (("--bundle", bundle), ("--data", data), ("--output", output)):
        check_path(option, value)
    out = check_output_table(output, inputs=(data,), keep_out_of=(Path(bundle),))
    verified = read_bundle(bundle, expect_digest)  # every byte checked once; parsed from these bytes
    preprocessing = Preprocessing.from_dict(verified.json(PREPROCESSING_FILE))
    trained = verified.manifest.get("config") if isinstance(verified.manifest.get("config"), dict) else {}
    if normal_label is None and trained.get("normal_label") is not None:
        normal_label = str(trained["normal_label"])  # the bundle's own; train.py recorded it
    labels, features, source = read_features(
        data,
        label_column,
        no_header,
        drop_columns,
        bundle_features=preprocessing.encoder.feature_names,
        max_decompressed_mb=max_decompressed_mb,
        trained_label=str(trained["label_column"]) if trained.get("label_column") is not None else None,
    )
    x = encode_features(preprocessing, features, source, impute)
    y = _labels_for_metrics(labels, normal_label, source)

    from threat_ensemble.models.ensemble import ThreatEnsemble

    scores = ThreatEnsemble.from_verified(verified).score(x)  # the bytes checked above, not read again
    result = pd.DataFrame(index=range(len(features)))
    prefix = ""
    if labels is not None:
        result[str(labels.name)] = labels.to_numpy()
        if str(labels.name) in SCORE_COLUMNS:  # an output must never shadow the user's labels
            prefix = OUTPUT_PREFIX
            warnings.warn(
                f"{source}: the label column is named {str(labels.name)!r}, like an output column; "
                f"the outputs are written as {prefix}ae, {prefix}rf, ..., {prefix}verdict",
                stacklevel=2,
            )
    for key, values in scores.items():
        column = np.asarray(values)
        result[prefix + key] = column.astype(np.int64) if key == "verdict" else column
    write_table_atomically(result, out)
    if labels is None or y is None:
        return Scored(len(result))
    from threat_ensemble.evaluation.metrics import detection_metrics

    return Scored(len(result), str(labels.name), detection_metrics(y, scores), normal_label)


def _labels_for_metrics(labels: pd.Series | None, normal_label: str | None, source: str) -> np.ndarray | None:
    """0/1 labels for the metrics (before any slow work, so a wrong --normal-label answers at once);
    None, with a warning, when a label cell is empty (the labels are still copied through)."""
    if labels is None:
        return None
    if normal_label is None:
        warnings.warn(f"{source}: no --normal-label, and the bundle records none; no detection metrics", stacklevel=2)
        return None
    from threat_ensemble.data.tables import binary_labels

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
