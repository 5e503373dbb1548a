#!/usr/bin/env python
"""Scoring speed: the exported ONNX graph under onnxruntime next to the Python scorer, same process,
and what explanations add to score.py.

    python benchmarks/bench_score.py             # a bundle trained on the default data, 100k rows
    python benchmarks/bench_score.py --quick     # tiny sizes, a smoke test

Measures, in one run, on a bundle trained here (train.py on the default data, --export onnx):
  1. batch: rows/s scoring --rows rows (the default data resampled with replacement, seeded), from
     a DataFrame of raw feature columns to every score column: the Python scorer (encode + score)
     against onnxruntime (building the inputs + run). Repeated --repeats times, interleaved, median;
  2. single row (a web server's case): --calls one-row calls of each, interleaved; p50 and p99 in
     milliseconds, after a warm-up: the Python scorer and OnnxScorer.score from a one-row
     DataFrame, and the graph call alone with its inputs as arrays (what a server in any language
     does: onnxruntime's session.run);
  3. parity on the batch: the largest difference of each output, and whether every verdict agrees;
  4. explanations: score.py's whole run (CSV in, CSV out, in this process) on the --rows table,
     plain and with --explain 3, interleaved, median of --repeats.
Prints progress on stderr and one JSON summary on stdout (also written to --json-out).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
try:
    import threat_ensemble  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(HERE.parent / "src"))

# the single-row target is the graph call's p99; the explanation target is the added share of time
TARGETS = {"batch_speedup": 3.0, "onnx_single_row_p99_ms": 2.0, "explain_overhead": 0.20}


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def train_bundle(folder: Path, rows: int) -> Path:
    cmd = [sys.executable, str(HERE.parent / "scripts" / "train.py"), "--default-rows", str(rows),
           "--max-epochs", "3", "--quiet", "--export", "onnx", "--tracking-uri", f"sqlite:///{folder / 'mlflow.db'}",
           "--output-dir", str(folder / "bundle"), "--checkpoint-dir", str(folder / "ckpt")]  # fmt: skip
    done = subprocess.run(cmd, cwd=folder, capture_output=True, text=True)
    if done.returncode not in (0, 3):
        raise SystemExit(f"training the benchmark's bundle failed:\n{done.stderr[-3000:]}")
    return folder / "bundle"


def percentiles(seconds: list[float]) -> dict[str, float]:
    ms = np.asarray(seconds) * 1000.0
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)), "calls": len(ms)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000, help="rows scored in the batch measurement")
    parser.add_argument("--train-rows", type=int, default=20_000, help="default-data rows the bundle is trained on")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--calls", type=int, default=500, help="one-row calls per engine")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test of the script")
    parser.add_argument("--bundle", type=Path, help="a bundle with ensemble.onnx to measure instead of training one")
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()
    if args.quick:
        args.rows, args.train_rows, args.repeats, args.calls = 2000, 2000, 1, 30

    from threat_ensemble.data.default_data import default_frame
    from threat_ensemble.export.onnx_runtime import OnnxScorer
    from threat_ensemble.models.bundle import ONNX_FILE
    from threat_ensemble.models.ensemble import load_ensemble

    warnings.simplefilter("ignore")
    tmp = tempfile.TemporaryDirectory()
    folder = Path(tmp.name)
    if args.bundle is not None:
        bundle = args.bundle
    else:
        log(f"training a bundle on {args.train_rows} rows of the default data (--export onnx)")
        bundle = train_bundle(folder, args.train_rows)
    ensemble = load_ensemble(bundle)
    scorer = OnnxScorer((bundle / ONNX_FILE).read_bytes())
    graph_mb = (bundle / ONNX_FILE).stat().st_size / 1e6
    table = default_frame().sample(n=args.rows, replace=True, random_state=0).reset_index(drop=True)
    frame = table[ensemble.preprocessing.encoder.feature_names]

    def python_scores(rows: Any) -> dict[str, np.ndarray]:
        return ensemble.score(rows)  # the one path: check, encode, members, fusion, verdict

    log(f"batch: {args.rows} rows, {args.repeats} interleaved repeats")
    times: dict[str, list[float]] = {"python": [], "onnx": []}
    for _ in range(args.repeats):
        for engine, fn in (("python", python_scores), ("onnx", scorer.score)):
            start = time.perf_counter()
            out = fn(frame)
            times[engine].append(time.perf_counter() - start)
            if engine == "python":
                python_out = out
            else:
                onnx_out = out
    batch = {f"{k}_rows_per_s": args.rows / float(np.median(v)) for k, v in times.items()}
    batch["speedup"] = batch["onnx_rows_per_s"] / batch["python_rows_per_s"]
    parity = {k: float(np.max(np.abs(np.asarray(onnx_out[k], float) - np.asarray(python_out[k], float))))
              for k in ("ae", "rf", "if", "ensemble")}  # fmt: skip
    parity["verdicts_differ"] = int((onnx_out["verdict"] != python_out["verdict"]).sum())

    log(f"single row: {args.calls} calls per engine, interleaved")
    single: dict[str, list[float]] = {"python": [], "onnx": [], "onnx_graph_call": []}
    rows = [frame.iloc[i : i + 1].reset_index(drop=True) for i in range(args.calls + 10)]
    feeds = [scorer.feed(row) for row in rows]  # what a server in any language hands onnxruntime
    engines = (
        ("python", lambda i: python_scores(rows[i])),
        ("onnx", lambda i: scorer.score(rows[i])),
        ("onnx_graph_call", lambda i: scorer.session.run(None, feeds[i])),
    )
    for i in range(len(rows)):
        for engine, fn in engines:
            start = time.perf_counter()
            fn(i)
            if i >= 10:  # the first calls warm caches up
                single[engine].append(time.perf_counter() - start)
    log(f"score.py on {args.rows} rows, plain and with --explain 3, {args.repeats} interleaved repeats")
    from threat_ensemble.cli.score import score_file

    table.to_csv(folder / "table.csv", index=False)
    runs: dict[str, list[float]] = {"plain": [], "explain": []}
    for _ in range(args.repeats):
        for kind, k in (("plain", 0), ("explain", 3)):
            start = time.perf_counter()
            score_file(bundle=bundle, data=folder / "table.csv", output=folder / f"{kind}.csv", explain=k)
            runs[kind].append(time.perf_counter() - start)
    plain, explained = float(np.median(runs["plain"])), float(np.median(runs["explain"]))
    flagged = int((np.asarray(python_out["verdict"]) == 1).sum())
    explain = {"plain_s": plain, "explain_3_s": explained, "overhead": explained / plain - 1.0}
    explain["rows_explained"] = flagged
    tmp.cleanup()
    summary = {
        "machine": {"cpu_count": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "rows": args.rows,
        "train_rows": None if args.bundle is not None else args.train_rows,
        "bundle": str(args.bundle) if args.bundle is not None else None,
        "graph_mb": graph_mb,
        "batch": batch,
        "single_row": {k: percentiles(v) for k, v in single.items()},
        "parity": parity,
        "explain": explain,
        "targets": TARGETS,
    }
    text = json.dumps(summary, indent=2)
    if args.json_out:
        args.json_out.write_text(text + "\n")
    print(text)
    s = summary["single_row"]
    log(
        f"batch {batch['onnx_rows_per_s']:.0f} vs {batch['python_rows_per_s']:.0f} rows/s ({batch['speedup']:.2f}x); "
        f"one row p50/p99: graph call {s['onnx_graph_call']['p50_ms']:.2f}/{s['onnx_graph_call']['p99_ms']:.2f} ms, "
        f"from a DataFrame {s['onnx']['p50_ms']:.2f}/{s['onnx']['p99_ms']:.2f} ms, "
        f"Python scorer {s['python']['p50_ms']:.2f}/{s['python']['p99_ms']:.2f} ms; "
        f"--explain 3 adds {100 * explain['overhead']:.1f}% to score.py"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
