"""Access logs of one server rotated mid-traffic, written by the tests: a client whose requests
straddle the rotation, clients in bursts (several requests in one second), bytes that are not
UTF-8, a malformed line, a gzip-compressed second file."""

from __future__ import annotations

import gzip
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

START = datetime(2026, 3, 1, 23, 40, 0, tzinfo=timezone(timedelta(hours=2)))
STRADDLER = "198.51.100.9"  # one request every 20 s across the rotation
CLIENTS = ("10.0.0.1", "10.0.0.2", "192.168.7.3", "203.0.113.7", "bot.example.com", "::1")
PATHS = ("/", "/index.html", "/a/b.php?id=1", "/login", "/x?q=%2527", "/img/logo.png", "/caf\xe9/\xff.html")
AGENTS = ("Mozilla/5.0", "curl/8.0", "sqlmap/1.7", "-", "Googlebot/2.1")


def log_lines(n: int = 1200, seed: int = 3) -> tuple[list[str], int]:
    """Combined-format lines in time order and the index where the log is rotated."""
    rng = np.random.default_rng(seed)
    events: list[tuple[datetime, str]] = []
    t = START
    for _ in range(n):
        t += timedelta(seconds=int(rng.choice([0, 0, 0, 1, 2, 7, 30, 95])))
        events.append((t, str(rng.choice(CLIENTS))))
    events += [(START + timedelta(minutes=25, seconds=20 * k), STRADDLER) for k in range(30)]
    events.sort(key=lambda e: e[0])
    lines = []
    for when, client in events:
        stamp = when.strftime("%d/%b/%Y:%H:%M:%S %z")
        path, agent = str(rng.choice(PATHS)), str(rng.choice(AGENTS))
        status, size = int(rng.choice([200, 200, 301, 404, 500])), int(rng.integers(0, 9000))
        lines.append(f'{client} - - [{stamp}] "GET {path} HTTP/1.1" {status} {size} "-" "{agent}"')
    lines.insert(len(lines) // 3, "this line is not a log line")
    cut = next(i for i, (when, _c) in enumerate(events) if when >= START + timedelta(minutes=30))
    return lines, cut


def write_rotated_logs(folder: Path, n: int = 1200, seed: int = 3) -> tuple[Path, Path]:
    """``access.log.1`` (plain) and ``access.log.2.gz``: one server's log cut in two."""
    lines, cut = log_lines(n, seed)
    first, second = folder / "access.log.1", folder / "access.log.2.gz"
    first.write_bytes(("\n".join(lines[:cut]) + "\n").encode("latin-1"))
    second.write_bytes(gzip.compress(("\n".join(lines[cut:]) + "\n").encode("latin-1")))
    return first, second
