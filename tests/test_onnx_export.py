"""The ensemble as one ONNX graph: real bundles trained by scripts/train.py (the default data and
NSL-KDD, both fusions), exported, and scored by onnxruntime next to the Python scorer on every row
of their tables and on generated tables whose values sit on and beside the trees' split points."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import NSL_KDD, ROOT, logged_bundle, nsl_kdd_missing, train_cmd

pytestmark = pytest.mark.slow

MEMBER_TOLERANCE = 1e-6  # member and fused scores, absolute
AE_ERROR_TOLERANCE = 1e-5  # the raw reconstruction error (unbounded), relative: float32 network
KDD_ARGS = ("--no-header", "--label-column", "41", "--normal-label", "normal", "--drop-columns", "42")


def _train(work: Path, name: str, *args: str) -> Path:
    proc = subprocess.run(
        train_cmd(
            *args,
            "--max-epochs",
            "1",
            "--quiet",
            "--tracking-uri",
            f"sqlite:///{work / 'mlflow.db'}",
            "--output-dir",
            name,
            "--checkpoint-dir",
            f"{name}-ckpt",
        ),
        cwd=work,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode in (0, 3), proc.stderr[-3000:]
    gate = json.loads((work / name / "gate.json").read_text())
    assert gate["passed"] == (proc.returncode == 0)
    return work / name


def _cli(script: str, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """score.py or export.py run in this process (its exit status, stdout and stderr), in ``cwd``."""
    from in_process import run_main
    from threat_ensemble.cli import export, score

    return run_main({"score.py": score.main, "export.py": export.main}[script], cwd, *args)


def _subprocess(script: str, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(ROOT / "scripts" / script), *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300)


def _one_error_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stdout + proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("onnx")


@pytest.fixture(scope="module")
def default_bundles(work: Path, default_bundle: dict) -> dict[str, Path]:
    """The default data, stacked fusion exported by train.py --export onnx (the session's default
    bundle, tests/conftest.py); fixed fusion without."""
    return {
        "stack": default_bundle["bundle"],
        "fixed": _train(work, "default-fixed", "--default-rows", "3000", "--fusion", "fixed"),
    }


@pytest.fixture(scope="module")
def kdd_bundles(work: Path) -> dict[str, Path]:
    if nsl_kdd_missing() is not None:
        pytest.skip(nsl_kdd_missing() or "")
    data = ("--data", str(NSL_KDD / "KDDTrain+_20Percent.txt"), "--test-data", str(NSL_KDD / "KDDTest+.txt"))
    return {
        "stack": _train(work, "kdd-stack", *data, *KDD_ARGS),
        "fixed": _train(work, "kdd-fixed", *data, *KDD_ARGS, "--fusion", "fixed"),
    }


def _graph(bundle: Path, work: Path) -> Path:
    """The bundle's own ensemble.onnx, or one exported by scripts/export.py."""
    if (bundle / "ensemble.onnx").exists():
        return bundle / "ensemble.onnx"
    out = work / f"{bundle.name}.onnx"
    if not out.exists():
        proc = _cli("export.py", work, "--bundle", str(bundle), "--output", str(out))
        assert proc.returncode == 0, proc.stderr
        assert f"-> {out}" in proc.stdout
    return out


_LOADED: dict[tuple[Path, Path], tuple[Any, Any]] = {}


def _scores(bundle: Path, graph: Path, frame: pd.DataFrame) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(Python scorer's, onnxruntime's) scores of ``frame``'s feature columns (each model loaded once)."""
    from threat_ensemble.export.onnx_runtime import OnnxScorer
    from threat_ensemble.models.ensemble import load_ensemble

    if (bundle, graph) not in _LOADED:
        _LOADED[bundle, graph] = (load_ensemble(bundle), OnnxScorer.from_file(graph))
    ensemble, scorer = _LOADED[bundle, graph]
    from threat_ensemble.models.rows import CheckedRows

    features = frame[ensemble.preprocessing.encoder.feature_names]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unseen categories, NaN rows: both engines see the same
        # the rows as they are, past the ensemble's input check (which refuses numbers beyond float32,
        # as score.py does for both engines): the graph has no such check, so parity must hold there too
        python = ensemble.score(CheckedRows(features, "generated rows"))
    return python, scorer.score(features)


def assert_parity(python: dict[str, np.ndarray], onnx: dict[str, np.ndarray]) -> None:
    from threat_ensemble.models.fusion import SCORE_COLUMNS

    assert set(onnx) == set(SCORE_COLUMNS)
    assert onnx["verdict"].dtype == np.int64
    np.testing.assert_array_equal(onnx["verdict"], python["verdict"])  # every row
    for key in ("ae", "rf", "if", "rf_vote", "ensemble"):
        assert onnx[key].dtype == np.float64
        np.testing.assert_allclose(onnx[key], python[key], rtol=0, atol=MEMBER_TOLERANCE, err_msg=key)
    np.testing.assert_allclose(onnx["ae_error"], python["ae_error"], rtol=AE_ERROR_TOLERANCE, atol=1e-12)


def _kdd_test() -> pd.DataFrame:
    from threat_ensemble.data.tables import load_labelled_table

    table = load_labelled_table(
        NSL_KDD / "KDDTest+.txt", no_header=True, label_column="41", normal_label="normal", drop_columns=["42"]
    )
    return table.features


def _default_table() -> pd.DataFrame:
    from threat_ensemble.data.default_data import default_frame

    return default_frame()


@pytest.mark.parametrize("fusion", ["stack", "fixed"])
def test_default_data_scores_equal_on_every_row(default_bundles: dict[str, Path], work: Path, fusion: str) -> None:
    bundle = default_bundles[fusion]
    frame = _default_table()  # all 20000 rows: the run's test split is a sample of them
    python, onnx = _scores(bundle, _graph(bundle, work), frame)
    assert len(python["verdict"]) == len(frame) == 20000
    assert 0 < python["verdict"].sum() < len(frame)
    assert_parity(python, onnx)


@pytest.mark.parametrize("fusion", ["stack", "fixed"])
def test_nsl_kdd_test_file_scores_equal_on_every_row(kdd_bundles: dict[str, Path], work: Path, fusion: str) -> None:
    bundle = kdd_bundles[fusion]
    frame = _kdd_test()
    assert len(frame) == 22544 and frame.select_dtypes(exclude="number").shape[1] == 3  # protocol, service, flag
    python, onnx = _scores(bundle, _graph(bundle, work), frame)
    assert 0 < python["verdict"].sum() < len(frame)
    assert_parity(python, onnx)


def _split_points(bundle: Path) -> dict[int, np.ndarray]:
    """Every split threshold of both forests, by encoded column."""
    from threat_ensemble.models.ensemble import load_ensemble

    ensemble = load_ensemble(bundle)
    calibrated = ensemble.random_forest.calibrated_classifiers_[0].estimator
    forests = [calibrated.estimator.estimators_, ensemble.isolation_forest.estimators_]
    points: dict[int, list[float]] = {}
    for estimators in forests:
        for estimator in estimators:
            tree = estimator.tree_
            inner = tree.children_left != -1
            for feature, threshold in zip(tree.feature[inner], tree.threshold[inner], strict=True):
                points.setdefault(int(feature), []).append(float(threshold))
    return {k: np.unique(v) for k, v in points.items()}


@pytest.fixture(scope="module")
def generated_case(default_bundles: dict[str, Path], work: Path) -> dict[str, Any]:
    from threat_ensemble.models.ensemble import load_ensemble

    bundle = default_bundles["stack"]
    encoder = load_ensemble(bundle).preprocessing.encoder
    points = _split_points(bundle)
    near = {}
    for index, column in enumerate(encoder.numeric_columns):
        t = points.get(index, np.array([0.0]))
        below = np.nextafter(t.astype(np.float32), np.float32(-np.inf)).astype(np.float64)
        above = np.nextafter(t.astype(np.float32), np.float32(np.inf)).astype(np.float64)
        near[column] = np.unique(np.concatenate([t, t.astype(np.float32).astype(np.float64), below, above]))
    return {"bundle": bundle, "graph": _graph(bundle, work), "encoder": encoder, "near": near}


def _text_values(categories: list[str]) -> st.SearchStrategy[str]:
    padded = st.tuples(st.sampled_from(["", " ", "\t", "\u00a0", "\u2003 ", "\n"]), st.sampled_from(categories)).map(
        lambda p: p[0] + p[1] + p[0][::-1]
    )
    return st.one_of(st.sampled_from(categories), padded, st.text(max_size=6), st.just("__missing__"))


@st.composite
def _tables(draw: st.DrawFn, case: dict[str, Any]) -> pd.DataFrame:
    encoder = case["encoder"]
    n = draw(st.integers(1, 12))
    columns: dict[str, Any] = {}
    for column in encoder.feature_names:
        if column in encoder.categories:
            columns[column] = draw(st.lists(_text_values(encoder.categories[column]), min_size=n, max_size=n))
            continue
        at_split = st.sampled_from(case["near"][column].tolist())
        anything = st.floats(allow_nan=True, allow_infinity=True, width=64)
        ordinary = st.floats(-1e6, 1e6, allow_nan=False)
        columns[column] = draw(st.lists(st.one_of(at_split, at_split, ordinary, anything), min_size=n, max_size=n))
    return pd.DataFrame(columns)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_generated_tables_on_and_beside_split_points_score_equal(generated_case: dict[str, Any], data: Any) -> None:
    frame = data.draw(_tables(generated_case))
    python, onnx = _scores(generated_case["bundle"], generated_case["graph"], frame)
    assert_parity(python, onnx)


def test_the_cut_is_an_input_with_the_trained_default(default_bundles: dict[str, Path], work: Path) -> None:
    from threat_ensemble.export.onnx_runtime import OnnxScorer

    scorer = OnnxScorer.from_file(_graph(default_bundles["stack"], work))
    frame = _default_table().head(2000)[[c for c, _ in scorer.features]]
    default = scorer.score(frame)
    np.testing.assert_array_equal(default["verdict"], (default["ensemble"] >= 0.5).astype(np.int64))
    for cut in (0.2, 0.9):
        moved = scorer.score(frame, cut=cut)
        np.testing.assert_array_equal(moved["ensemble"], default["ensemble"])
        np.testing.assert_array_equal(moved["verdict"], (default["ensemble"] >= cut).astype(np.int64))
    assert scorer.score(frame, cut=0.9)["verdict"].sum() < default["verdict"].sum()


def test_metadata_and_version_id(default_bundles: dict[str, Path], default_bundle: dict, tmp_path: Path) -> None:
    import onnx

    from threat_ensemble import __version__
    from threat_ensemble.models.bundle import read_bundle
    from threat_ensemble.models.ensemble import load_ensemble

    bundle = default_bundles["stack"]
    model = onnx.load(str(bundle / "ensemble.onnx"))
    meta = {p.key: p.value for p in model.metadata_props}
    ensemble = load_ensemble(bundle)
    encoder = ensemble.preprocessing.encoder
    assert [c for c, _ in json.loads(meta["features"])] == encoder.feature_names
    kinds = dict(json.loads(meta["features"]))
    assert kinds["method"] == "string" and all(kinds[c] == "double" for c in encoder.numeric_columns)
    assert float(meta["threshold"]) == ensemble.threshold
    assert float(meta["cut"]) == 0.5 and meta["fusion"] == "stack"
    assert meta["package_version"] == __version__
    assert meta["mlflow_run_id"] == json.loads((bundle / "gate.json").read_text())["mlflow_run_id"]
    # the version id is a sha256 prefix of the graph as written without it
    onnx.helper.set_model_props(model, {k: v for k, v in meta.items() if k != "version_id"})
    assert meta["version_id"] == hashlib.sha256(model.SerializeToString()).hexdigest()[:12]
    # in the bundle: listed and hashed in the manifest, logged with the bundle to the MLflow run
    assert "ensemble.onnx" in read_bundle(bundle).files
    logged = logged_bundle(default_bundle["uri"], meta["mlflow_run_id"], tmp_path)
    assert (logged / "ensemble.onnx").read_bytes() == (bundle / "ensemble.onnx").read_bytes()


def test_score_py_onnx_engine_writes_the_python_engines_file(default_bundles: dict[str, Path], work: Path) -> None:
    from default_traffic import generate_default_traffic  # datasets/

    generate_default_traffic(500, seed=9).to_csv(work / "new.csv", index=False)
    outputs = {}
    for engine in ("python", "onnx"):
        out = work / f"scores-{engine}.csv"
        proc = _cli("score.py", work, "--bundle", str(default_bundles["stack"]), "--data", "new.csv",
                    "--output", str(out), "--engine", engine)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert "Traceback" not in proc.stderr
        assert "building the graph" not in proc.stdout  # the bundle's own ensemble.onnx
        outputs[engine] = pd.read_csv(out)
    python, onnx = outputs["python"], outputs["onnx"]
    assert list(onnx.columns) == list(python.columns) and len(onnx) == 500
    assert onnx["verdict"].tolist() == python["verdict"].tolist()
    for key in ("ae", "rf", "if", "ensemble"):
        np.testing.assert_allclose(onnx[key], python[key], atol=MEMBER_TOLERANCE)


def test_onnx_engine_builds_the_graph_when_the_bundle_has_none(default_bundles: dict[str, Path], work: Path) -> None:
    bundle = default_bundles["fixed"]
    assert not (bundle / "ensemble.onnx").exists()
    _default_table().head(300).to_csv(work / "three-hundred.csv", index=False)
    outputs = {}
    for engine in ("python", "onnx"):
        proc = _cli("score.py", work, "--bundle", str(bundle), "--data", "three-hundred.csv", "--output",
                    f"fixed-{engine}.csv", "--engine", engine)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        notes = [line for line in proc.stdout.splitlines() if line.startswith("note:")]
        assert notes == ([] if engine == "python" else [
            f"note: {bundle} holds no ensemble.onnx: building the graph for this run (export.py --bundle {bundle} "
            "--output FILE once, then --onnx FILE, skips this)"
        ])  # fmt: skip
        outputs[engine] = pd.read_csv(work / f"fixed-{engine}.csv")
    assert outputs["onnx"]["verdict"].tolist() == outputs["python"]["verdict"].tolist()
    np.testing.assert_allclose(outputs["onnx"]["ensemble"], outputs["python"]["ensemble"], atol=MEMBER_TOLERANCE)
    assert not (bundle / "ensemble.onnx").exists()  # the bundle is left as it was


def test_onnx_engine_treats_columns_as_the_python_engine(default_bundles: dict[str, Path], work: Path) -> None:
    """A missing column is refused and an extra one ignored with a warning, by both engines alike
    (the ONNX engine refused the extra column: issue 35, 2)."""
    from default_traffic import generate_default_traffic

    frame = generate_default_traffic(50, seed=3)
    frame.drop(columns=["method"]).to_csv(work / "missing.csv", index=False)
    frame.assign(note="x").to_csv(work / "extra.csv", index=False)
    bundle = str(default_bundles["stack"])
    lines, outputs = {}, {}
    for engine in ("python", "onnx"):
        lines[engine] = _one_error_line(_cli("score.py", work, "--bundle", bundle, "--data", "missing.csv",
                                             "--output", f"m-{engine}.csv", "--engine", engine))  # fmt: skip
        proc = _cli("score.py", work, "--bundle", bundle, "--data", "extra.csv", "--output", f"e-{engine}.csv",
                    "--engine", engine)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert proc.stderr.splitlines() == [
            "warning: extra.csv: ignoring 1 column the bundle was not trained on: ['note']"
        ]
        outputs[engine] = pd.read_csv(work / f"e-{engine}.csv")
    assert lines["onnx"] == lines["python"] and "missing feature columns ['method']" in lines["onnx"]
    assert not list(work.glob("m-*.csv"))
    assert list(outputs["onnx"].columns) == list(outputs["python"].columns) and "note" not in outputs["onnx"]
    assert outputs["onnx"]["verdict"].tolist() == outputs["python"]["verdict"].tolist()


def test_score_py_scores_through_the_graph_onnx_names(
    default_bundles: dict[str, Path], work: Path, tmp_path: Path
) -> None:
    """--onnx FILE: the graph export.py wrote, not one built for the run; a graph exported from
    another bundle, or naming none, is refused with one line (issue 35, 2)."""
    import onnx

    from threat_ensemble.models.bundle import read_bundle

    bundle, graph = default_bundles["fixed"], _graph(default_bundles["fixed"], work)
    _default_table().head(300).to_csv(tmp_path / "rows.csv", index=False)
    outputs = {}
    for engine, options in (("python", ()), ("onnx", ("--onnx", str(graph)))):
        proc = _cli("score.py", tmp_path, "--bundle", str(bundle), "--data", "rows.csv", "--output",
                    f"{engine}.csv", *options)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert "note:" not in proc.stdout  # nothing built
        outputs[engine] = pd.read_csv(tmp_path / f"{engine}.csv")
    assert outputs["onnx"]["verdict"].tolist() == outputs["python"]["verdict"].tolist()
    np.testing.assert_allclose(outputs["onnx"]["ensemble"], outputs["python"]["ensemble"], atol=MEMBER_TOLERANCE)
    # another bundle's graph: exported from it (its digest), or written by train.py --export onnx (none)
    other = onnx.load(str(graph))
    stack_digest = read_bundle(default_bundles["stack"]).digest
    props = {p.key: p.value for p in other.metadata_props}
    onnx.helper.set_model_props(other, {**props, "bundle_digest": stack_digest})
    onnx.save(other, str(tmp_path / "other.onnx"))
    digest = read_bundle(bundle).digest
    refusals = {
        "other.onnx": f"error: --onnx other.onnx: exported from another bundle (bundle_digest {stack_digest[:12]}...), "
        f"not from {bundle} ({digest[:12]}...); export.py --bundle {bundle} --output FILE writes one for it",
        str(default_bundles["stack"] / "ensemble.onnx"): "the graph names no bundle it was exported from",
    }
    for name, message in refusals.items():
        line = _one_error_line(_cli("score.py", tmp_path, "--bundle", str(bundle), "--data", "rows.csv",
                                    "--output", "x.csv", "--onnx", name))  # fmt: skip
        assert line.startswith(message) if name == "other.onnx" else message in line, line
    line = _one_error_line(_cli("score.py", tmp_path, "--bundle", str(bundle), "--data", "rows.csv", "--output",
                                "x.csv", "--onnx", str(graph), "--engine", "python"))  # fmt: skip
    assert line == "error: --onnx is for --engine onnx, not --engine python"
    assert not (tmp_path / "x.csv").exists()
    # a bundle's own ensemble.onnx, copied out of it, is that bundle's graph
    shutil.copy(default_bundles["stack"] / "ensemble.onnx", tmp_path / "own.onnx")
    proc = _cli("score.py", tmp_path, "--bundle", str(default_bundles["stack"]), "--data", "rows.csv",
                "--output", "own.csv", "--onnx", "own.onnx")  # fmt: skip
    assert proc.returncode == 0, proc.stderr


def test_an_altered_graph_in_the_bundle_is_refused(default_bundles: dict[str, Path], work: Path) -> None:
    altered = work / "altered"
    shutil.copytree(default_bundles["stack"], altered)
    data = bytearray((altered / "ensemble.onnx").read_bytes())
    data[-10] ^= 0xFF
    (altered / "ensemble.onnx").write_bytes(bytes(data))
    _default_table().head(20).to_csv(work / "few.csv", index=False)
    for engine in ("onnx", "python"):
        line = _one_error_line(_cli("score.py", work, "--bundle", str(altered), "--data", "few.csv",
                                    "--output", "x.csv", "--engine", engine))  # fmt: skip
        assert "ensemble.onnx" in line and "differs from the manifest" in line
    line = _one_error_line(_cli("export.py", work, "--bundle", str(altered), "--output", "x.onnx"))
    assert "ensemble.onnx" in line
    assert not (work / "x.onnx").exists() and not (work / "x.csv").exists()


def test_export_refuses_a_bundle_that_fails_verification(default_bundles: dict[str, Path], work: Path) -> None:
    broken = work / "broken"
    shutil.copytree(default_bundles["fixed"], broken)
    (broken / "threshold.json").write_text((broken / "threshold.json").read_text().replace("0", "1", 1))
    line = _one_error_line(_subprocess("export.py", work, "--bundle", str(broken), "--output", "broken.onnx"))
    assert "threshold.json" in line
    assert not (work / "broken.onnx").exists()
    assert not list(work.glob(".broken.onnx*"))  # no temporary file left either
    line = _one_error_line(_cli("export.py", work, "--bundle", str(default_bundles["fixed"]), "--output",
                                str(default_bundles["fixed"] / "inside.onnx")))  # fmt: skip
    assert f"inside {default_bundles['fixed']}; writing there would break that bundle; train with --export onnx" in line
    line = _one_error_line(_cli("export.py", work, "--bundle", str(default_bundles["fixed"]), "--output", "g.txt"))
    assert ".onnx" in line
