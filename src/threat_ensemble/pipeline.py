"""The training run, end to end: inputs -> DataModule -> Trainer (autoencoder, then the tree and
validation callbacks) -> bundle, gate and MLflow run. ``train`` backs the CLI; ``run`` takes
arrays or a DataFrame, like the reference's ``TrainingOrchestrator.run(X, y)``."""

from __future__ import annotations

import logging
import os
import platform
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from threat_ensemble.artifacts import GATE_FILE, check_output_dir, read_json
from threat_ensemble.config import TrainConfig
from threat_ensemble.errors import InputError, UsageError
from threat_ensemble.tables import LabelledTable, fingerprint, labelled_table_from_frame, load_labelled_table

EXIT_PASSED, EXIT_UNEXPECTED, EXIT_INPUT, EXIT_GATE_FAILED = 0, 1, 2, 3


@dataclass
class TrainResult:
    """What a run produced. ``gate`` is the content of gate.json (None on ranks other than 0)."""

    passed: bool
    gate: dict[str, Any] | None
    bundle_dir: Path | None
    mlflow_run_id: str | None
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def metrics(self) -> dict[str, float]:
        return dict(self.gate["metrics"]) if self.gate else {}

    @property
    def per_model(self) -> dict[str, dict[str, float]]:
        return dict(self.gate["per_model"]) if self.gate else {}

    @property
    def exit_code(self) -> int:
        return EXIT_PASSED if self.passed else EXIT_GATE_FAILED


# ----------------------------------------------------------------------------- inputs
def load_inputs(cfg: TrainConfig) -> tuple[LabelledTable, LabelledTable | None]:
    """The training table (a file or the built-in default data) and the optional test table."""
    options = {
        "label_column": cfg.label_column,
        "normal_label": cfg.normal_label,
        "drop_columns": cfg.drop_columns,
        "impute": cfg.impute,
    }
    if cfg.data is None:
        from threat_ensemble.synthetic import default_table

        table = default_table(cfg.default_rows, cfg.seed)
    else:
        table = load_labelled_table(cfg.data, no_header=cfg.no_header, **options)
    test = None
    if cfg.test_data is not None:
        test = load_labelled_table(cfg.test_data, no_header=cfg.no_header, **options)
        if test.n_attack == 0 or test.n_normal == 0:
            raise InputError(f"{test.source}: the test data needs both normal and attack rows")
    return table, test


def resolve_hardware(cfg: TrainConfig) -> dict[str, Any]:
    """Trainer hardware arguments; ``--gpus N`` wins over ``--accelerator/--devices``."""
    devices: Any = cfg.devices
    if isinstance(devices, str) and devices.isdigit():
        devices = int(devices)
    args: dict[str, Any] = {
        "accelerator": cfg.accelerator,
        "devices": devices,
        "strategy": cfg.strategy,
        "num_nodes": cfg.num_nodes,
        "precision": cfg.precision,
    }
    if cfg.gpus is not None:
        if cfg.gpus == 0:
            args.update(accelerator="cpu", devices=1 if devices == "auto" else devices)
        else:
            import torch

            available = torch.cuda.device_count()
            if available < cfg.gpus:
                raise UsageError(f"--gpus {cfg.gpus}: this machine has {available} CUDA GPU(s); use --gpus 0 for CPU")
            args.update(accelerator="gpu", devices=cfg.gpus)
            if cfg.gpus > 1 and cfg.strategy == "auto":
                args["strategy"] = "ddp"
    return args


def configure_threads(cfg: TrainConfig, accelerator: str) -> None:
    """On CPU a tiny model trains fastest on one thread: a second thread collapses throughput as
    soon as the other core is busy (PLATFORM-NOTES). ``--num-threads`` overrides."""
    import torch

    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    elif accelerator in ("cpu", "auto") and not torch.cuda.is_available():
        torch.set_num_threads(1)


def default_tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path('mlflow.db').resolve()}"


def artifact_location_for(uri: str) -> str | None:
    """For a SQLite store, keep artifacts in a folder beside the database, not in ./mlruns."""
    if uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///") :])
        return (db.parent / "mlartifacts").resolve().as_uri()
    return None


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
        return out.stdout.strip() if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _params(cfg: TrainConfig, summary: dict[str, Any]) -> dict[str, Any]:
    params = {k: ("" if v is None else v) for k, v in cfg.to_dict().items()}
    params["drop_columns"] = ",".join(cfg.drop_columns)
    params["data"] = cfg.data or f"default ({cfg.default_rows} rows, seed {cfg.seed})"
    params["epochs"] = cfg.max_epochs
    params.update(summary)
    return params


# ----------------------------------------------------------------------------- the run
def train(cfg: TrainConfig) -> TrainResult:
    """Run the whole pipeline for ``cfg``; raises InputError for unusable input."""
    table, test = load_inputs(cfg)
    return train_tables(cfg, table, test)


def train_tables(cfg: TrainConfig, table: LabelledTable, test: LabelledTable | None = None) -> TrainResult:
    from threat_ensemble.data import check_class_counts

    check_class_counts(table)
    check_output_dir(cfg.output_dir)
    hardware = resolve_hardware(cfg)
    configure_threads(cfg, hardware["accelerator"])

    import lightning as L
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
    from lightning.pytorch.loggers import MLFlowLogger

    from threat_ensemble.callbacks import EnsembleValidationCallback, ForestCallback
    from threat_ensemble.data import ThreatDataModule
    from threat_ensemble.model import AutoencoderModule

    if cfg.quiet:
        logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
        logging.getLogger("lightning.fabric").setLevel(logging.WARNING)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule = ThreatDataModule(table, test, batch_size=cfg.batch_size, seed=cfg.seed)
    datamodule.setup("fit")
    summary = datamodule.summary()
    model = AutoencoderModule(n_inputs=datamodule.n_features, lr=cfg.lr, threshold_percentile=cfg.threshold_percentile)
    uri = cfg.tracking_uri or default_tracking_uri()
    logger = MLFlowLogger(
        experiment_name=cfg.experiment,
        run_name=cfg.run_name,
        tracking_uri=uri,
        artifact_location=artifact_location_for(uri),
        tags={
            "python_version": platform.python_version(),
            "platform": platform.platform(),
            "git_commit": git_commit(),
            "status": "running",
        },
    )
    data_fingerprint = fingerprint(table.features, table.y)
    forests = ForestCallback(cfg.seed, quiet=cfg.quiet)
    validation = EnsembleValidationCallback(
        cfg,
        forests,
        manifest_extra={"data_fingerprint": data_fingerprint, "config": cfg.to_dict(), "data_summary": summary},
    )
    callbacks = [
        EarlyStopping(monitor="val_loss", mode="min", patience=cfg.patience, min_delta=0.0),
        ModelCheckpoint(
            dirpath=cfg.checkpoint_dir,
            filename="autoencoder-{epoch:03d}",
            monitor="val_loss",
            mode="min",
            save_top_k=1,
            save_last=True,
        ),
        forests,
        validation,
    ]
    trainer = L.Trainer(
        **hardware,
        max_epochs=cfg.max_epochs,
        gradient_clip_val=1.0,
        gradient_clip_algorithm="norm",
        num_sanity_val_steps=0,
        sync_batchnorm=True,
        logger=logger,
        callbacks=callbacks,
        default_root_dir=cfg.checkpoint_dir,
        enable_progress_bar=not cfg.quiet,
        enable_model_summary=not cfg.quiet,
        log_every_n_steps=1,
    )
    if trainer.is_global_zero:
        logger.log_hyperparams({**_params(cfg, summary), "data_fingerprint": data_fingerprint})
    try:
        trainer.fit(model, datamodule=datamodule)
    except BaseException as exc:
        if trainer.is_global_zero:
            _mark_run(logger, "failed", f"{type(exc).__name__}: {exc}")
        raise
    if not trainer.is_global_zero:
        return TrainResult(passed=True, gate=None, bundle_dir=None, mlflow_run_id=None, summary=summary)
    gate = read_json(Path(cfg.output_dir) / GATE_FILE)
    _mark_run(logger, "completed")
    return TrainResult(
        passed=bool(gate["passed"]),
        gate=gate,
        bundle_dir=Path(cfg.output_dir).resolve(),
        mlflow_run_id=logger.run_id,
        summary=summary,
    )


def _mark_run(logger: Any, status: str, error: str | None = None) -> None:
    try:
        logger.experiment.set_tag(logger.run_id, "status", status)
        if error:
            logger.experiment.set_tag(logger.run_id, "error", error[:5000])
            logger.experiment.set_terminated(logger.run_id, status="FAILED")
    except Exception as exc:  # tracking trouble must not hide the run's own outcome
        print(f"warning: could not tag the MLflow run: {exc}", file=sys.stderr)


def run(
    X: np.ndarray | pd.DataFrame,
    y: np.ndarray | pd.Series | None = None,
    *,
    feature_names: list[str] | None = None,
    test: tuple[np.ndarray | pd.DataFrame, np.ndarray | pd.Series] | None = None,
    **options: Any,
) -> TrainResult:
    """Train from in-memory data. ``X``: a matrix or DataFrame; ``y``: labels (``normal_label``,
    default 0, is normal; anything else an attack). A DataFrame may carry its labels in
    ``label_column`` instead of ``y``. ``options`` are TrainConfig fields (``max_epochs=5`` ...)."""
    cfg = TrainConfig(**options)
    table = _table_from_memory(X, y, feature_names, cfg, "X")
    test_table = _table_from_memory(test[0], test[1], feature_names, cfg, "test") if test else None
    return train_tables(cfg, table, test_table)


def _table_from_memory(
    X: np.ndarray | pd.DataFrame,
    y: np.ndarray | pd.Series | None,
    feature_names: list[str] | None,
    cfg: TrainConfig,
    source: str,
) -> LabelledTable:
    if isinstance(X, pd.DataFrame):
        frame = X.copy()
    else:
        array = np.asarray(X)
        if array.ndim != 2:
            raise InputError(f"{source}: expected a 2-D array (rows x features), got shape {array.shape}")
        names = feature_names or [f"f{i}" for i in range(array.shape[1])]
        if len(names) != array.shape[1]:
            raise InputError(f"{source}: {len(names)} feature names for {array.shape[1]} columns")
        frame = pd.DataFrame(array, columns=names)
    label_column = cfg.label_column
    if y is not None:
        labels = np.asarray(y)
        if labels.ndim != 1 or len(labels) != len(frame):
            raise InputError(f"{source}: y must be 1-D with {len(frame)} entries, got shape {labels.shape}")
        label_column = "__label__"
        frame[label_column] = labels
    return labelled_table_from_frame(
        frame,
        source=source,
        label_column=label_column,
        normal_label=cfg.normal_label,
        drop_columns=cfg.drop_columns,
        impute=cfg.impute,
    )
