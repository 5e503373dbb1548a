#!/usr/bin/env python
"""--stream at scale, and the streamed path next to the in-memory one on the same data.

    python benchmarks/bench_stream.py                         # 1M and 10M rows (about 10 minutes)
    python benchmarks/bench_stream.py --sizes 100000,1000000  # smaller
    python benchmarks/bench_stream.py --nsl-kdd DIR           # also NSL-KDD (KDDTrain+_20Percent.txt, KDDTest+.txt)
    python benchmarks/bench_stream.py --quick                 # a smoke test (under a minute)

1. Scale: generated flows (benchmarks/make_parquet_shards.py: 250k-row shards of 125k-row row
   groups) of each size, trained with ``train.py --stream`` for --epochs epochs, each run in its own
   process: wall seconds and the process's peak RSS (getrusage), and the ratios 10M/1M the issue
   sets (RSS <= 1.2x, time <= 11x) with RSS <= 2 GB per process.
2. Parity: the built-in default data (and NSL-KDD when given) trained with the defaults in memory
   and with --stream on the same rows written as Parquet shards: the gate's F1 and PR-AUC of each.
   The streamed split is another split (a seeded hash, not a stratified shuffle), so each path's
   own test split holds other rows; the default data is also measured on one independent test set
   (its generator, datasets/default_traffic.py, seed 43) and NSL-KDD on its own test file, the same rows for both paths.
Prints progress on stderr and one JSON summary on stdout (also written to --json-out).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
try:
    import threat_ensemble  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))  # synthetic.py: the tests' and benchmarks' generated flows
sys.path.insert(0, str(HERE.parent / "datasets"))  # default_traffic.py: the default data's generator

TARGETS = {"peak_rss_mb": 2048, "rss_10m_over_1m": 1.2, "time_10m_over_1m": 11.0, "f1_gap": 0.01}


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def child(args: list[str]) -> None:
    """Run train.py's main here and print wall seconds, peak RSS and the exit code as JSON."""
    from threat_ensemble.cli.train import main

    started = time.perf_counter()
    code = main(args)
    print(json.dumps({
        "rc": code, "seconds": round(time.perf_counter() - started, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }))  # fmt: skip


def train(work: Path, name: str, *args: str) -> dict[str, Any]:
    out = work / name
    folders = ["--output-dir", str(out), "--checkpoint-dir", str(work / f"{name}-ckpt")]
    store = ["--tracking-uri", f"sqlite:///{work / 'mlflow.db'}"]
    cmd = [sys.executable, __file__, "--child", *folders, *store, "--quiet", *args]
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=work)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise SystemExit(f"{name}: no result (exit {proc.returncode}): {proc.stderr[-2000:]}")
    result = json.loads(lines[-1])
    result["process_seconds"] = round(time.perf_counter() - started, 1)
    gate = json.loads((out / "gate.json").read_text())
    result.update(f1=round(gate["metrics"]["f1"], 4), pr_auc=round(gate["metrics"]["pr_auc"], 4), n_test=gate["n_test"])
    log(f"{name}: {result}")
    return result


def write_parquet(frame: Any, folder: Path, files: int = 4) -> None:
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    for i, part in enumerate(np.array_split(np.arange(len(frame)), files)):
        frame.iloc[part].to_parquet(folder / f"part-{i}.parquet", index=False)


def parity(work: Path, nsl_kdd: Path | None, epochs: int | None) -> dict[str, Any]:
    from threat_ensemble.data.default_data import DEFAULT_ROWS, default_table
    from threat_ensemble.data.tables import read_raw_table

    extra = ["--max-epochs", str(epochs)] if epochs else []
    from default_traffic import generate_default_traffic

    table = default_table(DEFAULT_ROWS, 42)
    write_parquet(table.features.assign(label=table.y), work / "default")
    # the default data's generator with another seed: a test set both paths are measured on
    write_parquet(generate_default_traffic(DEFAULT_ROWS, seed=43), work / "default-test")
    table.features.assign(label=table.y).to_parquet(work / "default.parquet", index=False)
    independent = ["--test-data", "default-test"]
    out: dict[str, Any] = {
        "default": {
            "in_memory": train(work, "default-memory", *extra),
            "streamed": train(work, "default-stream", "--data", "default", "--stream", *extra),
        },
        "default_independent_test": {
            "in_memory": train(work, "default-memory-indep", "--data", "default.parquet", *independent, *extra),
            "streamed": train(work, "default-stream-indep", "--data", "default", "--stream", *independent, *extra),
        },
    }
    if nsl_kdd is not None:
        kdd = ["--label-column", "41", "--normal-label", "normal", "--drop-columns", "42", *extra]
        for name in ("KDDTrain+_20Percent.txt", "KDDTest+.txt"):
            frame = read_raw_table(nsl_kdd / name, no_header=True)
            write_parquet(frame, work / name.split(".")[0].replace("+", ""))
        memory = ["--data", str(nsl_kdd / "KDDTrain+_20Percent.txt"), "--test-data", str(nsl_kdd / "KDDTest+.txt"),
                  "--no-header"]  # fmt: skip
        out["nsl_kdd"] = {
            "in_memory": train(work, "kdd-memory", *memory, *kdd),
            "streamed": train(
                work, "kdd-stream", "--data", "KDDTrain_20Percent", "--test-data", "KDDTest", "--stream", *kdd
            ),
        }
    for figures in out.values():
        figures["f1_gap"] = round(abs(figures["in_memory"]["f1"] - figures["streamed"]["f1"]), 4)
    return out


def scale(work: Path, sizes: list[int], epochs: int) -> dict[str, Any]:
    from make_parquet_shards import write_shards

    runs = {}
    for rows in sizes:
        folder = work / f"flows-{rows}"
        log(f"writing {rows:,} rows of Parquet shards ...")
        made = write_shards(rows, folder)
        log(f"  {made}")
        runs[str(rows)] = train(work, f"stream-{rows}", "--data", str(folder), "--stream", "--drop-columns", "family",
                                "--max-epochs", str(epochs))  # fmt: skip
        runs[str(rows)]["data_bytes"] = made["bytes"]
    out: dict[str, Any] = {"runs": runs, "epochs": epochs}
    if "1000000" in runs and "10000000" in runs:
        small, big = runs["1000000"], runs["10000000"]
        out["rss_10m_over_1m"] = round(big["peak_rss_mb"] / small["peak_rss_mb"], 2)
        out["time_10m_over_1m"] = round(big["seconds"] / small["seconds"], 2)
    return out


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000000,10000000", help="rows per scale run, comma-separated")
    parser.add_argument("--epochs", type=int, default=2, help="autoencoder epochs of the scale runs")
    parser.add_argument("--nsl-kdd", type=Path, help="folder with KDDTrain+_20Percent.txt and KDDTest+.txt")
    parser.add_argument("--parity-epochs", type=int, help="--max-epochs of the parity runs (default: train.py's)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes and 2 epochs: a smoke test")
    parser.add_argument("--work", type=Path, help="keep data and runs here (default: a temporary folder)")
    parser.add_argument("--json-out", type=Path, default=HERE / "results" / "bench_stream-last-run.json")
    args = parser.parse_args()
    sizes = [20_000, 50_000] if args.quick else [int(s) for s in args.sizes.split(",") if s.strip()]
    with tempfile.TemporaryDirectory(prefix="bench-stream-") as tmp:
        work = (args.work or Path(tmp)).resolve()
        work.mkdir(parents=True, exist_ok=True)
        summary = {
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
            "targets": TARGETS,
            "scale": scale(work, sizes, args.epochs),
            "parity": parity(work, args.nsl_kdd, 2 if args.quick else args.parity_epochs),
        }
    text = json.dumps(summary, indent=2)
    print(text)
    if not args.quick:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(text + "\n")


if __name__ == "__main__":
    main()
