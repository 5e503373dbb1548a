"""A Spark session for one command: this Python for the workers, no UI, UTC, errors-only logs."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from threat_ensemble.errors import InputError, UsageError, first_line

DEFAULT_MASTER = "local[*]"
LOG_CONFIG = Path(__file__).with_name("log4j2.properties")
SETTINGS = {
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    # Let adaptive execution size the partitions of a kept (persisted) table too, as it does for
    # any other: otherwise the featurizer's windowed rows stay in 200 shuffle partitions, most of
    # them empty on one machine (on 2 cores: 52 s for 300k lines instead of 36 s, local[1]).
    "spark.sql.optimizer.canChangeCachedPlanOutputPartitioning": "true",
}


def under_spark_submit() -> bool:
    """Whether spark-submit started this process (it hands the driver a gateway to its JVM)."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def resolve_master(master: str | None) -> str | None:
    """The master to set: the one asked for, else spark-submit's own (None), else local[*]."""
    if master:
        return master
    return None if under_spark_submit() else DEFAULT_MASTER


@contextmanager
def spark_session(master: str | None, app_name: str) -> Iterator[Any]:
    """A session on ``master`` (see :func:`resolve_master`), stopped afterwards unless spark-submit
    or the caller owns it (an active session is used as it is). A missing pyspark or a JVM that
    does not start is a one-line error, exit 2."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise UsageError(
            "--engine spark: pyspark is not installed; pip install 'threat-ensemble[spark]' (it needs Java 17 or newer)"
        ) from None
    # Python workers run this interpreter (the one with threat_ensemble installed), quietly: pyspark
    # warns about each pandas release it has not been tested with.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYTHONWARNINGS", "ignore::FutureWarning")
    builder = SparkSession.builder.appName(app_name)
    chosen = resolve_master(master)
    if chosen is not None:
        builder = builder.master(chosen)
    for key, value in SETTINGS.items():
        builder = builder.config(key, value)
    if not under_spark_submit():
        builder = builder.config("spark.driver.extraJavaOptions", f"-Dlog4j2.configurationFile={LOG_CONFIG.as_uri()}")
    existing = SparkSession.getActiveSession()  # a caller's own session is used, and left running
    try:
        with _jvm_output_to_log():
            spark = existing or builder.getOrCreate()
    except Exception as exc:  # the JVM did not start: no Java, a bad master URL
        first, where = first_line(exc, limit=None), f"; Spark's log: {JVM_LOG[0]}" if JVM_LOG else ""
        raise InputError(
            f"--spark-master {chosen or 'from spark-submit'}: Spark did not start ({first}){where}"
        ) from None
    spark.sparkContext.setLogLevel("ERROR")
    import logging

    logging.getLogger("DataFrameQueryContextLogger").setLevel(logging.CRITICAL + 1)  # JSON stack traces
    try:
        yield spark
    finally:
        if existing is None and not under_spark_submit():
            spark.stop()


JVM_LOG: list[str] = []  # where this process's Spark JVM (and its Python workers) write their console


@contextmanager
def _jvm_output_to_log() -> Iterator[None]:
    """Start the JVM with its standard error in a log file, not on the console: Java announces
    itself and its modules there, and a failed task's stack traces; ours are one line each. The
    file is named in Spark's error lines. spark-submit's own JVM is left as it is."""
    import tempfile
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # pyspark on a pandas release it has not seen
        if under_spark_submit():
            yield
            return
        fd, path = tempfile.mkstemp(prefix="threat-ensemble-spark-", suffix=".log")
        JVM_LOG[:] = [path]
        saved = os.dup(2)
        os.dup2(fd, 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            os.close(fd)


def spark_error(exc: BaseException) -> str:
    """The first line of what Spark said, without the Java stack trace below it."""
    text = str(getattr(exc, "desc", None) or exc).strip()
    lines = [line.strip() for line in text.splitlines()]
    lines = [line for line in lines if line and not line.startswith(("at ", "Traceback", "JVM stacktrace", "File "))]
    # a Python worker's error says so on one line and gives the exception on its last
    python_error = [line for line in lines if not line.startswith("An exception was thrown from the Python worker")]
    first = (python_error[-1] if python_error and python_error != lines else lines[0]) if lines else type(exc).__name__
    where = f" (Spark's log: {JVM_LOG[0]})" if JVM_LOG else ""
    return first[:300] + where
