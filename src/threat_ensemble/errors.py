"""Error types that map to the CLI's exit codes, and the one wrapper every CLI runs its body in."""

from __future__ import annotations

import argparse
import errno
import os
import sys
import traceback
from collections.abc import Callable
from typing import NoReturn

from threat_ensemble.limits import MAX_LISTED, MAX_QUOTED_CHARS

EXIT_INPUT, EXIT_UNEXPECTED, EXIT_INTERRUPTED, EXIT_PREEMPTED = 2, 1, 130, 143
EXIT_DRIFT = 4  # score.py --fail-on-drift: the scored table's features have drifted from training


def quote(value: object, limit: int = MAX_QUOTED_CHARS) -> str:
    """``repr(value)`` for an error line, at most ``limit`` characters of it (a 100 MB cell is not
    echoed in full)."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def listed(names: list, limit: int = MAX_LISTED) -> str:
    """A few names and how many more, for an error or warning line."""
    shown = ", ".join(quote(str(n), 60) for n in names[:limit])
    return f"[{shown}]" if len(names) <= limit else f"[{shown}, and {len(names) - limit} more]"


def check_path(option: str, value: object) -> None:
    """A path option holding a NUL byte (no file system takes one) is refused by name."""
    if value is not None and "\x00" in str(value):
        raise UsageError(f"{option} {quote(str(value), 80)}: contains a NUL byte; not a usable path")


class InputError(ValueError):
    """Bad user input (file, column, value or option): the CLI exits 2 with this one-line message."""


class UsageError(InputError):
    """A bad command-line option or configuration value."""


class TrainingDiverged(InputError):
    """The autoencoder's loss stopped being a number: a setting (most often ``--lr``) does not suit
    the data. One line and exit 2, like any other bad option, instead of a traceback later on."""


class OneLineParser(argparse.ArgumentParser):
    """argparse prints its usage block plus an error; the contract is one ``error:`` line and exit 2
    (parse inside :func:`run_cli`)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see --help)")


class Preempted(Exception):
    """SIGTERM (or Ctrl-C: SIGINT) stopped the run; the checkpoint folder holds the last completed
    epoch. ``exit_code``: 143 for SIGTERM, 130 for SIGINT."""

    def __init__(self, checkpoint_dir: str, signal_name: str = "SIGTERM") -> None:
        self.exit_code = EXIT_INTERRUPTED if signal_name == "SIGINT" else EXIT_PREEMPTED
        super().__init__(
            f"received {signal_name}; checkpoints are in {checkpoint_dir}; "
            "run the same command with --resume to continue"
        )


STORAGE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


def _storage_error(exc: BaseException) -> str | None:
    """One line for an out-of-space (or read-only) error anywhere in ``exc``'s chain, else None."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in STORAGE_ERRNOS:
            where = current.filename or "an output file"
            return f"{where}: {current.strerror or os.strerror(current.errno)}; nothing half-written was kept"
        current = current.__cause__ or current.__context__
    return None


def run_cli(body: Callable[[], int]) -> int:
    """Run a CLI's body and turn our errors into the contract's exit codes: one ``error:`` line
    (exit 2) for bad input, a message and 143 for SIGTERM, a traceback (exit 1) only for the
    unexpected."""
    try:
        return body()
    except InputError as exc:
        text = str(exc).strip()
        line = text.splitlines()[0] if text else type(exc).__name__
        if len(line) > 4 * MAX_QUOTED_CHARS:  # a safety net; messages quote values with ``quote``
            line = f"{line[: 4 * MAX_QUOTED_CHARS]}... ({len(line)} characters)"
        print(f"error: {line}", file=sys.stderr)
        return EXIT_INPUT
    except Preempted as exc:
        print(f"stopped: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        if isinstance(exc, ValueError) and "embedded null byte" in str(exc):  # a path no option checked
            print("error: a file name contains a NUL byte; not a usable path", file=sys.stderr)
            return EXIT_INPUT
        full = _storage_error(exc)
        if full is not None:  # a full disk or a read-only file system: the user's to fix, not a bug
            print(f"error: {full}", file=sys.stderr)
            return EXIT_INPUT
        traceback.print_exc()
        print("error: unexpected failure (see the traceback above)", file=sys.stderr)
        return EXIT_UNEXPECTED
