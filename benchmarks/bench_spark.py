#!/usr/bin/env python
"""Featurizing on Spark against the local featurizer, on one machine: N access-log lines (default
1,000,000) in F rotated files of one server (default 8, every other one gzip-compressed), written to
a temporary folder one file at a time; then, timed on the same files, the local featurizer
(``featurize_files``, windows across the files, in this process) and ``featurize_on_spark``, each
Spark run in a new process (so a new JVM; the session's start-up is reported apart): ``local[1]``
held to one CPU and ``local[2]`` to two (the JVM's compiler and collector threads and the Python
driver held with them), and ``local[1]`` once more free to use every CPU, as Spark runs it by
default. Prints one JSON object; ``--json-out`` also writes it.

    python benchmarks/bench_spark.py [--lines 1000000] [--files 8] [--json-out FILE]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import subprocess
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
    """``featurize_on_spark`` on ``master`` in this process (a fresh session), and the CPU seconds
    its JVM spent compiling (JIT) by then."""
    from threat_ensemble.spark.featurize import featurize_on_spark
    from threat_ensemble.spark.session import spark_session

    t0 = time.perf_counter()
    with spark_session(master, f"bench {master}") as spark:
        started = time.perf_counter()
        spark.range(1).count()  # the first job starts the executor's machinery
        ready = time.perf_counter()
        rows, _ = featurize_on_spark(spark, [([str(p) for p in paths], None)], str(out))
        done = time.perf_counter()
        jit = jit_cpu_seconds()
    result = {
        "seconds": round(done - ready, 2),
        "start_seconds": round(ready - t0, 2),
        "first_job_seconds": round(ready - started, 2),
        "rows": int(rows),
    }
    if jit is not None:
        result["jvm_jit_cpu_seconds"] = round(jit, 1)
    return result


def jit_cpu_seconds() -> float | None:
    """CPU seconds of the compiler threads of this process's Spark JVM (Linux /proc), or None."""
    try:
        ticks = os.sysconf("SC_CLK_TCK")
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            stat = (proc / "stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[1]) != os.getpid():  # not our child
                continue
            if b"SparkSubmit" not in (proc / "cmdline").read_bytes():
                continue
            total = 0.0
            for thread in (proc / "task").iterdir():
                if "Compiler" in (thread / "comm").read_text():
                    fields = (thread / "stat").read_text().rsplit(")", 1)[1].split()
                    total += (int(fields[11]) + int(fields[12])) / ticks  # utime + stime
            return total
    except (OSError, ValueError, IndexError):
        return None
    return None


def spark_in_a_process(folder: Path, master: str, cpus: int | None) -> dict[str, float]:
    """:func:`time_spark` in a new process (so a new JVM), held to the first ``cpus`` CPUs (its JVM
    and Python workers with it) when given."""
    cmd = [sys.executable, __file__, "--spark-worker", master, "--folder", str(folder)]
    if cpus:
        cmd += ["--cpus", str(cpus)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"bench_spark: {master} failed: {done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def spark_worker(master: str, folder: Path, cpus: int | None) -> int:
    if cpus:
        os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[:cpus]))
    out = Path(tempfile.mkdtemp(prefix="bench-spark-out-", dir=folder))
    paths = sorted(p for p in folder.iterdir() if p.name.startswith("access.log"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        result = time_spark(paths, master, out / "table")
    if cpus:
        result["cpus"] = cpus
    print(json.dumps(result))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=1_000_000, help="log lines in all (default 1000000)")
    parser.add_argument("--files", type=int, default=8, help="rotated files (default 8)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json-out", metavar="FILE", help="also write the JSON here")
    parser.add_argument("--spark-worker", metavar="MASTER", help=argparse.SUPPRESS)  # one timed run, in a child
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--cpus", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.spark_worker:
        return spark_worker(args.spark_worker, args.folder, args.cpus)
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
        # Each Spark run in its own process and JVM: local[N] held to N CPUs (its JVM's compiler
        # and collector threads and the Python driver included), and local[1] once more free to
        # use every CPU, as Spark runs it by default.
        result["local[1]"] = spark_in_a_process(folder, "local[1]", 1)
        result["local[2]"] = spark_in_a_process(folder, "local[2]", 2)
        result["local[1], all CPUs"] = spark_in_a_process(folder, "local[1]", None)
    local_s = float(result["local"]["seconds"])  # type: ignore[index]
    one, two = float(result["local[1]"]["seconds"]), float(result["local[2]"]["seconds"])  # type: ignore[index]
    free = float(result["local[1], all CPUs"]["seconds"])  # type: ignore[index]
    for key in ("local", "local[1]", "local[2]", "local[1], all CPUs"):
        entry = result[key]
        entry["lines_per_s"] = round(args.lines / float(entry["seconds"]))  # type: ignore[index]
    result["spark2_vs_local_slowdown"] = round(two / local_s, 2)
    result["speedup_local1_to_local2"] = round(one / two, 2)  # one CPU to two
    result["speedup_local1_all_cpus_to_local2"] = round(free / two, 2)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json_out:
        Path(args.json_out).write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
