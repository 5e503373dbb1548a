"""``score.py --engine spark``: a table scored on Spark by the MLflow model (``mlflow.pyfunc.spark_udf``),
the member scores, fused score and verdict beside the columns kept from each input row."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from threat_ensemble.errors import InputError
from threat_ensemble.spark.featurize import run_action
from threat_ensemble.spark.files import folder_written_whole, spark_path
from threat_ensemble.tracking.pyfunc import OUTPUT_COLUMNS

# The pyfunc model's outputs (tracking/pyfunc.py), as Spark reads them back from each batch.
RESULT_TYPE = ", ".join(f"`{c}` {'long' if c == 'verdict' else 'double'}" for c in OUTPUT_COLUMNS)


@contextmanager
def quiet_mlflow() -> Iterator[None]:
    """MLflow's INFO lines and its advice to use conda, and pyspark's warnings about pandas
    releases, kept off the console: the environment here is the one that trained the model."""
    logger = logging.getLogger("mlflow")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            yield
    finally:
        logger.setLevel(level)


def read_table(spark: Any, data: str) -> Any:
    """A Parquet file or folder of shards (what ``featurize.py --engine spark`` writes), or a CSV
    file with a header row (its cells are text; the model converts numbers as score.py does)."""
    lower = data.lower()
    try:
        if lower.endswith((".csv", ".csv.gz", ".txt")):
            return spark.read.option("header", True).csv(spark_path(data))
        return spark.read.parquet(spark_path(data))
    except Exception as exc:
        from threat_ensemble.spark.session import spark_error

        raise InputError(f"--data {data}: {spark_error(exc)}") from None


def model_features(model_uri: str) -> list[str]:
    """The feature columns a logged model scores (its ``feature_names`` metadata)."""
    from mlflow.models import get_model_info

    names = (get_model_info(model_uri).metadata or {}).get("feature_names")
    if not names:
        raise InputError(f"{model_uri}: not a threat-ensemble model (no feature_names in its metadata)")
    return [str(n) for n in names]


def score_on_spark(
    spark: Any,
    model_uri: str,
    data: str,
    out: str,
    *,
    keep: Sequence[str] = (),
    features: Sequence[str] | None = None,
    impute: bool = False,
) -> int:
    """Score every row of ``data`` with the pyfunc model at ``model_uri`` (``models:/NAME/VERSION``,
    ``runs:/...`` or a folder) into Parquet shards in ``out``: the ``keep`` columns (label, ids)
    unchanged, then ``ae``, ``rf``, ``if``, ``ensemble``, ``verdict``. Returns the row count."""
    import mlflow
    from pyspark.sql import functions as F

    table = read_table(spark, data)
    features = list(features) if features is not None else model_features(model_uri)
    missing = [c for c in [*features, *keep] if c not in table.columns]
    if missing:
        raise InputError(f"{data}: missing columns {missing} (the model scores {len(features)} feature columns)")
    taken = [c for c in keep if c in OUTPUT_COLUMNS]
    if taken:
        raise InputError(f"{data}: column {taken[0]!r} has the name of an output column; rename it to keep it")
    with quiet_mlflow():
        udf = mlflow.pyfunc.spark_udf(
            spark, model_uri, result_type=RESULT_TYPE, env_manager="local", params={"impute": bool(impute)}
        )
    scores = udf(F.struct(*[F.col(f"`{c}`") for c in features])).alias("_scores")
    scored = table.select(*[F.col(f"`{c}`") for c in keep], scores).select(
        *[F.col(f"`{c}`") for c in keep], "_scores.*"
    )
    with folder_written_whole(out) as target, quiet_mlflow():
        run_action(lambda: scored.write.mode("errorifexists").parquet(target))
    return int(run_action(lambda: spark.read.parquet(spark_path(out)).count()))
