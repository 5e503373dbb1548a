"""The bad-input matrix of issue 5, through the real CLI in subprocesses.

Every refusal: exit 2, exactly one ``error:`` line naming the file, column, row or value, no
traceback, and the bundle already in ``--output-dir`` unchanged byte for byte. The refusals run
together, two at a time, from one module fixture (most answer before Lightning is imported); the
two accepted-with-a-warning cases (``--impute``, unseen test categories) share one training run."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import train_cmd
from in_process import run_main
from threat_ensemble.models.bundle import BUNDLE_FILES, BUNDLE_FORMAT, MANIFEST_FILE, verify_bundle

ROWS = 600


def _frame(seed: int = 5, rows: int = ROWS) -> pd.DataFrame:
    from synthetic import make_default_dataset

    return make_default_dataset(rows, seed=seed).drop(columns="family")


def _text(content: str) -> Callable[[Path], None]:
    return lambda path: path.write_text(content, encoding="utf-8")


def _bytes(content: bytes) -> Callable[[Path], None]:
    return lambda path: path.write_bytes(content)


def _csv(change: Callable[[pd.DataFrame], pd.DataFrame], seed: int = 5) -> Callable[[Path], None]:
    return lambda path: change(_frame(seed)).to_csv(path, index=False)


def _with_cell(column: str, row: int, value: object) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def change(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.astype({column: object})
        frame.loc[row, column] = value
        return frame

    return change


def _labels(normal: int, attack: int) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        frame = _frame().head(normal + attack).copy()
        frame["label"] = [0] * normal + [1] * attack
        frame.to_csv(path, index=False)

    return write


@dataclass
class Case:
    """One refusal: the files it needs (name -> writer), its CLI arguments, and what the line must say."""

    id: str
    args: list[str]
    message: str
    files: dict[str, Callable[[Path], None]] = field(default_factory=dict)
    skip: str | None = None


GOOD = "good.csv"
NUMBERS_WITH_TEXT = "a,label\n" + "".join(f"{i},{i % 2}\n" for i in range(40)) + "oops,1\n"
CASES = [
    # ---- the file itself
    Case("missing file", ["--data", "nope.csv"], "nope.csv: no such file"),
    Case(  # a folder is read as a Parquet dataset; this one holds none
        "folder without Parquet files",
        ["--data", "folder.csv"],
        "folder.csv: a folder with no Parquet files",
        {"folder.csv": Path.mkdir},
    ),
    Case(
        "unreadable file",
        ["--data", "locked.csv"],
        "locked.csv: cannot be read (permission denied)",
        {"locked.csv": lambda p: (p.write_text("a,label\n1,0\n"), p.chmod(0))},
        skip="root reads any file" if os.geteuid() == 0 else None,
    ),
    Case("empty file", ["--data", "empty.csv"], "empty.csv: file is empty", {"empty.csv": _text("")}),
    Case("header only", ["--data", "h.csv"], "h.csv: has a header but no data rows", {"h.csv": _text("a,b,label\n")}),
    Case(
        "unknown extension",
        ["--data", "t.xlsx"],
        "t.xlsx: unknown extension '.xlsx'; expected one of .csv",
        {"t.xlsx": _text("a,label\n1,0\n")},
    ),
    Case(
        "corrupt parquet",
        ["--data", "t.parquet"],
        "t.parquet: not a readable Parquet file",
        {"t.parquet": _bytes(b"PAR1 this is not parquet PAR1")},
    ),
    Case(
        "corrupt npz", ["--data", "t.npz"], "t.npz: not a readable .npz archive", {"t.npz": _bytes(b"PK\x03\x04junk")}
    ),
    Case(
        "npz without X",
        ["--data", "y.npz"],
        "y.npz: .npz archive has no array 'X'",
        {"y.npz": lambda p: np.savez(p, y=np.zeros(3))},
    ),
    *(
        Case(  # Parquet binary: bytes that are not UTF-8 text (text stored as binary is read as text)
            f"binary parquet column{' --stream' if stream else ''}",
            ["--data", "blob.parquet", *(["--stream"] if stream else [])],
            "blob.parquet: column 'blob' holds binary values that are not UTF-8 text (data row 3: b'\\xff\\x00'); "
            "expected numbers or text (--drop-columns it if it is not a feature)",
            {"blob.parquet": lambda p: _frame().assign(blob=[b"ok", b"", b"\xff\x00"] * (ROWS // 3)).to_parquet(p)},
        )
        for stream in (False, True)
    ),
    Case(
        "gzip that is not gzip",
        ["--data", "t.csv.gz"],
        "t.csv.gz: not a gzip file, though its name ends in .gz",
        {"t.csv.gz": _text("a,label\n1,0\n")},
    ),
    Case(
        "truncated gzip",
        ["--data", "cut.csv.gz"],
        "cut.csv.gz: cannot be parsed as CSV",
        {"cut.csv.gz": lambda p: p.write_bytes(gzip.compress(_frame().to_csv(index=False).encode())[:5000])},
    ),
    Case(
        "ragged row shifts columns",
        ["--data", "ragged.csv"],
        "ragged.csv: data row 1 has 3 fields but the header names 2 columns",
        {"ragged.csv": _text("a,label\n1,0,9\n2,1\n")},
    ),
    # ---- columns and labels
    Case(
        "label column missing",
        ["--data", GOOD, "--label-column", "verdict"],
        "good.csv: label column 'verdict' not found (columns: method, ",
    ),
    Case(
        "label cell empty",
        ["--data", "nolabel.csv"],
        "nolabel.csv: label column 'label' is empty in data row 3",
        {"nolabel.csv": _csv(_with_cell("label", 2, None))},
    ),
    Case(
        "no normal rows",
        ["--data", "attacks.csv"],
        "attacks.csv: no normal rows (check --label-column and --normal-label)",
        {"attacks.csv": _labels(0, 80)},
    ),
    Case(
        "no attack rows",
        ["--data", "normal.csv"],
        "normal.csv: no attack rows; every label equals --normal-label",
        {"normal.csv": _labels(80, 0)},
    ),
    Case(
        "too few normal rows",
        ["--data", "few.csv"],
        "few.csv: 20 normal rows; the autoencoder needs at least 50",
        {"few.csv": _labels(20, 40)},
    ),
    Case(
        "too few attack rows",
        ["--data", "fewatt.csv"],
        "fewatt.csv: 3 attack rows; at least 10 are needed",
        {"fewatt.csv": _labels(100, 3)},
    ),
    Case(
        "NaN without --impute",
        ["--data", "nan.csv"],
        "nan.csv: column 'path_depth' holds nan in data row 4 (1 missing, infinite or out-of-range cells in all); "
        "pass --impute",
        {"nan.csv": _csv(_with_cell("path_depth", 3, np.nan))},
    ),
    Case(
        "inf without --impute",
        ["--data", "inf.csv"],
        "inf.csv: column 'iat_mean' holds -inf in data row 8",
        {"inf.csv": _csv(_with_cell("iat_mean", 7, "-inf"))},
    ),
    Case(
        "number beyond float32",
        ["--data", "huge.csv"],
        "huge.csv: column 'response_size' holds 1e+39 (beyond the float32 range of the models) in data row 2",
        {"huge.csv": _csv(_with_cell("response_size", 1, 1e39))},
    ),
    Case(
        "numeric column with text",
        ["--data", "text.csv"],
        "text.csv: column 'a' is numeric but data row 41 holds 'oops' (1 such rows); expected a number",
        {"text.csv": _text(NUMBERS_WITH_TEXT)},
    ),
    Case(
        "duplicate column names",
        ["--data", "dup.csv"],
        "dup.csv: duplicate column names ['a']",
        {"dup.csv": _text("a,b,a,label\n1,2,3,0\n4,5,6,1\n")},
    ),
    Case(
        "drop an unknown column",
        ["--data", GOOD, "--drop-columns", "zz"],
        "good.csv: --drop-columns names 'zz', which is not a column",
    ),
    # ---- the test file
    Case(
        "--test-data with other columns",
        ["--data", GOOD, "--test-data", "other.csv"],
        "other.csv: columns differ from the training data: missing ['hour']; unexpected ['hour_of_day']",
        {"other.csv": _csv(lambda f: f.rename(columns={"hour": "hour_of_day"}), seed=6)},
    ),
    Case(
        "--test-data text where training had numbers",
        ["--data", GOOD, "--test-data", "textcol.csv"],
        "textcol.csv: column 'hour' must be numeric, as in training",
        {"textcol.csv": _csv(lambda f: f.assign(hour="noon"), seed=6)},
    ),
    Case(
        "--test-data with one class",
        ["--data", GOOD, "--test-data", "oneclass.csv"],
        "oneclass.csv: the test data needs both normal and attack rows",
        {"oneclass.csv": _csv(lambda f: f.assign(label=0), seed=6)},
    ),
    # ---- options
    Case("weights not a number", ["--data", GOOD, "--weights", "ae=x,rf=1"], "--weights: ae='x' is not a number"),
    Case("weights unknown model", ["--data", GOOD, "--weights", "svm=1"], "--weights: cannot read 'svm=1'"),
    Case("weights sum to zero", ["--data", GOOD, "--weights", "ae=0,rf=0,if=0"], "sum to zero"),
    Case(
        "--min-pr-auc above 1", ["--data", GOOD, "--min-pr-auc", "1.5"], "--min-pr-auc must be within [0, 1], got 1.5"
    ),
    Case("--min-pr-auc below 0", ["--data", GOOD, "--min-pr-auc", "-0.1"], "--min-pr-auc must be within [0, 1]"),
    Case(
        "config with an unknown key",
        ["--data", GOOD, "--config", "cfg.yaml"],
        "cfg.yaml: unknown key 'max_epoch' (see --help for the options)",
        {"cfg.yaml": _text("max_epochs: 2\nmax_epoch: 3\n")},
    ),
    Case(
        "config that is not YAML",
        ["--data", GOOD, "--config", "bad.yaml"],
        "bad.yaml: not valid YAML",
        {"bad.yaml": _text("max_epochs: [2\n")},
    ),
    # ---- a setting that makes training diverge: named when the loss stops being a number
    Case(
        "--lr so large the loss is NaN",
        ["--data", GOOD, "--lr", "1e6"],
        "training diverged: the autoencoder's validation loss is nan at epoch 1; try a lower --lr (now 1e+06)",
    ),
    # ---- the output folder (these replace the shared --output-dir)
    Case(
        "--output-dir under a file",
        ["--data", GOOD, "--output-dir", "a-file/bundle"],
        "a-file/bundle: cannot write there",
        {"a-file": _text("x")},
    ),
    Case(
        "--output-dir is a file",
        ["--data", GOOD, "--output-dir", "a-file2"],
        "a-file2: exists and is not a folder",
        {"a-file2": _text("x")},
    ),
    Case(
        "--output-dir not writable",
        ["--data", GOOD, "--output-dir", "/proc/threat-ensemble-bundle"],
        "--output-dir /proc/threat-ensemble-bundle: cannot write there",
        skip=None if sys.platform.startswith("linux") else "uses /proc as a folder nobody can write",
    ),
    Case(
        "--output-dir holds other files",
        ["--data", GOOD, "--output-dir", "notes"],
        "notes: folder is not empty and holds no manifest.json",
        {"notes": lambda p: (p.mkdir(), (p / "todo.txt").write_text("keep me"))},
    ),
]


def _fake_bundle(folder: Path) -> None:
    """A bundle that passes verify_bundle: what a previous good run left in --output-dir."""
    folder.mkdir()
    for name in BUNDLE_FILES:
        (folder / name).write_bytes(hashlib.sha256(name.encode()).digest() * 8)
    files = {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in BUNDLE_FILES}
    (folder / MANIFEST_FILE).write_text(json.dumps({"format": BUNDLE_FORMAT, "files": files}))


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def refusals(tmp_path_factory: pytest.TempPathFactory) -> dict:
    work = tmp_path_factory.mktemp("bad-input")
    _frame().to_csv(work / GOOD, index=False)
    bundle = work / "bundle"
    _fake_bundle(bundle)
    before = _snapshot(bundle)
    for case in CASES:
        for name, write in case.files.items():
            write(work / name)

    def run(case: Case) -> tuple[subprocess.CompletedProcess, float]:
        slug = "".join(c if c.isalnum() else "-" for c in case.id)
        args = [
            *case.args,
            "--max-epochs",
            "1",
            "--quiet",
            "--tracking-uri",
            f"sqlite:///{work / 'mlflow.db'}",
            "--checkpoint-dir",
            f"ckpt-{slug}",
        ]
        if "--output-dir" not in args:
            args += ["--output-dir", "bundle"]
        for _ in range(60):  # two cases at once on the shared --output-dir: the folder lock makes one wait
            start = time.monotonic()
            proc = subprocess.run(train_cmd(*args), cwd=work, capture_output=True, text=True, timeout=120)
            if "in use by another run" not in proc.stderr:
                break
            time.sleep(0.5)
        return proc, time.monotonic() - start

    todo = [c for c in CASES if not c.skip]
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = dict(zip([c.id for c in todo], pool.map(run, todo), strict=True))
    return {"work": work, "bundle": bundle, "before": before, "results": results}


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_refused_with_one_line(refusals: dict, case: Case) -> None:
    if case.skip:
        pytest.skip(case.skip)
    proc, elapsed = refusals["results"][case.id]
    assert proc.returncode == 2, f"exit {proc.returncode}; stderr: {proc.stderr[-2000:]}"
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr[-2000:]
    assert lines[0].startswith("error: "), lines[0]
    assert case.message in lines[0], lines[0]
    assert elapsed < 60
    # Nothing already in --output-dir is damaged, and no run left a bundle anywhere.
    assert _snapshot(refusals["bundle"]) == refusals["before"]
    verify_bundle(refusals["bundle"])
    assert not (refusals["work"] / "artifacts").exists()
    assert not list(refusals["work"].glob(".bundle.tmp-*"))


@pytest.mark.slow
def test_notes_folder_left_alone(refusals: dict) -> None:
    assert (refusals["work"] / "notes" / "todo.txt").read_text() == "keep me"


@pytest.mark.parametrize(
    ("cli", "args", "message"),
    [
        ("train", ["--max-epoch", "5"], "unrecognized option --max-epoch: did you mean --max-epochs?"),
        ("score", ["--bundle", "b", "--data", "d.csv", "--output", "o.csv", "--no-headr"],
         "unrecognized option --no-headr: did you mean --no-header?"),
        ("score", ["--bundel", "b", "--data", "d.csv", "--output", "o.csv"],
         "unrecognized option --bundel: did you mean --bundle?"),
        ("featurize", ["--input", "a.log", "--output", "f.csv", "--label-col", "y"],
         "unrecognized option --label-col: did you mean --label-column?"),
        ("export", ["--bundle", "b", "--ouput", "x.onnx"], "unrecognized option --ouput: did you mean --output?"),
    ],
    ids=["train-prefix", "score-typo", "score-before-missing-required", "featurize-prefix", "export-typo"],
)  # fmt: skip
def test_a_mistyped_option_is_refused_with_the_option_meant(
    tmp_path: Path, cli: str, args: list[str], message: str
) -> None:
    import importlib

    main = importlib.import_module(f"threat_ensemble.cli.{cli}").main
    proc = run_main(main, tmp_path, *args)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"error: {message}"]
    assert list(tmp_path.iterdir()) == []  # refused before anything ran


def test_a_header_row_of_numbers_suggests_no_header(tmp_path: Path) -> None:
    """Repeated names that are numbers: the first row is data, the file has no header (NSL-KDD's
    KDDTrain+.txt read without --no-header); repeated words get no such hint (issue 35, 1)."""
    from threat_ensemble.cli.train import main

    _frame().to_csv(tmp_path / "bare.txt", index=False, header=False)
    (tmp_path / "dup.csv").write_text("a,b,a,label\n1,2,3,0\n4,5,6,1\n")
    lines = {}
    for name in ("bare.txt", "dup.csv"):
        proc = run_main(main, tmp_path, "--data", name, "--output-dir", "out", "--checkpoint-dir", "ckpt", "--quiet")
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr[-2000:]
        lines[name] = proc.stderr.strip()
    assert lines["bare.txt"].startswith("error: bare.txt: duplicate column names ['0', ")
    assert lines["bare.txt"].endswith("; each column needs its own name; no header? try --no-header")
    assert lines["dup.csv"] == "error: dup.csv: duplicate column names ['a']; each column needs its own name"
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- accepted, with a warning
@pytest.fixture(scope="module")
def accepted(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One training run covering both: NaN cells filled by --impute, and test-time categories the
    training data never had. Not --quiet, since --quiet hides warnings."""
    work = tmp_path_factory.mktemp("accepted")
    train = _frame(seed=8, rows=2000)
    train["path_depth"] = train["path_depth"].astype(float)
    train.loc[[3, 50, 700], "path_depth"] = np.nan
    train.loc[9, "iat_mean"] = np.inf
    train.to_csv(work / "train.csv", index=False)
    test = _frame(seed=9, rows=500)
    test.loc[:6, "method"] = "PROPFIND"  # rows 0..6: seven values never seen in training
    test.to_csv(work / "test.csv", index=False)
    _fake_bundle(work / "bundle")
    args = [
        "--data",
        "train.csv",
        "--test-data",
        "test.csv",
        "--impute",
        "--max-epochs",
        "2",
        "--tracking-uri",
        f"sqlite:///{work / 'mlflow.db'}",
        "--output-dir",
        "bundle",
        "--checkpoint-dir",
        "ckpt",
    ]
    proc = subprocess.run(train_cmd(*args), cwd=work, capture_output=True, text=True, timeout=300)
    return {"work": work, "proc": proc}


@pytest.mark.slow
def test_impute_says_how_many_cells(accepted: dict) -> None:
    proc = accepted["proc"]
    assert proc.returncode in (0, 3), proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert "train.csv: --impute: 4 missing, infinite or out-of-range numeric cells will be filled" in proc.stderr
    verify_bundle(accepted["work"] / "bundle")  # the new bundle replaced the old one, whole


@pytest.mark.slow
def test_unseen_test_categories_are_counted_not_fatal(accepted: dict) -> None:
    proc = accepted["proc"]
    assert proc.returncode in (0, 3), proc.stderr[-3000:]
    line = "warning: test.csv: 7 categorical values never seen in training were encoded as __other__: " \
           "7 in 'method' ('PROPFIND')"  # fmt: skip
    assert line in proc.stderr.splitlines(), proc.stderr[-3000:]  # one clean line, columns and values named
    assert "UserWarning" not in proc.stderr and "warnings.warn" not in proc.stderr
    gate = json.loads((accepted["work"] / "bundle" / "gate.json").read_text())
    assert gate["n_test"] == 500
    from threat_ensemble.cli.score import main  # score.py says it the same way (issue 35, 4)

    scored = run_main(main, accepted["work"], "--bundle", "bundle", "--data", "test.csv", "--output", "s.csv")
    assert scored.returncode == 0 and line in scored.stderr.splitlines(), scored.stderr[-3000:]
