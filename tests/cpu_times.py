"""A pytest plugin that records each test's wall time and CPU time (the test process's own and that
of the processes it started), for docs/testing.md's figures. Not loaded by default:

    PYTHONPATH=tests CPU_TIMES=/tmp/fast python -m pytest -q -m "not slow" -p cpu_times

writes one file per worker, ``/tmp/fast.gw0.tsv`` and ``/tmp/fast.gw1.tsv`` (``.main.tsv`` with
``-n 0``): test id, wall s, own CPU s, children's CPU s, tab-separated. On a busy machine the wall
times stretch with the load; the CPU times much less."""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Iterator

import pytest

_rows: list[tuple[str, float, float, float]] = []


def _cpu() -> tuple[float, float]:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    wall, (own, children) = time.perf_counter(), _cpu()
    yield
    own_after, children_after = _cpu()
    _rows.append((item.nodeid, time.perf_counter() - wall, own_after - own, children_after - children))


def pytest_sessionfinish(session: pytest.Session) -> None:
    out = os.environ.get("CPU_TIMES")
    if not out or not _rows:
        return
    with open(f"{out}.{os.environ.get('PYTEST_XDIST_WORKER', 'main')}.tsv", "w", encoding="utf-8") as fh:
        fh.writelines(f"{nodeid}\t{wall:.3f}\t{own:.3f}\t{children:.3f}\n" for nodeid, wall, own, children in _rows)
