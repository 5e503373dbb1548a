#!/usr/bin/env python
"""Featurization throughput: generate N requests (default 100k) as a raw dump and as a combined
access log, write both to a temporary folder, then time ``featurize_file`` on each (reading,
parsing and feature extraction; generation is not timed). Prints one JSON object.

    python benchmarks/bench_featurize.py [--requests 100000] [--repeat 3]
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
from pathlib import Path

try:
    import threat_ensemble  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "datasets"))  # default_traffic.py, the generator


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=100_000, help="requests per format (default 100000)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per format; the best is reported")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)

    from default_traffic import generate_requests, to_access_log, to_raw_dump  # datasets/

    from threat_ensemble.http.features import featurize_file

    started = time.perf_counter()
    requests = generate_requests(args.requests, args.seed)
    texts = {"raw": to_raw_dump(requests, args.seed), "combined": to_access_log(requests, "combined")}
    generate_s = time.perf_counter() - started
    result: dict[str, object] = {
        "benchmark": "featurize",
        "n_requests": args.requests,
        "repeat": args.repeat,
        "generate_seconds": round(generate_s, 3),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
    }
    with tempfile.TemporaryDirectory() as folder:
        for fmt, text in texts.items():
            path = Path(folder) / f"traffic.{fmt}"
            path.write_text(text, encoding="utf-8")
            times = []
            for _ in range(max(1, args.repeat)):
                t0 = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("error")  # generated traffic has no malformed request
                    frame = featurize_file(path, "auto")
                times.append(time.perf_counter() - t0)
            if len(frame) != args.requests:
                raise SystemExit(f"{fmt}: {len(frame)} rows for {args.requests} requests")
            best = min(times)
            result[fmt] = {
                "seconds": round(best, 3),
                "seconds_all": [round(t, 3) for t in times],
                "requests_per_s": round(args.requests / best),
                "megabytes": round(path.stat().st_size / 1e6, 1),
                "columns": frame.shape[1],
            }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
