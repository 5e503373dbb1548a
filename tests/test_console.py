from __future__ import annotations

import io
import warnings
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
from lightning.pytorch.callbacks import RichProgressBar

from conftest import fit_autoencoder, train_cmd
from threat_ensemble.console import (
    EpochLines,
    TrainingBar,
    progress_callback,
    silence_library_chatter,
    summary_table,
)


def _metrics(f1: float) -> dict[str, float]:
    return {"precision": 0.9, "recall": 0.8, "f1": f1, "pr_auc": 0.95, "roc_auc": 0.97, "fpr": 0.02}


def _result(passed: bool) -> SimpleNamespace:
    gate = {
        "passed": passed,
        "gates": {
            "pr_auc": {"value": 0.95, "min": 0.85, "passed": True},
            "f1": {"value": 0.8123, "min": 0.9, "passed": False},
            "fpr": {"value": 0.02, "max": 0.05, "passed": True},
        },
        "metrics": _metrics(0.8123),
        "per_model": {"ae": _metrics(0.5111), "rf": _metrics(0.7777), "if": _metrics(0.6666)},
        "n_test": 1234,
        "test_source": "test file holdout.csv",
    }
    return SimpleNamespace(gate=gate, bundle_dir=Path("/tmp/bundle"), mlflow_run_id="abc123")


def test_summary_table_holds_members_gates_bundle_and_run() -> None:
    text = summary_table(_result(passed=False))
    lines = text.splitlines()
    for name, f1 in (("ae", "0.5111"), ("rf", "0.7777"), ("if", "0.6666"), ("ensemble", "0.8123")):
        row = next(line for line in lines if line.strip("│┃ ").startswith(name + " "))
        assert f1 in row, row
    f1_gate = next(line for line in lines if "f1" in line and ">= 0.9000" in line)
    assert "0.8123" in f1_gate and "FAIL" in f1_gate
    assert any("fpr" in line and "<= 0.0500" in line and "pass" in line for line in lines)
    assert "gate: FAILED on 1234 rows of the test file holdout.csv" in text
    assert "bundle: /tmp/bundle" in text and "mlflow run: abc123" in text
    assert "gate: PASSED" in summary_table(_result(passed=True))


class _Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_progress_is_a_rich_bar_on_a_terminal_and_lines_otherwise() -> None:
    assert isinstance(progress_callback(quiet=False, stream=_Stream(tty=True)), RichProgressBar)
    assert isinstance(progress_callback(quiet=False, stream=_Stream(tty=False)), EpochLines)
    assert progress_callback(quiet=True, stream=_Stream(tty=True)) is None


def test_epoch_lines_give_every_epoch_its_own_losses(small_frame: pd.DataFrame, tmp_path: Path) -> None:
    stream = _Stream(tty=False)
    _, _, trainer = fit_autoencoder(
        small_frame, tmp_path, max_epochs=3, enable_progress_bar=True, callbacks=[EpochLines(stream)]
    )
    lines = stream.getvalue().splitlines()
    assert [line.split("  ")[0] for line in lines] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]
    losses = [float(line.split("train_loss ")[1].split()[0]) for line in lines]
    assert len(set(losses)) == 3  # each line carries its own epoch's loss, not the one before
    last_val = float(lines[-1].split("val_loss ")[1].split()[0])
    assert last_val == pytest.approx(float(trainer.callback_metrics["val_loss"]), rel=1e-3)


def test_the_terminal_bar_closes_when_training_ends_and_counts_epochs_from_one(
    small_frame: pd.DataFrame, tmp_path: Path
) -> None:
    """Lightning keeps its Rich bar live until teardown, so its last frame was drawn again below
    the lines the forest and bundle steps print after training."""
    import lightning as L

    screen = io.StringIO()
    bar = TrainingBar(leave=True, console_kwargs={"file": screen, "force_terminal": True, "width": 120})
    live_at_train_end: list[bool] = []

    class AfterTraining(L.Callback):  # runs after the bar's own on_train_end, as the forest step does
        def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
            live_at_train_end.append(bar.progress is not None and bar.progress.live.is_started)
            print("random forest: done", file=screen)

    fit_autoencoder(small_frame, tmp_path, max_epochs=2, enable_progress_bar=True, callbacks=[bar, AfterTraining()])
    assert live_at_train_end == [False]
    text = screen.getvalue()
    assert "Epoch 2/2" in text and "Epoch 0/" not in text and "v_num" not in text
    assert "Epoch" not in text.split("random forest: done")[1]  # nothing of the bar below the later lines


def test_ctrl_c_stops_training_after_the_step_and_no_sigterm_is_reported(
    small_frame: pd.DataFrame, tmp_path: Path
) -> None:
    """A Ctrl-C during training stops it gracefully, as a SIGTERM does, but the console must not say
    ``[rank: 0] Received SIGTERM: 15``: that line came from Lightning's SIGTERM handler, reached
    because the Ctrl-C handler raised a SIGTERM to start Lightning's stop."""
    import logging
    import signal

    import lightning as L

    from threat_ensemble.callbacks.run_state import StopSignals
    from threat_ensemble.data.datamodule import ThreatDataModule
    from threat_ensemble.data.tables import LabelledTable
    from threat_ensemble.models.autoencoder import AutoencoderModule

    class CtrlC(L.Callback):
        def on_train_batch_end(self, trainer: L.Trainer, *args: object) -> None:
            if trainer.global_step == 2:
                signal.raise_signal(signal.SIGINT)

    table = LabelledTable(small_frame.drop(columns="label"), small_frame["label"].to_numpy(), "small")
    dm = ThreatDataModule(table, batch_size=64, seed=0)
    dm.setup("fit")
    trainer = L.Trainer(
        max_epochs=3, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0, default_root_dir=tmp_path, callbacks=[CtrlC()],
    )  # fmt: skip
    stop = StopSignals(trainer, SimpleNamespace(post_training=False))  # type: ignore[arg-type]
    before = signal.getsignal(signal.SIGINT)  # Python's default_int_handler; SIG_IGN in a background job
    lines: list[str] = []
    seen = logging.Handler(logging.DEBUG)
    seen.emit = lambda record: lines.append(record.getMessage())  # type: ignore[method-assign]
    lightning_logs = logging.getLogger("lightning.pytorch")  # the signal connector's and rank_zero_info's
    lightning_logs.addHandler(seen)
    level = lightning_logs.level
    lightning_logs.setLevel(logging.INFO)
    try:
        with stop.installed(), pytest.raises(SystemExit):  # Lightning's SIGTERMException
            trainer.fit(AutoencoderModule(dm.n_features), datamodule=dm)
    finally:
        lightning_logs.removeHandler(seen)
        lightning_logs.setLevel(level)
    assert stop.received == "SIGINT"
    assert (trainer.current_epoch, trainer.global_step) == (0, 2)  # stopped after the step it came in
    assert any(line.startswith("interrupted (Ctrl-C): stopping after the current step") for line in lines), lines
    assert not [line for line in lines if "SIGTERM" in line]
    assert signal.getsignal(signal.SIGINT) is before  # handlers restored


def test_chatter_is_dropped_and_real_warnings_stay() -> None:
    silence_library_chatter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        silence_library_chatter()  # re-installs its filters inside this context
        warnings.warn("You have overridden `transfer_batch_to_device` in `LightningModule`", UserWarning, stacklevel=1)
        warnings.warn("column 'x' was imputed", UserWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["column 'x' was imputed"]


def test_mlflow_model_validation_chatter_is_dropped() -> None:
    import logging

    silence_library_chatter()
    logger = logging.getLogger("mlflow.pyfunc")
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    handler = Keep()
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        logger.info("Validating input example against model signature")
        logger.info("something a user should see")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert records == ["something a user should see"]


@pytest.mark.slow
def test_a_default_run_prints_our_lines_not_the_libraries_notices(tmp_path: Path) -> None:
    import subprocess

    args = ["--default-rows", "3000", "--max-epochs", "2", "--tracking-uri", f"sqlite:///{tmp_path / 'fresh.db'}"]
    proc = subprocess.run(train_cmd(*args), cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode in (0, 3), proc.stderr[-2000:]
    assert (tmp_path / "artifacts" / "gate.json").is_file()
    output = proc.stdout + proc.stderr
    from threat_ensemble.data.default_data import default_table

    normal = int((default_table(3000, 42).y == 0).sum())
    assert output.startswith(f"data: default data (generated HTTP traffic): 3000 rows, {normal} normal")
    for noise in ("GPU available", "TPU available", "Trainable params", "database tables", "Creating it", "Traceback"):
        assert noise not in output, noise
