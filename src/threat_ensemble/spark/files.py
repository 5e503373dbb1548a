"""Paths on Spark: inputs may be folders, globs or URIs (s3a://, hdfs://); an output is a folder of
Parquet shards, written beside its final place and renamed over it once whole (local folders)."""

from __future__ import annotations

import glob
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from threat_ensemble.errors import InputError
from threat_ensemble.files import check_parent_writable

SUCCESS_MARKER = "_SUCCESS"  # what Spark leaves in a folder it wrote completely


def is_remote(path: str) -> bool:
    """A URI Spark reads through Hadoop (s3a://, hdfs://, gs://), not a path on this machine."""
    scheme, sep, _ = path.partition("://")
    return bool(sep) and scheme.lower() != "file" and scheme.isalnum()


def spark_path(path: str) -> str:
    """What to hand Spark: a URI as it is, a local path made absolute (Spark's JVM may have been
    started in another working folder)."""
    return path if is_remote(path) else os.path.abspath(path)


def check_input(option: str, path: str) -> None:
    """A local input must exist (a file, a folder or a glob that matches); a URI is Spark's to read."""
    if is_remote(path):
        return
    if glob.has_magic(path):
        if not glob.glob(path):
            raise InputError(f"{option} {path}: matches no file")
    elif not Path(path).exists():
        raise InputError(f"{option} {path}: no such file or folder")


def check_output_folder(
    option: str, path: str, inputs: tuple[str, ...] = (), keep_out_of: tuple[Path, ...] = ()
) -> str:
    """A folder this command may write: new, empty, or written by Spark before (it holds
    ``_SUCCESS``); never a file, one of the inputs, or a folder inside ``keep_out_of``."""
    if not path.strip():
        raise InputError(f"{option}: empty; give a folder for the Parquet shards")
    if is_remote(path):
        return path
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise InputError(f"{option} {out}: is a file; with --engine spark the output is a folder of Parquet shards")
    if out.suffix.lower() in (".csv", ".gz", ".txt", ".npz"):
        raise InputError(
            f"{option} {out}: with --engine spark the output is a folder of Parquet shards, not {out.suffix}"
        )
    if out.is_dir() and any(out.iterdir()) and not (out / SUCCESS_MARKER).exists():
        raise InputError(
            f"{option} {out}: a folder that holds other files; give a new or empty folder, or one Spark wrote before"
        )
    check_parent_writable(option, out, out.absolute().parent)
    resolved = out.resolve()
    for given in inputs:
        if is_remote(given) or glob.has_magic(given):
            continue
        source = Path(given).resolve()
        if source == resolved or source in resolved.parents or resolved in source.parents:
            raise InputError(f"{option} {out}: overlaps the input {given}; write the output elsewhere")
    for folder in keep_out_of:
        if folder.resolve() == resolved or folder.resolve() in resolved.parents:
            raise InputError(f"{option} {out}: inside {folder}; writing there would break that bundle")
    return str(out)


@contextmanager
def folder_written_whole(out: str) -> Iterator[str]:
    """Yield where Spark should write; a local ``out`` is replaced only once the write has finished
    (a failed write leaves the previous folder as it was). A URI is written in place by Spark's own
    committer, which refuses an existing folder."""
    if is_remote(out):
        yield out
        return
    target = Path(out).absolute()
    tmp = target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        yield str(tmp)
        if target.exists():
            old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
            os.rename(target, old)
            os.rename(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
