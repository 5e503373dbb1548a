"""Check an MLflow tracking URI before training, so a dead server or an unwritable store fails in
seconds with one line instead of after minutes of MLflow's HTTP retries (or after the training)."""

from __future__ import annotations

import os
import threading
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import unquote, urlparse

from threat_ensemble.errors import InputError, first_line

HEALTH_PATH = "/health"
API_PATH = "/api/2.0/mlflow/experiments/search?max_results=1"


def check_tracking_uri(uri: str, timeout: float = 10.0) -> None:
    """Raise :class:`InputError` naming ``uri`` when the tracking store cannot be used.

    http(s): the server must answer ``GET <uri>/health`` within ``timeout`` seconds (a hard deadline
    that also covers DNS). ``sqlite:``: the database must be a SQLite file (or new), its folder
    writable or creatable. postgresql/mysql/mssql: SQLAlchemy must have the driver the URI names (or
    its default one). ``file:`` and plain paths (a folder of runs): MLflow 3 refuses these file
    stores unless ``MLFLOW_ALLOW_FILE_STORE=true``, so they are refused here too, with what to use
    instead; allowed, the folder must be writable or creatable. databricks and MLflow's plug-in
    stores are left to MLflow; any other scheme is refused by name.
    """
    text = str(uri).strip()
    scheme = urlparse(text).scheme.lower()
    if not scheme and text.lower() in OTHER_SCHEMES:  # "databricks": MLflow's name for that store, not a path
        return
    if scheme in ("http", "https"):
        _check_http(text, timeout)
    elif scheme == "sqlite":
        _check_sqlite(text)
    elif scheme.split("+", 1)[0] in DATABASE_SCHEMES:
        _check_database_driver(text)
    elif scheme in ("file", "") and text:
        folder = Path(unquote(urlparse(text).path)) if scheme == "file" else Path(text)
        if os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").strip().lower() not in ("true", "1"):
            raise InputError(
                f"--tracking-uri {text}: a folder of runs (a file store), which MLflow 3 no longer writes "
                f"unless MLFLOW_ALLOW_FILE_STORE=true; use a database instead, such as "
                f"sqlite:///{Path(os.path.abspath(folder)) / 'mlflow.db'}"
            )
        _check_folder(text, folder, "tracking folder")
    elif scheme not in OTHER_SCHEMES and scheme not in _plugin_schemes():
        raise InputError(
            f"--tracking-uri {_shown(text)}: unknown scheme {scheme!r}; expected http(s)://, sqlite:///, "
            "postgresql://, mysql://, mssql:// or databricks"
        )


DATABASE_SCHEMES = ("postgresql", "mysql", "mssql")  # SQLAlchemy's, as MLflow takes them (dialect+driver)
OTHER_SCHEMES = ("databricks", "databricks-uc", "uc")  # left to MLflow


def _plugin_schemes() -> set[str]:
    """Schemes an installed MLflow plug-in registers a tracking store for."""
    from importlib.metadata import entry_points

    return {entry.name.lower() for entry in entry_points(group="mlflow.tracking_store")}


def _shown(uri: str) -> str:
    """``uri`` with its password, if any, as ``***`` (an error line is not the place for it)."""
    parsed = urlparse(uri)
    if parsed.password is None:
        return uri
    netloc = parsed.netloc.replace(f":{parsed.password}@", ":***@", 1)
    return parsed._replace(netloc=netloc).geturl()


def _check_database_driver(uri: str) -> None:
    """A database URI MLflow opens with SQLAlchemy: the driver it names (``postgresql+psycopg2``)
    or the dialect's default (``postgresql``: psycopg) must be installed."""
    from sqlalchemy.engine.url import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        dialect = make_url(uri).get_dialect()
    except (ArgumentError, NoSuchModuleError, ValueError) as exc:
        problem = _one_line(exc)
        raise InputError(f"--tracking-uri {_shown(uri)}: not a database URI SQLAlchemy takes ({problem})") from None
    try:
        dialect.import_dbapi()
    except ImportError as exc:
        name = getattr(exc, "name", None) or dialect.driver
        raise InputError(
            f"--tracking-uri {_shown(uri)}: its database driver {dialect.driver!r} is not installed (no module "
            f"{name!r}); install it, or name an installed driver in the URI ({dialect.name}+<driver>://...)"
        ) from None


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


def _one_line(reason: BaseException | str) -> str:
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    return first_line(reason, limit=None)


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
        with open(db, "rb") as fh:
            head = fh.read(len(SQLITE_HEADER))
        if head and head != SQLITE_HEADER:  # an empty file is a new database to SQLite
            raise InputError(
                f"--tracking-uri {uri}: {db} is not a SQLite database (it starts with {head[:12]!r}); "
                "name an MLflow database, or a new file"
            )
    _check_folder(uri, db.parent if str(db.parent) else Path("."), "database folder")


SQLITE_HEADER = b"SQLite format 3\x00"  # the first 16 bytes of every SQLite database file


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
