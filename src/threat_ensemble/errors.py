"""Error types that map to the CLI's exit codes."""

from __future__ import annotations


class InputError(ValueError):
    """Bad user input (file, column, value or option): the CLI exits 2 with this one-line message."""


class UsageError(InputError):
    """A bad command-line option or configuration value."""


class Preempted(Exception):
    """SIGTERM stopped training; the checkpoint folder holds the last completed epoch."""

    def __init__(self, checkpoint_dir: str) -> None:
        super().__init__(
            f"received SIGTERM; checkpoints are in {checkpoint_dir}; run the same command with --resume to continue"
        )
