"""``scripts/train.py``: options, exit codes and the closing summary. Heavy libraries load only
after the options are known to be good, so ``--help`` and option errors answer at once."""

from __future__ import annotations

import argparse
import sys
import warnings
from typing import Any

from threat_ensemble.config import TrainConfig, field_names, load_yaml_config
from threat_ensemble.errors import run_cli

EXIT_CODES = (
    "exit status: 0 gate passed, 3 gate failed, 2 usage or input error, 1 unexpected error, "
    "143 stopped by SIGTERM (continue with --resume)"
)

# (flag, help, metavar); defaults come from TrainConfig so --help never drifts from the code.
OPTIONS: dict[str, list[tuple[str, str, str | None]]] = {
    "data": [
        (
            "data",
            "training table: .csv, .csv.gz, .parquet or .npz (X, y, optional feature_names); "
            "without it, the built-in generated data set",
            "PATH",
        ),
        (
            "test-data",
            "independent labelled table with the same columns; the gate is measured on it "
            "instead of the 15%% test split",
            "PATH",
        ),
        ("label-column", "label column: a name, or a 0-based index", "NAME|INDEX"),
        ("normal-label", "the label value of normal rows; every other value is an attack", "VALUE"),
        ("no-header", "CSV files have no header row; columns are named by 0-based index", None),
        ("drop-columns", "comma-separated columns (names or indexes) to ignore", "A,B"),
        ("impute", "fill missing or infinite numeric cells with training medians instead of refusing", None),
        ("default-rows", "rows of the built-in data set when --data is not given", "N"),
    ],
    "hardware": [
        ("gpus", "number of GPUs on this node (0 = CPU); overrides --accelerator/--devices", "N"),
        ("accelerator", "Lightning accelerator (cpu, gpu, auto, ...)", "NAME"),
        ("devices", "Lightning devices (a count, a list or auto)", "N"),
        ("strategy", "Lightning strategy (auto, ddp, ddp_spawn, ...)", "NAME"),
        ("num-nodes", "number of nodes for multi-node training", "N"),
        ("precision", "Lightning precision (32-true, 16-mixed, bf16-mixed, ...)", "P"),
        ("num-threads", "torch CPU threads (0 = automatic: 1 for CPU training)", "N"),
    ],
    "autoencoder": [
        ("max-epochs", "maximum autoencoder epochs", "N"),
        ("batch-size", "autoencoder batch size", "N"),
        ("lr", "AdamW learning rate", "LR"),
        ("patience", "early stopping: epochs without validation-loss improvement", "N"),
        ("seed", "random seed for splits, models and training", "N"),
        ("threshold-percentile", "autoencoder threshold: this percentile of validation reconstruction error", "Q"),
    ],
    "ensemble and gate": [
        (
            "fusion",
            "how member scores are fused: 'stack' (logistic stacking fitted on the validation split, "
            "cut at --target-fpr of normal validation rows) or 'fixed' (the reference's weighted mean "
            "of --weights, cut at 0.5)",
            "stack|fixed",
        ),
        ("target-fpr", "stack fusion: share of normal validation rows the cut may flag", "X"),
        ("weights", "fixed fusion weights", "ae=W,rf=W,if=W"),
        ("min-pr-auc", "gate: minimum ensemble PR-AUC", "X"),
        ("min-f1", "gate: minimum ensemble F1", "X"),
        ("min-recall", "optional gate: minimum ensemble recall", "X"),
        ("max-fpr", "optional gate: maximum ensemble false-positive rate on the test data", "X"),
    ],
    "outputs": [
        ("output-dir", "bundle folder (replaced atomically when the run completes)", "DIR"),
        ("checkpoint-dir", "autoencoder checkpoints", "DIR"),
        ("tracking-uri", "MLflow tracking URI (default $MLFLOW_TRACKING_URI, else sqlite:///<cwd>/mlflow.db)", "URI"),
        ("experiment", "MLflow experiment name", "NAME"),
        ("run-name", "MLflow run name", "NAME"),
        (
            "register-model",
            "log the ensemble as an MLflow pyfunc model and register it under NAME in the model registry "
            "(only when the gate passed, unless --register-anyway)",
            "NAME",
        ),
        ("register-anyway", "register the model even when the gate failed", None),
        ("quiet", "no progress bars or progress lines; errors and the final verdict only", None),
    ],
    "resume": [
        (
            "resume",
            "continue an interrupted run: 'last' (the newest checkpoint in --checkpoint-dir; the "
            "default when the flag has no value) or a checkpoint file",
            "last|PATH",
        ),
        ("resume-anyway", "resume even though the data or options changed since the run started", None),
    ],
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="train.py",
        description="Train the threat-detection ensemble (autoencoder + random forest + isolation "
        "forest), evaluate the fused score and write a gated model bundle.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--config", metavar="FILE.yaml", help="YAML file of options (keys as the flags); flags override it"
    )
    parser.add_argument(
        "--print-config", action="store_true", help="print the effective configuration as YAML and exit"
    )
    defaults = TrainConfig.__dataclass_fields__
    documented = set()
    for title, options in OPTIONS.items():
        group = parser.add_argument_group(title)
        for flag, text, metavar in options:
            dest = flag.replace("-", "_")
            documented.add(dest)
            default = defaults[dest].default
            if metavar is None:
                group.add_argument(f"--{flag}", dest=dest, action="store_true", default=None, help=text)
            elif flag == "resume":
                group.add_argument(f"--{flag}", dest=dest, metavar=metavar, nargs="?", const="last", help=text)
            else:
                shown = ",".join(default) if isinstance(default, list) else default
                suffix = "" if default is None or shown == "" else f" (default: {shown})"
                group.add_argument(f"--{flag}", dest=dest, metavar=metavar, default=None, help=text + suffix)
    missing = set(field_names()) - documented
    assert not missing, f"options without a flag: {missing}"
    return parser


def parse_config(argv: list[str] | None = None) -> tuple[TrainConfig, argparse.Namespace]:
    """Config file values, then command-line flags on top; validated."""
    args = build_parser().parse_args(argv)
    values: dict[str, Any] = load_yaml_config(args.config) if args.config else {}
    for name in field_names():
        given = getattr(args, name)
        if given is not None:
            values[name] = given
    return TrainConfig(**values), args


def config_yaml(cfg: TrainConfig) -> str:
    import yaml

    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)


def format_summary(result: Any) -> str:
    """A plain table: each member and the ensemble, then each gate and the outcome."""
    gate = result.gate
    cols = ("precision", "recall", "f1", "pr_auc", "roc_auc", "fpr")
    lines = [f"{'model':<10}" + "".join(f"{c:>10}" for c in cols)]
    rows = [*gate["per_model"].items(), ("ensemble", gate["metrics"])]
    for name, m in rows:
        lines.append(f"{name:<10}" + "".join(_cell(m.get(c)) for c in cols))
    lines.append("")
    for name, g in gate["gates"].items():
        bound = f">= {g['min']:.4f}" if "min" in g else f"<= {g['max']:.4f}"
        lines.append(f"gate {name:<8} {g['value']:.4f} {bound}  {'pass' if g['passed'] else 'FAIL'}")
    lines.append(
        f"gate: {'PASSED' if gate['passed'] else 'FAILED'} "
        f"on {gate['n_test']} rows of the {gate.get('test_source', 'test split')}"
    )
    lines.append(f"bundle: {result.bundle_dir}")
    lines.append(f"mlflow run: {result.mlflow_run_id}")
    return "\n".join(lines)


def _cell(value: Any) -> str:
    return f"{value:>10.4f}" if isinstance(value, (int, float)) and value == value else f"{'n/a':>10}"


def main(argv: list[str] | None = None) -> int:
    return run_cli(lambda: _main(argv))


def _main(argv: list[str] | None) -> int:
    cfg, args = parse_config(argv)
    if args.print_config:
        sys.stdout.write(config_yaml(cfg))
        return 0
    from threat_ensemble.pipeline import train
    from threat_ensemble.tables import ImputeWarning

    with warnings.catch_warnings():
        if cfg.quiet:  # library chatter off; our own counts (imputed cells) stay
            warnings.simplefilter("ignore")
            warnings.simplefilter("always", ImputeWarning)
        result = train(cfg)
    if result.gate is None:  # not rank 0 of a multi-process run
        return 0
    print(format_summary(result))
    return result.exit_code
