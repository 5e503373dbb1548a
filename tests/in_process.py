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
