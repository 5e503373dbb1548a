"""``scripts/featurize.py``: raw HTTP traffic files in, one feature table out (``.parquet`` or
``.csv``), labelled from which option named each file. pandas and pyarrow load only after the
options are known to be good, and torch never, so ``--help`` answers at once."""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from threat_ensemble.cli import add_decompression_limit
from threat_ensemble.errors import OneLineParser, UsageError, check_path, first_line, run_cli
from threat_ensemble.http import FORMATS, WINDOW_SCOPES

ENGINES = ("local", "spark")
EXIT_CODES = "exit status: 0 written, 2 usage or input error (one line, no traceback), 1 unexpected error"


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="featurize.py",
        description="Turn raw HTTP request dumps (CSIC 2010 style) and access logs (common or combined "
        "format) into one feature row per request, in a table that `train.py --data` reads as is. "
        "Rows from --normal files get label 0, rows from --attack files label 1; --input files give "
        "unlabelled rows for scoring. docs/features.md, section 'Features', lists every column.",
        epilog=EXIT_CODES,
    )
    parser.add_argument("--normal", nargs="+", default=[], metavar="FILE", help="files of normal traffic (label 0)")
    parser.add_argument("--attack", nargs="+", default=[], metavar="FILE", help="files of attack traffic (label 1)")
    parser.add_argument(
        "--input", nargs="+", default=[], metavar="FILE", help="unlabelled files: features only, no label column"
    )
    parser.add_argument(
        "--output", required=True, metavar="PATH", help="output table: .parquet, .csv or .csv.gz (written atomically)"
    )
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default="auto",
        help="input format of every file (default: auto, detected per file from its first lines)",
    )
    parser.add_argument(
        "--label-column", default="label", metavar="NAME", help="name of the label column (default: label)"
    )
    parser.add_argument(
        "--id-columns",
        default="",
        metavar="A,B",
        help="also write columns that lead a row back to its request, first in the table: source (the file), "
        "record (the request's position in it, from 1), request (its request line); train.py and score.py "
        "take the same --id-columns so they are never features and pass through to the scores",
    )
    parser.add_argument(
        "--window-scope",
        choices=WINDOW_SCOPES,
        default=WINDOW_SCOPES[0],
        help="per-client windows of access logs: 'stream' (default) runs them across the files given under one "
        "option, ordered by time, so a client active across a log rotation keeps its counts; 'file' restarts "
        "them in every file (give one server's logs per call with 'stream')",
    )
    parser.add_argument(
        "--engine",
        choices=ENGINES,
        default=ENGINES[0],
        help="'local' (default): this process; 'spark': on Spark (pip install 'threat-ensemble[spark]'), "
        "same features, the output a folder of Parquet shards",
    )
    parser.add_argument(
        "--spark-master",
        metavar="URL",
        help="with --engine spark: the Spark master (default: spark-submit's, else local[*], every core here)",
    )
    add_decompression_limit(parser)
    parser.add_argument("--quiet", action="store_true", help="no summary line; warnings and errors only")
    return parser


def check_sources(args: argparse.Namespace) -> None:
    """The input options, on either engine: labelled or unlabelled files, not both, not none."""
    labelled = args.normal or args.attack
    if not labelled and not args.input:
        raise UsageError("give input files with --normal/--attack (labelled) or --input (unlabelled)")
    if labelled and not args.label_column.strip():
        raise UsageError("--label-column: empty; give the name of the label column (default: label)")
    if labelled and args.input:
        raise UsageError("--input (unlabelled) cannot be mixed with --normal/--attack (labelled) in one table")


def check_args(args: argparse.Namespace) -> Path:
    """Refuse contradictory options before any file is read."""
    check_sources(args)
    from threat_ensemble.files import check_output_table

    for option in ("normal", "attack", "input"):
        for path in getattr(args, option):
            check_path(f"--{option}", path)
    check_path("--output", args.output)

    return check_output_table(args.output, inputs=(*args.normal, *args.attack, *args.input))


def labelled_groups(args: argparse.Namespace) -> list[tuple[list[str], int | None]]:
    """The files of each option with the label its rows get (None: unlabelled); each is one stream."""
    return [(list(paths), value) for paths, value in ((args.normal, 0), (args.attack, 1), (args.input, None)) if paths]


def check_ids(args: argparse.Namespace) -> list[str]:
    """The --id-columns, checked against the names the featurizer knows and the label column."""
    from threat_ensemble.http.features import FEATURE_COLUMNS, ID_COLUMNS

    label = args.label_column
    if label in FEATURE_COLUMNS:
        raise UsageError(f"--label-column {label!r} is the name of a feature column")
    ids = [c.strip() for c in args.id_columns.split(",") if c.strip()]
    unknown = [c for c in ids if c not in ID_COLUMNS]
    if unknown:
        raise UsageError(f"--id-columns: unknown {unknown}; expected some of {', '.join(ID_COLUMNS)}")
    if label in ids:
        raise UsageError(f"--label-column {label!r} is also an id column")
    return ids


def summary(n_rows: int, n_attack: int | None, out: object) -> str:
    from threat_ensemble.http.features import FEATURE_COLUMNS

    if n_attack is None:
        return f"wrote {n_rows} unlabelled rows x {len(FEATURE_COLUMNS)} features to {out}"
    counts = f"{n_rows} rows ({n_rows - n_attack} normal, {n_attack} attack)"
    return f"wrote {counts} x {len(FEATURE_COLUMNS)} features to {out}"


def run(args: argparse.Namespace) -> str:
    """Featurize every file, label, write; return the summary line."""
    if args.engine == "spark":
        return run_spark(args)
    if args.spark_master is not None:
        raise UsageError("--spark-master is for --engine spark")
    import pandas as pd

    from threat_ensemble.http.features import featurize_files

    out = check_args(args)
    ids = check_ids(args)
    frames = []
    for paths, value in labelled_groups(args):
        group = featurize_files(paths, args.format, args.max_decompressed_mb, ids, args.window_scope)
        if value is not None:
            for frame in group:
                frame[args.label_column] = value
        frames.extend(group)
    table = pd.concat(frames, ignore_index=True)
    from threat_ensemble.files import write_table_atomically

    write_table_atomically(table, out)
    return summary(len(table), None if args.input else int(table[args.label_column].sum()), out)


def run_spark(args: argparse.Namespace) -> str:
    """The same table on Spark, written as a folder of Parquet shards (threat_ensemble.spark)."""
    from threat_ensemble.spark.featurize import featurize_on_spark
    from threat_ensemble.spark.session import spark_session

    out = check_spark_args(args)
    ids = check_ids(args)
    with spark_session(args.spark_master, "threat-ensemble featurize") as spark:
        n_rows, n_attack = featurize_on_spark(
            spark,
            labelled_groups(args),
            out,
            fmt=args.format,
            ids=ids,
            label_column=args.label_column,
            window_scope=args.window_scope,
            max_decompressed_mb=args.max_decompressed_mb,
        )
    return summary(n_rows, None if args.input else n_attack, out)


def check_spark_args(args: argparse.Namespace) -> str:
    """Like :func:`check_args` for Spark: inputs may be folders, globs or URIs Spark reads, and the
    output is a folder of Parquet shards (a local one is replaced only once it is complete)."""
    check_sources(args)
    from threat_ensemble.spark.files import check_input, check_output_folder

    for option in ("normal", "attack", "input"):
        for path in getattr(args, option):
            check_input(f"--{option}", path)
    return check_output_folder("--output", args.output, inputs=(*args.normal, *args.attack, *args.input))


def _print_warnings(caught: list[warnings.WarningMessage]) -> None:
    for w in caught:
        if issubclass(w.category, UserWarning):
            print(f"warning: {first_line(w.message, limit=None)}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    return run_cli(lambda: _main(build_parser().parse_args(argv)))


def _main(args: argparse.Namespace) -> int:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            summary = run(args)
        finally:  # the files read before an error still report what they skipped
            _print_warnings(caught)
    if not args.quiet:
        print(summary)
    return 0
