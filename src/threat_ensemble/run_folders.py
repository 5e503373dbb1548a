"""The run's two folders (``--output-dir``, ``--checkpoint-dir``): checked up front, so a run never
trains for minutes and then cannot write, and locked for the whole run, so two runs never mix their
files. Locks are ``filelock`` locks (flock: released by the kernel when a process dies, even by
SIGKILL) in a file beside each folder, never inside a bundle."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from threat_ensemble.errors import InputError
from threat_ensemble.models.bundle import MANIFEST_FILE


def check_run_folders(output_dir: str | Path, checkpoint_dir: str | Path) -> None:
    """Refuse before training: the same folder for both, one inside the other, or a checkpoint
    folder that holds a bundle (a fresh run clears its checkpoint folder's files)."""
    out, ckpt = Path(output_dir).resolve(), Path(checkpoint_dir).resolve()
    if out == ckpt:
        raise InputError(f"--checkpoint-dir {checkpoint_dir}: is also --output-dir; give each its own folder")
    if out in ckpt.parents or ckpt in out.parents:
        raise InputError(
            f"--checkpoint-dir {checkpoint_dir}: nested with --output-dir {output_dir}; give each its own folder"
        )
    if (ckpt / MANIFEST_FILE).exists():
        raise InputError(
            f"--checkpoint-dir {checkpoint_dir}: holds a model bundle ({MANIFEST_FILE}); checkpoints would damage it"
        )
    if ckpt.exists() and not ckpt.is_dir():
        raise InputError(f"--checkpoint-dir {checkpoint_dir}: exists and is not a folder")
    probe = ckpt if ckpt.is_dir() else next((p for p in ckpt.parents if p.exists()), ckpt.parent)
    if not os.access(probe, os.W_OK | os.X_OK):
        raise InputError(f"--checkpoint-dir {checkpoint_dir}: cannot write in {probe}")


def lock_path(folder: str | Path) -> Path:
    folder = Path(folder).resolve()
    return folder.with_name(f".{folder.name}.lock")


@contextmanager
def locked(*folders: tuple[str, str | Path]) -> Iterator[None]:
    """Hold a lock on each ``(option, folder)`` for the block; a folder another run holds is refused
    at once (exit 2) with that run's pid."""
    from filelock import FileLock, Timeout

    with ExitStack() as stack:
        for option, folder in folders:
            path = lock_path(folder)
            path.parent.mkdir(parents=True, exist_ok=True)
            pid_file = path.with_name(path.name + ".pid")
            lock = FileLock(path, timeout=0)
            try:
                lock.acquire()
            except Timeout:
                holder = _read_pid(pid_file)
                raise InputError(
                    f"{option} {folder}: in use by another run (pid {holder}); wait for it or choose another folder"
                ) from None
            stack.callback(lock.release)
            pid_file.write_text(f"{os.getpid()}\n", encoding="utf-8")
            stack.callback(pid_file.unlink, missing_ok=True)
        yield


def _read_pid(pid_file: Path) -> str:
    try:
        return pid_file.read_text(encoding="utf-8").strip()[:20] or "unknown"
    except OSError:
        return "unknown"
