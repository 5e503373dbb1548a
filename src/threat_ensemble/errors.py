"""Error types that map to the CLI's exit codes, and the one wrapper every CLI runs its body in."""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Callable
from typing import NoReturn

EXIT_INPUT, EXIT_UNEXPECTED, EXIT_INTERRUPTED, EXIT_PREEMPTED = 2, 1, 130, 143


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
    """SIGTERM stopped training; the checkpoint folder holds the last completed epoch."""

    def __init__(self, checkpoint_dir: str) -> None:
        super().__init__(
            f"received SIGTERM; checkpoints are in {checkpoint_dir}; run the same command with --resume to continue"
        )


def run_cli(body: Callable[[], int]) -> int:
    """Run a CLI's body and turn our errors into the contract's exit codes: one ``error:`` line
    (exit 2) for bad input, a message and 143 for SIGTERM, a traceback (exit 1) only for the
    unexpected."""
    try:
        return body()
    except InputError as exc:
        text = str(exc).strip()
        print(f"error: {text.splitlines()[0] if text else type(exc).__name__}", file=sys.stderr)
        return EXIT_INPUT
    except Preempted as exc:
        print(f"stopped: {exc}", file=sys.stderr)
        return EXIT_PREEMPTED
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception:
        traceback.print_exc()
        print("error: unexpected failure (see the traceback above)", file=sys.stderr)
        return EXIT_UNEXPECTED
