"""The run configuration: one dataclass that the CLI, YAML files and the Python API all fill.

Kept free of heavy imports so that ``--help`` and option errors answer at once.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from threat_ensemble.data.default_data import DEFAULT_ROWS, check_default_rows
from threat_ensemble.errors import UsageError, check_path, first_line
from threat_ensemble.limits import (
    DEFAULT_MAX_DECOMPRESSED_MB,
    DEFAULT_SAMPLE_ROWS,
    DEFAULT_SHUFFLE_ROWS,
    MAX_CONFIG_BYTES,
    MAX_YAML_ALIASES,
    MAX_YAML_DEPTH,
    MIN_SAMPLE_ROWS,
)

MODEL_KEYS: tuple[str, ...] = ("ae", "rf", "if")
FUSIONS: tuple[str, ...] = ("stack", "fixed")
EXPORT_FORMATS: tuple[str, ...] = ("onnx",)
DEFAULT_WEIGHTS = "ae=0.4,rf=0.4,if=0.2"


ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")
STRATEGIES = (
    "auto", "ddp", "ddp_spawn", "ddp_fork", "ddp_notebook", "ddp_find_unused_parameters_true", "single_device"
)
PRECISIONS = ("32-true", "32", "16-mixed", "16", "bf16-mixed", "bf16", "16-true", "bf16-true")


# Every option once: its section (of --help and of the YAML that --print-config writes), flag,
# help and metavar (None: an on/off flag). Types and defaults come from TrainConfig's fields, so
# --help never drifts from the code.
OPTIONS: dict[str, list[tuple[str, str, str | None]]] = {
    "data": [
        (
            "data",
            "training table: .csv, .csv.gz, .txt, .parquet or .npz (X, y, optional feature_names), or a folder "
            "(or a quoted glob) of Parquet files with the same columns; without it, the built-in generated data set",
            "PATH",
        ),
        (
            "test-data",
            "independent labelled table (or folder of Parquet files) with the same columns; the gate is "
            "measured on it instead of the 15% test split",
            "PATH",
        ),
        ("label-column", "label column: a name, or a 0-based index", "NAME|INDEX"),
        ("normal-label", "the label value of normal rows; every other value is an attack", "VALUE"),
        ("no-header", "CSV files have no header row; columns are named by 0-based index", None),
        ("drop-columns", "comma-separated columns (names or indexes) to ignore", "A,B"),
        (
            "id-columns",
            "comma-separated columns that identify a row (such as featurize.py --id-columns source,record,request): "
            "never features; the bundle records them and score.py copies them to its output",
            "A,B",
        ),
        ("impute", "fill missing or infinite numeric cells with training medians instead of refusing", None),
        ("default-rows", "without --data: train on a seeded sample of N built-in rows (at most 20000)", "N"),
        ("max-decompressed-mb", "refuse a table that would take more than this many MB (docs/options.md)", "MB"),
        (
            "stream",
            "read --data (a Parquet folder, glob or file) a row group at a time instead of whole: for more rows "
            "than memory; rows are split by a seeded hash, the preprocessing and forests fitted on a bounded "
            "sample (docs/streaming.md)",
            None,
        ),
        ("split-key", "--stream: split rows by this column's hash (rows sharing a key stay together)", "COLUMN"),
        (
            "sample-rows",
            "--stream: the class-stratified training sample the encoder, scaler and forests are fitted on",
            "N",
        ),
        ("shuffle-buffer-rows", "--stream: training rows are shuffled within a buffer of this many", "N"),
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
    "fusion": [
        (
            "fusion",
            "how member scores are fused: 'stack' (logistic stacking fitted on the validation split, "
            "cut at --target-fpr of normal validation rows) or 'fixed' (the reference's weighted mean "
            "of --weights, cut at 0.5)",
            "stack|fixed",
        ),
        ("target-fpr", "stack fusion: share of normal validation rows the cut may flag", "X"),
        ("weights", "fixed fusion weights", "ae=W,rf=W,if=W"),
    ],
    "gate": [
        ("min-pr-auc", "gate: minimum ensemble PR-AUC", "X"),
        ("min-f1", "gate: minimum ensemble F1", "X"),
        ("min-recall", "optional gate: minimum ensemble recall", "X"),
        ("max-fpr", "optional gate: maximum ensemble false-positive rate on the test data", "X"),
    ],
    "outputs": [
        ("output-dir", "bundle folder (replaced atomically when the run completes)", "DIR"),
        ("checkpoint-dir", "autoencoder checkpoints", "DIR"),
        (
            "checkpoint-every-n-steps",
            "also checkpoint every N training steps, mid-epoch (last.ckpt): --resume then continues from the "
            "last saved step, the epoch's remaining batches in the same order (default: after every epoch only)",
            "N",
        ),
        (
            "export",
            "also write the ensemble as one ONNX graph, ensemble.onnx, into the bundle (listed and hashed in its "
            "manifest, logged with it to MLflow; docs/onnx.md); the only format is 'onnx'",
            "onnx",
        ),
        ("quiet", "no progress bars or progress lines; errors and the summary only", None),
    ],
    "tracking": [
        ("tracking-uri", "MLflow tracking URI (default $MLFLOW_TRACKING_URI, else sqlite:///<cwd>/mlflow.db)", "URI"),
        ("experiment", "MLflow experiment name", "NAME"),
        ("run-name", "MLflow run name (default: the data's name and the start time: flows-20261201-142501)", "NAME"),
        (
            "register-model",
            "register the run's MLflow pyfunc model (every run logs one) under NAME in the model registry "
            "(only when the gate passed, unless --register-anyway)",
            "NAME",
        ),
        ("register-anyway", "register the model even when the gate failed", None),
        (
            "promote",
            "with --register-model: give the new version the 'champion' alias when its gate passed and, "
            "scored on this run's test rows next to the current champion, it is not worse; else 'challenger'",
            None,
        ),
        ("promote-tolerance", "--promote: how much lower PR-AUC and F1 may each be than the champion's", "X"),
        (
            "promote-force",
            "with --register-model: give the new version the 'champion' alias when its gate passed, without "
            "comparing it with the current champion (the way out when the champion's bundle is gone or cannot score)",
            None,
        ),
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


SECTIONS: dict[str, tuple[str, ...]] = {
    title: tuple(flag.replace("-", "_") for flag, _, _ in options) for title, options in OPTIONS.items()
}


@dataclass
class TrainConfig:
    """Every option of a training run; field names are the CLI flags with ``-`` as ``_``."""

    # data
    data: str | None = None
    test_data: str | None = None
    label_column: str = "label"
    normal_label: str = "0"
    no_header: bool = False
    drop_columns: list[str] = field(default_factory=list)
    id_columns: list[str] = field(default_factory=list)
    impute: bool = False
    default_rows: int = DEFAULT_ROWS
    max_decompressed_mb: int = DEFAULT_MAX_DECOMPRESSED_MB
    stream: bool = False
    split_key: str | None = None
    sample_rows: int = DEFAULT_SAMPLE_ROWS
    shuffle_buffer_rows: int = DEFAULT_SHUFFLE_ROWS
    # hardware
    gpus: int | None = None
    accelerator: str = "auto"
    devices: str = "auto"
    strategy: str = "auto"
    num_nodes: int = 1
    precision: str = "32-true"
    num_threads: int = 0
    # autoencoder
    max_epochs: int = 100
    # Chosen for time to quality (benchmarks/bench_train.py): batch 1024 at lr 3e-3 reaches the
    # reference's best validation loss about 4x sooner than its batch 256 at lr 1e-3, with detection
    # no worse; --batch-size 256 --lr 1e-3 gives the reference's settings.
    batch_size: int = 1024
    lr: float = 3e-3
    patience: int = 10
    seed: int = 42
    threshold_percentile: float = 99.5
    # ensemble and gate
    fusion: str = "stack"
    target_fpr: float = 0.01
    weights: str = DEFAULT_WEIGHTS
    min_pr_auc: float = 0.85
    min_f1: float = 0.80
    min_recall: float | None = None
    max_fpr: float | None = None
    # outputs
    output_dir: str = "artifacts"
    checkpoint_dir: str = "checkpoints"
    export: str | None = None
    checkpoint_every_n_steps: int | None = None
    tracking_uri: str | None = None
    experiment: str = "threat-ensemble"
    run_name: str | None = None
    quiet: bool = False
    register_model: str | None = None
    register_anyway: bool = False
    promote: bool = False
    promote_tolerance: float = 0.005
    promote_force: bool = False
    # resume
    resume: str | None = None
    resume_anyway: bool = False

    def __post_init__(self) -> None:
        self._coerce_types()
        self.validate()

    # ------------------------------------------------------------------ helpers
    def _coerce_types(self) -> None:
        """Turn YAML/str values into the declared types, with an error naming the option."""
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            setattr(self, f.name, _coerce(f.name, value, hints[f.name]))

    def validate(self) -> None:
        """Refuse values that cannot work, before any data is read."""
        parse_weights(self.weights)
        if self.export is not None and self.export not in EXPORT_FORMATS:
            raise UsageError(f"--export must be one of {', '.join(EXPORT_FORMATS)}, got {self.export!r}")
        if self.fusion not in FUSIONS:
            raise UsageError(f"--fusion must be one of {', '.join(FUSIONS)}, got {self.fusion!r}")
        if not 0.0 < self.target_fpr < 1.0:
            raise UsageError(f"--target-fpr must be within (0, 1), got {self.target_fpr}")
        for name in ("min_pr_auc", "min_f1", "min_recall", "max_fpr"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise UsageError(f"--{_flag(name)} must be within [0, 1], got {value}")
        if not 0.0 < self.threshold_percentile <= 100.0:
            raise UsageError(f"--threshold-percentile must be within (0, 100], got {self.threshold_percentile}")
        positive = (
            "max_epochs", "batch_size", "patience", "num_nodes", "default_rows", "max_decompressed_mb", "sample_rows",
            "shuffle_buffer_rows",
        )  # fmt: skip
        for name in positive:
            if getattr(self, name) < 1:
                raise UsageError(f"--{_flag(name)} must be at least 1, got {getattr(self, name)}")
        check_default_rows(self.default_rows)
        if self.checkpoint_every_n_steps is not None and self.checkpoint_every_n_steps < 1:
            raise UsageError(f"--checkpoint-every-n-steps must be at least 1, got {self.checkpoint_every_n_steps}")
        if self.sample_rows < MIN_SAMPLE_ROWS:
            raise UsageError(f"--sample-rows must be at least {MIN_SAMPLE_ROWS}, got {self.sample_rows}")
        if self.stream and self.data is None:
            raise UsageError("--stream needs --data: a folder, a glob or a file of Parquet data")
        if self.split_key is not None and not self.stream:
            raise UsageError("--split-key goes with --stream (the in-memory split is stratified by label)")
        if self.promote and not self.register_model:
            raise UsageError("--promote needs --register-model NAME (the registered model to promote in)")
        if self.promote_force and not self.register_model:
            raise UsageError("--promote-force needs --register-model NAME (the registered model to promote in)")
        if not 0.0 <= self.promote_tolerance <= 1.0:
            raise UsageError(f"--promote-tolerance must be within [0, 1], got {self.promote_tolerance}")
        if not self.lr > 0 or not math.isfinite(self.lr):
            raise UsageError(f"--lr must be a positive number, got {self.lr}")
        if self.gpus is not None and self.gpus < 0:
            raise UsageError(f"--gpus must be 0 (CPU) or a positive count, got {self.gpus}")
        if self.register_anyway and not self.register_model:
            raise UsageError("--register-anyway needs --register-model NAME")
        if self.register_model is not None and not self.register_model.strip():
            raise UsageError("--register-model needs a non-empty model name")
        if self.num_threads < 0:
            raise UsageError(f"--num-threads must be 0 (auto) or positive, got {self.num_threads}")
        self._check_hardware_options()
        for name in ("data", "test_data", "output_dir", "checkpoint_dir", "resume", "tracking_uri"):
            check_path(f"--{_flag(name)}", getattr(self, name))
        if not 0 <= self.seed < 2**32:
            raise UsageError(f"--seed must be within [0, 2**32), got {self.seed}")
        if self.register_model is not None:
            bad = [c for c in ("/", ":") if c in self.register_model]
            if bad or self.register_model != self.register_model.strip() or len(self.register_model) > 256:
                raise UsageError(
                    f"--register-model {self.register_model[:80]!r}: not a valid model name "
                    "(no '/' or ':', no surrounding spaces, at most 256 characters)"
                )

    def _check_hardware_options(self) -> None:
        """Lightning's own options, checked before any data is read (Lightning would fail later,
        with a traceback)."""
        import os

        if self.accelerator not in ACCELERATORS:
            raise UsageError(f"--accelerator {self.accelerator!r}: expected one of {', '.join(ACCELERATORS)}")
        if self.strategy not in STRATEGIES:
            raise UsageError(f"--strategy {self.strategy!r}: expected one of {', '.join(STRATEGIES)}")
        if self.precision not in PRECISIONS:
            hint = " (64-bit is not supported: the forests and the scorer use float32 inputs)" if "64" in str(
                self.precision
            ) else ""
            raise UsageError(f"--precision {self.precision!r}: expected one of {', '.join(PRECISIONS)}{hint}")
        devices = str(self.devices).strip()
        if devices != "auto":
            parts = [p.strip() for p in devices.split(",") if p.strip()]
            single = len(parts) == 1 and "," not in devices
            if not parts or not all(p.isdigit() for p in parts) or (single and int(parts[0]) < 1):
                raise UsageError(
                    f"--devices {self.devices!r}: expected 'auto', a count of at least 1, or device ids such as 0,1"
                )
        cores = os.cpu_count() or 1
        if self.num_threads > 4 * cores:
            raise UsageError(
                f"--num-threads {self.num_threads}: this machine has {cores} cores; at most {4 * cores} threads"
            )

    @property
    def weight_map(self) -> dict[str, float]:
        return parse_weights(self.weights)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        """The configuration as YAML that ``--config`` accepts back (``--print-config``, the bundle),
        in sections (data, hardware, autoencoder, fusion, gate, outputs, tracking, resume)."""
        import yaml

        flat = self.to_dict()
        sections = {title: {k: flat[k] for k in names} for title, names in SECTIONS.items()}
        return yaml.safe_dump(sections, sort_keys=False)


def field_names() -> list[str]:
    return [f.name for f in dataclasses.fields(TrainConfig)]


def _flag(name: str) -> str:
    return name.replace("_", "-")


def _coerce(name: str, value: Any, hint: Any) -> Any:
    """Coerce one value to its field's type; ``None`` stays ``None`` for optional fields."""
    is_union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    members = typing.get_args(hint) if is_union else (hint,)
    if value is None:
        if type(None) in members:
            return None
        raise UsageError(f"--{_flag(name)} needs a value")
    base = next(a for a in members if a is not type(None))
    origin = typing.get_origin(base)
    try:
        if origin is list:
            if isinstance(value, str):
                return [v.strip() for v in value.split(",") if v.strip()]
            if isinstance(value, (list, tuple)):
                return [str(v) for v in value]
            return [str(value)]
        if base is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in {"1", "true", "yes", "on"}:
                return True
            if text in {"0", "false", "no", "off"}:
                return False
            raise ValueError(value)
        if base is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(value)
            return int(value)
        if base is float:
            if isinstance(value, bool):
                raise ValueError(value)
            return float(value)
        if base is str:
            return str(value)
    except (TypeError, ValueError):
        expected = getattr(base, "__name__", str(base))
        raise UsageError(f"--{_flag(name)}: expected {expected}, got {value!r}") from None
    return value


def parse_weights(text: str) -> dict[str, float]:
    """Parse ``ae=0.4,rf=0.4,if=0.2`` into weights normalised to sum to 1."""
    weights = dict.fromkeys(MODEL_KEYS, 0.0)
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        key, sep, raw = part.partition("=")
        key = key.strip().lower()
        if not sep or key not in weights:
            raise UsageError(
                f"--weights: cannot read {part!r}; expected NAME=NUMBER with NAME in "
                f"{', '.join(MODEL_KEYS)} (e.g. {DEFAULT_WEIGHTS})"
            )
        try:
            value = float(raw)
        except ValueError:
            raise UsageError(f"--weights: {key}={raw!r} is not a number") from None
        if not math.isfinite(value) or value < 0:
            raise UsageError(f"--weights: {key}={raw} must be a finite number >= 0")
        weights[key] = value
    total = sum(weights.values())
    if total <= 0:
        raise UsageError(f"--weights: {text!r} sum to zero; give at least one positive weight")
    return {k: v / total for k, v in weights.items()}


def load_yaml_config(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping of option names (``max_epochs`` or ``max-epochs``) to values. The file
    must be a regular file of at most MAX_CONFIG_BYTES; its events are counted before anything is
    built, so alias bombs and deep nesting are refused in milliseconds."""
    import yaml

    check_path("--config", path)
    p = Path(path)
    text = _read_config_text(p)
    try:
        aliases = depth = 0
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent):
                aliases += 1
                if aliases > MAX_YAML_ALIASES:
                    raise UsageError(f"--config {p}: more than {MAX_YAML_ALIASES} YAML aliases; write the values out")
            elif isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_YAML_DEPTH:
                    raise UsageError(f"--config {p}: nested deeper than {MAX_YAML_DEPTH} levels")
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
        loaded = yaml.safe_load(text)
    except (yaml.YAMLError, UnicodeDecodeError, RecursionError) as exc:
        raise UsageError(f"--config {p}: not valid YAML ({first_line(exc)})") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise UsageError(f"--config {p}: expected a mapping of option: value, got {type(loaded).__name__}")
    values: dict[str, Any] = {}
    for key, value in loaded.items():
        name = str(key).replace("-", "_")
        if name in SECTIONS and isinstance(value, dict):  # a section; the flat form of old files also loads
            for inner, inner_value in value.items():
                option = str(inner).replace("-", "_")
                if option not in SECTIONS[name]:
                    where = f"unknown key {inner!r} in section {key!r}"
                    raise UsageError(f"--config {p}: {where} (see --help for the options)")
                _put(values, option, inner_value, p)
        elif name in field_names():
            _put(values, name, value, p)
        else:
            raise UsageError(f"--config {p}: unknown key {key!r} (see --help for the options)")
    return values


def _put(values: dict[str, Any], name: str, value: Any, path: Path) -> None:
    if name in values:
        raise UsageError(f"--config {path}: {_flag(name)} is given twice")
    values[name] = value


def _read_config_text(path: Path) -> str:
    """The text of a config file, with the real reason when it cannot be one."""
    import stat

    try:
        st = path.stat()
    except FileNotFoundError:
        raise UsageError(f"--config {path}: no such file") from None
    except OSError as exc:  # a symbolic-link loop, a folder without search permission
        raise UsageError(f"--config {path}: cannot read ({exc.strerror or exc})") from None
    if stat.S_ISDIR(st.st_mode):
        raise UsageError(f"--config {path}: is a folder; expected a YAML file")
    if not stat.S_ISREG(st.st_mode):
        raise UsageError(f"--config {path}: not a regular file (a FIFO, device or socket); expected a YAML file")
    if st.st_size > MAX_CONFIG_BYTES:
        raise UsageError(f"--config {path}: {st.st_size} bytes; a config file may hold at most {MAX_CONFIG_BYTES}")
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"--config {path}: not UTF-8 text") from None
    except OSError as exc:
        raise UsageError(f"--config {path}: cannot read ({exc.strerror or exc})") from None
