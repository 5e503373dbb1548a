"""Scoring through the exported graph with onnxruntime: the same columns in, the same score columns
out as :meth:`ThreatEnsemble.score` (``scripts/score.py --engine onnx``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from threat_ensemble.data.categories import MISSING
from threat_ensemble.errors import InputError, first_line, listed, quote
from threat_ensemble.models.fusion import SCORE_COLUMNS


class OnnxScorer:
    """An onnxruntime session over an exported ensemble graph (bytes already verified by the caller)."""

    def __init__(self, model_bytes: bytes, source: str = "ensemble.onnx", threads: int = 0) -> None:
        import onnxruntime as ort

        refuse_external_data(model_bytes, source)
        options = ort.SessionOptions()
        options.log_severity_level = 3  # the graph's 'cut' input has a default on purpose; no warning about it
        options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # not ONNX, or not a graph this onnxruntime can run
            raise InputError(f"{source}: not an ONNX graph onnxruntime can run ({first_line(exc)})") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        try:
            self.features: list[tuple[str, str]] = [(str(c), str(k)) for c, k in json.loads(meta["features"])]
        except (KeyError, ValueError, TypeError):
            raise InputError(f"{source}: not a threat-ensemble graph (no feature list in its metadata)") from None
        self.metadata = dict(meta)
        self.source = source

    @classmethod
    def from_file(cls, path: str | Path, threads: int = 0) -> OnnxScorer:
        from threat_ensemble.models.bundle import read_regular_file

        return cls(read_regular_file(Path(path)), str(path), threads)

    def check_columns(self, frame: pd.DataFrame, source: str) -> None:
        """Exactly the graph's feature columns: a missing or an extra one is an error naming them."""
        expected = [c for c, _ in self.features]
        missing = [c for c in expected if c not in frame.columns]
        extra = [str(c) for c in frame.columns if c not in set(expected)]
        problems = []
        if missing:
            problems.append(f"missing feature columns {listed(missing)}")
        if extra:
            problems.append(f"columns the model was not trained on {listed(extra)} (drop them with --drop-columns)")
        if problems:
            raise InputError(
                f"{source}: {'; '.join(problems)}; the ONNX graph takes exactly its {len(expected)} columns"
            )

    def feed(self, frame: pd.DataFrame, cut: float | None = None) -> dict[str, np.ndarray]:
        """The graph's inputs from a table's feature columns: numbers as float64, text as strings
        (a missing cell as ``__missing__``), one ``[N, 1]`` array per column."""
        numeric = [c for c, kind in self.features if kind == "double"]
        block = frame[numeric].to_numpy(dtype=np.float64) if numeric else np.empty((len(frame), 0))
        feed: dict[str, np.ndarray] = {c: block[:, i : i + 1] for i, c in enumerate(numeric)}
        for column, kind in self.features:
            if kind != "double":
                feed[column] = _text(frame[column]).reshape(-1, 1)
        if cut is not None:
            feed["cut"] = np.asarray(cut, dtype=np.float64)
        return feed

    def score(self, frame: pd.DataFrame, source: str = "data", cut: float | None = None) -> dict[str, np.ndarray]:
        """Every score column for every row of ``frame`` (its columns checked first)."""
        self.check_columns(frame, source)
        names = [o.name for o in self.session.get_outputs()]
        outputs = dict(zip(names, self.session.run(None, self.feed(frame, cut)), strict=True))
        return {key: outputs[key] for key in SCORE_COLUMNS}


def refuse_external_data(model_bytes: bytes, source: str) -> None:
    """Refuse a graph that keeps any tensor's data outside itself, before onnxruntime sees it: from
    bytes, onnxruntime reads such data from a path relative to the working directory, so a graph
    (a bundle's ``ensemble.onnx``) could make scoring read any file there. Every place a tensor can
    live is looked at: initializers (dense and sparse), node attributes (a ``Constant``'s value
    included) in the main graph, in every subgraph (``If``/``Loop``/``Scan`` bodies) and in local
    functions, and the training-info graphs."""
    import onnx
    from google.protobuf.message import DecodeError

    model = onnx.ModelProto()
    try:
        model.ParseFromString(model_bytes)
    except (DecodeError, RecursionError, ValueError) as exc:
        raise InputError(f"{source}: not an ONNX graph onnxruntime can run ({first_line(exc)})") from None
    found = external_tensors(model)
    if found:
        where, location = found[0]
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        raise InputError(
            f"{source}: {where} keeps its data outside the graph (external data {quote(location, 120)}){more}; "
            "refused: a graph is scored only with every tensor inside it"
        )


def external_tensors(model: Any) -> list[tuple[str, str]]:
    """``(where, location)`` of every tensor of ``model`` (an ``onnx.ModelProto``) whose data is
    external: ``data_location`` EXTERNAL or any ``external_data`` entry. Walked with a stack, so a
    deeply nested graph is no recursion error."""
    from onnx import TensorProto

    found: list[tuple[str, str]] = []

    def check(tensor: Any, where: str) -> None:
        if tensor.data_location == TensorProto.EXTERNAL or len(tensor.external_data):
            entries = {e.key: e.value for e in tensor.external_data}
            found.append((f"{where} {quote(tensor.name, 80)}", entries.get("location", "")))

    def check_sparse(sparse: Any, where: str) -> None:
        check(sparse.values, f"{where} (values)")
        check(sparse.indices, f"{where} (indices)")

    graphs: list[tuple[Any, str]] = [(model.graph, "graph")]
    for info in model.training_info:
        graphs += [(info.initialization, "training graph"), (info.algorithm, "training graph")]
    attributes: list[tuple[Any, str]] = []
    for function in model.functions:
        attributes += [(a, f"function {quote(function.name, 80)}") for a in function.attribute_proto]
        for node in function.node:
            where = f"function {quote(function.name, 80)} node {quote(node.name or node.op_type, 80)}"
            attributes += [(a, where) for a in node.attribute]
    while graphs or attributes:
        if attributes:
            attribute, where = attributes.pop()
            where = f"{where} attribute {attribute.name!r}"
            for tensor in (attribute.t, *attribute.tensors):
                check(tensor, f"{where} tensor")
            for sparse in (attribute.sparse_tensor, *attribute.sparse_tensors):
                check_sparse(sparse, f"{where} sparse tensor")
            graphs += [(g, f"{where} subgraph") for g in (attribute.g, *attribute.graphs)]
            continue
        graph, where = graphs.pop()
        for tensor in graph.initializer:
            check(tensor, f"{where} initializer")
        for sparse in graph.sparse_initializer:
            check_sparse(sparse, f"{where} sparse initializer")
        for node in graph.node:
            attributes += [(a, f"{where} node {quote(node.name or node.op_type, 80)}") for a in node.attribute]
    return found


def _text(series: pd.Series) -> np.ndarray:
    """A text column as strings, the way the encoder reads it before stripping (``str`` of any
    other value, ``__missing__`` for a missing cell); without pandas' string conversion when the
    cells are already strings (a one-row call's common case)."""
    values = series.to_numpy(dtype=object)
    if pd.api.types.infer_dtype(values, skipna=False) == "string":  # every cell a str, none missing
        return values
    return series.astype("string").fillna(MISSING).to_numpy(dtype=object)


def export_bundle(bundle: str | Path, output: str | Path, expect_digest: str | None = None) -> dict[str, Any]:
    """Write the graph of a verified bundle to ``output`` (whole or not at all); returns its metadata."""
    from threat_ensemble.models.bundle import read_bundle
    from threat_ensemble.models.ensemble import ThreatEnsemble

    verified = read_bundle(bundle, expect_digest)
    ensemble = ThreatEnsemble.from_verified(verified)
    return ensemble.export_onnx(output, run_id=verified.manifest.get("mlflow_run_id"), bundle_digest=verified.digest)
