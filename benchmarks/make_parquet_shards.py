#!/usr/bin/env python
"""Write a sharded Parquet dataset of generated flows of any size, a shard at a time (never whole
in memory): ``python benchmarks/make_parquet_shards.py --rows 10000000 --out /tmp/flows-10m``.

Each shard is ``tests/synthetic.make_default_dataset`` drawn with its own seed (the same generator
as the built-in data: 29 columns, ``label`` and ``family``; train with ``--drop-columns family``).
Prints one JSON line: rows, shards, bytes, seconds."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))  # synthetic.py: the tests' and benchmarks' generated flows


def write_shards(rows: int, out: Path, shard_rows: int = 250_000, row_group_rows: int = 125_000, seed: int = 7) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from synthetic import make_default_dataset

    out.mkdir(parents=True, exist_ok=True)
    started, written, index = time.perf_counter(), 0, 0
    while written < rows:
        n = min(shard_rows, rows - written)
        frame = make_default_dataset(n, seed=seed * 1_000_003 + index)
        path = out / f"part-{index:05d}.parquet"
        pq.write_table(
            pa.Table.from_pandas(frame, preserve_index=False), path.with_suffix(".tmp"), row_group_size=row_group_rows
        )
        path.with_suffix(".tmp").rename(path)
        written, index = written + n, index + 1
    size = sum(p.stat().st_size for p in out.glob("*.parquet"))
    return {"rows": written, "shards": index, "bytes": size, "seconds": round(time.perf_counter() - started, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--shard-rows", type=int, default=250_000)
    parser.add_argument("--row-group-rows", type=int, default=125_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    print(json.dumps(write_shards(args.rows, args.out, args.shard_rows, args.row_group_rows, args.seed)))


if __name__ == "__main__":
    main()
