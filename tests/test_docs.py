"""The figures the docs quote come from scripts/refresh_docs.py, which reruns the documented runs;
these tests check its rewriting and, in the slow set, that the README's default run is current."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "refresh_docs.py"
_spec = importlib.util.spec_from_file_location("refresh_docs", SCRIPT)
refresh_docs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(refresh_docs)

DOC = """intro 0.5
<!-- refresh_docs: default-run -->
```
old table 0.9587
```
between
<!-- refresh_docs: fusion-table -->
| a | b |
|---|---|
| 1 | 2 |
after 0.9587
<!-- refresh_docs: unknown -->
```
kept 1.0
```
"""


def test_rewrite_replaces_the_block_after_each_known_marker_and_nothing_else() -> None:
    new = refresh_docs.rewrite(DOC, {"default-run": "new table 0.9564", "fusion-table": "| x |\n|---|"})
    assert new == DOC.replace("old table 0.9587", "new table 0.9564").replace(
        "| a | b |\n|---|---|\n| 1 | 2 |", "| x |\n|---|"
    )
    assert refresh_docs.rewrite(DOC, {}) == DOC


def test_close_enough_allows_small_numeric_drift_only() -> None:
    assert refresh_docs.close_enough("f1 0.9587 on 3000 rows", "f1 0.9564 on 3000 rows", 0.005)
    assert not refresh_docs.close_enough("f1 0.9587 on 3000 rows", "f1 0.9487 on 3000 rows", 0.005)
    assert not refresh_docs.close_enough("f1 0.9587 on 3000 rows", "f1 0.9587 on 2999 rows", 0.005)
    assert not refresh_docs.close_enough("gate: PASSED 0.9", "gate: FAILED 0.9", 0.005)


def test_every_marker_in_the_docs_names_a_block_the_script_makes() -> None:
    docs = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    found = {m for path in docs for m in re.findall(r"<!-- refresh_docs: ([a-z0-9-]+) -->", path.read_text())}
    assert found == set(refresh_docs.BLOCKS)


@pytest.mark.slow
def test_the_documented_default_run_is_what_the_code_prints_now() -> None:
    """The README's and docs/run.md's tables against a fresh default run. The tolerance covers
    another machine's processor (torch's reduction order); a change of results does not pass."""
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--check", "--only", "default-run", "--tolerance", "0.005"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "stale: none" in done.stdout


def _option_rows() -> list[tuple[list[str], str]]:
    """docs/options.md's table of train.py's options: the flags of each row and its default cell."""
    rows = []
    for line in (ROOT / "docs" / "options.md").read_text().splitlines():
        if line.startswith("| `--"):
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
            rows.append((re.findall(r"`(--[a-z0-9-]+)", cells[0]), cells[1]))
    return rows


def _documented_default_matches(cell: str, default: object) -> bool:
    """A default as docs/options.md writes it: blank or ``off`` (none), a number, `text`, or words
    saying what happens without the option (only where the option has no value by default)."""
    number = re.match(r"^-?[0-9][0-9.e-]*", cell)
    if cell == "":
        return default in (None, False, [])
    if cell == "off":
        return default in (None, False)
    if number and not isinstance(default, str):
        return float(number.group()) == float(default)  # type: ignore[arg-type]
    if cell.startswith("`") and default is not None:
        return cell.split("`")[1].rstrip("/") == str(default)
    return default is None or cell == "Lightning's"


def test_the_options_table_lists_every_option_once_with_its_default() -> None:
    """docs/options.md against the one definition of the options (config.options())."""
    from threat_ensemble.config import options

    by_flag = {o.flag: o for o in options()}
    rows = _option_rows()
    listed = [flag for flags, _ in rows for flag in flags]
    assert sorted(listed) == sorted(by_flag), "docs/options.md and TrainConfig list different options"
    for flags, cell in rows:
        pieces = cell.split(", ") if len(flags) > 1 and len(cell.split(", ")) == len(flags) else [cell] * len(flags)
        for flag, piece in zip(flags, pieces, strict=True):
            assert _documented_default_matches(piece, by_flag[flag].default), (flag, piece, by_flag[flag].default)
