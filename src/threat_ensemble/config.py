"""The run configuration: one dataclass that the CLI, YAML files and the Python API all fill.

Every option is defined once, as a field of :class:`TrainConfig` made by :func:`option`: the field
gives its name (the flag, with ``-`` as ``_``), type and default; its metadata (:class:`OptionSpec`)
gives its help text, its ``--help`` group and YAML section, and its choices and bounds. The command
line (``cli/train.py``), the checks of every value, from a flag, a YAML file or a Python caller alike
(:meth:`TrainConfig.validate`), and the test of docs/options.md all read them from there.

Each step of a run reads its own typed section, a small frozen dataclass taken from a TrainConfig:
``cfg.data_options`` (:class:`DataOptions`), ``model_options``, ``fusion_options``,
``gate_options``, ``tracking_options`` and ``run_options`` (``cfg.section(GateOptions)`` alike).

Kept free of heavy imports so that ``--help`` and option errors answer at once.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

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
S = TypeVar("S")


ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")
STRATEGIES = (
    "auto",
    "ddp",
    "ddp_spawn",
    "ddp_fork",
    "ddp_notebook",
    "ddp_find_unused_parameters_true",
    "single_device",
)
PRECISIONS = ("32-true", "32", "16-mixed", "16", "bf16-mixed", "bf16", "16-true", "bf16-true")

# The groups of --help and the sections of the YAML that --config reads and --print-config writes,
# in their order; each option names its own (OptionSpec.group).
YAML_SECTIONS: tuple[str, ...] = ("data", "hardware", "autoencoder", "fusion", "gate", "outputs", "tracking", "resume")


# ---------------------------------------------------------------------------- how an option is defined
@dataclass(frozen=True)
class Bound:
    """A numeric bound of an option: ``value >= low`` (``>`` when ``low_open``), likewise ``high``;
    ``finite`` also refuses infinity (NaN never passes). ``words`` is how the error states it when
    not "within [low, high]" or "at least low": ``--seed must be within [0, 2**32), got -1``."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    finite: bool = False
    words: str = ""

    def admits(self, value: float) -> bool:
        low_ok = self.low is None or (value > self.low if self.low_open else value >= self.low)
        high_ok = self.high is None or (value < self.high if self.high_open else value <= self.high)
        return low_ok and high_ok and (not self.finite or math.isfinite(value)) and value == value

    def describe(self) -> str:
        if self.words:
            return self.words
        if self.high is None:
            return f"at least {self.low:g}"
        if self.low is None:
            return f"at most {self.high:g}"
        left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
        return f"within {left}{self.low:g}, {self.high:g}{right}"


def at_least(low: float, words: str = "") -> Bound:
    return Bound(low=low, words=words)


def within(low: float, high: float, *, low_open: bool = False, high_open: bool = False) -> Bound:
    return Bound(low=low, high=high, low_open=low_open, high_open=high_open)


@dataclass(frozen=True)
class Choices:
    """The values an option takes; ``message`` is its error (``{flag}``, ``{value}``, ``{allowed}``),
    ``notes`` a few ``(text in the value, words added to the error)``."""

    values: tuple[str, ...]
    message: str = "{flag} must be one of {allowed}, got {value!r}"
    notes: tuple[tuple[str, str], ...] = ()

    def refusal(self, flag: str, value: Any) -> str | None:
        """The error for ``value``, or None when it is one of the choices."""
        if value in self.values:
            return None
        notes = "".join(note for text, note in self.notes if text in str(value))
        return self.message.format(flag=flag, value=value, allowed=", ".join(self.values)) + notes


LIGHTNING_CHOICE = "{flag} {value!r}: expected one of {allowed}"


@dataclass(frozen=True)
class OptionSpec:
    """All that an option's field holds besides its name, type and default.

    ``group``: its ``--help`` group and YAML section (one of YAML_SECTIONS); ``help``: its help text
    (``--help`` adds the default); ``metavar``: the value's name in ``--help`` (None for an on/off
    flag, the type of every ``bool`` field); ``choices`` and ``bounds``: the values it takes;
    ``check``: a rule of this option alone that a bound cannot state (it raises a UsageError);
    ``path``: a path or URI, refused when it holds a NUL byte; ``const``: the value of the flag given
    without one (``--resume`` is ``--resume last``)."""

    group: str
    help: str
    metavar: str | None = None
    choices: Choices | None = None
    bounds: tuple[Bound, ...] = ()
    check: Callable[[Any], object] | None = None
    path: bool = False
    const: str | None = None


def option(default: Any, group: str, help: str, **spec: Any) -> Any:
    """A TrainConfig field: its default and its :class:`OptionSpec` (``group``, ``help`` and the
    keywords of OptionSpec); a list default is copied for each instance."""
    metadata = {"option": OptionSpec(group, help, **spec)}
    if isinstance(default, list):
        return field(default_factory=functools.partial(list, default), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class Option:
    """One option as the CLI, the checks and the docs see it: a field of a TrainConfig and its spec."""

    name: str
    type: Any
    default: Any
    spec: OptionSpec

    @property
    def flag(self) -> str:
        return f"--{_flag(self.name)}"

    @property
    def is_switch(self) -> bool:
        """An on/off flag (a ``bool`` field): given without a value."""
        return self.type is bool

    def check(self, value: Any) -> None:
        """Refuse a value (already of the option's type) that the option does not take."""
        if value is None:  # an optional option left out; a required one is refused by its type
            return
        spec = self.spec
        if spec.choices is not None:
            refusal = spec.choices.refusal(self.flag, value)
            if refusal:
                raise UsageError(refusal)
        for bound in spec.bounds:
            if not bound.admits(value):
                raise UsageError(f"{self.flag} must be {bound.describe()}, got {value}")
        if spec.check is not None:
            spec.check(value)
        if spec.path:
            check_path(self.flag, value)


@functools.cache
def options(config_type: type | None = None) -> tuple[Option, ...]:
    """Every option of ``config_type`` (TrainConfig or a dataclass extending it), in field order."""
    config_type = TrainConfig if config_type is None else config_type
    hints = typing.get_type_hints(config_type)
    found = []
    for f in dataclasses.fields(config_type):
        spec = f.metadata.get("option")
        if not isinstance(spec, OptionSpec):
            raise TypeError(f"{config_type.__name__}.{f.name}: define it with config.option(...)")
        if spec.group not in YAML_SECTIONS:
            raise TypeError(f"{config_type.__name__}.{f.name}: group {spec.group!r} is not one of {YAML_SECTIONS}")
        if (spec.metavar is None) != (hints[f.name] is bool):
            raise TypeError(f"{config_type.__name__}.{f.name}: a metavar for every option but the on/off flags")
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default  # type: ignore[misc]
        found.append(Option(f.name, hints[f.name], default, spec))
    return tuple(found)


def yaml_sections(config_type: type | None = None) -> dict[str, tuple[str, ...]]:
    """Each YAML section (``--help`` group) and the names of its options, in order."""
    return {title: tuple(o.name for o in options(config_type) if o.spec.group == title) for title in YAML_SECTIONS}


# ---------------------------------------------------------------------------- rules of single options
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


def _check_devices(devices: str) -> None:
    text = str(devices).strip()
    if text == "auto":
        return
    parts = [p.strip() for p in text.split(",") if p.strip()]
    single = len(parts) == 1 and "," not in text
    if not parts or not all(p.isdigit() for p in parts) or (single and int(parts[0]) < 1):
        raise UsageError(f"--devices {devices!r}: expected 'auto', a count of at least 1, or device ids such as 0,1")


def _check_num_threads(threads: int) -> None:
    import os

    cores = os.cpu_count() or 1
    if threads > 4 * cores:
        raise UsageError(f"--num-threads {threads}: this machine has {cores} cores; at most {4 * cores} threads")


def _check_model_name(name: str) -> None:
    if not name.strip():
        raise UsageError("--register-model needs a non-empty model name")
    if any(c in name for c in ("/", ":")) or name != name.strip() or len(name) > 256:
        raise UsageError(
            f"--register-model {name[:80]!r}: not a valid model name "
            "(no '/' or ':', no surrounding spaces, at most 256 characters)"
        )


_POSITIVE = (at_least(1),)
_SHARE = (within(0, 1),)
_SHARE_OPEN = (within(0, 1, low_open=True, high_open=True),)


# ---------------------------------------------------------------------------- the options
@dataclass
class TrainConfig:
    """Every option of a training run; field names are the CLI flags with ``-`` as ``_``. Each field
    is the option's one definition (:func:`option`)."""

    # data
    data: str | None = option(
        None,
        "data",
        "training table: .csv, .csv.gz, .txt, .parquet or .npz (X, y, optional feature_names), or a folder "
        "(or a quoted glob) of Parquet files with the same columns; without it, the built-in generated data set",
        metavar="PATH",
        path=True,
    )
    test_data: str | None = option(
        None,
        "data",
        "independent labelled table (or folder of Parquet files) with the same columns; the gate is "
        "measured on it instead of the 15% test split",
        metavar="PATH",
        path=True,
    )
    label_column: str = option("label", "data", "label column: a name, or a 0-based index", metavar="NAME|INDEX")
    normal_label: str = option(
        "0", "data", "the label value of normal rows; every other value is an attack", metavar="VALUE"
    )
    no_header: bool = option(False, "data", "CSV files have no header row; columns are named by 0-based index")
    drop_columns: list[str] = option([], "data", "comma-separated columns (names or indexes) to ignore", metavar="A,B")
    id_columns: list[str] = option(
        [],
        "data",
        "comma-separated columns that identify a row (such as featurize.py --id-columns source,record,request): "
        "never features; the bundle records them and score.py copies them to its output",
        metavar="A,B",
    )
    impute: bool = option(
        False, "data", "fill missing or infinite numeric cells with training medians instead of refusing"
    )
    default_rows: int = option(
        DEFAULT_ROWS,
        "data",
        "without --data: train on a seeded sample of N built-in rows (at most 20000)",
        metavar="N",
        bounds=_POSITIVE,
        check=check_default_rows,
    )
    max_decompressed_mb: int = option(
        DEFAULT_MAX_DECOMPRESSED_MB,
        "data",
        "refuse a table that would take more than this many MB (docs/options.md)",
        metavar="MB",
        bounds=_POSITIVE,
    )
    stream: bool = option(
        False,
        "data",
        "read --data (a Parquet folder, glob or file) a row group at a time instead of whole: for more rows "
        "than memory; rows are split by a seeded hash, the preprocessing and forests fitted on a bounded "
        "sample (docs/streaming.md)",
    )
    split_key: str | None = option(
        None, "data", "--stream: split rows by this column's hash (rows sharing a key stay together)", metavar="COLUMN"
    )
    sample_rows: int = option(
        DEFAULT_SAMPLE_ROWS,
        "data",
        "--stream: the class-stratified training sample the encoder, scaler and forests are fitted on",
        metavar="N",
        bounds=(at_least(1), at_least(MIN_SAMPLE_ROWS)),
    )
    shuffle_buffer_rows: int = option(
        DEFAULT_SHUFFLE_ROWS,
        "data",
        "--stream: training rows are shuffled within a buffer of this many",
        metavar="N",
        bounds=_POSITIVE,
    )
    # hardware
    gpus: int | None = option(
        None,
        "hardware",
        "number of GPUs on this node (0 = CPU); overrides --accelerator/--devices",
        metavar="N",
        bounds=(at_least(0, "0 (CPU) or a positive count"),),
    )
    accelerator: str = option(
        "auto",
        "hardware",
        "Lightning accelerator (cpu, gpu, auto, ...)",
        metavar="NAME",
        choices=Choices(ACCELERATORS, LIGHTNING_CHOICE),
    )
    devices: str = option(
        "auto", "hardware", "Lightning devices (a count, a list or auto)", metavar="N", check=_check_devices
    )
    strategy: str = option(
        "auto",
        "hardware",
        "Lightning strategy (auto, ddp, ddp_spawn, ...)",
        metavar="NAME",
        choices=Choices(STRATEGIES, LIGHTNING_CHOICE),
    )
    num_nodes: int = option(1, "hardware", "number of nodes for multi-node training", metavar="N", bounds=_POSITIVE)
    precision: str = option(
        "32-true",
        "hardware",
        "Lightning precision (32-true, 16-mixed, bf16-mixed, ...)",
        metavar="P",
        choices=Choices(
            PRECISIONS,
            LIGHTNING_CHOICE,
            notes=(("64", " (64-bit is not supported: the forests and the scorer use float32 inputs)"),),
        ),
    )
    num_threads: int = option(
        0,
        "hardware",
        "torch CPU threads (0 = automatic: 1 for CPU training)",
        metavar="N",
        bounds=(at_least(0, "0 (auto) or positive"),),
        check=_check_num_threads,
    )
    # autoencoder
    max_epochs: int = option(100, "autoencoder", "maximum autoencoder epochs", metavar="N", bounds=_POSITIVE)
    # Chosen for time to quality (benchmarks/bench_train.py): batch 1024 at lr 3e-3 reaches the
    # reference's best validation loss about 4x sooner than its batch 256 at lr 1e-3, with detection
    # no worse; --batch-size 256 --lr 1e-3 gives the reference's settings.
    batch_size: int = option(1024, "autoencoder", "autoencoder batch size", metavar="N", bounds=_POSITIVE)
    lr: float = option(
        3e-3,
        "autoencoder",
        "AdamW learning rate",
        metavar="LR",
        bounds=(Bound(low=0, low_open=True, finite=True, words="a positive number"),),
    )
    patience: int = option(
        10, "autoencoder", "early stopping: epochs without validation-loss improvement", metavar="N", bounds=_POSITIVE
    )
    seed: int = option(
        42,
        "autoencoder",
        "random seed for splits, models and training",
        metavar="N",
        bounds=(Bound(low=0, high=2**32, high_open=True, words="within [0, 2**32)"),),
    )
    threshold_percentile: float = option(
        99.5,
        "autoencoder",
        "autoencoder threshold: this percentile of validation reconstruction error",
        metavar="Q",
        bounds=(within(0, 100, low_open=True),),
    )
    # ensemble and gate
    fusion: str = option(
        "stack",
        "fusion",
        "how member scores are fused: 'stack' (logistic stacking fitted on the validation split, "
        "cut at --target-fpr of normal validation rows) or 'fixed' (the reference's weighted mean "
        "of --weights, cut at 0.5)",
        metavar="stack|fixed",
        choices=Choices(FUSIONS),
    )
    target_fpr: float = option(
        0.01,
        "fusion",
        "stack fusion: share of normal validation rows the cut may flag",
        metavar="X",
        bounds=_SHARE_OPEN,
    )
    weights: str = option(
        DEFAULT_WEIGHTS, "fusion", "fixed fusion weights", metavar="ae=W,rf=W,if=W", check=parse_weights
    )
    min_pr_auc: float = option(0.85, "gate", "gate: minimum ensemble PR-AUC", metavar="X", bounds=_SHARE)
    min_f1: float = option(0.80, "gate", "gate: minimum ensemble F1", metavar="X", bounds=_SHARE)
    min_recall: float | None = option(
        None, "gate", "optional gate: minimum ensemble recall", metavar="X", bounds=_SHARE
    )
    max_fpr: float | None = option(
        None,
        "gate",
        "optional gate: maximum ensemble false-positive rate on the test data",
        metavar="X",
        bounds=_SHARE,
    )
    # outputs
    output_dir: str = option(
        "artifacts",
        "outputs",
        "bundle folder (replaced atomically when the run completes)",
        metavar="DIR",
        path=True,
    )
    checkpoint_dir: str = option("checkpoints", "outputs", "autoencoder checkpoints", metavar="DIR", path=True)
    export: str | None = option(
        None,
        "outputs",
        "also write the ensemble as one ONNX graph, ensemble.onnx, into the bundle (listed and hashed in its "
        "manifest, logged with it to MLflow; docs/onnx.md); the only format is 'onnx'",
        metavar="onnx",
        choices=Choices(EXPORT_FORMATS),
    )
    checkpoint_every_n_steps: int | None = option(
        None,
        "outputs",
        "also checkpoint every N training steps, mid-epoch (last.ckpt): --resume then continues from the "
        "last saved step, the epoch's remaining batches in the same order (default: after every epoch only)",
        metavar="N",
        bounds=_POSITIVE,
    )
    tracking_uri: str | None = option(
        None,
        "tracking",
        "MLflow tracking URI (default $MLFLOW_TRACKING_URI, else sqlite:///<cwd>/mlflow.db)",
        metavar="URI",
        path=True,
    )
    experiment: str = option("threat-ensemble", "tracking", "MLflow experiment name", metavar="NAME")
    run_name: str | None = option(
        None,
        "tracking",
        "MLflow run name (default: the data's name and the start time: flows-20261201-142501)",
        metavar="NAME",
    )
    quiet: bool = option(False, "outputs", "no progress bars or progress lines; errors and the summary only")
    register_model: str | None = option(
        None,
        "tracking",
        "register the run's MLflow pyfunc model (every run logs one) under NAME in the model registry "
        "(only when the gate passed, unless --register-anyway)",
        metavar="NAME",
        check=_check_model_name,
    )
    register_anyway: bool = option(False, "tracking", "register the model even when the gate failed")
    promote: bool = option(
        False,
        "tracking",
        "with --register-model: give the new version the 'champion' alias when its gate passed and, "
        "scored on this run's test rows next to the current champion, it is not worse; else 'challenger'",
    )
    promote_tolerance: float = option(
        0.005,
        "tracking",
        "--promote: how much lower PR-AUC and F1 may each be than the champion's",
        metavar="X",
        bounds=_SHARE,
    )
    promote_force: bool = option(
        False,
        "tracking",
        "with --register-model: give the new version the 'champion' alias when its gate passed, without "
        "comparing it with the current champion (the way out when the champion's bundle is gone or cannot score)",
    )
    # resume
    resume: str | None = option(
        None,
        "resume",
        "continue an interrupted run: 'last' (the newest checkpoint in --checkpoint-dir; the "
        "default when the flag has no value) or a checkpoint file",
        metavar="last|PATH",
        path=True,
        const="last",
    )
    resume_anyway: bool = option(
        False, "resume", "resume even though the data or options changed since the run started"
    )

    def __post_init__(self) -> None:
        self._coerce_types()
        self.validate()

    # ------------------------------------------------------------------ helpers
    def _coerce_types(self) -> None:
        """Turn YAML/str values into the declared types, with an error naming the option."""
        for opt in options(type(self)):
            setattr(self, opt.name, _coerce(opt.name, getattr(self, opt.name), opt.type))

    def validate(self) -> None:
        """Refuse values that cannot work, before any data is read: each option's own choices,
        bounds and rules (its :class:`OptionSpec`), then the rules between options."""
        for opt in options(type(self)):
            opt.check(getattr(self, opt.name))
        if self.stream and self.data is None:
            raise UsageError("--stream needs --data: a folder, a glob or a file of Parquet data")
        if self.split_key is not None and not self.stream:
            raise UsageError("--split-key goes with --stream (the in-memory split is stratified by label)")
        if self.promote and not self.register_model:
            raise UsageError("--promote needs --register-model NAME (the registered model to promote in)")
        if self.promote_force and not self.register_model:
            raise UsageError("--promote-force needs --register-model NAME (the registered model to promote in)")
        if self.register_anyway and not self.register_model:
            raise UsageError("--register-anyway needs --register-model NAME")

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
        sections = {title: {k: flat[k] for k in names} for title, names in yaml_sections(type(self)).items()}
        return yaml.safe_dump(sections, sort_keys=False)

    # ------------------------------------------------------------------ typed sections
    def section(self, kind: type[S]) -> S:
        """The options of one step (:class:`DataOptions`, :class:`GateOptions`, ...), as a frozen
        copy: lists become tuples."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(kind)}  # type: ignore[arg-type]
        return kind(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})

    @property
    def data_options(self) -> DataOptions:
        return self.section(DataOptions)

    @property
    def model_options(self) -> ModelOptions:
        return self.section(ModelOptions)

    @property
    def fusion_options(self) -> FusionOptions:
        return self.section(FusionOptions)

    @property
    def gate_options(self) -> GateOptions:
        return self.section(GateOptions)

    @property
    def tracking_options(self) -> TrackingOptions:
        return self.section(TrackingOptions)

    @property
    def run_options(self) -> RunOptions:
        return self.section(RunOptions)


# ---------------------------------------------------------------------------- typed sections
# What each step of a run reads, and nothing else: the engine hands each step its own section. A
# section names TrainConfig fields (same names and types; a list is a tuple here) and defines
# nothing: defaults, help and bounds stay with the field. tests/test_config.py checks that every
# option is in a section and that each section's fields are TrainConfig's.


@dataclass(frozen=True)
class DataOptions:
    """The data step (``data/training_data.py``, the DataModules): which tables, how to read them,
    how rows are split (``seed``) and, with ``--stream``, sampled and shuffled."""

    data: str | None
    test_data: str | None
    label_column: str
    normal_label: str
    no_header: bool
    drop_columns: tuple[str, ...]
    id_columns: tuple[str, ...]
    impute: bool
    default_rows: int
    max_decompressed_mb: int
    stream: bool
    split_key: str | None
    sample_rows: int
    shuffle_buffer_rows: int
    seed: int


@dataclass(frozen=True)
class ModelOptions:
    """The autoencoder's training (the LightningModule, its loader batches, early stopping) and
    its threshold on validation reconstruction error."""

    max_epochs: int
    batch_size: int
    lr: float
    patience: int
    threshold_percentile: float


@dataclass(frozen=True)
class FusionOptions:
    """The fusion fit after training: how member scores become one score and its cut."""

    fusion: str
    target_fpr: float
    weights: str

    @property
    def weight_map(self) -> dict[str, float]:
        return parse_weights(self.weights)


@dataclass(frozen=True)
class GateOptions:
    """The quality gate on the test rows (gate.json, exit 0 or 3)."""

    min_pr_auc: float
    min_f1: float
    min_recall: float | None
    max_fpr: float | None


@dataclass(frozen=True)
class TrackingOptions:
    """MLflow: where the run is logged, and the registry step (register, promote)."""

    tracking_uri: str | None
    experiment: str
    run_name: str | None
    register_model: str | None
    register_anyway: bool
    promote: bool
    promote_tolerance: float
    promote_force: bool


@dataclass(frozen=True)
class RunOptions:
    """The engine: the Lightning Trainer's hardware, seeding, checkpoints and resume, the bundle
    folder and its exports, and how much it prints."""

    gpus: int | None
    accelerator: str
    devices: str
    strategy: str
    num_nodes: int
    precision: str
    num_threads: int
    seed: int
    output_dir: str
    checkpoint_dir: str
    export: str | None
    checkpoint_every_n_steps: int | None
    quiet: bool
    resume: str | None
    resume_anyway: bool


TYPED_SECTIONS: dict[str, type] = {
    "data": DataOptions,
    "model": ModelOptions,
    "fusion": FusionOptions,
    "gate": GateOptions,
    "tracking": TrackingOptions,
    "run": RunOptions,
}

SECTIONS: dict[str, tuple[str, ...]] = yaml_sections()  # the YAML sections of TrainConfig


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
