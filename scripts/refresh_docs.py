#!/usr/bin/env python
"""Rerun the documented runs and rewrite the figures the docs quote from them.

Each generated block in README.md and docs/ follows a marker line
``<!-- refresh_docs: NAME -->``: a fenced block (the run's own output) or a Markdown table.
``--check`` reruns and compares instead of writing: exit 1 and a diff when a block is stale
(``--tolerance X`` lets each number differ by up to X: torch's CPU kernels sum in an order that
depends on the thread count and the processor's vector instructions, so another machine's
autoencoder differs in the last bits and its figures in the third or fourth decimal).

    python scripts/refresh_docs.py                      # default run, featurize example
    python scripts/refresh_docs.py --nsl-kdd DIR        # also the NSL-KDD rows of docs/fusion.md
    python scripts/refresh_docs.py --check --only default-run

The runs use every default (CPU, seed 42) and take about a minute each on a 2-core machine.
Other figures have their own commands: docs/performance.md from benchmarks/bench_train.py and
benchmarks/bench_featurize.py, the GPU rows of docs/distributed.md from scripts/gpu_check.sh.
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BLOCKS = ("default-run", "fusion-weights", "featurize-wrote", "featurize-example", "fusion-table")
MARKER = re.compile(r"^<!-- refresh_docs: ([a-z0-9-]+) -->$")
NSL_ARGS = ["--no-header", "--label-column", "41", "--normal-label", "normal", "--drop-columns", "42"]
MEMBER_ROWS = (("ae", "ae"), ("rf", "rf"), ("if", "if"))
NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?")


def _run(args: list[str], cwd: Path) -> str:
    """A command's output (stdout and stderr); all of it and exit status on failure (a gate failure, 3, is a result)."""
    done = subprocess.run([sys.executable, *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if done.returncode not in (0, 3):
        sys.exit(f"refresh_docs: {' '.join(args[:2])} exited {done.returncode}:\n{done.stdout}")
    return done.stdout


def _train(cwd: Path, *args: str) -> tuple[str, dict]:
    """train.py in ``cwd`` with ``args``: its stdout and gate.json."""
    cwd.mkdir(parents=True, exist_ok=True)
    out = _run([str(ROOT / "scripts" / "train.py"), "--output-dir", "artifacts", *args], cwd)
    return out, json.loads((cwd / "artifacts" / "gate.json").read_text())


def summary(stdout: str) -> str:
    """The closing tables of a run, from "detection on the test split" to the gate line."""
    lines = stdout.splitlines()
    start = lines.index("detection on the test split")
    end = next(i for i in range(start, len(lines)) if lines[i].startswith("gate: "))
    return "\n".join(lines[start : end + 1])


def _line(stdout: str, prefix: str) -> str:
    return next(line for line in stdout.splitlines() if line.startswith(prefix))


def _row(data: str, model: str, m: dict, bold: bool = False) -> str:
    cells = [f"{m[k]:.3f}" for k in ("precision", "recall", "f1", "pr_auc", "fpr")]
    if bold:
        model, cells[2], cells[3] = f"**{model}**", f"**{cells[2]}**", f"**{cells[3]}**"
    return ("| " + " | ".join([data, model, *cells]) + " |").replace("|  |", "| |")


def fusion_table(nsl: tuple[dict, dict], default: dict) -> str:
    stack, fixed = nsl
    rows = [
        "| data (seed 42, CPU, defaults) | model | precision | recall | F1 | PR-AUC | FPR |",
        "|---|---|---|---|---|---|---|",
    ]
    for gate, data, extra in (
        (stack, "NSL-KDD: `KDDTrain+_20Percent` -> independent `KDDTest+`", fixed),
        (default, "default data (generated HTTP traffic), test split", None),
    ):
        for i, (key, name) in enumerate(MEMBER_ROWS):
            rows.append(_row(data if i == 0 else "", name, gate["per_model"][key]))
        rows.append(_row("", "ensemble (stack)", gate["metrics"], bold=True))
        if extra is not None:
            rows.append(_row("", "ensemble (fixed, reference weights)", extra["metrics"]))
    return "\n".join(rows)


def generate(only: set[str] | None, nsl_kdd: Path | None, work: Path) -> dict[str, str]:
    """Each block's new text, by name, from fresh runs in ``work``."""
    wanted: Callable[[str], bool] = lambda name: only is None or name in only  # noqa: E731
    blocks: dict[str, str] = {}
    default_gate = None
    if wanted("default-run") or wanted("fusion-weights") or wanted("fusion-table"):
        print("refresh_docs: the default run ...", flush=True)
        out, default_gate = _train(work / "default")
        blocks["default-run"] = summary(out)
        blocks["fusion-weights"] = _line(out, "fusion: weights")
    if wanted("featurize-example") or wanted("featurize-wrote"):
        print("refresh_docs: featurize, then train on the features ...", flush=True)
        folder = work / "featurize"
        folder.mkdir()
        _run([str(ROOT / "datasets" / "default_traffic.py"), "traffic/", "--requests", "20000"], folder)
        files = [
            "--normal",
            "traffic/normal.txt",
            "traffic/normal.log",
            "--attack",
            "traffic/attack.txt",
            "traffic/attack.log",
        ]
        wrote = _run([str(ROOT / "scripts" / "featurize.py"), *files, "--output", "features.parquet"], folder)
        out, _ = _train(folder, "--data", "features.parquet", "--max-epochs", "40")
        blocks["featurize-wrote"] = _line(wrote, "wrote ")
        blocks["featurize-example"] = summary(out)
    if nsl_kdd is not None and wanted("fusion-table") and default_gate is not None:
        print("refresh_docs: NSL-KDD, stacked and fixed fusion ...", flush=True)
        data = ["--data", str(nsl_kdd / "KDDTrain+_20Percent.txt"), "--test-data", str(nsl_kdd / "KDDTest+.txt")]
        _, stack = _train(work / "nsl-stack", *data, *NSL_ARGS)
        _, fixed = _train(work / "nsl-fixed", *data, *NSL_ARGS, "--fusion", "fixed")
        blocks["fusion-table"] = fusion_table((stack, fixed), default_gate)
    return {name: text for name, text in blocks.items() if wanted(name)}


def rewrite(text: str, blocks: dict[str, str]) -> str:
    """``text`` with the block after each known marker replaced: a fenced block keeps its fences,
    a table (lines starting with ``|``) is replaced whole."""
    lines, out, i = text.split("\n"), [], 0
    while i < len(lines):
        out.append(lines[i])
        match = MARKER.match(lines[i])
        i += 1
        if not match or match.group(1) not in blocks:
            continue
        new = blocks[match.group(1)].split("\n")
        if i < len(lines) and lines[i].startswith("```"):
            end = lines.index("```", i + 1)
            out += [lines[i], *new, "```"]
            i = end + 1
        else:
            while i < len(lines) and lines[i].startswith("|"):
                i += 1
            out += new
    return "\n".join(out)


def close_enough(old: str, new: str, tolerance: float) -> bool:
    """The same text, each number within ``tolerance`` of the other's."""
    if NUMBER.sub("#", old) != NUMBER.sub("#", new):
        return False
    return all(
        abs(float(a) - float(b)) <= tolerance for a, b in zip(NUMBER.findall(old), NUMBER.findall(new), strict=True)
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing; exit 1 when stale")
    parser.add_argument("--tolerance", type=float, default=0.0, help="--check: how far each number may differ")
    parser.add_argument(
        "--only", nargs="+", choices=BLOCKS, metavar="NAME", help=f"only these blocks: {', '.join(BLOCKS)}"
    )
    parser.add_argument(
        "--nsl-kdd", type=Path, metavar="DIR", help="folder with KDDTrain+_20Percent.txt and KDDTest+.txt"
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="refresh_docs-") as tmp:
        blocks = generate(set(args.only) if args.only else None, args.nsl_kdd, Path(tmp))
    stale = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        old = path.read_text()
        new = rewrite(old, blocks)
        if new == old or (args.check and close_enough(old, new, args.tolerance)):
            continue
        stale.append(path.relative_to(ROOT))
        if args.check:
            diff = difflib.unified_diff(
                old.splitlines(), new.splitlines(), str(path.relative_to(ROOT)), "current code", lineterm=""
            )
            print("\n".join(diff))
        else:
            path.write_text(new)
    verb = "stale" if args.check else "rewritten"
    print(f"refresh_docs: {len(blocks)} blocks from fresh runs; {verb}: {', '.join(map(str, stale)) or 'none'}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
