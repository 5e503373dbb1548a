"""The run's own state, beside Lightning's: the MLflow run and RNG state in every checkpoint,
whether the autoencoder finished, Ctrl-C/SIGTERM stops, and the epoch checkpoints' names."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import MLFlowLogger
from lightning.pytorch.utilities import rank_zero_info

from threat_ensemble.checkpointing import RunState


def _say_nothing(_msg: str) -> None:
    """``--quiet``'s announcer: a module-level function, so callbacks holding it can be pickled
    (``ddp_spawn`` pickles the trainer's callbacks into the processes it starts; a lambda cannot be)."""


def announcer(quiet: bool) -> Callable[[str], None]:
    """Lines for the console on rank 0, or nothing with ``--quiet``."""
    return _say_nothing if quiet else rank_zero_info


class RunStateCallback(Callback):
    """Creates the MLflow run on rank 0 once ranks are known, records its id in the run state,
    and puts into every checkpoint the torch RNG state (so a resumed epoch shuffles and drops out
    exactly as the uninterrupted one) and whether the autoencoder is finished."""

    def __init__(
        self, state: RunState, checkpoint_dir: str | Path, params: dict[str, Any] | None, quiet: bool = False
    ) -> None:
        self.state = state
        self.checkpoint_dir = Path(checkpoint_dir)
        self.params = params  # None when resuming: MLflow params are immutable and already logged
        self.say = announcer(quiet)
        self.post_training = False
        self.restored_finished = False  # resumed from a checkpoint whose autoencoder had finished

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if not trainer.is_global_zero or stage != "fit":  # the test loop after the fit continues its run
            return
        logger = trainer.logger
        if isinstance(logger, MLFlowLogger):
            if self.params is not None:
                logger.log_hyperparams(self.params)
            self.state.mlflow_run_id = logger.run_id
        self.state.save(self.checkpoint_dir)

    def state_dict(self) -> dict[str, Any]:
        trainer = getattr(self, "_trainer", None)
        finished = trainer is not None and (trainer.should_stop or trainer.current_epoch + 1 >= trainer.max_epochs)
        state: dict[str, Any] = {"torch_rng": torch.get_rng_state(), "ae_finished": bool(finished)}
        if torch.cuda.is_available():
            state["cuda_rng"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.restored_finished = bool(state_dict.get("ae_finished"))
        torch.set_rng_state(state_dict["torch_rng"])
        if "cuda_rng" in state_dict and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state_dict["cuda_rng"])

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._trainer = trainer
        n_sync = sum(isinstance(m, torch.nn.SyncBatchNorm) for m in pl_module.modules())
        if trainer.world_size > 1 or n_sync:
            how = f"{n_sync} SyncBatchNorm layers" if n_sync else "BatchNorm statistics averaged before validation"
            rank_zero_info(f"distributed: {trainer.world_size} processes, {how}")
        if self.restored_finished:
            self.say("autoencoder already trained; completing the tree stage and the gate")

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.restored_finished:  # stopped early: no further epoch (at max_epochs Lightning runs none)
            trainer.should_stop = True

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.post_training = True

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.post_training = True  # first of the fit-end hooks: the tree and validation stages follow

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.post_training = True  # the gate's test loop (also in processes ddp_spawn starts for it)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if trainer.is_global_zero and isinstance(trainer.logger, MLFlowLogger) and trainer.logger.run_id:
            stopped = trainer.received_sigterm or isinstance(exception, KeyboardInterrupt)
            status = "interrupted" if stopped else "failed"
            mark_run(trainer.logger, status, f"{type(exception).__name__}: {exception}")


class StopSignals:
    """Ctrl-C (SIGINT) stops a run as SIGTERM does: during training, Lightning's own graceful stop
    (the epoch's checkpoint stays the resume point); in the tree and validation stages (the fit's
    end, then the gate's test loop, the bundle and MLflow), at once (the forests' fit is cancelled
    between steps). Either way ``--resume`` continues it. A second Ctrl-C interrupts at once.
    SIGTERM before training starts and after it ends stops at once too: in the test loop, where
    Lightning's handler runs first and only sets its flag, as where it is not installed."""

    def __init__(self, trainer: L.Trainer, run_state: RunStateCallback) -> None:
        self.trainer = trainer
        self.run_state = run_state
        self.sigint = False
        self.sigterm = False

    @contextmanager
    def installed(self) -> Iterator[None]:
        import signal
        import threading

        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = signal.signal(signal.SIGINT, self._on_sigint)
        previous_term = signal.signal(signal.SIGTERM, self._on_sigterm)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)
            signal.signal(signal.SIGTERM, previous_term)

    @property
    def received(self) -> str | None:
        """The stop signal's name, if one stopped the run."""
        if self.sigint:
            return "SIGINT"
        return "SIGTERM" if self.sigterm or self.trainer.received_sigterm else None

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        self.sigterm = True
        # while training, Lightning's handler (it runs first while installed) has set its flag: its loop
        # stops after the step; after training no loop waits for that flag before the bundle is written
        if self.run_state.post_training or not self.trainer.received_sigterm:
            raise KeyboardInterrupt

    def _on_sigint(self, signum: int, frame: Any) -> None:
        first = not self.sigint
        self.sigint = True
        if first and not self.run_state.post_training:
            rank_zero_info("interrupted (Ctrl-C): stopping after the current step; Ctrl-C again to stop at once")
            self._graceful_stop()
            return
        raise KeyboardInterrupt

    def _graceful_stop(self) -> None:
        """Lightning's graceful stop, started as its SIGTERM handler starts it but without sending a
        SIGTERM: its loops stop after the current step when the signal connector's flag is set.
        Raising SIGTERM here (as before) made Lightning's handler log ``Received SIGTERM: 15`` after a
        Ctrl-C. Other ranks need no signal from here: a Ctrl-C reaches every process of the terminal's
        group, and rank 0's flag is broadcast to the others at every training step."""
        connector = getattr(self.trainer, "_signal_connector", None)
        if connector is None or not hasattr(connector, "received_sigterm"):  # another Lightning: its own way
            import signal

            signal.raise_signal(signal.SIGTERM)
            return
        connector.received_sigterm = True


def mark_killed(logger: MLFlowLogger) -> None:
    """An interrupted run is KILLED in MLflow (Lightning finalises it as FAILED), to be continued."""
    try:
        logger.experiment.set_terminated(logger.run_id, status="KILLED")
    except Exception as exc:
        print(f"warning: could not mark the MLflow run as killed: {exc}")


class EpochCheckpoint(ModelCheckpoint):
    """Lightning's ``ModelCheckpoint``, its file names counting epochs from 1 as the progress lines
    do (``autoencoder-epoch=003.ckpt`` is the checkpoint written after ``epoch 3/100``)."""

    def format_checkpoint_name(
        self, metrics: dict[str, Any], filename: str | None = None, ver: int | None = None, prefix: str | None = None
    ) -> str:
        if "epoch" in metrics:
            metrics = {**metrics, "epoch": metrics["epoch"] + 1}
        return super().format_checkpoint_name(metrics, filename, ver, prefix)


def mark_run(logger: MLFlowLogger, status: str, error: str | None = None) -> None:
    """Tag the run's outcome; tracking trouble must not hide the run's own result."""
    try:
        logger.experiment.set_tag(logger.run_id, "status", status)
        if error:
            logger.experiment.set_tag(logger.run_id, "error", error[:5000])
    except Exception as exc:
        print(f"warning: could not tag the MLflow run: {exc}")
