"""What a run shows on the console: the epoch progress (a Rich bar on a terminal, one plain line
per epoch otherwise), the closing summary table, and less library chatter."""

from __future__ import annotations

import logging
import re
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import RichProgressBar
from lightning.pytorch.callbacks.progress import ProgressBar
from lightning.pytorch.utilities import rank_zero_only

from threat_ensemble.errors import OneLineWarnings


class EpochLines(ProgressBar):
    """Plain progress for logs and pipes: one line per epoch with the losses, the learning rate and
    the time, instead of a bar redrawn with carriage returns."""

    def __init__(self, stream: Any = None) -> None:
        super().__init__()
        self._enabled = True
        self.stream = stream
        self._started = 0.0
        self._pending: tuple[int, float] | None = None  # (epoch, seconds) not yet written

    def enable(self) -> None:
        self._enabled = True

    def disable(self) -> None:
        self._enabled = False

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._flush(trainer)
        self._started = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # callbacks run before the module's own hook, which logs this epoch's train_loss; so the line
        # is written once that hook has run: at the next epoch's start, or when training ends
        self._pending = (trainer.current_epoch + 1, time.perf_counter() - self._started)

    def _flush(self, trainer: L.Trainer) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            self._write(trainer, *pending)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._flush(trainer)

    @rank_zero_only
    def _write(self, trainer: L.Trainer, epoch: int, seconds: float) -> None:
        if not self._enabled:
            return
        metrics = trainer.callback_metrics
        parts = [f"epoch {epoch}/{trainer.max_epochs}"]
        for key in ("train_loss", "val_loss", "lr"):
            if key in metrics:
                parts.append(f"{key} {float(metrics[key]):.4g}")
        parts.append(f"{seconds:.1f}s")
        print("  ".join(parts), file=self.stream or sys.stdout, flush=True)


class TrainingBar(RichProgressBar):
    """Rich's bar, closed when training ends (Lightning keeps it live until teardown, so its last
    frame was drawn again below the forest and bundle lines), counting epochs from 1 as the
    checkpoint names and the plain lines do, without the logger's version."""

    def _get_train_description(self, current_epoch: int) -> str:
        return f"Epoch {current_epoch + 1}/{self.trainer.max_epochs}"

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._stop_progress()

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)
        return metrics

    # no bar for the gate's test loop: it says its own start and done lines, as the forests do
    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        pass

    def on_test_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        pass

    def on_test_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        pass

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        pass


def progress_callback(quiet: bool, stream: Any = None) -> ProgressBar | None:
    """Rich's bar when the output is a terminal, plain epoch lines when it is not, none if quiet."""
    if quiet:
        return None
    out = stream or sys.stdout
    return TrainingBar(leave=True) if out.isatty() else EpochLines(stream)


_CHATTER = (
    "Tip: For seamless",  # Lightning's advert for its cloud logger
    "transfer_batch_to_device",  # our module moves batches itself, on purpose
    "exists and is not empty",  # the checkpoint folder holds our run_state.json by design
    "isinstance(treespec, LeafSpec)",  # a torch deprecation inside Lightning
    "Validating input example against model signature",  # MLflow, on every logged model
    "GPU available:",  # Lightning's device census; the run says what it uses when it matters
    "TPU available:",
    "HPU available:",
    "not found. Creating it",  # Lightning's MLflow logger, creating the experiment
    "Creating initial MLflow database tables",
    "Updating database tables",  # MLflow migrating a new SQLite store
    "`Trainer.fit` stopped:",  # the closing line says how many epochs ran
    "has `__len__` defined",  # --stream's loader: one process, exact length (data/datamodule.py)
)


_FIRST_RUN_NOTICES = ("not found. Creating it",)  # Lightning's MLflow logger, creating the experiment


class _DropChatter(logging.Filter):
    def __init__(self, texts: tuple[str, ...] = _CHATTER) -> None:
        super().__init__()
        self.texts = texts

    def filter(self, record: logging.LogRecord) -> bool:
        return not any(text in str(record.msg) for text in self.texts)


def silence_library_chatter() -> None:
    """Drop messages that tell a user nothing about their run; keep every real warning."""
    names = (
        "lightning.pytorch.utilities.rank_zero",
        "lightning.fabric.utilities.rank_zero",
        "lightning.pytorch.loggers.mlflow",
        "mlflow.pyfunc",
        "mlflow.store.db.utils",
    )
    for name in names:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropChatter) for f in logger.filters):
            logger.addFilter(_DropChatter())
    for text in _CHATTER:
        warnings.filterwarnings("ignore", message=f".*{re.escape(text)}")
    warnings.filterwarnings("ignore", category=DeprecationWarning, module="lightning")


def quiet_library_logs() -> None:
    """``--quiet``: the libraries' warnings and errors only, without their first-run notices
    (creating the MLflow tables and the experiment)."""
    import mlflow  # noqa: F401  (importing it sets its loggers up; the levels are set after)

    for name in ("lightning.pytorch", "lightning.fabric", "mlflow"):
        logging.getLogger(name).setLevel(logging.WARNING)
    notices = logging.getLogger("lightning.pytorch.loggers.mlflow")
    if not any(isinstance(f, _DropChatter) for f in notices.filters):
        notices.addFilter(_DropChatter(_FIRST_RUN_NOTICES))


class ConsoleSettings(L.Callback):
    """The console's process-wide settings as the run's own process has them when the trainer is
    made (the warnings filters and display the CLI set, :func:`silence_library_chatter`, and with
    ``--quiet`` :func:`quiet_library_logs`), applied again in every process ``ddp_spawn`` starts: the
    trainer's callbacks are unpickled there before Lightning sets the ranks up, so the spawned
    processes say no more than the one that started them (they printed Lightning's and MLflow's
    notices and deprecation warnings, ``--quiet`` or not)."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.filters = list(warnings.filters)
        shown = warnings.showwarning
        self.showwarning = shown if isinstance(shown, OneLineWarnings) else None

    def apply(self) -> None:
        warnings.filters[:] = self.filters
        if self.showwarning is not None:
            warnings.showwarning = self.showwarning
        silence_library_chatter()
        if self.quiet:
            quiet_library_logs()

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.apply()


METRIC_COLUMNS = ("precision", "recall", "f1", "pr_auc", "roc_auc", "fpr")


def _metrics_table(rows: dict[str, dict[str, Any]], title: str) -> Any:
    """Each model's metrics side by side, the ensemble's row in bold."""
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    table.add_column("model")
    for column in METRIC_COLUMNS:
        table.add_column(column, justify="right")
    for name, values in rows.items():
        table.add_row(
            name, *(_cell(values.get(c)) for c in METRIC_COLUMNS), style="bold" if name == "ensemble" else None
        )
    return table


def _render(*items: Any, width: int | None = None) -> str:
    from io import StringIO

    from rich.console import Console

    buffer = StringIO()
    console = Console(file=buffer, width=width or 100, no_color=True, highlight=False)
    for item in items:
        console.print(item, soft_wrap=isinstance(item, str))
    return "\n".join(line.rstrip() for line in buffer.getvalue().rstrip("\n").splitlines())


def detection_table(metrics: dict[str, dict[str, Any]], title: str, width: int | None = None) -> str:
    """``metrics`` (each member's, then ``ensemble``) as one table, for score.py on labelled rows."""
    return _render(_metrics_table(metrics, title), width=width)


def summary_table(result: Any, width: int | None = None) -> str:
    """The closing summary as Rich tables: each member and the ensemble side by side, each gate
    with its value and bound, then the verdict, the bundle path and the MLflow run id."""
    from rich.table import Table

    gate = result.gate
    source = str(gate.get("test_source", "test split"))
    metrics = _metrics_table({**gate["per_model"], "ensemble": gate["metrics"]}, "detection on the " + source)
    gates = Table(title="gate", title_justify="left")
    for column, justify in (("gate", "left"), ("value", "right"), ("bound", "right"), ("result", "left")):
        gates.add_column(column, justify=justify)
    for name, g in gate["gates"].items():
        bound = f">= {g['min']:.4f}" if "min" in g else f"<= {g['max']:.4f}"
        gates.add_row(name, f"{g['value']:.4f}", bound, "pass" if g["passed"] else "FAIL")
    verdict = "PASSED" if gate["passed"] else "FAILED"
    return _render(
        metrics,
        gates,
        f"gate: {verdict} on {gate['n_test']} rows of the {gate.get('test_source', 'test split')}",
        f"bundle: {result.bundle_dir}",
        f"bundle digest: {gate.get('bundle_digest')} (score.py --expect-digest pins it)",
        f"mlflow run: {result.mlflow_run_id}",
        width=width,
    )


def _cell(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) and value == value else "n/a"


def timed(label: str, fn: Callable[[], Any], say: Callable[[str], None]) -> Any:
    """Run ``fn`` between two progress lines that give its wall time."""
    say(f"{label} ...")
    start = time.perf_counter()
    result = fn()
    say(f"{label.split(':')[0]}: done in {time.perf_counter() - start:.1f}s")
    return result
