"""A bundle from a stranger may at worst give wrong scores, never run code: every file position
holding a code-running payload, with and without a manifest that vouches for it; manifests of every
wrong shape; the digest that pins a bundle from outside; numbers that would fail open."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import subprocess
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import ROOT, few_trees
from threat_ensemble.cli.score import main as score_main
from threat_ensemble.errors import InputError
from threat_ensemble.models.bundle import (
    AE_FILE,
    BUNDLE_FILES,
    GATE_FILE,
    IF_FILE,
    MANIFEST_FILE,
    PREPROCESSING_FILE,
    RF_FILE,
    THRESHOLD_FILE,
    BundleError,
)
from threat_ensemble.models.ensemble import NonFiniteScores, ThreatEnsemble


class _RunsCode:
    """Unpickling this writes the marker file: what an attacker's pickle would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (exec, (f"open({self.marker!r}, 'w').write('ran')",))


class _SetsStateRunsCode:
    """A skops archive of this would build it and call __setstate__, if the type were trusted."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __setstate__(self, state: dict) -> None:
        Path(state["marker"]).write_text("ran")


def _fit_tiny_ensemble(frame: pd.DataFrame) -> ThreatEnsemble:
    """Members fitted in seconds (an untrained autoencoder is enough to test loading)."""
    from threat_ensemble.data.preprocessing import FeatureEncoder, Preprocessing, RobustScaler
    from threat_ensemble.models.autoencoder import build_autoencoder
    from threat_ensemble.models.forests import fit_isolation_forest, fit_random_forest

    y = frame["label"].to_numpy()
    features = frame.drop(columns="label")
    encoder = FeatureEncoder.fit(features)
    x, _ = encoder.transform(features)
    preprocessing = Preprocessing(encoder, RobustScaler.fit(x))
    half = len(x) // 2
    torch.manual_seed(0)
    return ThreatEnsemble(
        preprocessing=preprocessing,
        autoencoder=build_autoencoder(x.shape[1]).eval(),
        threshold=1.0,
        random_forest=fit_random_forest(x[:half], y[:half], x[half:], y[half:], seed=0, n_jobs=1),
        isolation_forest=fit_isolation_forest(x[y == 0], seed=0, n_jobs=1),
        fusion={"kind": "fixed", "weights": {"ae": 0.4, "rf": 0.4, "if": 0.2}},
        error_scale=np.ones(x.shape[1]),
    )


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict:
    from synthetic import make_default_dataset

    work = tmp_path_factory.mktemp("trust")
    frame = make_default_dataset(600, seed=3).drop(columns="family")
    frame.to_csv(work / "rows.csv", index=False)
    with few_trees():  # a forest of 20 trees loads in a tenth of the time; what is loaded is the subject
        ensemble = _fit_tiny_ensemble(frame)
    bundle = ensemble.save(
        work / "bundle",
        gate={"passed": True, "weights": ensemble.fusion["weights"]},
        threshold_info={"percentile": 99.5},
        manifest_extra={},
    )
    return {"work": work, "bundle": bundle, "digest": ensemble.digest, "ensemble": ensemble}


def _copy(tiny: dict, tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(tiny["bundle"], tmp_path / "bundle"))


def _vouch(bundle: Path, name: str) -> None:
    """Put the file's new sha256 into the manifest, as an attacker who can write the folder would."""
    manifest = json.loads((bundle / MANIFEST_FILE).read_text())
    manifest["files"][name] = hashlib.sha256((bundle / name).read_bytes()).hexdigest()
    (bundle / MANIFEST_FILE).write_text(json.dumps(manifest))


def _score(tiny: dict, bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple:
    out = tmp_path / "scores.csv"
    code = score_main(["--bundle", str(bundle), "--data", str(tiny["work"] / "rows.csv"), "--output", str(out), *extra])
    captured = capsys.readouterr()
    return code, captured.err.strip(), out


LOADED = (*BUNDLE_FILES, MANIFEST_FILE)


@pytest.mark.parametrize("vouched", [False, True], ids=["manifest-unchanged", "manifest-vouches"])
@pytest.mark.parametrize("position", LOADED)
def test_a_pickle_in_any_file_position_never_runs(
    tiny: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str], position: str, vouched: bool
) -> None:
    bundle = _copy(tiny, tmp_path)
    marker = tmp_path / "marker"
    payload = pickle.dumps(_RunsCode(marker))
    if position == AE_FILE:  # torch.save's zip of a pickle: what autoencoder.pt used to be
        import io

        buffer = io.BytesIO()
        torch.save({"state_dict": _RunsCode(marker)}, buffer)
        payload = buffer.getvalue()
    (bundle / position).write_bytes(payload)
    if vouched and position != MANIFEST_FILE:
        _vouch(bundle, position)
    code, err, out = _score(tiny, bundle, tmp_path, capsys)
    assert not marker.exists(), "the payload ran"
    assert code == 2 and not out.exists()
    assert err.startswith("error: ") and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert position in err or MANIFEST_FILE in err, err


@pytest.mark.parametrize("position", [RF_FILE, IF_FILE])
def test_a_skops_file_of_untrusted_types_is_refused_before_anything_is_built(
    tiny: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str], position: str
) -> None:
    import skops.io as sio

    bundle = _copy(tiny, tmp_path)
    marker = tmp_path / "marker"
    (bundle / position).write_bytes(sio.dumps(_SetsStateRunsCode(marker)))
    _vouch(bundle, position)
    code, err, _ = _score(tiny, bundle, tmp_path, capsys)
    assert not marker.exists() and code == 2
    assert f"{position}: holds types this package does not trust" in err and "_SetsStateRunsCode" in err, err


def _external(name: str, location: str, length: int = 8, flagged: bool = True):  # type: ignore[no-untyped-def]
    """A one-number double tensor whose bytes are in the file ``location`` (relative: onnxruntime
    reads it from the working folder); ``flagged`` sets data_location EXTERNAL besides the entries."""
    from onnx import TensorProto

    tensor = TensorProto(name=name, data_type=TensorProto.DOUBLE, dims=[1])
    for key, value in (("location", location), ("offset", "0"), ("length", str(length))):
        tensor.external_data.add(key=key, value=value)
    if flagged:
        tensor.data_location = TensorProto.EXTERNAL
    return tensor


def _branch(name: str, value):  # type: ignore[no-untyped-def]
    """A subgraph (an If branch) whose one output is a Constant node's ``value``."""
    from onnx import TensorProto, helper

    output = helper.make_tensor_value_info(name, TensorProto.DOUBLE, [1])
    return helper.make_graph([helper.make_node("Constant", [], [name], value=value)], name, [], [output])


def _inside(name: str):  # type: ignore[no-untyped-def]
    from onnx import TensorProto, helper

    return helper.make_tensor(name, TensorProto.DOUBLE, [1], [0.0])


def _if_reading(location: str, output: str):  # type: ignore[no-untyped-def]
    """An If node (always true) whose branch's Constant reads ``location``: onnxruntime reads it
    while building the session, whatever the graph optimisations."""
    from onnx import helper

    return helper.make_node(
        "If", ["always"], [output], then_branch=_branch("outside", _external("z", location)),
        else_branch=_branch("inside", _inside("z0")),
    )  # fmt: skip


def _graph_reading(ensemble: ThreatEnsemble, location: str) -> bytes:
    """The ensemble's own graph, its ``ae`` output plus a zero read from the file ``location``."""
    from onnx import TensorProto, helper

    from threat_ensemble.export.onnx_graph import build_onnx_model

    model = build_onnx_model(ensemble)
    nodes = []
    for node in model.graph.node:
        if list(node.output) == ["ae"]:
            nodes += [_if_reading(location, "zero"), helper.make_node("Add", [node.input[0], "zero"], ["ae_read"])]
            node.input[0] = "ae_read"
        nodes.append(node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    model.graph.initializer.append(helper.make_tensor("always", TensorProto.BOOL, [], [True]))
    return model.SerializeToString()


def test_a_graph_with_external_data_is_refused_before_onnxruntime_reads_it(
    tiny: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bundle's ensemble.onnx (vouched for by its manifest) that keeps a tensor in a file at a
    plain relative path: onnxruntime would read that file from the working folder, outside the bundle."""
    from threat_ensemble.models.bundle import ONNX_FILE

    bundle = _copy(tiny, tmp_path)
    (bundle / ONNX_FILE).write_bytes(_graph_reading(tiny["ensemble"], "zero.bin"))
    _vouch(bundle, ONNX_FILE)
    here = tmp_path / "here"
    here.mkdir()
    (here / "zero.bin").write_bytes(np.zeros(1).tobytes())
    monkeypatch.chdir(here)
    code, err, out = _score(tiny, bundle, tmp_path, capsys, "--engine", "onnx")
    assert code == 2 and not out.exists(), err
    assert err.startswith("error: ") and len(err.splitlines()) == 1, err
    assert f"{ONNX_FILE}: " in err and "keeps its data outside the graph (external data 'zero.bin')" in err, err
    assert "refused" in err


def _tiny_graph(position: str) -> bytes:
    """A graph y = x + a tensor, that tensor external in ``position``, with the metadata of ours."""
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.DOUBLE, [1])
    y = helper.make_tensor_value_info("y", TensorProto.DOUBLE, [1])
    always = helper.make_tensor("always", TensorProto.BOOL, [], [True])
    nodes, initializers, functions, sparse = [helper.make_node("Add", ["x", "w"], ["y"])], [always], [], []
    if position == "initializer":
        initializers.append(_external("w", "w.bin"))
    elif position == "constant without the flag":  # external_data entries alone are enough to refuse
        nodes.insert(0, helper.make_node("Constant", [], ["w"], value=_external("c", "w.bin", flagged=False)))
    elif position == "constant in an if branch":
        nodes.insert(0, _if_reading("w.bin", "w"))
    elif position == "initializer of a subgraph":
        out = helper.make_tensor_value_info("outside", TensorProto.DOUBLE, [1])
        identity = helper.make_node("Identity", ["t"], ["outside"])
        then = helper.make_graph([identity], "outside", [], [out], [_external("t", "w.bin")])
        otherwise = _branch("inside", _inside("z"))
        nodes.insert(0, helper.make_node("If", ["always"], ["w"], then_branch=then, else_branch=otherwise))
    elif position == "sparse initializer":
        indices = helper.make_tensor("i", TensorProto.INT64, [1], [0])
        sparse.append(helper.make_sparse_tensor(_external("w", "w.bin"), indices, [1]))
    elif position == "function":
        body = [helper.make_node("Constant", [], ["v"], value=_external("c", "w.bin"))]
        functions.append(helper.make_function("local", "Zero", [], ["v"], body, [helper.make_opsetid("", 17)]))
        nodes.insert(0, helper.make_node("Zero", [], ["w"], domain="local"))
    elif position == "tensor attribute of an ml operator":
        keys = helper.make_tensor("k", TensorProto.DOUBLE, [1], [0.0])
        nodes = [helper.make_node("LabelEncoder", ["x"], ["y"], domain="ai.onnx.ml", keys_tensor=keys,
                                  values_tensor=_external("v", "w.bin"))]  # fmt: skip
    graph = helper.make_graph(nodes, "g", [x], [y], initializers, sparse_initializer=sparse)
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 4), helper.make_opsetid("local", 1)]
    model = helper.make_model(graph, opset_imports=opsets, functions=functions)
    model.ir_version = 9
    helper.set_model_props(model, {"features": json.dumps([["x", "double"]])})
    return model.SerializeToString()


EXTERNAL_POSITIONS = [
    "initializer",
    "constant without the flag",
    "constant in an if branch",
    "initializer of a subgraph",
    "sparse initializer",
    "function",
    "tensor attribute of an ml operator",
]


@pytest.mark.parametrize("position", EXTERNAL_POSITIONS)
def test_external_data_anywhere_in_a_graph_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, position: str
) -> None:
    from threat_ensemble.errors import InputError
    from threat_ensemble.export.onnx_runtime import OnnxScorer

    monkeypatch.chdir(tmp_path)
    (tmp_path / "w.bin").write_bytes(np.ones(1).tobytes())  # there to be read, were it read
    with pytest.raises(InputError) as error:
        OnnxScorer(_tiny_graph(position), "g.onnx")
    message = str(error.value)
    assert message.startswith("g.onnx: ") and "keeps its data outside the graph (external data 'w.bin')" in message
    assert "\n" not in message


def test_the_pinned_digest_refuses_a_bundle_whose_manifest_was_rewritten(
    tiny: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = _copy(tiny, tmp_path)
    thresholds = json.loads((bundle / THRESHOLD_FILE).read_text())
    thresholds["threshold"] = 1e9  # flags nothing: a silent way to blind the detector
    (bundle / THRESHOLD_FILE).write_text(json.dumps(thresholds))
    _vouch(bundle, THRESHOLD_FILE)
    code, err, out = _score(tiny, bundle, tmp_path, capsys, "--expect-digest", tiny["digest"])
    assert code == 2 and not out.exists()
    assert f"{MANIFEST_FILE}: sha256" in err and f"is not the expected {tiny['digest']}" in err, err
    code, _, out = _score(tiny, tiny["bundle"], tmp_path, capsys, "--expect-digest", tiny["digest"])
    assert code == 0 and out.is_file()


def _set_manifest(bundle: Path, change) -> None:  # type: ignore[no-untyped-def]
    manifest = json.loads((bundle / MANIFEST_FILE).read_text())
    replaced = change(manifest)
    (bundle / MANIFEST_FILE).write_text(json.dumps(manifest if replaced is None else replaced))


BROKEN_MANIFESTS = {
    "lists no files": (lambda m: m.update(files={}), "'files' must list the bundle's files"),
    "misses a required file": (
        lambda m: m["files"].pop(GATE_FILE) and None,
        f"does not list required files ['{GATE_FILE}']",
    ),
    "hash not a string": (lambda m: m["files"].update({RF_FILE: 12345}), "is not 64 hex digits"),
    "path in a name": (lambda m: m["files"].update({"../x": "0" * 64}), "file name '../x'"),
    "format 1": (lambda m: m.update(format=1), "bundle format 1 (pickled forests"),
    "unknown format": (lambda m: m.update(format="two"), "unknown bundle format 'two'; this version reads format 2"),
    "newer format": (
        lambda m: m.update(format=3) or m["versions"].update({"threat-ensemble": "9.0.0"}),
        "bundle format 3 (written by threat-ensemble 9.0.0) is newer than threat-ensemble ",
    ),
    "empty object": (lambda m: m.clear(), "unknown bundle format None"),
    "a list": (lambda m: [m], "not a valid manifest (expected a JSON object)"),
}


@pytest.mark.parametrize("case", sorted(BROKEN_MANIFESTS))
def test_a_manifest_of_the_wrong_shape_is_one_line_and_exit_2(
    tiny: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    change, message = BROKEN_MANIFESTS[case]
    bundle = _copy(tiny, tmp_path)
    _set_manifest(bundle, change)
    code, err, _ = _score(tiny, bundle, tmp_path, capsys)
    assert code == 2 and message in err and len(err.splitlines()) == 1, err


def test_deeply_nested_json_is_refused_not_a_recursion_traceback(
    tiny: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = _copy(tiny, tmp_path)
    (bundle / MANIFEST_FILE).write_text("[" * 200_000 + "]" * 200_000)
    code, err, _ = _score(tiny, bundle, tmp_path, capsys)
    assert code == 2 and "nested too deeply" in err, err
    bundle = _copy(tiny, tmp_path / "b2")
    (bundle / THRESHOLD_FILE).write_text('{"threshold": ' + "[" * 200_000 + "]" * 200_000 + "}")
    _vouch(bundle, THRESHOLD_FILE)
    code, err, _ = _score(tiny, bundle, tmp_path, capsys)
    assert code == 2 and f"{THRESHOLD_FILE}: JSON nested too deeply" in err, err


@pytest.mark.parametrize("kind", ["folder", "fifo", "symlink"])
def test_a_non_regular_file_where_a_file_should_be_is_refused_without_hanging(
    tiny: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    bundle = _copy(tiny, tmp_path)
    target = bundle / PREPROCESSING_FILE
    kept = target.read_bytes()
    target.unlink()
    if kind == "folder":
        target.mkdir()
    elif kind == "fifo":
        os.mkfifo(target)
    else:
        (tmp_path / "elsewhere.json").write_bytes(kept)
        target.symlink_to(tmp_path / "elsewhere.json")
    expected = {"folder": "a folder", "fifo": "a FIFO", "symlink": "a symbolic link"}[kind]
    if kind != "fifo":
        code, err, _ = _score(tiny, bundle, tmp_path, capsys)
        assert code == 2 and err == f"error: {target}: not a regular file ({expected})"
        return
    # a reader that opened the FIFO would wait for a writer for ever: score.py in a process of its
    # own, with a timeout
    rows = tiny["work"] / "rows.csv"
    cmd = [sys.executable, str(ROOT / "scripts" / "score.py"), "--bundle", str(bundle), "--data", str(rows)]
    proc = subprocess.run([*cmd, "--output", str(tmp_path / "s.csv")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == f"error: {target}: not a regular file ({expected})"


def test_a_bundle_whose_numbers_are_not_finite_is_refused(
    tiny: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = _copy(tiny, tmp_path)
    preprocessing = json.loads((bundle / PREPROCESSING_FILE).read_text())
    preprocessing["scaler"]["scale"][0] = float("nan")
    (bundle / PREPROCESSING_FILE).write_text(json.dumps(preprocessing))
    _vouch(bundle, PREPROCESSING_FILE)
    code, err, out = _score(tiny, bundle, tmp_path, capsys)
    assert code == 2 and not out.exists()
    assert "not finite: scaler centre or scale; the bundle would score NaN" in err, err


def test_rows_that_score_nan_fail_closed(tiny: dict) -> None:
    import copy

    ensemble = copy.deepcopy(tiny["ensemble"])
    with torch.no_grad():
        ensemble.autoencoder[0].weight.fill_(float("nan"))
    frame = pd.read_csv(tiny["work"] / "rows.csv").drop(columns="label")
    with pytest.warns(NonFiniteScores, match="they are flagged as attacks"):
        scores = ensemble.score(frame)
    assert np.isnan(scores["ensemble"]).all() and (scores["verdict"] == 1).all()


def test_the_saved_bundle_scores_as_the_object_that_saved_it(tiny: dict) -> None:
    loaded = ThreatEnsemble.load(tiny["bundle"], expect_digest=tiny["digest"])
    frame = pd.read_csv(tiny["work"] / "rows.csv").drop(columns="label")
    before, after = tiny["ensemble"].score(frame), loaded.score(frame)
    for key in before:
        np.testing.assert_array_equal(before[key], after[key], err_msg=key)
    names = {p.name for p in tiny["bundle"].iterdir()}
    assert names == {*BUNDLE_FILES, MANIFEST_FILE} and not any(n.endswith((".pt", ".joblib", ".pkl")) for n in names)


def test_the_mlflow_model_refuses_a_bundle_other_than_the_one_it_was_logged_with(tiny: dict) -> None:
    from threat_ensemble.tracking.pyfunc import EnsembleModel

    context = SimpleNamespace(artifacts={"bundle": str(tiny["bundle"])})
    EnsembleModel(bundle_digest=tiny["digest"]).load_context(context)
    with pytest.raises(BundleError, match="is not the expected 0000"):
        EnsembleModel(bundle_digest="0" * 64).load_context(context)


@pytest.mark.parametrize("target", ["devnull", "fifo", "the input", "inside the bundle", "unknown extension"])
def test_score_output_is_written_only_to_a_new_or_regular_file_that_is_not_an_input(
    tiny: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str], target: str
) -> None:
    rows = tmp_path / "rows.csv"
    rows.write_bytes((tiny["work"] / "rows.csv").read_bytes())
    bundle = _copy(tiny, tmp_path)
    out, expected = {
        "devnull": (Path("/dev/null"), "/dev/null: unknown output extension"),
        "fifo": (tmp_path / "pipe.csv", "pipe.csv: not a regular file (a device, FIFO or socket)"),
        "the input": (rows, f"rows.csv: is also an input ({rows})"),
        "inside the bundle": (bundle / "scores.csv", f"inside {bundle}; writing there would break that bundle"),
        "unknown extension": (tmp_path / "scores.xlsx", "expected one of .csv, .csv.gz, .parquet"),
    }[target]
    if target == "fifo":
        os.mkfifo(out)
    before = rows.read_bytes()
    code = score_main(["--bundle", str(bundle), "--data", str(rows), "--output", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: --output ") and expected in err, err
    assert rows.read_bytes() == before and sorted(p.name for p in bundle.iterdir()) == sorted(
        p.name for p in tiny["bundle"].iterdir()
    )
    if target == "fifo":
        assert out.is_fifo()


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz", ".parquet"])
def test_score_writes_the_format_its_output_name_says(tiny: dict, tmp_path: Path, suffix: str) -> None:
    out = tmp_path / f"scores{suffix}"
    rows = str(tiny["work"] / "rows.csv")
    assert score_main(["--bundle", str(tiny["bundle"]), "--data", rows, "--output", str(out)]) == 0
    frame = pd.read_parquet(out) if suffix == ".parquet" else pd.read_csv(out)
    if suffix == ".parquet":
        assert out.read_bytes()[:4] == b"PAR1"
    elif suffix == ".csv.gz":
        assert out.read_bytes()[:2] == b"\x1f\x8b"
    assert len(frame) == 600 and {"ensemble", "verdict"} <= set(frame.columns)


def test_spreadsheet_formulas_from_the_input_are_neutralised_in_csv(tmp_path: Path) -> None:
    from threat_ensemble.files import write_table_atomically

    labels = ['=HYPERLINK("http://x")', "+1", "-cmd", "@SUM(A1)", "normal", None]
    frame = pd.DataFrame({"label": labels, "n": range(6)})
    write_table_atomically(frame, tmp_path / "out.csv")
    back = pd.read_csv(tmp_path / "out.csv", keep_default_na=False)
    assert back["label"].tolist() == ['\'=HYPERLINK("http://x")', "'+1", "'-cmd", "'@SUM(A1)", "normal", ""]
    assert back["n"].tolist() == list(range(6))  # numbers, negative ones included, are left alone
    write_table_atomically(frame, tmp_path / "out.parquet")
    assert pd.read_parquet(tmp_path / "out.parquet")["label"].tolist()[:2] == frame["label"].tolist()[:2]


def test_score_bounds_decompression_and_lists_few_extra_columns(
    tiny: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import gzip

    frame = pd.read_csv(tiny["work"] / "rows.csv")
    wide = frame.assign(**{f"extra{i}": 0 for i in range(30)})
    (tmp_path / "rows.csv.gz").write_bytes(gzip.compress(wide.to_csv(index=False).encode() * 8))
    out = tmp_path / "s.csv"
    args = ["--bundle", str(tiny["bundle"]), "--data", str(tmp_path / "rows.csv.gz"), "--output", str(out)]
    assert score_main([*args, "--max-decompressed-mb", "1"]) == 2
    # refused by whichever bound of --max-decompressed-mb trips first: the bytes it expands to, or
    # its fields (30 one-digit columns: many fields a byte) counted before anything is kept
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert re.search(
        r"rows\.csv\.gz: (expands beyond 1 MB when decompressed; raise --max-decompressed-mb"
        r"|more than [\d,]+ fields \(8 bytes each in memory\), beyond --max-decompressed-mb 1; raise it)",
        line,
    ), line
    wide.to_csv(tmp_path / "wide.csv", index=False)
    args = ["--bundle", str(tiny["bundle"]), "--data", str(tmp_path / "wide.csv"), "--output", str(out)]
    assert score_main(args) == 0
    warning = [line for line in capsys.readouterr().err.splitlines() if "ignoring" in line]
    assert warning == [
        f"warning: {tmp_path / 'wide.csv'}: ignoring 30 columns the bundle was not trained on: "
        "['extra0', 'extra1', 'extra2', 'extra3', 'extra4', and 25 more]"
    ]


def test_a_full_disk_while_writing_scores_is_one_line_and_leaves_no_temp_file(
    tiny: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    def disk_full(self: pd.DataFrame, path: object, *args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(getattr(path, "name", path)))

    monkeypatch.setattr(pd.DataFrame, "to_csv", disk_full)
    out = tmp_path / "scores.csv"
    out.write_text("yesterday's scores\n")
    code = score_main(["--bundle", str(tiny["bundle"]), "--data", str(tiny["work"] / "rows.csv"), "--output", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: ") and "No space left on device" in err and "Traceback" not in err
    assert out.read_text() == "yesterday's scores\n"  # the previous file is kept whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scores.csv"]  # no temp file left


def _break_center(p: dict) -> None:
    p["scaler"]["center"] = p["scaler"]["center"][:-1]


BROKEN_PREPROCESSING = {
    "feature_names a number": (lambda p: p.update(feature_names=7), "field 'feature_names': expected a list of names"),
    "no scaler": (lambda p: p.pop("scaler") and None, "field 'scaler': expected an object"),
    "a bare list": (lambda p: [p], "expected a JSON object of preprocessing, got list"),
    "centre of the wrong length": (_break_center, "field 'scaler.center': "),
    "clip a string": (lambda p: p["scaler"].update(clip="big"), "field 'scaler.clip': expected a positive number"),
    "clip negative": (lambda p: p["scaler"].update(clip=-1), "field 'scaler.clip': expected a positive number"),
    "categories a list": (lambda p: p.update(categories=[1]), "field 'categories': expected an object"),
    "profile names no feature": (
        lambda p: p["profile"]["edges"].update(nope=[1.0]),
        "field 'profile.edges': names columns that are not its features",
    ),
}


def _with_preprocessing(tiny: dict, tmp_path: Path, change) -> Path:  # type: ignore[no-untyped-def]
    from threat_ensemble.data.profile import FeatureProfile

    bundle = _copy(tiny, tmp_path)
    data = json.loads((bundle / PREPROCESSING_FILE).read_text())
    if data.get("profile") is None:  # the tiny bundle has none: give it one, so its checks are reached
        frame = pd.read_csv(tiny["work"] / "rows.csv")
        encoder = tiny["ensemble"].preprocessing.encoder
        data["profile"] = FeatureProfile.fit(
            frame, frame["label"].to_numpy(), encoder.numeric_columns, encoder.categories
        ).to_dict()
        data = json.loads(json.dumps(data).replace("NaN", "null"))
    replaced = change(data)
    (bundle / PREPROCESSING_FILE).write_text(json.dumps(data if replaced is None else replaced))
    _vouch(bundle, PREPROCESSING_FILE)
    return bundle


@pytest.mark.parametrize("case", sorted(BROKEN_PREPROCESSING))
def test_a_preprocessing_json_of_the_wrong_shape_is_one_line_and_exit_2_on_every_path(
    tiny: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    """A rewritten manifest vouching for a preprocessing.json of the wrong shape: one line naming the
    file and the field (exit 2) through score.py's python and onnx engines and ThreatEnsemble.load,
    never a traceback."""
    change, message = BROKEN_PREPROCESSING[case]
    bundle = _with_preprocessing(tiny, tmp_path, change)
    for engine in ("python", "onnx"):
        code, err, out = _score(tiny, bundle, tmp_path, capsys, "--engine", engine)
        assert code == 2 and not out.exists(), (engine, err)
        assert err.startswith(f"error: {bundle / PREPROCESSING_FILE}: ") and message in err, (engine, err)
        assert len(err.splitlines()) == 1, err
    with pytest.raises(InputError) as error:
        ThreatEnsemble.load(bundle)
    assert str(error.value).startswith(f"{bundle / PREPROCESSING_FILE}: ") and message in str(error.value)


def test_a_well_formed_preprocessing_with_a_profile_still_loads(tiny: dict, tmp_path: Path) -> None:
    bundle = _with_preprocessing(tiny, tmp_path, lambda p: None)
    assert ThreatEnsemble.load(bundle).preprocessing.profile is not None


def test_long_text_values_are_not_kept_as_categories_and_the_cut_is_one_line() -> None:
    """Thirty columns of 64 long values once made a 75 MB preprocessing.json, over the loader's own
    bound: a value longer than MAX_CATEGORY_CHARS is not a category (it is encoded as __other__)."""
    from threat_ensemble.data.preprocessing import FeatureEncoder
    from threat_ensemble.data.tables import DataWarning

    MAX_CATEGORY_CHARS = 256  # data.preprocessing.MAX_CATEGORY_CHARS, as docs/bundle.md says
    rows = 200
    frame = pd.DataFrame(
        {
            "path": [f"/{i % 5}" + "x" * MAX_CATEGORY_CHARS if i % 2 else f"/{i % 3}" for i in range(rows)],
            "agent": ["a" * (MAX_CATEGORY_CHARS + i % 7) for i in range(rows)],
            "bytes": np.arange(rows, dtype=float),
        }
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        encoder = FeatureEncoder.fit(frame)
    assert encoder.categories["agent"] == ["a" * MAX_CATEGORY_CHARS]
    assert encoder.categories["path"] == ["/0", "/1", "/2"]
    lines = [str(w.message) for w in caught if issubclass(w.category, DataWarning)]
    assert len(lines) == 1, lines
    message = lines[0]
    assert "\n" not in message and f"longer than {MAX_CATEGORY_CHARS} characters" in message
    assert "'agent' (6)" in message and "'path' (5)" in message, message
    assert all(len(c) <= MAX_CATEGORY_CHARS for cats in encoder.categories.values() for c in cats)


def test_a_bundle_its_loader_would_refuse_is_never_written(
    tiny: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every JSON file is checked against the loader's own bound before anything is written: the
    previous bundle stays, and the error names the file and the bound."""
    from threat_ensemble.models import bundle as bundle_module

    out = _copy(tiny, tmp_path)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    size = len((out / PREPROCESSING_FILE).read_bytes())
    monkeypatch.setattr(bundle_module, "MAX_JSON_BYTES", size - 1)
    with pytest.raises(BundleError) as error:
        tiny["ensemble"].save(out, gate={"passed": True}, threshold_info={}, manifest_extra={})
    assert str(error.value).startswith(f"bundle file {PREPROCESSING_FILE}: {size:,} bytes, more than the {size - 1:,}")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]


def test_a_bundle_of_a_newer_format_is_refused_naming_both_formats_and_versions(
    tiny: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from importlib import metadata

    bundle = _copy(tiny, tmp_path)
    _set_manifest(bundle, lambda m: m.update(format=3) or m["versions"].update({"threat-ensemble": "9.0.0"}))
    code, err, out = _score(tiny, bundle, tmp_path, capsys)
    assert code == 2 and not out.exists() and len(err.splitlines()) == 1, err
    assert err == (
        f"error: {bundle / MANIFEST_FILE}: bundle format 3 (written by threat-ensemble 9.0.0) is newer than "
        f"threat-ensemble {metadata.version('threat-ensemble')} reads (format 2); upgrade threat-ensemble to load it"
    )


@pytest.mark.parametrize("written", ["0.0.1", None], ids=["older", "unrecorded"])
def test_a_bundle_of_another_package_version_loads_with_one_line_naming_both(
    tiny: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str], written: str | None
) -> None:
    from importlib import metadata

    bundle = _copy(tiny, tmp_path)
    if written is None:
        _set_manifest(bundle, lambda m: m["versions"].pop("threat-ensemble") and None)
    else:
        _set_manifest(bundle, lambda m: m["versions"].update({"threat-ensemble": written}))
    shown = written or "an unrecorded version"
    own = metadata.version("threat-ensemble")
    line = f"{bundle / MANIFEST_FILE}: bundle written by threat-ensemble {shown}, loaded by threat-ensemble {own}"
    code, err, out = _score(tiny, bundle, tmp_path, capsys)
    assert code == 0 and out.is_file()
    lines = [x for x in err.splitlines() if "bundle written by" in x]
    assert len(lines) == 1 and lines[0].startswith(f"warning: {line}; "), err
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ThreatEnsemble.load(bundle)
    said = [str(w.message) for w in caught if "bundle written by" in str(w.message)]
    assert len(said) == 1 and said[0].startswith(line), said


def test_a_bundle_of_this_package_version_loads_without_a_version_warning(tiny: dict) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ThreatEnsemble.load(tiny["bundle"])
    assert not [w for w in caught if "bundle written by" in str(w.message)]
