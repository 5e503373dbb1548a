#!/usr/bin/env python
"""What a distance member would cost to score: the exact distance of each row to the nearest of a
sample of normal training rows (``knn_z`` of docs/quality.md), next to today's ensemble scoring the
same rows in the same process.

    python benchmarks/bench_distance.py            # a bundle trained on the default data, 100k rows
    python benchmarks/bench_distance.py --quick    # tiny sizes, a smoke test

Measures, on a bundle trained here (train.py on the default data, --export onnx) or ``--bundle``:
  1. the ensemble: rows/s from a DataFrame of raw feature columns to every score column, the
     Python scorer (``ThreatEnsemble.score``) and the exported graph under onnxruntime;
  2. the distance alone, from the encoded rows (what a member gets; encoding is part of 1): the
     rows in ``signed_log1p`` space standardised by the normal training rows' mean and standard
     deviation, their distance to the nearest of a seeded sample of ``--samples`` normal training
     rows. NumPy in blocks (``|x|^2 - 2 x.R + |R|^2``, the row-wise minimum) and an ONNX graph of the
     same arithmetic (MatMul, ReduceMin) under onnxruntime, fed BLOCK rows a call (its memory is
     rows x sample x 8 bytes in float64: 4 GB for 100,000 rows and 5,000 samples in one call), each
     in float64 and float32, and
     scikit-learn's ``NearestNeighbors`` (exact, ``algorithm="auto"``, float64);
     With ``--components K`` (default 20), also the distance in float64 on the first K principal
     components of the standardised normal rows (the projection timed with it);
  3. for each sample size, the share of the ensemble's throughput left with the distance added
     (``t_ensemble / (t_ensemble + t_distance)``, each engine with its own kind: Python with NumPy,
     ONNX with ONNX, in either precision), against issue 32's bar for scoring throughput (at least
     0.8x today's).
Every figure is the median of ``--repeats`` interleaved repeats; ``parity_vs_sklearn`` is the
largest difference of the float32 NumPy and ONNX distances from scikit-learn's float64 ones.
Prints progress on stderr and one JSON summary on stdout (also written to --json-out).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_novel import standardiser  # noqa: E402 (knn_z's space, as bench_novel measures its quality)
from bench_score import log, train_bundle  # noqa: E402 (the same bundle bench_score.py measures)

THROUGHPUT_BAR = 0.8  # issue 32: scoring throughput no lower than 0.8x today's
BLOCK = 128  # rows per block: a block's [rows, sample] matrix stays in cache (128 x 5,000 x 8 bytes = 5 MB)


def numpy_nearest(reference: np.ndarray, dtype: type = np.float32) -> Callable[[np.ndarray], np.ndarray]:
    """The distance of each row to the nearest row of ``reference``, in blocks of BLOCK rows, in ``dtype``."""
    ref = np.ascontiguousarray(reference, dtype=dtype)
    ref_sq = np.einsum("ij,ij->i", ref, ref)

    def nearest(z: np.ndarray) -> np.ndarray:
        out = np.empty(len(z), dtype=dtype)
        for start in range(0, len(z), BLOCK):
            block = z[start : start + BLOCK].astype(dtype, copy=False)
            squared = block @ ref.T
            squared *= -2.0
            squared += ref_sq[None, :]
            out[start : start + BLOCK] = squared.min(axis=1) + np.einsum("ij,ij->i", block, block)
        return np.sqrt(np.maximum(out, 0.0))

    return nearest


Projection = tuple[np.ndarray, np.ndarray]  # a centre [D] and principal components [K, D]


def onnx_nearest(reference: np.ndarray, dtype: type = np.float32, projection: Projection | None = None
                 ) -> Callable[[np.ndarray], np.ndarray]:  # fmt: skip
    """The same arithmetic as :func:`numpy_nearest` as an ONNX graph (input ``z``: [N, D] in
    ``dtype``); with ``projection`` (a centre [D] and components [K, D]), ``z`` is projected on the
    components first, in the graph, and ``reference`` is in the projected space."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    ref = np.ascontiguousarray(reference, dtype=dtype)
    inits = [
        numpy_helper.from_array(np.ascontiguousarray(ref.T * -2.0), "minus_2_rt"),
        numpy_helper.from_array(np.einsum("ij,ij->i", ref, ref)[None, :], "ref_sq"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "axis1"),
        numpy_helper.from_array(np.array(0.0, dtype=dtype), "zero"),
    ]
    kind = TensorProto.FLOAT if dtype == np.float32 else TensorProto.DOUBLE
    nodes, rows, width = [], "z", ref.shape[1]
    if projection is not None:
        centre, components = projection
        basis = np.ascontiguousarray(np.asarray(components, dtype=dtype).T)
        inits += [numpy_helper.from_array(np.asarray(centre, dtype=dtype)[None, :], "centre"),
                  numpy_helper.from_array(basis, "components")]  # fmt: skip
        nodes += [helper.make_node("Sub", ["z", "centre"], ["centred"]),
                  helper.make_node("MatMul", ["centred", "components"], ["projected"])]  # fmt: skip
        rows, width = "projected", basis.shape[0]
    nodes += [
        helper.make_node("MatMul", [rows, "minus_2_rt"], ["cross"]),
        helper.make_node("Add", ["cross", "ref_sq"], ["partial"]),
        helper.make_node("ReduceMin", ["partial", "axis1"], ["least"], keepdims=0),
        helper.make_node("Mul", [rows, rows], ["z_sq"]),
        helper.make_node("ReduceSum", ["z_sq", "axis1"], ["row_sq"], keepdims=0),
        helper.make_node("Add", ["least", "row_sq"], ["squared"]),
        helper.make_node("Max", ["squared", "zero"], ["clipped"]),
        helper.make_node("Sqrt", ["clipped"], ["distance"]),
    ]
    graph = helper.make_graph(
        nodes, "nearest_normal",
        [helper.make_tensor_value_info("z", kind, [None, width])],
        [helper.make_tensor_value_info("distance", kind, [None])], inits,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])

    def nearest(z: np.ndarray) -> np.ndarray:  # in blocks: the graph holds a [rows, sample] matrix
        z = z.astype(dtype, copy=False)
        return np.concatenate([session.run(None, {"z": z[i : i + BLOCK]})[0] for i in range(0, len(z), BLOCK)])

    return nearest


def sklearn_nearest(reference: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    from sklearn.neighbors import NearestNeighbors

    nn = NearestNeighbors(n_neighbors=1).fit(reference.astype(np.float64))
    return lambda z: nn.kneighbors(z.astype(np.float64))[0][:, 0]


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000, help="rows scored")
    parser.add_argument("--train-rows", type=int, default=20_000, help="default-data rows the bundle is trained on")
    parser.add_argument("--samples", default="250,500,1000,2000,5000", help="normal rows in the distance's sample")
    parser.add_argument("--components", type=int, default=20,
                        help="also the distance on this many principal components of the normal rows (0: not)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test of the script")
    parser.add_argument("--bundle", type=Path, help="a bundle with ensemble.onnx to measure instead of training one")
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()
    if args.quick:
        args.rows, args.train_rows, args.repeats, args.samples = 2000, 2000, 1, "100,500"
    samples = [int(n) for n in args.samples.split(",")]

    from threat_ensemble.data.default_data import default_frame
    from threat_ensemble.export.onnx_runtime import OnnxScorer
    from threat_ensemble.models.bundle import ONNX_FILE
    from threat_ensemble.models.ensemble import load_ensemble

    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory() as tmp:
        bundle = args.bundle
        if bundle is None:
            log(f"training a bundle on {args.train_rows} rows of the default data (--export onnx)")
            bundle = train_bundle(Path(tmp), args.train_rows)
        ensemble = load_ensemble(bundle)
        scorer = OnnxScorer((bundle / ONNX_FILE).read_bytes())
    data = default_frame()
    features = ensemble.preprocessing.encoder.feature_names
    frame = data.sample(n=args.rows, replace=True, random_state=0).reset_index(drop=True)[features]
    # the normal rows the sample is drawn from: the default data's normal rows (a stand-in for a run's
    # normal training rows; the cost does not depend on which normal rows they are)
    normal = ensemble.encode(data.loc[data["label"] == 0, features].reset_index(drop=True))
    standardise = standardiser(normal)

    def to_z(x: np.ndarray) -> np.ndarray:  # float32: each engine casts to the precision it runs in
        return standardise(x).astype(np.float32)

    z = to_z(ensemble.encode(frame))
    log(f"{args.rows} rows, {z.shape[1]} encoded columns; samples {samples}; {args.repeats} interleaved repeats")
    if args.components:
        from sklearn.decomposition import PCA

        pca = PCA(n_components=min(args.components, z.shape[1]), random_state=42).fit(to_z(normal))

    engines: dict[str, Callable[[], Any]] = {"ensemble_python": lambda: ensemble.score(frame),
                                             "ensemble_onnx": lambda: scorer.score(frame)}  # fmt: skip
    for n in samples:
        reference = normal[np.sort(np.random.default_rng(42).choice(len(normal), min(n, len(normal)), replace=False))]
        ref_z = to_z(reference)
        for kind, fn in (("numpy32", numpy_nearest(ref_z)), ("numpy64", numpy_nearest(ref_z, np.float64)),
                         ("onnx32", onnx_nearest(ref_z)), ("onnx64", onnx_nearest(ref_z, np.float64)),
                         ("sklearn", sklearn_nearest(ref_z))):  # fmt: skip
            engines[f"distance_{kind}_{n}"] = lambda fn=fn: fn(z)
        if args.components:  # the projection is timed with the distance: a member would do both
            ref_p = (ref_z.astype(np.float64) - pca.mean_) @ pca.components_.T
            near = numpy_nearest(ref_p, np.float64)
            graph = onnx_nearest(ref_p, np.float64, (pca.mean_, pca.components_))
            engines[f"distance_numpy64pc_{n}"] = lambda near=near: near(
                (z.astype(np.float64) - pca.mean_) @ pca.components_.T
            )
            engines[f"distance_onnx64pc_{n}"] = lambda graph=graph: graph(z)
    times: dict[str, list[float]] = {name: [] for name in engines}
    outputs: dict[str, Any] = {}
    for _ in range(args.repeats):
        for name, fn in engines.items():
            seconds, outputs[name] = timed(fn)
            times[name].append(seconds)
    median = {name: float(np.median(v)) for name, v in times.items()}
    rows_per_s = {name: args.rows / s for name, s in median.items()}

    def largest_difference(a: str, b: str) -> float:
        return float(np.max(np.abs(np.asarray(outputs[a], np.float64) - np.asarray(outputs[b], np.float64))))

    parity = {  # float32's |x|^2 - 2x.R + |R|^2 cancels digits where x is near a sample row
        f"{a}_vs_{b}_{n}": largest_difference(f"distance_{a}_{n}", f"distance_{b}_{n}")
        for n in samples for a, b in (("numpy32", "sklearn"), ("numpy64", "sklearn"), ("onnx32", "numpy32"),
                                      ("onnx64", "numpy64"), *((("onnx64pc", "numpy64pc"),) if args.components else ()))
    }  # fmt: skip

    def share_left(engine: str, distance: str) -> float:
        return median[engine] / (median[engine] + median[distance])

    left = {
        n: {
            "python_with_numpy64": share_left("ensemble_python", f"distance_numpy64_{n}"),
            "python_with_numpy32": share_left("ensemble_python", f"distance_numpy32_{n}"),
            "onnx_with_onnx64": share_left("ensemble_onnx", f"distance_onnx64_{n}"),
            "onnx_with_onnx32": share_left("ensemble_onnx", f"distance_onnx32_{n}"),
        }
        for n in samples
    }
    for n in samples if args.components else ():
        left[n]["python_with_numpy64pc"] = share_left("ensemble_python", f"distance_numpy64pc_{n}")
        left[n]["onnx_with_onnx64pc"] = share_left("ensemble_onnx", f"distance_onnx64pc_{n}")
    summary = {
        "machine": {"cpu_count": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "rows": args.rows,
        "encoded_columns": int(z.shape[1]),
        "components": args.components or None,
        "rows_per_s": rows_per_s,
        "throughput_left": left,
        "bar": THROUGHPUT_BAR,
        "parity_vs_sklearn": parity,
    }
    text = json.dumps(summary, indent=2)
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(text + "\n")
    print(text)
    for n in samples:
        r, k = rows_per_s, left[n]
        log(
            f"sample {n}: distance rows/s NumPy {r[f'distance_numpy64_{n}']:.0f} (float64) "
            f"{r[f'distance_numpy32_{n}']:.0f} (float32), ONNX {r[f'distance_onnx64_{n}']:.0f} / "
            f"{r[f'distance_onnx32_{n}']:.0f}, scikit-learn {r[f'distance_sklearn_{n}']:.0f}; throughput left: "
            f"Python {k['python_with_numpy64']:.2f}x / {k['python_with_numpy32']:.2f}x, "
            f"ONNX {k['onnx_with_onnx64']:.2f}x / {k['onnx_with_onnx32']:.2f}x (bar {THROUGHPUT_BAR}x)"
            + (f"; on {args.components} components, float64: Python {k['python_with_numpy64pc']:.2f}x, "
               f"ONNX {k['onnx_with_onnx64pc']:.2f}x" if args.components else "")
        )
    log(f"ensemble: Python {rows_per_s['ensemble_python']:.0f} rows/s, ONNX {rows_per_s['ensemble_onnx']:.0f} rows/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
