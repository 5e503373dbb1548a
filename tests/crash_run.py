"""``python tests/crash_run.py POINT [train.py options]``: train.py, killed with SIGKILL at POINT, as a
pre-empted machine would be. The fault injection lives here, in the tests, installed by wrapping the
production hooks; nothing in the package reads a crash switch.

POINT: ``train_epochN`` (second batch of epoch N, 0-based), ``train_stepN`` (before the training step
that follows global step N, so a checkpoint taken at step N is on disk), ``none`` (no crash),
``after_random_forest`` (its side file
saved), ``validation`` (metrics computed, before the gate and the bundle) or ``bundle`` (every bundle
file written to the temporary folder, before the manifest and the swap). ``POINT+sigterm`` sends
SIGTERM there instead, as a scheduler stopping the job would. ``--record-rows FILE`` (before the
train.py options) appends one line per row each training step trains on: the epoch and a digest
of the row's values, so a test can count which rows an epoch saw (ranks other than 0 write to
FILE.rankN)."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

SIGNAL = signal.SIGKILL


def _kill() -> None:
    os.kill(os.getpid(), SIGNAL)


def install(point: str) -> None:
    global SIGNAL
    if point.endswith("+sigterm"):
        point, SIGNAL = point.removesuffix("+sigterm"), signal.SIGTERM
    import threat_ensemble.callbacks.end_of_fit as end_of_fit
    import threat_ensemble.callbacks.run_state as run_state
    import threat_ensemble.evaluation.test_loop as test_loop
    import threat_ensemble.models.bundle as artifacts

    if point == "none":
        return
    if point.startswith("train_step"):
        step = int(point.removeprefix("train_step"))
        before = run_state.RunStateCallback.on_train_batch_start

        def on_train_batch_start(self: Any, trainer: Any, module: Any, batch: Any, batch_idx: int) -> None:
            if trainer.global_step == step:
                _kill()
            before(self, trainer, module, batch, batch_idx)

        run_state.RunStateCallback.on_train_batch_start = on_train_batch_start
    elif point.startswith("train_epoch"):
        epoch = int(point.removeprefix("train_epoch"))
        original = run_state.RunStateCallback.on_train_batch_end

        def on_train_batch_end(self: Any, trainer: Any, module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
            if trainer.current_epoch == epoch and batch_idx == 1:
                _kill()
            original(self, trainer, module, outputs, batch, batch_idx)

        run_state.RunStateCallback.on_train_batch_end = on_train_batch_end
    elif point == "after_random_forest":
        save = end_of_fit.ForestCallback._save_side_file

        def save_then_die(self: Any, name: str, model: Any) -> None:
            save(self, name, model)
            if name == "random_forest":
                _kill()

        end_of_fit.ForestCallback._save_side_file = save_then_die
    elif point == "validation":
        test_loop.gate_report = lambda *args, **kwargs: _kill()
    elif point == "bundle":
        artifacts.sha256_file = lambda path: _kill()  # the manifest's first hash: all files written
    else:
        raise SystemExit(f"unknown crash point {point!r}")


def record_rows(path: str) -> None:
    """Append ``epoch digest`` for every row of every training batch to ``path``."""
    import hashlib

    from threat_ensemble.models.autoencoder import AutoencoderModule

    step = AutoencoderModule.training_step

    def training_step(self: Any, batch: Any, batch_idx: int) -> Any:
        rows = batch.detach().cpu().numpy()
        rank = int(self.global_rank)  # with several processes, one file per rank: FILE.rankN beside FILE
        with open(path if rank == 0 else f"{path}.rank{rank}", "a") as out:
            out.writelines(f"{self.current_epoch} {hashlib.sha1(r.tobytes()).hexdigest()}\n" for r in rows)
        return step(self, batch, batch_idx)

    AutoencoderModule.training_step = training_step


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    args = sys.argv[2:]
    if args[:1] == ["--record-rows"]:
        record_rows(args[1])
        args = args[2:]
    install(sys.argv[1])
    from threat_ensemble.cli.train import main

    sys.exit(main(args))
