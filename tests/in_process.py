"""Run a CLI's ``main`` in the test process, as a subprocess would run the script: in a folder,
with its stdout and stderr captured and its exit status returned (no interpreter start, no second
import of torch: seconds saved per call)."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
from collections.abc import Callable
from pathlib import Path


def run_main(main: Callable[[list[str]], int], cwd: Path, *args: str) -> subprocess.CompletedProcess:
    out, err = io.StringIO(), io.StringIO()
    before = os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(args))
    finally:
        os.chdir(before)
    return subprocess.CompletedProcess(list(args), code, out.getvalue(), err.getvalue())


def run_train(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """scripts/train.py ``args`` run in the test process (about 7 s of imports saved per run), for
    tests about what a run produces; the resume tests, which kill a run, start a real process."""
    from threat_ensemble.cli.train import main

    return run_main(main, cwd, *args)
