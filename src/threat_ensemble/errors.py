"""Error types that map to the CLI's exit codes."""

from __future__ import annotations


class InputError(ValueError):
    """Bad user input (file, column, value or option): the CLI exits 2 with this one-line message."""


class UsageError(InputError):
    """A bad command-line option or configuration value."""
