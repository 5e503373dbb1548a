"""The engine: a training run end to end. Tables (data/training_data.py) -> DataModule -> one
Trainer (``fit``: the autoencoder, then the forests and the fusion; ``test``: the gate, then the
bundle and the MLflow run), the gate returned from memory. ``train`` backs the CLI; ``run`` takes
arrays or a DataFrame, like the reference's ``TrainingOrchestrator.run(X, y)``."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from threat_ensemble.config import TrainConfig
from threat_ensemble.data.tables import LabelledTable, check_class_counts, fingerprint
from threat_ensemble.data.training_data import Table, describe_tables, load_inputs, table_from_memory
from threat_ensemble.errors import EXIT_GATE_FAILED, InputError, Preempted, UsageError, first_line
from threat_ensemble.models.bundle import REJECTED_SUFFIX, check_output_dir, recover_interrupted_swap
from threat_ensemble.tracking.run_info import (
    artifact_location_for,
    default_run_name,
    default_tracking_uri,
    run_params,
    run_tags,
)

EXIT_PASSED, EXIT_TRACKING_FAILED = 0, 5  # the other exit codes live in errors.py


@dataclass
class TrainResult:
    """What a run produced. ``gate`` is the content of gate.json (None on ranks other than 0)."""

    passed: bool
    gate: dict[str, Any] | None
    bundle_dir: Path | None
    mlflow_run_id: str | None
    summary: dict[str, Any] = field(default_factory=dict)
    tracking_failure: str | None = None  # the first MLflow error, when tracking failed mid-run

    @property
    def metrics(self) -> dict[str, float]:
        return dict(self.gate["metrics"]) if self.gate else {}

    @property
    def per_model(self) -> dict[str, dict[str, float]]:
        return dict(self.gate["per_model"]) if self.gate else {}

    @classmethod
    def other_rank(cls, summary: dict[str, Any]) -> TrainResult:
        """What a rank other than 0 returns: rank 0 alone gates and writes the bundle."""
        return cls(passed=True, gate=None, bundle_dir=None, mlflow_run_id=None, summary=summary)

    @property
    def exit_code(self) -> int:
        if not self.passed:
            return EXIT_GATE_FAILED
        return EXIT_TRACKING_FAILED if self.tracking_failure else EXIT_PASSED


# ----------------------------------------------------------------------------- hardware
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


def _on_gpu(hardware: dict[str, Any]) -> bool:
    """torch's SyncBatchNorm runs on CUDA only; CPU ranks average BatchNorm statistics instead."""
    import torch

    accelerator = str(hardware["accelerator"])
    return accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())


def configure_threads(cfg: TrainConfig, accelerator: str) -> None:
    """On CPU a tiny model trains fastest on one thread: a second thread collapses throughput as
    soon as the other core is busy (PLATFORM-NOTES). ``--num-threads`` overrides."""
    import torch

    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    elif accelerator in ("cpu", "auto") and not torch.cuda.is_available():
        torch.set_num_threads(1)


# ----------------------------------------------------------------------------- the run
def train(cfg: TrainConfig) -> TrainResult:
    """Run the whole pipeline for ``cfg``; raises InputError for unusable input."""
    table, test = load_inputs(cfg, progress=print if not cfg.quiet and launched_as_rank_zero() else None)
    return train_tables(cfg, table, test)


def train_tables(cfg: TrainConfig, table: Table, test: Table | None = None) -> TrainResult:
    """Train on ``table`` (and gate on ``test`` or the test split). The output and checkpoint
    folders are checked first and locked for the run (by the process launched as rank 0)."""
    from threat_ensemble.run_folders import check_replaceable, check_run_folders, locked
    from threat_ensemble.tracking import offline_mlflow, tracking_uri_kept

    offline_mlflow()  # before anything imports MLflow
    check_class_counts(table)
    check_output_dir(cfg.output_dir)
    if not cfg.quiet and launched_as_rank_zero():
        print(describe_tables(table, test, cfg.normal_label))
    check_run_folders(cfg.output_dir, cfg.checkpoint_dir)
    with tracking_uri_kept():  # Lightning's MLflow logger points MLflow's process-wide URI at the run's store
        if not launched_as_rank_zero():
            return _train_tables(cfg, table, test, rank_zero=False)
        with locked(("--output-dir", cfg.output_dir), ("--checkpoint-dir", cfg.checkpoint_dir)):
            for folder in (cfg.output_dir, f"{cfg.output_dir}{REJECTED_SUFFIX}"):
                for note in recover_interrupted_swap(folder):
                    print(note, file=sys.stderr)
                check_replaceable("--output-dir", folder)  # what the bundle's swap does, tried before training
            return _train_tables(cfg, table, test, rank_zero=True)


def _train_tables(cfg: TrainConfig, table: Table, test: Table | None, rank_zero: bool) -> TrainResult:
    return Engine(cfg, table, test, rank_zero).fit()


class Engine:
    """One training run as a few short steps: the run prepared (tracking store checked, hardware, the
    data's fingerprint, the run state and the checkpoint to resume from), then :meth:`fit`: the
    DataModule, the autoencoder, the MLflow logger and the callbacks handed to one Lightning
    ``Trainer``, whose ``fit`` trains the autoencoder and ends with the forests and the fusion, and
    whose ``test`` (``evaluation/test_loop.py``) makes the gate, then writes the bundle and logs to
    MLflow; the result read back from memory."""

    def __init__(self, cfg: TrainConfig, table: Table, test: Table | None, rank_zero: bool) -> None:
        from threat_ensemble.tracking.store import check_tracking_uri

        self.cfg, self.table, self.test, self.rank_zero = cfg, table, test, rank_zero
        self.uri = cfg.tracking_uri or default_tracking_uri()
        if cfg.quiet:
            from threat_ensemble.console import quiet_library_logs

            quiet_library_logs()
        if rank_zero:  # fail in seconds, before any training, when the store is unusable
            check_tracking_uri(self.uri)
        self.hardware = resolve_hardware(cfg)
        self.streamed = not isinstance(table, LabelledTable)
        self.data_fingerprint = table.scan().fingerprint if self.streamed else fingerprint(table.features, table.y)
        self.state, self.ckpt_path = _prepare_run_state(cfg, self.data_fingerprint, rank_zero)
        configure_threads(cfg, self.hardware["accelerator"])

    def datamodule(self) -> Any:
        """The DataModule for the run's tables (a stream for --stream), set up: split, preprocessing."""
        from threat_ensemble.data.datamodule import LabelledDataModule, StreamDataModule, ThreatDataModule

        cfg = self.cfg
        datamodule: LabelledDataModule
        if self.streamed:
            datamodule = StreamDataModule(
                self.table,
                self.test,
                batch_size=cfg.batch_size,
                seed=cfg.seed,
                shuffle_buffer_rows=cfg.shuffle_buffer_rows,
            )
        else:
            datamodule = ThreatDataModule(self.table, self.test, batch_size=cfg.batch_size, seed=cfg.seed)
        datamodule.setup("fit")
        return datamodule

    def logger(self) -> Any:
        """The run's MLflow logger (continuing the run being resumed); only the process launched as
        rank 0 touches the tracking store: other ranks and nodes opening it at the same time race on
        creating its tables."""
        if not self.rank_zero:
            return False
        from threat_ensemble.tracking.logger import ResilientMLFlowLogger, bound_http_retries

        bound_http_retries()
        cfg, resuming = self.cfg, self.state.mlflow_run_id is not None
        return ResilientMLFlowLogger(
            experiment_name=cfg.experiment,
            run_name=cfg.run_name or default_run_name(cfg),
            tracking_uri=self.uri,
            artifact_location=artifact_location_for(self.uri),
            run_id=self.state.mlflow_run_id,
            tags=None if resuming else run_tags(),
        )

    def end_of_fit(self, outcome: Any, manifest_extra: dict[str, Any]) -> list[Any]:
        """The steps after the autoencoder, each after the steps that make what it needs: the forests
        and the fusion when the fit ends, the gate in Lightning's test loop (the one LightningModule
        here), then the bundle and MLflow."""
        from threat_ensemble.callbacks.end_of_fit import (
            BundleCallback,
            ForestCallback,
            FusionCallback,
            TrackingCallback,
            in_dependency_order,
        )
        from threat_ensemble.evaluation.test_loop import EnsembleEvaluation

        cfg, state, folder = self.cfg, self.state, self.cfg.checkpoint_dir
        read = {"impute": cfg.impute, "quiet": cfg.quiet}  # how the rows were read; how much to print
        return in_dependency_order(
            [
                ForestCallback(cfg.seed, state, folder, outcome, quiet=cfg.quiet),
                FusionCallback(cfg.fusion_options, outcome, **read),
                EnsembleEvaluation(cfg.gate_options, outcome, **read),
                BundleCallback(cfg, outcome, state, folder, manifest_extra),  # it writes the whole config
                TrackingCallback(cfg.tracking_options, outcome, state, folder, self.uri, **read),
            ]
        )

    def callbacks(self, run_state: Any, end_of_fit: list[Any]) -> list[Any]:
        """Progress, the run state, early stopping, the checkpoints, then the end-of-fit steps."""
        from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint

        from threat_ensemble.callbacks.run_state import EpochCheckpoint
        from threat_ensemble.checkpointing import LAST_CHECKPOINT
        from threat_ensemble.console import ConsoleSettings, progress_callback

        cfg = self.cfg
        progress = progress_callback(cfg.quiet)
        return [
            ConsoleSettings(cfg.quiet),  # ddp_spawn: the same console settings in the processes it starts
            *([progress] if progress is not None else []),  # first: the last epoch's line before the trees'
            run_state,
            EarlyStopping(monitor="val_loss", mode="min", patience=cfg.patience, min_delta=0.0),
            EpochCheckpoint(
                dirpath=cfg.checkpoint_dir,
                filename="autoencoder-{epoch:03d}",
                monitor="val_loss",
                mode="min",
                save_top_k=1,
            ),
            # last.ckpt after every epoch, improved or not (Lightning's save_last writes it only when the
            # monitored checkpoint improved: a run killed after an epoch without one would retrain from
            # the last improving epoch); with step checkpoints too, both keep one last.ckpt current
            ModelCheckpoint(
                dirpath=cfg.checkpoint_dir,
                filename=Path(LAST_CHECKPOINT).stem,
                save_top_k=1,
                enable_version_counter=False,
            ),
            *_step_checkpoints(cfg),
            *(step for step in end_of_fit if isinstance(step, Callback)),
        ]

    def fit(self) -> TrainResult:
        """Train the autoencoder (from ``ckpt_path`` when resuming; the forests and the fusion at the
        fit's end), then run Lightning's test loop (the gate, then the bundle and MLflow), and return
        the gate from memory (rank 0; other ranks return their summary)."""
        import lightning as L
        from lightning.pytorch.loggers import MLFlowLogger

        from threat_ensemble.callbacks.end_of_fit import FitOutcome
        from threat_ensemble.callbacks.run_state import RunStateCallback, StopSignals, mark_killed
        from threat_ensemble.console import silence_library_chatter
        from threat_ensemble.models.autoencoder import AutoencoderModule

        cfg = self.cfg
        silence_library_chatter()
        L.seed_everything(cfg.seed, workers=True, verbose=False)
        datamodule = self.datamodule()
        summary = datamodule.summary()
        model = AutoencoderModule(
            n_inputs=datamodule.n_features, lr=cfg.lr, threshold_percentile=cfg.threshold_percentile
        )
        logger = self.logger()
        fingerprinted = {"data_fingerprint": self.data_fingerprint}
        resuming = self.state.mlflow_run_id is not None
        params = None if resuming else {**run_params(cfg, summary), **fingerprinted, **model.hparams}
        outcome = FitOutcome()
        manifest_extra = {**fingerprinted, "config": cfg.to_dict(), "data_summary": summary}
        end_of_fit = self.end_of_fit(outcome, manifest_extra)
        evaluation = next(step for step in end_of_fit if isinstance(step, L.LightningModule))
        ckpt_path = self.ckpt_path
        if ckpt_path is not None:
            ckpt_path = _readable_checkpoint(ckpt_path)
            _check_checkpoint_shape(ckpt_path, datamodule.n_features)
        run_state = RunStateCallback(self.state, cfg.checkpoint_dir, params, quiet=cfg.quiet)
        trainer = L.Trainer(
            **self.hardware,
            max_epochs=cfg.max_epochs,
            num_sanity_val_steps=0,
            sync_batchnorm=_on_gpu(self.hardware),
            logger=logger,
            callbacks=self.callbacks(run_state, end_of_fit),
            default_root_dir=cfg.checkpoint_dir,
            enable_progress_bar=not cfg.quiet,
            enable_model_summary=False,  # 11 lines about a 4k-parameter MLP; the README describes it
            log_every_n_steps=1,
        )
        stop = StopSignals(trainer, run_state)
        try:
            with stop.installed():
                trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
                if self.rank_zero and outcome.ensemble is None:  # ddp_spawn: the fit's end ran elsewhere
                    logger = self.after_spawned_fit(trainer, model, datamodule, end_of_fit)
                trainer.test(evaluation, datamodule=datamodule, verbose=False)
        except (SystemExit, KeyboardInterrupt) as exc:
            if stop.received:
                if isinstance(logger, MLFlowLogger):
                    mark_killed(logger)
                raise Preempted(str(Path(cfg.checkpoint_dir).resolve()), stop.received) from exc
            raise
        if not trainer.is_global_zero:
            return TrainResult.other_rank(summary)
        result = _result(outcome, Path(cfg.checkpoint_dir), summary)
        result.tracking_failure = getattr(logger, "failure", None)
        return result


    def after_spawned_fit(self, trainer: Any, model: Any, datamodule: Any, end_of_fit: list[Any]) -> Any:
        """ddp_spawn: ``fit`` ran in processes it spawned, and what the end-of-fit steps made there
        went with them. Lightning hands back the autoencoder (the best epoch's weights: the fusion
        step restored them there) and the training's last metrics; the run state on disk names the
        MLflow run and the forests' side files with their digests. The end-of-fit steps run again
        here from those (the forests read back, not fitted again), so that the test loop, spawned
        in turn, gets the ensemble and continues the run. Returns the run's logger."""
        from dataclasses import fields

        from threat_ensemble.callbacks.end_of_fit import EndOfFitStep
        from threat_ensemble.checkpointing import RunState

        saved = RunState.load(self.cfg.checkpoint_dir)
        if saved is None or saved.mlflow_run_id is None:
            raise RuntimeError("the fit ended without its run state")
        for name in (f.name for f in fields(RunState)):
            setattr(self.state, name, getattr(saved, name))  # the steps hold this state: updated in place
        trainer.logger = logger = self.logger()
        for step in end_of_fit:
            if isinstance(step, EndOfFitStep):
                step.after_fit(datamodule, model, trainer)
        return logger


def _step_checkpoints(cfg: TrainConfig) -> list[Any]:
    """--checkpoint-every-n-steps: last.ckpt every N steps too (the train loader resumes mid-epoch)."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    if not cfg.checkpoint_every_n_steps:
        return []
    return [
        ModelCheckpoint(
            dirpath=cfg.checkpoint_dir,
            every_n_train_steps=cfg.checkpoint_every_n_steps,
            save_top_k=0,  # last.ckpt only
            save_last=True,
            enable_version_counter=False,
        )
    ]


def _prepare_run_state(cfg: TrainConfig, data_fingerprint: str, rank_zero: bool) -> tuple[Any, Path | None]:
    """A fresh run clears our files in the checkpoint folder (refusing an interrupted run's of
    other data or options); a resumed one checks that data and options are unchanged and returns
    the checkpoint to continue from."""
    from threat_ensemble.checkpointing import (
        RunState,
        check_checkpoint_names,
        check_fresh_start,
        clear_previous_run,
        differences,
        resolve_resume,
        result_options,
    )

    options = result_options(cfg.to_dict())
    check_checkpoint_names(cfg.checkpoint_dir)  # a folder named last.ckpt: one line, before anything is cleared
    if not cfg.resume:
        check_fresh_start(cfg.checkpoint_dir, data_fingerprint, options)  # every rank: all refuse alike
        if rank_zero:  # other ranks/nodes must not delete what rank 0 writes
            clear_previous_run(cfg.checkpoint_dir)
            Path(cfg.checkpoint_dir).mkdir(parents=True, exist_ok=True)
        return RunState(data_fingerprint=data_fingerprint, options=options), None
    ckpt_path, folder = resolve_resume(cfg.resume, cfg.checkpoint_dir)
    check_checkpoint_names(folder)
    state = RunState.load(folder)
    assert state is not None
    diffs = differences(state, data_fingerprint, options)
    if diffs and not cfg.resume_anyway:
        raise InputError(f"--resume refused: {'; '.join(diffs)} (pass --resume-anyway to continue regardless)")
    if diffs:
        print(f"warning: resuming anyway although {'; '.join(diffs)}", file=sys.stderr)
    state.data_fingerprint, state.options = data_fingerprint, options
    cfg.checkpoint_dir = str(folder)
    return state, ckpt_path


def launched_as_rank_zero() -> bool:
    """Before the Trainer knows the ranks: is this the process a launcher (torchrun, SLURM,
    Lightning's own DDP launcher, a second node) started as global rank 0?"""
    return all(int(os.environ.get(k, "0") or 0) == 0 for k in ("RANK", "NODE_RANK", "LOCAL_RANK", "SLURM_PROCID"))


def _readable_checkpoint(ckpt_path: Path) -> Path:
    """``ckpt_path`` when it loads, or, when it is damaged (a truncated write, a full disk), the
    newest other checkpoint of the run that loads: every checkpoint holds the RNG state, so resuming
    from an earlier epoch retraces the same steps. One line when none is usable."""
    import torch

    def problem(path: Path) -> str | None:
        try:
            torch.load(path, weights_only=True, map_location="cpu")
        except Exception as exc:  # torch raises many kinds for a damaged zip or pickle
            return first_line(exc, limit=120, named=True)
        return None

    first = problem(ckpt_path)
    if first is None:
        return ckpt_path
    others = sorted(  # by name and suffix, never a pattern (the folder's own name may hold '[')
        (p for p in ckpt_path.parent.iterdir() if p.suffix == ".ckpt" and p.is_file() and p != ckpt_path),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    for other in others:
        if problem(other) is None:
            print(f"warning: {ckpt_path}: unreadable ({first}); resuming from {other} instead", file=sys.stderr)
            return other
    raise InputError(
        f"--resume: {ckpt_path} is unreadable ({first}) and no other checkpoint in {ckpt_path.parent} loads; "
        "start afresh without --resume"
    )


def _check_checkpoint_shape(ckpt_path: Path, n_features: int) -> None:
    """A checkpoint continues only an autoencoder of this data's width: data of another column count
    (or other categories) under ``--resume-anyway`` is one line before training, not a size mismatch
    from Lightning's loader."""
    import torch

    checkpoint = torch.load(ckpt_path, weights_only=True, map_location="cpu")
    hparams = checkpoint.get("hyper_parameters") if isinstance(checkpoint, dict) else None
    saved = hparams.get("n_inputs") if isinstance(hparams, dict) else None
    if isinstance(saved, int) and saved != n_features:
        raise InputError(
            f"--resume: {ckpt_path} holds an autoencoder of {saved} inputs but this data encodes to {n_features} "
            "(other columns or categories); no checkpoint continues on data of another shape, even with "
            "--resume-anyway: start afresh without --resume"
        )


def _result(outcome: Any, checkpoint_dir: Path, summary: dict[str, Any]) -> TrainResult:
    """The run's result from the validation step, in memory: gate.json's content plus the bundle's
    digest, and where the bundle went (``--output-dir``, or beside it when a failed gate would have
    replaced a passing bundle)."""
    gate, bundle = outcome.gate, outcome.bundle_dir
    if gate is None:  # ddp_spawn: the stage ran in a spawned rank 0; it left the bundle and its digest
        gate, bundle = _gate_from_run_state(checkpoint_dir)
    if gate is None or bundle is None:
        raise RuntimeError("training ended without the validation stage")
    return TrainResult(
        passed=bool(gate["passed"]),
        gate=gate,
        bundle_dir=Path(bundle).resolve(),
        mlflow_run_id=gate.get("mlflow_run_id"),
        summary=summary,
    )


def _gate_from_run_state(checkpoint_dir: Path) -> tuple[dict[str, Any] | None, Path | None]:
    """The gate of the bundle the run state names, read back verified against its digest."""
    from threat_ensemble.checkpointing import RunState
    from threat_ensemble.models.bundle import GATE_FILE, read_bundle

    state = RunState.load(checkpoint_dir)
    if state is None or not state.completed or not state.bundle_dir:
        return None, None
    bundle = read_bundle(state.bundle_dir, expect_digest=state.bundle_digest)
    return {**bundle.json(GATE_FILE), "bundle_digest": bundle.digest}, Path(state.bundle_dir)


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
    table = table_from_memory(X, y, feature_names, cfg, "X")
    test_table = table_from_memory(test[0], test[1], feature_names, cfg, "test") if test else None
    return train_tables(cfg, table, test_table)
