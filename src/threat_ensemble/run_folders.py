"""The run's two folders (``--output-dir``, ``--checkpoint-dir``): checked up front, so a run never
trains for minutes and then cannot write, and locked for the whole run, so two runs never mix their
files. Locks are ``filelock`` locks (flock: released by the kernel when a process dies, even by
SIGKILL) in a file beside each folder, never inside a bundle."""

from __future__ import annotations

import os
import uuid
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


def check_replaceable(option: str, folder: str | Path) -> None:
    """The end of a run swaps its bundle into place: the folder there now is renamed aside
    (``.<name>.old-<id>``) and the new one renamed in. Tried before training, with the folder's
    lock held: the folder there is renamed aside and straight back, so one that cannot be renamed
    (immutable, a mount point, a sticky parent's folder of another user) is one line now, not a
    traceback after training. A run stopped between the two renames finds it restored by
    ``recover_interrupted_swap`` (a folder missing and its ``.old-`` copy beside it)."""
    dest = Path(folder).resolve()
    if not dest.is_dir():
        return  # nothing to move aside: writing beside it was probed by check_output_dir
    aside = dest.with_name(f".{dest.name}.old-{uuid.uuid4().hex}")
    try:
        os.rename(dest, aside)
    except OSError as exc:
        raise InputError(
            f"{option} {dest}: cannot be renamed ({exc.strerror or exc}), and a run replaces its bundle by "
            "renaming the folder there aside; make it renamable or choose another folder"
        ) from None
    os.rename(aside, dest)


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
