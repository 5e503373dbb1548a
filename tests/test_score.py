"""scripts/score.py end to end: one small bundle trained in a subprocess, then scored, tampered with
and fed bad tables. Refusals are checked before torch is imported, so they answer in about a second."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import ROOT, copy_bundle
from in_process import run_train

pytestmark = pytest.mark.slow


def score_cmd(*args: str) -> list[str]:
    return [sys.executable, str(ROOT / "scripts" / "score.py"), *args]


def _score(cwd: Path, *args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run(score_cmd(*args), cwd=cwd, capture_output=True, text=True, timeout=timeout)


def _one_error_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


@pytest.fixture(scope="module")
def trained(default_bundle: dict, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The session's default bundle (tests/conftest.py) copied here, and 400 new rows scored with it."""
    from default_traffic import generate_default_traffic  # datasets/

    work = tmp_path_factory.mktemp("score")
    copy_bundle(default_bundle, work)
    new = generate_default_traffic(400, seed=22)
    new.to_csv(work / "new.csv", index=False)
    scored = _score(work, "--bundle", "bundle", "--data", "new.csv", "--output", "scores.csv")
    return {"work": work, "bundle": work / "bundle", "new": new, "scored": scored}


def test_scores_every_row_with_every_model(trained: dict) -> None:
    proc = trained["scored"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    out = pd.read_csv(trained["work"] / "scores.csv")
    assert len(out) == len(trained["new"]) == 400
    assert {"label", "ae", "rf", "if", "ensemble", "verdict"} <= set(out.columns)
    from threat_ensemble.models.fusion import SCORE_COLUMNS  # the names a label column may not take

    assert set(out.columns) - {"label"} == set(SCORE_COLUMNS)
    assert out["label"].tolist() == trained["new"]["label"].tolist()
    assert set(out["verdict"].unique()) <= {0, 1} and out["verdict"].dtype.kind == "i"
    for key in ("ae", "rf", "if", "ensemble"):
        assert out[key].between(0, 1).all(), key
    assert not list(trained["work"].glob(".scores.csv.*")), "temporary file left behind"


def test_labelled_rows_print_each_models_metrics(trained: dict) -> None:
    """With labels, score.py prints each member's and the ensemble's detection metrics on them,
    the same numbers the written scores give."""
    from threat_ensemble.evaluation.metrics import binary_metrics

    proc = trained["scored"]
    out = pd.read_csv(trained["work"] / "scores.csv")
    assert "detection on new.csv (label column 'label', normal = '0')" in proc.stdout, proc.stdout
    for name in ("ae", "rf", "if", "ensemble"):
        expected = binary_metrics(out["label"].to_numpy(), out[name].to_numpy())
        cells = [f"{expected[c]:.4f}" for c in ("precision", "recall", "f1", "pr_auc", "roc_auc", "fpr")]
        assert re.search(rf"^│ {name} +│ +" + r" +│ +".join(map(re.escape, cells)) + " +│$", proc.stdout, re.M), (
            name,
            cells,
            proc.stdout,
        )


def test_labels_of_one_class_warn_and_a_wrong_normal_label_is_refused(trained: dict) -> None:
    work = trained["work"]
    attacks = trained["new"][trained["new"]["label"] == 1].head(30)
    attacks.to_csv(work / "attacks.csv", index=False)
    proc = _score(work, "--bundle", "bundle", "--data", "attacks.csv", "--output", "a.csv")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "label column 'label' holds only attacks (normal = '0')" in proc.stderr
    assert re.search(r"^│ ensemble .* n/a +│ +n/a +│", proc.stdout, re.M), proc.stdout  # PR-AUC, ROC-AUC
    args = ("--bundle", "bundle", "--data", "attacks.csv", "--output", "b.csv", "--normal-label", "benign")
    line = _one_error_line(_score(work, *args))
    assert "label column 'label' is numeric but --normal-label is 'benign'" in line
    assert not (work / "b.csv").exists()


def test_scores_match_the_loaded_ensemble(trained: dict) -> None:
    from threat_ensemble.data.tables import load_labelled_table
    from threat_ensemble.models.ensemble import load_ensemble

    ensemble = load_ensemble(trained["bundle"])
    table = load_labelled_table(trained["work"] / "new.csv")
    expected = ensemble.score(table.features)
    out = pd.read_csv(trained["work"] / "scores.csv")
    assert set(expected) <= set(out.columns)
    for key, values in expected.items():
        np.testing.assert_allclose(out[key].to_numpy(dtype=np.float64), np.asarray(values, np.float64), rtol=1e-12)
    assert (out["verdict"].to_numpy() == (out["ensemble"].to_numpy() >= 0.5)).all()


def test_label_is_optional_and_extra_columns_warn(trained: dict) -> None:
    work = trained["work"]
    frame = trained["new"].drop(columns="label").head(50).copy()
    frame["note"] = "x"
    frame.to_csv(work / "unlabelled.csv", index=False)
    proc = _score(work, "--bundle", "bundle", "--data", "unlabelled.csv", "--output", "u.csv")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "warning:" in proc.stderr and "'note'" in proc.stderr
    out = pd.read_csv(work / "u.csv")
    assert len(out) == 50 and "label" not in out.columns and "note" not in out.columns


def test_missing_columns_are_named(trained: dict) -> None:
    work = trained["work"]
    trained["new"].drop(columns=["method", "hour"]).to_csv(work / "short.csv", index=False)
    line = _one_error_line(_score(work, "--bundle", "bundle", "--data", "short.csv", "--output", "m.csv"))
    assert "short.csv" in line and "missing feature columns" in line
    assert "'method'" in line and "'hour'" in line
    assert not (work / "m.csv").exists()


@pytest.mark.parametrize("given", ["hour", "3"], ids=["by-name", "by-index"])
def test_a_label_column_that_is_a_feature_is_refused_with_the_bundles_label_column(trained: dict, given: str) -> None:
    """It was refused as ``missing feature columns ['hour']``, as if the table lacked a column."""
    work = trained["work"]
    features = json.loads((trained["bundle"] / "preprocessing.json").read_text())["feature_names"]
    name = given if not given.isdigit() else str(trained["new"].columns[int(given)])
    assert name in features
    args = ("--bundle", "bundle", "--data", "new.csv", "--output", "f.csv", "--label-column", given)
    assert _one_error_line(_score(work, *args)) == (
        f"error: new.csv: --label-column {given}: column {name!r} is one of the bundle's {len(features)} feature "
        "columns, not its label; the bundle's label column is 'label'"
    )
    assert not (work / "f.csv").exists()


def test_a_label_index_past_the_tables_columns_gives_the_count(trained: dict) -> None:
    """``--label-column 43`` on a 42-column table listed ``columns: 0, 1, 2, ...`` with no count (issue 35, 9)."""
    work = trained["work"]
    table = pd.DataFrame(np.arange(84).reshape(2, 42))
    table.to_csv(work / "wide.txt", index=False, header=False)
    args = ("--bundle", "bundle", "--data", "wide.txt", "--no-header", "--output", "w.csv", "--label-column", "43")
    assert _one_error_line(_score(work, *args)) == (
        "error: wide.txt: label column '43' not found: no column has that name, and the table's 42 columns are "
        "numbered 0 to 41 (columns: 0, 1, 2, 3, 4, 5, 6, 7, ...; 42 in all)"
    )
    assert not (work / "w.csv").exists()


@pytest.mark.parametrize("extra", [["note"], ["note", "ticket"]])
def test_extra_columns_are_counted_in_words_that_agree(trained: dict, extra: list[str]) -> None:
    work = trained["work"]
    trained["new"].assign(**dict.fromkeys(extra, "x")).to_csv(work / "wider.csv", index=False)
    proc = _score(work, "--bundle", "bundle", "--data", "wider.csv", "--output", f"w{len(extra)}.csv")
    assert proc.returncode == 0, proc.stderr[-2000:]
    noun = "column" if len(extra) == 1 else "columns"
    assert f"wider.csv: ignoring {len(extra)} {noun} the bundle was not trained on: {extra}" in proc.stderr


def test_a_label_named_like_an_output_column_is_kept_and_the_outputs_prefixed(trained: dict) -> None:
    work = trained["work"]
    trained["new"].rename(columns={"label": "verdict"}).to_csv(work / "clash.csv", index=False)
    args = ("--bundle", "bundle", "--data", "clash.csv", "--output", "c.csv", "--label-column", "verdict")
    proc = _score(work, *args)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "the label column is named 'verdict', like an output column; the outputs are written as score_ae" in (
        proc.stderr
    )
    out = pd.read_csv(work / "c.csv")
    assert out["verdict"].tolist() == trained["new"]["label"].tolist()  # the user's labels, untouched
    assert {"score_ae", "score_ensemble", "score_verdict"} <= set(out.columns)
    assert "detection on clash.csv (label column 'verdict', normal = '0')" in proc.stdout


def test_score_takes_the_bundles_label_column_and_normal_label(tmp_path_factory: pytest.TempPathFactory) -> None:
    from synthetic import make_default_dataset

    work = tmp_path_factory.mktemp("own-labels")
    frame = make_default_dataset(1500, seed=5).drop(columns="family")
    frame["verdict"] = np.where(frame.pop("label") == 0, "benign", "attack")
    frame.to_csv(work / "flows.csv", index=False)
    args = ["--data", "flows.csv", "--label-column", "verdict", "--normal-label", "benign", "--max-epochs", "2"]
    args += ["--quiet", "--tracking-uri", f"sqlite:///{work / 'm.db'}", "--output-dir", "b", "--checkpoint-dir", "c"]
    trained_run = run_train(work, *args)
    assert trained_run.returncode in (0, 3), trained_run.stderr[-2000:]
    assert (work / "b" / "gate.json").is_file()
    proc = _score(work, "--bundle", "b", "--data", "flows.csv", "--output", "s.parquet")  # no label options
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "detection on flows.csv (label column 'verdict', normal = 'benign')" in proc.stdout
    out = pd.read_parquet(work / "s.parquet")
    assert out["verdict"].tolist() == frame["verdict"].tolist() and "score_verdict" in out.columns


def test_a_feature_named_label_is_not_taken_for_the_labels(tmp_path: Path) -> None:
    """Without --label-column, ``label`` is the labels only when the bundle does not use it as a feature."""
    from threat_ensemble.data.inputs import read_features

    pd.DataFrame({"label": [1.0, 2.0], "bytes": [3, 4], "attack": [0, 1]}).to_csv(tmp_path / "t.csv", index=False)
    labels, features, _ = read_features(tmp_path / "t.csv", None, False, (), bundle_features=["label", "bytes"])
    assert labels is None and list(features.columns) == ["label", "bytes", "attack"]
    labels, features, _ = read_features(tmp_path / "t.csv", None, False, (), bundle_features=["bytes"])
    assert labels is not None and labels.tolist() == [1.0, 2.0] and "label" not in features.columns


def _copy_bundle(trained: dict, name: str) -> Path:
    copy = trained["work"] / name
    shutil.copytree(trained["bundle"], copy)
    return copy


@pytest.mark.parametrize(
    "target, change, message",
    [
        ("random_forest.skops", "append", "random_forest.skops: sha256"),
        ("threshold.json", "append", "threshold.json: sha256"),
        ("isolation_forest.skops", "delete", "files listed in the manifest are missing: ['isolation_forest.skops']"),
        ("evil.skops", "create", "files not in the manifest: ['evil.skops']"),
        ("manifest.json", "garble", "manifest.json: not valid JSON"),
    ],
)
def test_altered_bundle_is_refused(trained: dict, target: str, change: str, message: str) -> None:
    work = trained["work"]
    bundle = _copy_bundle(trained, f"bundle-{change}-{target}")
    path = bundle / target
    if change == "append":
        path.write_bytes(path.read_bytes() + b" ")
    elif change == "delete":
        path.unlink()
    elif change == "create":
        path.write_bytes(b"cos\nsystem\n(S'echo pwned'\ntR.")
    else:
        path.write_text("{not json")
    (work / "keep.csv").write_text("previous,scores\n1,2\n")
    before = (work / "keep.csv").read_bytes()
    proc = _score(work, "--bundle", str(bundle), "--data", "new.csv", "--output", "keep.csv")
    line = _one_error_line(proc)
    assert message in line
    assert (work / "keep.csv").read_bytes() == before, "a refused run must not touch the output"


def test_not_a_bundle_and_bad_output(trained: dict) -> None:
    work = trained["work"]
    line = _one_error_line(_score(work, "--bundle", "nowhere", "--data", "new.csv", "--output", "x.csv"))
    assert "nowhere: not a bundle" in line
    line = _one_error_line(_score(work, "--bundle", "bundle", "--data", "new.csv", "--output", "no/such/x.csv"))
    assert "no/such" in line and "does not exist" in line
    line = _one_error_line(_score(work, "--bundle", "bundle", "--data", "nope.csv", "--output", "x.csv"))
    assert "nope.csv: no such file" in line
    line = _one_error_line(_score(work, "--bundle", "bundle", "--data", "new.csv"))
    assert "--output" in line


@pytest.fixture(scope="module")
def headerless(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A bundle trained as NSL-KDD is: a CSV without a header row (--no-header), the label by index,
    a column dropped by index (--drop-columns); its table scored again with no reading options."""
    from synthetic import make_default_dataset

    work = tmp_path_factory.mktemp("headerless")
    frame = make_default_dataset(1500, seed=5).drop(columns="family")
    frame["ticket"] = [f"T-{i}" for i in range(len(frame))]  # column 30: dropped in training
    frame.to_csv(work / "flows.txt", index=False, header=False)
    label, ticket = str(frame.columns.get_loc("label")), str(frame.columns.get_loc("ticket"))
    args = ["--data", "flows.txt", "--no-header", "--label-column", label, "--drop-columns", ticket]
    args += ["--max-epochs", "1", "--quiet", "--tracking-uri", f"sqlite:///{work / 'm.db'}", "--output-dir", "b"]
    trained_run = run_train(work, *args, "--checkpoint-dir", "c")
    assert trained_run.returncode in (0, 3), trained_run.stderr[-2000:]
    return {"work": work, "frame": frame, "label": label, "ticket": ticket}


def test_score_reads_the_table_as_the_bundle_did(headerless: dict) -> None:
    """It read the first data row as a header: 'duplicate column names ['0', ...]' (issue 35, 1)."""
    work, label = headerless["work"], headerless["label"]
    proc = _score(work, "--bundle", "b", "--data", "flows.txt", "--output", "s.csv")  # no reading options
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "ignoring" not in proc.stderr and "note:" not in proc.stdout  # the bundle's drop applied, nothing overridden
    assert f"detection on flows.txt (label column '{label}', normal = '0')" in proc.stdout
    out = pd.read_csv(work / "s.csv")
    assert len(out) == 1500 and out[label].tolist() == headerless["frame"]["label"].tolist()


def test_a_reading_option_given_wins_over_the_bundles_with_a_note(headerless: dict) -> None:
    work, ticket = headerless["work"], headerless["ticket"]
    proc = _score(work, "--bundle", "b", "--data", "flows.txt", "--output", "d.csv", "--drop-columns", "")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"note: --drop-columns '' given, used instead of the bundle's own ({ticket})\n" in proc.stdout
    assert f"flows.txt: ignoring 1 column the bundle was not trained on: ['{ticket}']" in proc.stderr
    proc = _score(work, "--bundle", "b", "--data", "flows.txt", "--output", "h.csv", "--header")
    assert proc.stdout.splitlines()[0] == (
        "note: --header given, used instead of the bundle's setting (its training table was read without a "
        "header row (train.py --no-header))"
    )
    line = _one_error_line(proc)  # its first row taken as the header: numbers, repeated
    assert line.startswith("error: flows.txt: duplicate column names ['0', ") and line.endswith(
        "; each column needs its own name; no header? try --no-header"
    )
    assert not (work / "h.csv").exists()


def test_a_header_row_of_numbers_suggests_no_header(trained: dict) -> None:
    """A table without its header row, scored by a bundle trained with one."""
    work = trained["work"]
    trained["new"].to_csv(work / "bare.csv", index=False, header=False)
    line = _one_error_line(_score(work, "--bundle", "bundle", "--data", "bare.csv", "--output", "bare-s.csv"))
    assert line.startswith("error: bare.csv: duplicate column names [") and line.endswith("no header? try --no-header")


def test_spark_engine_refuses_a_csv_the_bundle_read_without_a_header(headerless: dict) -> None:
    """Spark reads a CSV's first row as its header: refused before Spark starts, not scored wrong."""
    args = ("--bundle", "b", "--data", "flows.txt", "--output", "spark-out", "--engine", "spark")
    line = _one_error_line(_score(headerless["work"], *args))
    assert line == (
        "error: --data flows.txt: the bundle's training table had no header row (train.py --no-header), and "
        "--engine spark reads a CSV's first row as its header; use the python engine, or --header if it has one"
    )
