"""Every option of every CLI, given random junk, ends in exit 0, 2 or 3 (never 1, never a
traceback). train.py runs in process up to the point where it would start training: with
``--print-config`` (parsing and validation) and with a table too small to train on (reading the
data and the checks that come before Lightning)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from threat_ensemble.cli.export import main as export_main
from threat_ensemble.cli.featurize import main as featurize_main
from threat_ensemble.cli.score import main as score_main
from threat_ensemble.cli.train import main as train_main
from threat_ensemble.config import options

JUNK = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        ["", "-1", "0", "nan", "inf", "-inf", "1e309", "99999999999999999999", "auto", "a,b", "/", "..", "a\x00b"]
    ),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
)
TRAIN_VALUE_OPTIONS = [o.flag[2:] for o in options() if not o.is_switch]
TRAIN_FLAGS = [o.flag[2:] for o in options() if o.is_switch]
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture()
def tiny_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    pd.DataFrame({"a": range(20), "b": range(20), "label": [0, 1] * 10}).to_csv(tmp_path / "tiny.csv", index=False)
    return tmp_path / "tiny.csv"


def _check(code: int, capsys: pytest.CaptureFixture[str], allowed: tuple[int, ...] = (0, 2)) -> None:
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and "Traceback" not in captured.out, captured.err[-2000:]
    assert code in allowed, (code, captured.err[-2000:])
    if code == 2:
        lines = [line for line in captured.err.splitlines() if line.startswith("error: ")]
        assert len(lines) == 1, captured.err[-2000:]


@SETTINGS
@given(option=st.sampled_from(TRAIN_VALUE_OPTIONS), value=JUNK, mode=st.sampled_from(["print-config", "tiny"]))
def test_train_options_given_junk(
    tiny_table: Path, capsys: pytest.CaptureFixture[str], option: str, value: str, mode: str
) -> None:
    extra = ["--print-config"] if mode == "print-config" else ["--data", str(tiny_table)]
    code = train_main([*extra, f"--{option}={value}"])
    _check(code, capsys)


@SETTINGS
@given(flags=st.lists(st.sampled_from(TRAIN_FLAGS), max_size=3), junk=JUNK)
def test_train_flags_and_unknown_options(
    tiny_table: Path, capsys: pytest.CaptureFixture[str], flags: list, junk: str
) -> None:
    code = train_main(["--data", str(tiny_table), *(f"--{f}" for f in flags), f"--{junk or 'x'}"])
    _check(code, capsys)


SCORE_OPTIONS = ["--bundle", "--data", "--output", "--label-column", "--normal-label", "--drop-columns"]
SCORE_OPTIONS += ["--expect-digest", "--max-decompressed-mb", "--engine", "--explain", "--drift-report"]
SCORE_OPTIONS += ["--drift-threshold", "--id-columns", "--spark-master"]
EXPORT_OPTIONS = ["--bundle", "--output", "--expect-digest"]
FEATURIZE_OPTIONS = [
    "--normal",
    "--attack",
    "--input",
    "--output",
    "--format",
    "--label-column",
    "--max-decompressed-mb",
    "--id-columns",
    "--window-scope",
    "--engine",
    "--spark-master",
]


@SETTINGS
@given(
    choice=st.one_of(
        st.tuples(st.just("score"), st.sampled_from(SCORE_OPTIONS)),
        st.tuples(st.just("featurize"), st.sampled_from(FEATURIZE_OPTIONS)),
        st.tuples(st.just("export"), st.sampled_from(EXPORT_OPTIONS)),
    ),
    value=JUNK,
)
def test_score_featurize_and_export_options_given_junk(
    tiny_table: Path, capsys: pytest.CaptureFixture[str], choice: tuple[str, str], value: str
) -> None:
    tool, option = choice
    log = tiny_table.with_name("a.log")
    log.write_text('1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] "GET /a HTTP/1.0" 200 1\n')
    if tool == "score":
        base, main = {"--bundle": "nowhere", "--data": str(tiny_table), "--output": "scores.csv"}, score_main
    elif tool == "export":
        base, main = {"--bundle": "nowhere", "--output": "graph.onnx"}, export_main
    else:
        base, main = {"--normal": str(log), "--output": "f.csv"}, featurize_main
    base[option] = value
    _check(main([f"{k}={v}" for k, v in base.items()]), capsys)
