"""The one-line message of an exception: one helper (``errors.first_line``), used wherever a
third-party error or a warning becomes part of an ``error:`` or ``warning:`` line."""

from __future__ import annotations

import re
import warnings
from types import SimpleNamespace

import pytest

from conftest import ROOT
from threat_ensemble.errors import InputError, first_line

PACKAGE = ROOT / "src" / "threat_ensemble"


def test_first_line_is_the_first_non_blank_line_stripped_and_cut() -> None:
    assert first_line(OSError("\n  disk full  \nerrno 28\n")) == "disk full"
    assert first_line(ValueError("x" * 500)) == "x" * 200
    assert first_line(ValueError("x" * 500), limit=None) == "x" * 500
    assert first_line(ValueError("abcdef"), limit=3) == "abc"


def test_first_line_of_an_exception_without_text_is_its_type() -> None:
    for empty in (RuntimeError(), RuntimeError(""), RuntimeError(" \n\t\n")):
        assert first_line(empty) == "RuntimeError"
        assert first_line(empty, named=True) == "RuntimeError"
    assert first_line(KeyError("bundle"), named=True) == "KeyError: 'bundle'"
    assert first_line(UserWarning("\ncolumn 'x' ignored\nmore"), limit=None) == "column 'x' ignored"


def test_an_onnx_runtime_error_without_text_is_one_line_not_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    """It was ``str(exc).splitlines()[0]``: an IndexError (a traceback, exit 1) for an empty message."""
    import onnxruntime as ort

    from threat_ensemble.export.onnx_runtime import OnnxScorer

    def refuse(*args: object, **kwargs: object) -> None:
        raise RuntimeError()

    monkeypatch.setattr(ort, "InferenceSession", refuse)
    with pytest.raises(InputError, match=r"^ensemble\.onnx: not an ONNX graph onnxruntime can run \(RuntimeError\)$"):
        OnnxScorer(b"", "ensemble.onnx")


def test_a_warning_without_text_is_printed_by_its_type(capsys: pytest.CaptureFixture[str]) -> None:
    """featurize.py printed ``str(w.message).splitlines()[0]``: an IndexError for an empty warning."""
    from threat_ensemble.cli.featurize import _print_warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.warn("", UserWarning, stacklevel=1)
        warnings.warn("first\nsecond", UserWarning, stacklevel=1)
    _print_warnings(caught)
    assert capsys.readouterr().err == "warning: UserWarning\nwarning: first\n"


def test_a_tracking_failure_without_text_names_its_type_alone(capsys: pytest.CaptureFixture[str]) -> None:
    from threat_ensemble.tracking.logger import ResilientMLFlowLogger

    def fail() -> None:
        raise ConnectionError()

    logger = SimpleNamespace(failure=None)
    assert ResilientMLFlowLogger.guard(logger, "logging metrics", fail) is None  # type: ignore[arg-type]
    assert logger.failure == "logging metrics: ConnectionError"  # was "...: ConnectionError: "
    assert "MLflow tracking failed (logging metrics: ConnectionError)" in capsys.readouterr().out


# Still writing the idiom by hand: files being changed elsewhere at the time (issue 33), to move to
# errors.first_line when they are next edited.
NOT_YET = {"data/stream.py", "data/tables.py", "tracking/store.py", "models/bundle.py"}
IDIOM = re.compile(r"splitlines\(\)(\[0\]|\s*$)|str\((exc|e|err)\)\[:\d+\]")


def test_the_first_line_idiom_is_written_once_in_errors_py() -> None:
    found = {
        f"{path.relative_to(PACKAGE)}:{number}"
        for path in PACKAGE.rglob("*.py")
        if str(path.relative_to(PACKAGE)) not in {"errors.py", *NOT_YET}
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if IDIOM.search(line)
    }
    assert sorted(found) == []
