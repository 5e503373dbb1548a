#!/usr/bin/env python
"""Featurizing on Spark against the local featurizer, on one machine: N access-log lines (default
1,000,000) in F rotated files of one server (default 8, every other one gzip-compressed), written to
a temporary folder one file at a time; then, timed on the same files in this process, the local
featurizer (``featurize_files``, windows across the files) and ``featurize_on_spark`` on
``local[1]`` and ``local[2]`` (a fresh session each; its start-up is reported apart). Prints one
JSON object; ``--json-out`` also writes it.

    python benchmarks/bench_spark.py [--lines 1000000] [--files 8] [--json-out FILE]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

try:
    import threat_ensemble  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "datasets"))  # default_traffic.py, the generator


def write_logs(folder: Path, n_lines: int, n_files: int, seed: int) -> list[Path]:
    """One server's combined log cut into ``n_files`` consecutive files, each generated on its own
    (its requests shifted to follow the previous file's last one), so memory holds one at a time."""
    from default_traffic import generate_requests, to_access_log

    paths, offset = [], 0.0
    for i in range(n_files):
        n = n_lines // n_files + (1 if i < n_lines % n_files else 0)
        requests = generate_requests(n, seed + i)
        requests["t"] = requests["t"] - float(requests["t"].min()) + offset
        offset = float(requests["t"].max()) + 1.0
        data = to_access_log(requests, "combined").encode("utf-8")
        path = folder / (f"access.log.{i + 1}.gz" if i % 2 else f"access.log.{i + 1}")
        path.write_bytes(gzip.compress(data, compresslevel=1) if i % 2 else data)
        paths.append(path)
    return paths


def time_local(paths: list[Path]) -> dict[str, float]:
    from threat_ensemble.http.features import featurize_files

    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # generated traffic has no malformed line
        frames = featurize_files(paths, window_scope="stream")
    seconds = time.perf_counter() - t0
    return {"seconds": round(seconds, 2), "rows": int(sum(len(f) for f in frames))}


def time_spark(paths: list[Path], master: str, out: Path) -> dict[str, float]:
    from threat_ensemble.spark.featurize import featurize_on_spark
    from threat_ensemble.spark.session import spark_session

    t0 = time.perf_counter()
    with spark_session(master, f"bench {master}") as spark:
        started = time.perf_counter()
        spark.range(1).count()  # the first job starts the executor's machinery
        ready = time.perf_counter()
        rows, _ = featurize_on_spark(spark, [([str(p) for p in paths], None)], str(out))
        done = time.perf_counter()
    return {
        "seconds": round(done - ready, 2),
        "start_seconds": round(ready - t0, 2),
        "first_job_seconds": round(ready - started, 2),
        "rows": int(rows),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=1_000_000, help="log lines in all (default 1000000)")
    parser.add_argument("--files", type=int, default=8, help="rotated files (default 8)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json-out", metavar="FILE", help="also write the JSON here")
    args = parser.parse_args(argv)
    result: dict[str, object] = {
        "benchmark": "spark featurize",
        "lines": args.lines,
        "files": args.files,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
    }
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        t0 = time.perf_counter()
        paths = write_logs(folder, args.lines, args.files, args.seed)
        result["generate_seconds"] = round(time.perf_counter() - t0, 1)
        result["megabytes_on_disk"] = round(sum(p.stat().st_size for p in paths) / 1e6, 1)
        result["local"] = time_local(paths)
        for master in ("local[1]", "local[2]"):
            result[master] = time_spark(paths, master, folder / f"out-{master[6]}")
    local_s = float(result["local"]["seconds"])  # type: ignore[index]
    one, two = float(result["local[1]"]["seconds"]), float(result["local[2]"]["seconds"])  # type: ignore[index]
    for key in ("local", "local[1]", "local[2]"):
        entry = result[key]
        entry["lines_per_s"] = round(args.lines / float(entry["seconds"]))  # type: ignore[index]
    result["spark2_vs_local_slowdown"] = round(two / local_s, 2)
    result["speedup_local1_to_local2"] = round(one / two, 2)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json_out:
        Path(args.json_out).write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
