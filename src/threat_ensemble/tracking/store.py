"""Check an MLflow tracking URI before training, so a dead server or an unwritable store fails in
seconds with one line instead of after minutes of MLflow's HTTP retries (or after the training)."""

from __future__ import annotations

import os
import threading
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import unquote, urlparse

from threat_ensemble.errors import InputError

HEALTH_PATH = "/health"
API_PATH = "/api/2.0/mlflow/experiments/search?max_results=1"


def check_tracking_uri(uri: str, timeout: float = 10.0) -> None:
    """Raise :class:`InputError` naming ``uri`` when the tracking store cannot be used.

    http(s): the server must answer ``GET <uri>/health`` within ``timeout`` seconds (a hard deadline
    that also covers DNS). ``sqlite:`` and ``file:``/plain paths: the store's folder must exist or
    be creatable, and be writable. Other schemes (databricks, postgresql, ...) are left to MLflow.
    """
    text = str(uri).strip()
    scheme = urlparse(text).scheme.lower()
    if scheme in ("http", "https"):
        _check_http(text, timeout)
    elif scheme == "sqlite":
        _check_sqlite(text)
    elif scheme == "file":
        _check_folder(text, Path(unquote(urlparse(text).path)), "tracking folder")
    elif scheme == "" and text:
        _check_folder(text, Path(text), "tracking folder")


def _check_http(uri: str, timeout: float) -> None:
    parsed = urlparse(uri)
    if not parsed.hostname:
        raise InputError(f"--tracking-uri {uri}: no host name; expected e.g. http://127.0.0.1:5000")
    try:
        parsed.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        raise InputError(f"--tracking-uri {uri}: the port is not a number") from None
    base = uri.rstrip("/")
    outcome: list[str | None] = []

    def probe() -> None:
        reason = _probe(base + HEALTH_PATH, timeout)
        if reason == "HTTP 404":  # no /health (an older server or a proxy): ask the API MLflow will use
            reason = _probe(base + API_PATH, timeout)
            if reason == "HTTP 404":
                reason = "HTTP 404 from the MLflow API; is this an MLflow tracking server?"
        outcome.append(reason)

    # urllib's timeout covers each socket operation but not name resolution; a daemon thread
    # joined with the timeout makes the deadline hard.
    worker = threading.Thread(target=probe, name="tracking-uri-check", daemon=True)
    worker.start()
    worker.join(timeout)
    if not outcome:
        raise InputError(f"--tracking-uri {uri}: the tracking server did not answer within {timeout:g}s")
    if outcome[0] is not None:
        raise InputError(f"--tracking-uri {uri}: cannot use the MLflow tracking server there ({outcome[0]})")


def _probe(url: str, timeout: float) -> str | None:
    """None when the server answered like a live server; otherwise the reason, in a few words."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - http(s) only
            response.read(64)
        return None
    except urllib.error.HTTPError as exc:
        # The server answered: 401/403 (auth is handled by MLflow's own credentials) still mean it
        # is up; 404 is for the caller to judge; 5xx means it is up but cannot serve.
        if exc.code == 404:
            return "HTTP 404"
        return f"HTTP {exc.code} {exc.reason}" if exc.code >= 500 else None
    except urllib.error.URLError as exc:
        return _one_line(exc.reason)
    except (OSError, ValueError) as exc:  # timeouts, resets, malformed URLs
        return _one_line(exc)


def _one_line(reason: object) -> str:
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    text = str(reason).strip().splitlines()
    return text[0] if text else type(reason).__name__


def _check_sqlite(uri: str) -> None:
    # SQLAlchemy form: sqlite:///relative.db or sqlite:////absolute.db; sqlite:// is in-memory.
    rest = uri.split("://", 1)[1] if "://" in uri else ""
    if not rest.startswith("/"):
        return
    raw = rest[1:].split("?", 1)[0]
    if not raw or raw == ":memory:":
        return
    db = Path(unquote(raw))
    if db.exists():
        if not db.is_file():
            raise InputError(f"--tracking-uri {uri}: {db} exists and is not a database file")
        if not os.access(db, os.R_OK | os.W_OK):
            raise InputError(f"--tracking-uri {uri}: {db} cannot be read and written")
    _check_folder(uri, db.parent if str(db.parent) else Path("."), "database folder")


def _check_folder(uri: str, folder: Path, what: str) -> None:
    """The folder must be a writable folder, or be creatable (its nearest existing parent writable)."""
    folder = Path(os.path.abspath(folder))
    probe = folder
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        raise InputError(f"--tracking-uri {uri}: {what} {folder} cannot be created ({probe} is not a folder)")
    if not os.access(probe, os.W_OK | os.X_OK):
        verb = "is not writable" if probe == folder else f"cannot be created ({probe} is not writable)"
        raise InputError(f"--tracking-uri {uri}: {what} {folder} {verb}")
