"""Error types that map to the CLI's exit codes, and the one wrapper every CLI runs its body in."""

from __future__ import annotations

import argparse
import difflib
import errno
import os
import sys
import traceback
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NoReturn

from threat_ensemble.limits import MAX_LISTED, MAX_QUOTED_CHARS

EXIT_INPUT, EXIT_UNEXPECTED, EXIT_INTERRUPTED, EXIT_PREEMPTED = 2, 1, 130, 143
EXIT_DRIFT = 4  # score.py --fail-on-drift: the scored table's features have drifted from training
EXIT_GATE_FAILED = 3  # train.py, score.py --gate: the quality gate failed (the bundle is still written)


def quote(value: object, limit: int = MAX_QUOTED_CHARS) -> str:
    """``repr(value)`` for an error line, at most ``limit`` characters of it (a 100 MB cell is not
    echoed in full)."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def listed(names: list, limit: int = MAX_LISTED) -> str:
    """A few names and how many more, for an error or warning line."""
    shown = ", ".join(quote(str(n), 60) for n in names[:limit])
    return f"[{shown}]" if len(names) <= limit else f"[{shown}, and {len(names) - limit} more]"


def counted(n: int, noun: str) -> str:
    """``1 column``, ``2 columns``: a count and its noun in agreement (nouns that take an ``s``)."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def first_line(exc: BaseException | str, limit: int | None = 200, named: bool = False) -> str:
    """An exception (or a warning, or a reason given as text) for one line of a message: the first
    non-blank line of its text, stripped and cut at ``limit`` characters; its type's name when it
    has no text.
    ``named``: ``Type: line`` (just ``Type`` when there is no text)."""
    line = next((text.strip() for text in str(exc).splitlines() if text.strip()), "")
    line = line if limit is None else line[:limit]
    name = type(exc).__name__
    if named:
        return f"{name}: {line}" if line else name
    return line or name


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


def refuse_near_misses(argv: Sequence[str], options: Iterable[str]) -> None:
    """An ``--option`` that is not one of ``options`` but close to one (a typo, or a prefix such as
    ``--max-epoch`` that argparse would have taken for ``--max-epochs``) is refused by name with the
    option meant, before any other check: ``unrecognized option --max-epoch: did you mean
    --max-epochs?``. Options far from every known one are left to the parser's own message."""
    known = [o for o in options if o.startswith("--") and not o.endswith("+")]
    accepted = set(options)
    for arg in argv:
        if arg == "--":  # everything after it is a value
            return
        if not arg.startswith("--"):
            continue
        name = arg.split("=", 1)[0]
        if name in accepted:
            continue
        extended = [o for o in known if o.startswith(name)]  # a prefix argparse would have completed
        bare = {o[2:]: o for o in known}
        close = extended if len(extended) == 1 else difflib.get_close_matches(name[2:], bare, n=1, cutoff=0.75)
        if close:
            raise UsageError(f"unrecognized option {name}: did you mean {bare.get(close[0], close[0])}?")


def option_strings(parser: argparse.ArgumentParser) -> list[str]:
    """Every option string ``parser`` accepts, spelled out."""
    return [o for action in parser._actions for o in action.option_strings]


class OneLineParser(argparse.ArgumentParser):
    """argparse prints its usage block plus an error; the contract is one ``error:`` line and exit 2
    (parse inside :func:`run_cli`). Options must be spelled out (no prefixes: ``--max-epoch`` is not
    ``--max-epochs``), and a near miss is named with the option meant."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def parse_known_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> Any:
        refuse_near_misses(sys.argv[1:] if args is None else list(args), option_strings(self))
        return super().parse_known_args(args, namespace)

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
        line = first_line(exc, limit=None)
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


class OneLineWarnings:
    """A ``warnings.showwarning`` that prints warnings of ``category`` as one ``warning:`` line and
    hands the others to ``show`` (a class, not a closure: ``console.ConsoleSettings`` pickles it)."""

    def __init__(self, show: Callable[..., None], category: type[Warning]) -> None:
        self.show, self.category = show, category

    def __call__(self, message: Any, kind: type[Warning], *args: Any, **kwargs: Any) -> None:
        if issubclass(kind, self.category):
            print(f"warning: {message}", file=sys.stderr)
        else:
            self.show(message, kind, *args, **kwargs)

    def __getstate__(self) -> dict[str, Any]:
        return {"category": self.category}  # ``show`` is the process's own display

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.category, self.show = state["category"], warnings.showwarning
