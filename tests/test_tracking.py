"""check_tracking_uri: a dead server or an unusable store is refused in seconds, with the URI named."""

from __future__ import annotations

import http.server
import os
import socket
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from threat_ensemble.errors import InputError
from threat_ensemble.tracking.store import check_tracking_uri


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_closed_port_is_refused_at_the_first_try(monkeypatch: pytest.MonkeyPatch) -> None:
    """One request, refused, named: no retries (MLflow's own take minutes). The timeout is wide: a
    check that ran out of it would say 'did not answer', not the refusal."""
    uri = f"http://127.0.0.1:{_closed_port()}"
    requests: list[str] = []
    urlopen = urllib.request.urlopen

    def counted(url: str, *args: object, **kwargs: object) -> object:
        requests.append(url)
        return urlopen(url, *args, **kwargs)

    monkeypatch.setattr(urllib.request, "urlopen", counted)
    with pytest.raises(InputError, match=r"cannot use the MLflow tracking server there \(Connection refused\)") as info:
        check_tracking_uri(uri, timeout=60)
    assert requests == [f"{uri}/health"]
    assert uri in str(info.value) and "\n" not in str(info.value)


def test_silent_server_is_refused() -> None:
    """A port that accepts connections but never answers: refused, by the deadline or the read's
    timeout, whichever comes first."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        uri = f"http://127.0.0.1:{listener.getsockname()[1]}"
        with pytest.raises(InputError, match=r"did not answer within 0.3s|timed out"):
            check_tracking_uri(uri, timeout=0.3)


def test_the_deadline_holds_when_a_probe_never_returns(monkeypatch: pytest.MonkeyPatch) -> None:
    """urllib's timeout covers each socket operation, not name resolution: the check's own deadline
    refuses a probe still running when it is up, and leaves the probe behind."""
    from threat_ensemble.tracking import store

    release = threading.Event()

    def stuck(url: str, timeout: float) -> None:
        release.wait(60)  # never set before the check returns, unless the deadline failed to hold

    monkeypatch.setattr(store, "_probe", stuck)
    try:
        with pytest.raises(InputError, match=r"did not answer within 0.5s$"):
            check_tracking_uri("http://tracking.invalid:5000", timeout=0.5)
    finally:
        release.set()


class _Handler(http.server.BaseHTTPRequestHandler):
    routes: dict[str, int] = {}

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        code = next((c for prefix, c in self.routes.items() if self.path.startswith(prefix)), 404)
        self.send_response(code)
        self.end_headers()
        self.wfile.write(b"OK" if code == 200 else b"no")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def fake_server() -> Iterator[tuple[str, type[_Handler]]]:
    handler = type("Handler", (_Handler,), {"routes": {}})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    # shutdown() waits for the serving loop's next poll: 0.5 s by default, at each test's end
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


def test_live_server_passes(fake_server: tuple[str, type[_Handler]]) -> None:
    uri, handler = fake_server
    handler.routes = {"/health": 200}
    check_tracking_uri(uri)
    check_tracking_uri(uri + "/")
    handler.routes = {"/api/2.0/mlflow/": 200}  # no /health, but the API answers
    check_tracking_uri(uri)
    handler.routes = {"/health": 401}  # up, behind authentication that MLflow will handle
    check_tracking_uri(uri)


@pytest.mark.parametrize("code, message", [(404, "is this an MLflow tracking server"), (503, "HTTP 503")])
def test_server_that_cannot_serve_is_refused(fake_server: tuple[str, type[_Handler]], code: int, message: str) -> None:
    uri, handler = fake_server
    handler.routes = {"/": code}
    with pytest.raises(InputError, match=message):
        check_tracking_uri(uri)


def test_sqlite_and_file_stores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    check_tracking_uri(f"sqlite:///{tmp_path / 'new' / 'deeper' / 'mlflow.db'}")  # creatable
    check_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    check_tracking_uri("sqlite://")  # in memory
    check_tracking_uri("databricks")  # left to MLflow
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(InputError, match=r"sqlite:///.*a-file is not a folder"):
        check_tracking_uri(f"sqlite:///{blocker / 'mlflow.db'}")
    with pytest.raises(InputError, match="exists and is not a database file"):
        check_tracking_uri(f"sqlite:///{tmp_path}")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 takes a file store only when told
    check_tracking_uri(tmp_path.as_uri())
    with pytest.raises(InputError, match="cannot be created"):
        check_tracking_uri((blocker / "mlruns").as_uri())


@pytest.mark.parametrize("form", ["file", "path"])
def test_a_file_store_is_refused_as_mlflow_3_refuses_it_unless_allowed(
    tmp_path: Path, form: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    uri = (tmp_path / "mlruns").as_uri() if form == "file" else str(tmp_path / "mlruns")
    with pytest.raises(InputError) as caught:
        check_tracking_uri(uri)
    assert str(caught.value) == (
        f"--tracking-uri {uri}: a folder of runs (a file store), which MLflow 3 no longer writes unless "
        f"MLFLOW_ALLOW_FILE_STORE=true; use a database instead, such as sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    )
    import mlflow
    from mlflow.exceptions import MlflowException

    with pytest.raises(MlflowException, match="MLFLOW_ALLOW_FILE_STORE"):  # what the check stands in for
        mlflow.MlflowClient(uri).search_experiments()
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    check_tracking_uri(uri)
    assert mlflow.MlflowClient(uri).search_experiments()  # allowed: MLflow takes it, and so does the check


def test_a_file_that_is_not_sqlite_is_refused_and_an_empty_one_taken(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello, not a database")
    uri = f"sqlite:///{tmp_path / 'notes.txt'}"
    with pytest.raises(InputError) as caught:
        check_tracking_uri(uri)
    assert str(caught.value) == (
        f"--tracking-uri {uri}: {tmp_path / 'notes.txt'} is not a SQLite database (it starts with b'hello, not a'); "
        "name an MLflow database, or a new file"
    )
    (tmp_path / "empty.db").write_bytes(b"")  # SQLite's new database
    check_tracking_uri(f"sqlite:///{tmp_path / 'empty.db'}")


@pytest.mark.parametrize(
    ("uri", "said"),
    [
        ("foo://host/x", "--tracking-uri foo://host/x: unknown scheme 'foo'; expected http(s)://, sqlite:///, "
         "postgresql://, mysql://, mssql:// or databricks"),
        ("postgresql+nosuchdriver://u:pw@h/db", "--tracking-uri postgresql+nosuchdriver://u:***@h/db: not a database "
         "URI SQLAlchemy takes (Can't load plugin: sqlalchemy.dialects:postgresql.nosuchdriver)"),
    ],
)  # fmt: skip
def test_an_unknown_scheme_or_driver_is_refused_by_name(uri: str, said: str) -> None:
    with pytest.raises(InputError) as caught:
        check_tracking_uri(uri)
    assert str(caught.value) == said


def test_a_database_uri_without_its_driver_installed_names_the_driver(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def without_psycopg(name: str, *args: object, **kwargs: object) -> object:
        if name.split(".")[0] in ("psycopg", "psycopg2"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without_psycopg)
    with pytest.raises(InputError) as caught:
        check_tracking_uri("postgresql://user:secret@db.example/mlflow")
    assert str(caught.value) == (
        "--tracking-uri postgresql://user:***@db.example/mlflow: its database driver 'psycopg' is not installed "
        "(no module 'psycopg'); install it, or name an installed driver in the URI (postgresql+<driver>://...)"
    )


@pytest.mark.parametrize("uri, message", [("http://", "no host name"), ("http://host:port", "port is not a number")])
def test_malformed_http_uri(uri: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        check_tracking_uri(uri)


@pytest.mark.parametrize("kind", ["unknown scheme", "not sqlite", "file store", "no driver"])
def test_train_refuses_an_unusable_tracking_uri_in_one_line_before_training(
    tmp_path: Path, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from in_process import run_train

    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    (tmp_path / "notes.txt").write_text("hello")
    uri = {
        "unknown scheme": "foo://bar",
        "not sqlite": f"sqlite:///{tmp_path / 'notes.txt'}",
        "file store": (tmp_path / "runs").as_uri(),
        "no driver": "mssql+nosuchdriver://h/db",
    }[kind]
    args = ["--default-rows", "1000", "--quiet", "--output-dir", "out", "--checkpoint-dir", "ckpt"]
    proc = run_train(tmp_path, *args, "--tracking-uri", uri)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: --tracking-uri "), proc.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "ckpt").exists()


def test_a_run_leaves_mlflows_tracking_uri_as_it_found_it(tracking_uri: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Lightning's MLflow logger points MLflow's fluent API and ``MLFLOW_TRACKING_URI`` at the run's
    store; a run in a Python process (a notebook, the tests) left them there, so a later subprocess of
    that process tracked to that store, or to a server that had gone (a docs test failed so in CI
    after an in-process run against a test server). The engine runs inside ``tracking_uri_kept``."""
    import mlflow
    from lightning.pytorch.loggers import MLFlowLogger

    from threat_ensemble.tracking import tracking_uri_kept

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    before = mlflow.get_tracking_uri()
    with tracking_uri_kept():
        assert MLFlowLogger(experiment_name="kept", tracking_uri=tracking_uri).experiment is not None
        assert os.environ["MLFLOW_TRACKING_URI"] == mlflow.get_tracking_uri() == tracking_uri  # what it did
    assert "MLFLOW_TRACKING_URI" not in os.environ and mlflow.get_tracking_uri() == before
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///mine.db")  # a user's own setting stays theirs
    with tracking_uri_kept():
        mlflow.set_tracking_uri(tracking_uri)
    assert os.environ["MLFLOW_TRACKING_URI"] == "sqlite:///mine.db"
