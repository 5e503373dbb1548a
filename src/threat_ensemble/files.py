"""Writing a file whole or not at all: to a temporary file beside it, flushed to disk, then renamed
over it, so a crash or a full disk leaves the previous file or none, never half of one. (Written
here rather than taken from a library: the maintained ones left are larger than these lines.) And
the check, before any slow work, that an output file may be written there. Output tables (score.py,
featurize.py) are written here too: in the format their name says, with CSV cells that a
spreadsheet would run as formulas neutralised. pandas is imported only to write a table."""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from threat_ensemble.errors import InputError

if TYPE_CHECKING:
    import pandas as pd


def atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Call ``write`` on a binary file that becomes ``path`` only once it is complete; it gets the
    usual permissions of a new file (``mkstemp`` would leave 0600)."""
    folder = path.parent if str(path.parent) else Path(".")
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_output_file(
    path: str | Path,
    option: str,
    *,
    example: str,
    others: tuple[tuple[str, str | Path], ...] = (),
    keep_out_of: tuple[Path, ...] = (),
    advice: str = "",
) -> Path:
    """Refuse, before any slow work, an output file that could not be written or would destroy
    something: a folder, a device, FIFO or socket (only regular files are written), a missing or
    read-only folder, one of ``others`` (``(what, path)`` pairs: the inputs, the other outputs) or
    a path inside a folder in ``keep_out_of`` (a bundle, whose manifest would no longer match).
    ``example`` is a file name the option takes, for the message; ``advice`` ends the message about
    a bundle."""
    out = Path(path)
    if out.is_dir():
        raise InputError(f"{option} {out}: is a folder; expected a file name such as {example}")
    if out.exists() and not stat.S_ISREG(out.stat().st_mode):
        kind = "not a regular file (a device, FIFO or socket)"
        raise InputError(f"{option} {out}: {kind}; only regular files are written")
    check_parent_writable(option, out, out.parent if str(out.parent) else Path("."))
    resolved = _resolved(out)
    for what, other in others:
        if _resolved(Path(other)) == resolved:
            raise InputError(f"{option} {out}: is also {what} ({other}); write it elsewhere")
    for folder in keep_out_of:
        if folder.resolve() in resolved.parents:
            raise InputError(f"{option} {out}: inside {folder}; writing there would break that bundle{advice}")
    return out


def check_parent_writable(option: str, out: Path, parent: Path) -> None:
    """The folder an output (a file, or a folder of shards) goes into exists and may be written."""
    if not parent.is_dir():
        raise InputError(f"{option} {out}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"{option} {out}: folder {parent} is not writable")


def _resolved(path: Path) -> Path:
    """The real path, or the absolute one where links loop (the read then fails with its reason)."""
    try:
        return path.resolve()
    except (OSError, RuntimeError):
        return path.absolute()


OUTPUT_SUFFIXES = (".csv", ".csv.gz", ".parquet")
# A text cell starting with one of these is a formula to a spreadsheet (CSV injection): written
# with a leading quote, the usual neutralisation (OWASP), so opening the scores runs nothing.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def output_suffix(path: Path, option: str = "--output") -> str:
    """The table format ``path`` names (.csv, .csv.gz or .parquet); one line naming it otherwise."""
    name = path.name.lower()
    for suffix in sorted(OUTPUT_SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            return suffix
    raise InputError(f"{option} {path}: unknown output extension; expected one of {', '.join(OUTPUT_SUFFIXES)}")


def check_output_table(
    path: str | Path, option: str = "--output", inputs: tuple[str | Path, ...] = (), keep_out_of: tuple[Path, ...] = ()
) -> Path:
    """A table file this command may write (:func:`check_output_file`): a
    known extension, not one of the ``inputs``, not inside a folder in ``keep_out_of`` (a bundle)."""
    output_suffix(Path(path), option)
    others = tuple(("an input", source) for source in inputs)
    return check_output_file(path, option, example="scores.csv", others=others, keep_out_of=keep_out_of)


def neutralise_formulas(frame: pd.DataFrame) -> pd.DataFrame:
    """Text cells that a spreadsheet would run as formulas, with a leading quote (vectorised)."""
    import pandas as pd

    out = frame
    for column in frame.columns:
        values = frame[column]
        if values.dtype != object and not pd.api.types.is_string_dtype(values):
            continue
        text = values.astype("string")
        risky = text.str.startswith(FORMULA_STARTS).fillna(False).to_numpy(dtype=bool)
        if risky.any():
            if out is frame:
                out = frame.copy()
            out[column] = values.where(~risky, "'" + text.astype(object))
    return out


def write_table_atomically(frame: pd.DataFrame, out: Path) -> None:
    """Write in the format the name says (.csv, .csv.gz, .parquet), whole or not at all
    (:func:`atomic_write`). CSV text cells that would run as spreadsheet formulas are neutralised."""
    suffix = output_suffix(out)

    def write(fh: Any) -> None:
        if suffix == ".parquet":
            frame.to_parquet(fh, index=False)
        else:
            compression = "gzip" if suffix == ".csv.gz" else None
            neutralise_formulas(frame).to_csv(fh, index=False, lineterminator="\n", compression=compression)

    atomic_write(out, write)
