"""``scripts/score.py``: score a table with a trained bundle.

The bundle is verified against its manifest before anything is unpickled, the table is read by the
training reader and encoded with the bundle's own preprocessing, and the output CSV appears whole
or not at all (written beside its destination, then renamed)."""

from __future__ import annotations

import argparse
import math
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from threat_ensemble.cli import add_bundle_options, add_decompression_limit
from threat_ensemble.data.inputs import DEFAULT_LABEL, read_features
from threat_ensemble.data.preprocessing import Preprocessing, UnseenCategories, warn_unseen
from threat_ensemble.data.profile import DRIFT_THRESHOLD, drift_line
from threat_ensemble.errors import (
    EXIT_DRIFT,
    EXIT_GATE_FAILED,
    InputError,
    OneLineParser,
    UsageError,
    check_path,
    first_line,
    run_cli,
)
from threat_ensemble.evaluation.explain import MAX_EXPLAINED
from threat_ensemble.limits import DEFAULT_MAX_DECOMPRESSED_MB
from threat_ensemble.models.fusion import SCORE_COLUMNS
from threat_ensemble.models.rows import check_rows

OUTPUT_PREFIX = "score_"  # on every output column when the labels carry an output's name
ENGINES = ("python", "onnx", "spark")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="score.py",
        description="Score every row of a feature table with a trained model bundle: each model's "
        "normalised score, the fused ensemble score and the 0/1 verdict (1 = attack).",
        epilog="exit status: 0 scored, 4 scored but the features drifted (--fail-on-drift), 2 usage or input error "
        "(or a bundle that fails its manifest), 1 unexpected error",
    )
    add_bundle_options(parser)
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
        f"prints each model's detection metrics on them; optional (default: the bundle's own, as trained with "
        f"train.py --label-column, else {DEFAULT_LABEL!r}, when present and not a feature of the bundle)",
    )
    parser.add_argument(
        "--normal-label",
        metavar="VALUE",
        help="label of normal rows, for the metrics; any other value is an attack (default: the bundle's own, "
        "as trained with train.py --normal-label)",
    )
    parser.add_argument(
        "--engine",
        choices=ENGINES,
        help="python (default): the bundle's models in this process; onnx: onnxruntime through --onnx FILE, else "
        "the bundle's ensemble.onnx (train.py --export onnx), else a graph built from the bundle for this run: "
        "the same output file, scores equal to 1e-6 (docs/onnx.md); spark: the bundle's MLflow model on Spark "
        "(pip install 'threat-ensemble[spark]'), --data a Parquet file or folder (or a CSV with a header), "
        "--output a folder of Parquet shards (docs/spark.md)",
    )
    parser.add_argument(
        "--onnx",
        metavar="FILE",
        help="score through this graph, written by export.py from this same bundle (implies --engine onnx; "
        "a graph whose metadata names another bundle_digest is refused)",
    )
    parser.add_argument(
        "--spark-master",
        metavar="URL",
        help="with --engine spark: the Spark master (default: spark-submit's, else local[*], every core here)",
    )
    parser.add_argument(
        "--explain",
        type=_explain_count,
        default=0,
        metavar="K",
        help=f"add, for each row flagged as an attack, the members that fired and the K features (1-{MAX_EXPLAINED}) "
        "that drive the autoencoder's score, with their values and normal ranges (docs/operating.md)",
    )
    parser.add_argument(
        "--explain-all", action="store_true", help="with --explain: explain every row, not only attacks"
    )
    parser.add_argument(
        "--drift-report",
        metavar="FILE.json",
        help="compare the table's features with the training rows' profile kept in the bundle (population "
        "stability index per feature) and write the report here",
    )
    parser.add_argument(
        "--drift-threshold",
        type=float,
        default=DRIFT_THRESHOLD,
        metavar="X",
        help=f"a feature whose PSI is above X has drifted (default {DRIFT_THRESHOLD})",
    )
    parser.add_argument(
        "--fail-on-drift", action="store_true", help="exit 4 when a feature has drifted (the scores are still written)"
    )
    parser.add_argument(
        "--gate",
        metavar="FILE.json",
        help="a labelled table only: evaluate the bundle's quality gate on it (its own bounds, the trainer's "
        "code) and write the result here, with gate.json's keys; exit 3 when it fails, as train.py does",
    )
    add_decompression_limit(parser)
    header = parser.add_mutually_exclusive_group()
    header.add_argument(
        "--no-header",
        dest="no_header",
        action="store_true",
        default=None,
        help="the CSV has no header row (columns named 0, 1, ...) (default: as the bundle's training table was "
        "read, train.py --no-header)",
    )
    header.add_argument(
        "--header", dest="no_header", action="store_false", default=None, help="the CSV's first row is its header"
    )
    parser.add_argument(
        "--drop-columns",
        metavar="A,B",
        help="comma-separated columns to ignore (default: the bundle's own, train.py --drop-columns, where the "
        "table has them; '' drops none)",
    )
    parser.add_argument(
        "--id-columns",
        metavar="A,B",
        help="columns that identify a row (featurize.py --id-columns): not features, copied to the output "
        "unchanged (default: the bundle's own, as trained with train.py --id-columns, where the table has them)",
    )
    parser.add_argument(
        "--impute",
        action="store_true",
        help="fill missing or infinite numeric cells with the training medians instead of refusing",
    )
    return parser


def _names(text: str) -> list[str]:
    return [c.strip() for c in text.split(",") if c.strip()]


def _explain_count(text: str) -> int:
    if not text.strip().isdigit() or not 1 <= int(text) <= MAX_EXPLAINED:
        raise argparse.ArgumentTypeError(f"expected a whole number from 1 to {MAX_EXPLAINED}, got {text[:40]!r}")
    return int(text)


def main(argv: list[str] | None = None) -> int:
    """Run the scoring CLI; returns the exit status."""
    return run_cli(lambda: _main(argv))


def _main(argv: list[str] | None) -> int:
    args = _parse(argv)
    if args.engine == "spark":
        from threat_ensemble.models.bundle import BundleVersionWarning

        with warnings.catch_warnings(record=True) as caught:
            n_rows = _score_spark(args)
        for item in caught:  # the bundle's own warning as one line; Spark's and MLflow's as they were
            if issubclass(item.category, BundleVersionWarning):
                print(f"warning: {first_line(item.message, limit=None)}", file=sys.stderr)
            else:
                warnings.showwarning(item.message, item.category, item.filename, item.lineno)
        print(f"scored {n_rows} rows -> {args.output}")
        return 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scored = score_file(
            bundle=args.bundle,
            data=args.data,
            output=args.output,
            label_column=args.label_column,
            no_header=args.no_header,
            drop_columns=None if args.drop_columns is None else _names(args.drop_columns),
            id_columns=None if args.id_columns is None else _names(args.id_columns),
            impute=args.impute,
            normal_label=args.normal_label,
            expect_digest=args.expect_digest,
            max_decompressed_mb=args.max_decompressed_mb,
            engine=args.engine,
            onnx=args.onnx,
            explain=args.explain,
            explain_all=args.explain_all,
            drift_report=args.drift_report,
            drift_threshold=args.drift_threshold,
            check_drift=args.fail_on_drift,
            gate=args.gate,
        )
    for item in caught:
        if issubclass(item.category, UserWarning):
            print(f"warning: {first_line(item.message, limit=None)}", file=sys.stderr)
    print(f"scored {scored.n_rows} rows -> {args.output}")
    if scored.metrics is not None:
        from threat_ensemble.console import detection_table

        title = f"detection on {args.data} (label column {scored.label_column!r}, normal = {scored.normal_label!r})"
        print(detection_table(scored.metrics, title))
    if scored.gate is not None:
        verdict = "PASSED" if scored.gate["passed"] else "FAILED"
        failed = [name for name, g in scored.gate["gates"].items() if not g["passed"]]
        why = f" ({', '.join(failed)} below the bound)" if failed else ""
        print(f"gate: {verdict}{why} on {scored.gate['n_test']} rows of {scored.gate['test_source']} -> {args.gate}")
    if scored.drift is not None:
        print(drift_line(scored.drift) + (f" (report: {args.drift_report})" if args.drift_report else ""))
    if scored.gate is not None and not scored.gate["passed"]:
        return EXIT_GATE_FAILED
    if scored.drift is not None and args.fail_on_drift and scored.drift["drifted"]:
        return EXIT_DRIFT
    return 0


def _parse(argv: list[str] | None) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    if args.onnx is not None and args.engine not in (None, "onnx"):
        raise UsageError(f"--onnx is for --engine onnx, not --engine {args.engine}")
    args.engine = args.engine or ("onnx" if args.onnx is not None else "python")
    if args.spark_master is not None and args.engine != "spark":
        raise UsageError("--spark-master is for --engine spark")
    if args.explain_all and not args.explain:
        raise UsageError("--explain-all needs --explain K (how many features to show per row)")
    if not (args.drift_threshold > 0 and math.isfinite(args.drift_threshold)):
        raise UsageError(f"--drift-threshold must be a positive number, got {args.drift_threshold}")
    return args


@dataclass
class Scored:
    """What :func:`score_file` wrote: the row count and, when the table had labels, each model's
    and the ensemble's detection metrics on them (``scoring.binary_metrics``)."""

    n_rows: int
    label_column: str | None = None
    metrics: dict[str, dict[str, Any]] | None = None
    normal_label: str | None = None
    drift: dict[str, Any] | None = None  # the drift report, when asked for
    gate: dict[str, Any] | None = None  # the bundle's gate on this table, when asked for (score.py --gate)


def score_file(
    *,
    bundle: str | Path,
    data: str | Path,
    output: str | Path,
    label_column: str | None = None,
    no_header: bool | None = None,
    drop_columns: list[str] | tuple[str, ...] | None = None,
    id_columns: list[str] | None = None,
    impute: bool = False,
    normal_label: str | None = None,
    expect_digest: str | None = None,
    max_decompressed_mb: int = DEFAULT_MAX_DECOMPRESSED_MB,
    engine: str = "python",
    onnx: str | Path | None = None,
    explain: int = 0,
    explain_all: bool = False,
    drift_report: str | Path | None = None,
    drift_threshold: float = DRIFT_THRESHOLD,
    check_drift: bool = False,
    gate: str | Path | None = None,
    note: Callable[[str], None] | None = None,
) -> Scored:
    """Score ``data`` with ``bundle`` into ``output``; returns the number of rows written and, for
    a labelled table, the detection metrics of each model on it.

    The table is read as the bundle's training table was (``no_header`` and ``drop_columns``: None
    takes the bundle's own; a value that differs from it wins, and ``note`` says so). ``onnx``: the
    graph ``engine="onnx"`` scores through (exported from this bundle). ``note`` gets each one-line
    note (default: printed as ``note: ...``).

    Everything that can be refused (output path, manifest, table, columns) is checked before the
    slow import of torch/Lightning/scikit-learn, so bad input answers in about a second."""
    from threat_ensemble.files import check_output_table, write_table_atomically
    from threat_ensemble.models.bundle import PREPROCESSING_FILE, read_bundle

    note = note or _print_note
    if onnx is not None and engine != "onnx":
        raise UsageError(f"--onnx is for --engine onnx, not --engine {engine}")
    for option, value in (("--bundle", bundle), ("--data", data), ("--output", output), ("--onnx", onnx)):
        check_path(option, value)
    inputs = (data,) if onnx is None else (data, onnx)
    out = check_output_table(output, inputs=inputs, keep_out_of=(Path(bundle),))
    report = _check_report_path(drift_report, (data, out), Path(bundle)) if drift_report is not None else None
    gate_out = None
    if gate is not None:
        others = (data, out) if report is None else (data, out, report)
        gate_out = _check_report_path(gate, others, Path(bundle), "--gate")
    verified = read_bundle(bundle, expect_digest)  # every byte checked once; parsed from these bytes
    preprocessing = Preprocessing.from_dict(verified.json(PREPROCESSING_FILE), verified.folder / PREPROCESSING_FILE)
    wants_drift = report is not None or check_drift
    if wants_drift and preprocessing.profile is None:
        raise InputError(
            f"{bundle}: holds no profile of its training features (trained before drift reports existed); "
            "retrain it to compare tables against it"
        )
    trained = verified.manifest.get("config") if isinstance(verified.manifest.get("config"), dict) else {}
    if normal_label is None and trained.get("normal_label") is not None:
        normal_label = str(trained["normal_label"])  # the bundle's own; train.py recorded it
    no_header, drop_columns, trained_drops = _reading_settings(trained, no_header, drop_columns, note)
    labels, features, source = read_features(
        data,
        label_column,
        no_header,
        drop_columns,
        bundle_features=preprocessing.encoder.feature_names,
        max_decompressed_mb=max_decompressed_mb,
        trained_label=str(trained["label_column"]) if trained.get("label_column") is not None else None,
        trained_drops=trained_drops,
    )
    ids, features = _split_ids(features, id_columns, trained.get("id_columns"), source)
    taken = [c for c in ids.columns if c in SCORE_COLUMNS or (labels is not None and c == str(labels.name))]
    if taken:
        raise InputError(f"{source}: id column {taken[0]!r} has the name of the label or of an output column")
    rows = check_rows(preprocessing, features, source, impute)  # both engines alike: extras left out, warned
    checked = rows.frame
    y = _labels_for_metrics(labels, normal_label, source)
    _require_gate_labels(gate_out, labels, y, source)
    ensemble = None
    if engine == "onnx":
        warn_unseen(preprocessing.encoder.count_unseen(checked), source)
        scorer = _onnx_scorer(verified, onnx, note)  # after every check: building a graph takes a while
        scores = scorer.score(checked, source)
    else:
        from threat_ensemble.evaluation.scoring import score_rows
        from threat_ensemble.models.ensemble import ThreatEnsemble  # torch: only after every check above

        ensemble = ThreatEnsemble.from_verified(verified, preprocessing)  # the bytes checked above, not read again
        scores, _ = score_rows(ensemble, [(rows, y)], source)
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
    for column_name in ids.columns:
        result[column_name] = ids[column_name].to_numpy()
    for key, values in scores.items():
        column = np.asarray(values)
        result[prefix + key] = column.astype(np.int64) if key == "verdict" else column
    if explain:
        from threat_ensemble.evaluation.explain import explanation_columns

        if ensemble is None:  # the ONNX engine: the explanations come from the same bundle
            from threat_ensemble.models.ensemble import ThreatEnsemble

            ensemble = ThreatEnsemble.from_verified(verified, preprocessing)
        x = ensemble.encode(rows, UnseenCategories())  # warned about once already
        extra = explanation_columns(ensemble, checked, x, scores, explain, explain_all)
        result = pd.concat([result, extra.add_prefix(prefix)], axis=1)
    drift = None
    if wants_drift:
        profile = preprocessing.profile.drift(checked, drift_threshold)
        drift = {"table": source, "bundle_digest": verified.digest, **profile}
    write_table_atomically(result, out)
    if report is not None and drift is not None:
        from threat_ensemble.files import atomic_write
        from threat_ensemble.models.bundle import json_bytes

        atomic_write(report, lambda fh: fh.write(json_bytes(drift)))
    if labels is None or y is None:
        return Scored(len(result), drift=drift)
    from threat_ensemble.evaluation.metrics import detection_metrics

    regated = None
    if gate_out is not None:
        regated = _regate(verified, y, scores, source)
        from threat_ensemble.files import atomic_write
        from threat_ensemble.models.bundle import json_bytes

        atomic_write(gate_out, lambda fh: fh.write(json_bytes(regated)))
    return Scored(len(result), str(labels.name), detection_metrics(y, scores), normal_label, drift, regated)


def _require_gate_labels(gate: Path | None, labels: pd.Series | None, y: np.ndarray | None, source: str) -> None:
    """``--gate`` needs 0/1 labels for every row: refused before anything is scored or written."""
    if gate is None or y is not None:
        return
    if labels is None:
        raise InputError(f"{source}: --gate needs a labelled table, and it has no label column (--label-column)")
    raise InputError(
        f"{source}: --gate needs every row's label: label column {str(labels.name)!r} has empty cells, "
        "or no --normal-label is given or recorded in the bundle"
    )


# What a re-gated table's gate.json keeps of the bundle's own: how the bundle fuses and cuts, and the
# run that trained it.
_GATE_CARRIED = ("weights", "fusion", "target_fpr", "cutoff", "mlflow_run_id")


def _regate(verified: Any, y: np.ndarray, scores: dict[str, np.ndarray], source: str) -> dict[str, Any]:
    """The bundle's gate on this table: :func:`evaluation.metrics.gate_report`, the function the
    trainer gates with, held to the bounds in the bundle's gate.json."""
    from threat_ensemble.evaluation.metrics import gate_bounds, gate_report
    from threat_ensemble.models.bundle import GATE_FILE, BundleError

    trained = verified.json(GATE_FILE)
    try:
        bounds = gate_bounds(trained)
    except (ValueError, AttributeError) as exc:
        raise BundleError(f"{verified.folder / GATE_FILE}: {exc}; the bundle cannot be re-gated") from None
    carried = {key: trained[key] for key in _GATE_CARRIED if key in trained}
    return {**gate_report(y, scores, source, **bounds), **carried, "bundle_digest": verified.digest}


def _score_spark(args: argparse.Namespace) -> int:
    """``--engine spark``: the verified bundle saved as its MLflow model, run by ``spark_udf``."""
    import tempfile

    from threat_ensemble.models.bundle import PREPROCESSING_FILE, read_bundle
    from threat_ensemble.spark.files import check_input, check_output_folder

    unsupported = [
        option
        for option, given in (
            ("--explain", args.explain),
            ("--drift-report", args.drift_report),
            ("--fail-on-drift", args.fail_on_drift),
            ("--no-header", args.no_header),
        )
        if given
    ]
    if unsupported:
        raise UsageError(f"{unsupported[0]} is not available with --engine spark; use the python engine for it")
    check_path("--bundle", args.bundle)
    check_input("--data", args.data)
    bundle = Path(args.bundle)
    out = check_output_folder("--output", args.output, inputs=(args.data,), keep_out_of=(bundle,))
    verified = read_bundle(bundle, args.expect_digest)
    stored = Preprocessing.from_dict(verified.json(PREPROCESSING_FILE), verified.folder / PREPROCESSING_FILE)
    features = [str(c) for c in stored.encoder.feature_names]
    trained = verified.manifest.get("config") if isinstance(verified.manifest.get("config"), dict) else {}
    csv = str(args.data).lower().endswith((".csv", ".csv.gz", ".txt"))
    if csv and trained.get("no_header") is True and args.no_header is None:
        raise UsageError(
            f"--data {args.data}: the bundle's training table had no header row (train.py --no-header), and "
            "--engine spark reads a CSV's first row as its header; use the python engine, or --header if it has one"
        )
    from threat_ensemble.spark.score import quiet_mlflow, read_table, score_on_spark
    from threat_ensemble.spark.session import spark_session
    from threat_ensemble.tracking.pyfunc import save_pyfunc_model

    with spark_session(args.spark_master, "threat-ensemble score") as spark:
        columns = read_table(spark, args.data).columns
        label = args.label_column or str(trained.get("label_column") or DEFAULT_LABEL)
        if args.label_column is not None and label not in columns:
            raise InputError(f"{args.data}: --label-column {label!r} is not a column")
        keep = [label] if label in columns and label not in features else []
        ids = _names(args.id_columns) if args.id_columns is not None else list(trained.get("id_columns") or [])
        missing = [c for c in ids if c not in columns] if args.id_columns is not None else []
        if missing:
            raise InputError(f"{args.data}: --id-columns names {missing}, not columns of the table")
        keep += [c for c in ids if c in columns and c not in keep]
        with tempfile.TemporaryDirectory(prefix="threat-ensemble-model-") as tmp, quiet_mlflow():
            model = save_pyfunc_model(bundle, Path(tmp) / "model")
            return score_on_spark(spark, str(model), args.data, out, keep=keep, features=features, impute=args.impute)


def _split_ids(
    features: pd.DataFrame, asked: list[str] | None, trained: Any, source: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(id columns, the rest): the columns ``asked`` (each must exist), else the bundle's own id
    columns (``trained``) that the table has."""
    if asked is None:
        names = [str(c) for c in trained or [] if str(c) in features.columns]
    else:
        missing = [c for c in asked if c not in features.columns]
        if missing:
            raise InputError(f"{source}: --id-columns names {missing}, not columns of the table")
        names = list(asked)
    return features[names].reset_index(drop=True), features.drop(columns=names)


def _check_report_path(
    path: str | Path, others: tuple[str | Path, ...], bundle: Path, option: str = "--drift-report"
) -> Path:
    """A writable .json file that is neither the table, the scores nor the drift report, outside the bundle."""
    from threat_ensemble.files import check_output_file

    check_path(option, str(path))
    if Path(path).suffix.lower() != ".json":
        raise InputError(f"{option} {path}: expected a .json file name")
    pairs = tuple(zip(("the table", "the scores", "the drift report"), others, strict=False))
    example = "drift.json" if option == "--drift-report" else "gate.json"
    return check_output_file(path, option, example=example, others=pairs, keep_out_of=(bundle,))


def _print_note(text: str) -> None:
    print(f"note: {text}", flush=True)


def _reading_settings(
    trained: dict[str, Any], no_header: bool | None, drop_columns: list[str] | tuple[str, ...] | None, note: Any
) -> tuple[bool, list[str], list[str]]:
    """(no_header, the drops that must each be a column, the bundle's drops taken where the table
    has them): how the bundle read its training table (its manifest's config), unless given; a
    given setting that differs from the bundle's wins, with a note."""
    own_no_header = trained.get("no_header") is True
    own_drops = [str(c) for c in trained.get("drop_columns") or [] if isinstance(c, str | int)]
    if no_header is None:
        no_header = own_no_header
    elif no_header != own_no_header:
        given = "--no-header" if no_header else "--header"
        trained_with = "without a header row (train.py --no-header)" if own_no_header else "with a header row"
        note(f"{given} given, used instead of the bundle's setting (its training table was read {trained_with})")
    if drop_columns is None:
        return no_header, [], own_drops
    if own_drops and [str(c) for c in drop_columns] != own_drops:
        given = ",".join(map(str, drop_columns)) or "''"
        note(f"--drop-columns {given} given, used instead of the bundle's own ({','.join(own_drops)})")
    return no_header, list(drop_columns), []


def _onnx_scorer(verified: Any, onnx: str | Path | None, note: Any) -> Any:
    """An onnxruntime session over the graph ``onnx`` (exported from this bundle: its metadata's
    ``bundle_digest`` is the bundle's, or it is the bundle's own graph byte for byte), else over the
    bundle's ensemble.onnx (its bytes verified with the rest of the bundle), else over the graph
    built from the bundle, with a note."""
    from threat_ensemble.export.onnx_runtime import OnnxScorer
    from threat_ensemble.models.bundle import ONNX_FILE, read_regular_file

    if onnx is not None:
        model_bytes = read_regular_file(Path(onnx))
        scorer = OnnxScorer(model_bytes, str(onnx))
        if model_bytes != verified.files.get(ONNX_FILE):
            _check_graph_digest(scorer.metadata.get("bundle_digest", ""), verified, str(onnx))
        return scorer
    if ONNX_FILE in verified.files:
        return OnnxScorer(verified.files[ONNX_FILE], str(verified.folder / ONNX_FILE))
    from threat_ensemble.export.onnx_graph import build_onnx_model
    from threat_ensemble.models.ensemble import ThreatEnsemble

    note(
        f"{verified.folder} holds no {ONNX_FILE}: building the graph for this run (export.py --bundle "
        f"{verified.folder} --output FILE once, then --onnx FILE, skips this)"
    )
    graph = build_onnx_model(ThreatEnsemble.from_verified(verified))
    return OnnxScorer(graph.SerializeToString(), f"{verified.folder} (exported for this run)")


def _check_graph_digest(digest: str, verified: Any, source: str) -> None:
    """A graph given with --onnx must have been exported from the bundle being scored with."""
    if digest == verified.digest:
        return
    export = f"export.py --bundle {verified.folder} --output FILE writes one for it"
    if not digest:
        raise InputError(
            f"--onnx {source}: the graph names no bundle it was exported from (no bundle_digest in its "
            f"metadata), so it cannot be checked against {verified.folder}; {export}"
        )
    raise InputError(
        f"--onnx {source}: exported from another bundle (bundle_digest {digest[:12]}...), not from "
        f"{verified.folder} ({verified.digest[:12]}...); {export}"
    )


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
