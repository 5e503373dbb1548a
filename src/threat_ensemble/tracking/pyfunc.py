"""The ensemble as an MLflow ``pyfunc`` model, so it can be deployed from the MLflow model registry
(``mlflow.pyfunc.load_model(uri).predict(df)``, ``mlflow models serve``) with the same scores and
verdicts as ``scripts/score.py``.

The logged model holds the whole bundle folder as its ``bundle`` artifact (the three models, the
preprocessing, the threshold and the fusion) and a copy of the ``threat_ensemble`` package as its
code, so a loaded model needs only the package's dependencies installed, not the package itself.
The bundle is verified against its manifest (sha256 of every file) and against the manifest digest
recorded when the model was logged, before anything is parsed; it holds no pickle.

Importing this module imports no MLflow and changes nothing process-wide: MLflow (seconds:
``import mlflow`` alone takes about 2.5 s on a 2-core machine) is imported, and its telemetry and
download bars switched off (:func:`threat_ensemble.tracking.offline_mlflow`, environment
variables), when a model is logged, saved, registered or loaded, or ``EnsembleModel`` (a subclass
of MLflow's ``PythonModel``) is first used."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from threat_ensemble.errors import InputError
from threat_ensemble.models.fusion import MEMBERS
from threat_ensemble.tracking import offline_mlflow, tracking_uri_kept

OUTPUT_COLUMNS = (*MEMBERS, "ensemble", "verdict")  # SCORE_COLUMNS without the fusion's raw inputs
PACKAGE_DIR = Path(__file__).resolve().parents[1]  # the threat_ensemble package, copied into the model
# What a loaded model imports: threat_ensemble's own dependencies (pyproject.toml), pinned to the
# versions that trained it. An explicit list also stops mlflow from inferring requirements by
# loading the model in a subprocess.
RUNTIME_PACKAGES = (
    "torch",
    "lightning",
    "torchmetrics",
    "numpy",
    "pandas",
    "scikit-learn",
    "skops",
    "safetensors",
    "mlflow",
)
EXAMPLE_ROWS = 5
# The model is logged as code ("models from code"), not as a cloudpickle of an instance: nothing
# of ours is unpickled at load time and the model does not depend on the Python version.
# The bundle's manifest digest is written into the code: the model refuses any other bundle.
MODEL_CODE = """\
from mlflow.models import set_model

from threat_ensemble.tracking.pyfunc import EnsembleModel

set_model(EnsembleModel(bundle_digest={digest!r}))
"""


def __getattr__(name: str) -> Any:
    """``EnsembleModel`` is built on first use (what the logged model's code imports when MLflow
    loads it), so importing this module imports no MLflow and sets no environment variable."""
    if name == "EnsembleModel":
        model = globals()["EnsembleModel"] = _ensemble_model_class()
        return model
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _ensemble_model_class() -> type:
    offline_mlflow()  # before this process's first import of MLflow, when it is that
    from mlflow.pyfunc import PythonModel

    class EnsembleModel(PythonModel):
        """Per-row member scores, fused score and verdict of a threat-ensemble bundle.

        Input: a DataFrame with the training feature columns (other columns, such as a label, are
        dropped). Output: one row per input row, columns ``ae``, ``rf``, ``if``, ``ensemble``
        (floats in [0, 1]) and ``verdict`` (1 = attack). ``params={"impute": True}`` fills missing
        or infinite numeric cells with the training medians instead of refusing them, like
        ``score.py --impute``; ``params={"explain": K}`` adds score.py's ``--explain K`` columns
        (``"explain_all": True``: for every row, not only attacks)."""

        def __init__(self, bundle_digest: str | None = None) -> None:
            self.bundle_digest = bundle_digest  # the manifest sha256 of the bundle this model was logged with

        def load_context(self, context: Any) -> None:
            from threat_ensemble.models.ensemble import ThreatEnsemble

            self.ensemble = ThreatEnsemble.load(context.artifacts["bundle"], expect_digest=self.bundle_digest)

        def predict(
            self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
        ) -> pd.DataFrame:
            params = params or {}
            return predict_frame(
                self.ensemble,
                model_input,
                impute=bool(params.get("impute", False)),
                explain=int(params.get("explain", 0) or 0),
                explain_all=bool(params.get("explain_all", False)),
            )

    EnsembleModel.__qualname__ = "EnsembleModel"  # as the module names it
    return EnsembleModel


def predict_frame(
    ensemble: Any, frame: pd.DataFrame, impute: bool = False, explain: int = 0, explain_all: bool = False
) -> pd.DataFrame:
    """Score ``frame`` as ``scripts/score.py`` does: only the bundle's feature columns, text that is
    really numbers converted, non-finite cells refused unless ``impute``, then
    the one scoring function, ``evaluation.scoring.score_rows``. Columns the bundle was not trained
    on are left out without a word (a served model takes whole records)."""
    from threat_ensemble.evaluation.scoring import score_rows

    if not isinstance(frame, pd.DataFrame):
        frame = pd.DataFrame(frame)
    rows = ensemble.check(frame, "model input", impute, ignore_extra=True)
    scores, _ = score_rows(ensemble, [(rows, None)], rows.source)
    out = pd.DataFrame({key: np.asarray(scores[key], dtype=np.float64) for key in OUTPUT_COLUMNS[:-1]})
    out["verdict"] = np.asarray(scores["verdict"]).astype(np.int64)
    if explain:
        from threat_ensemble.data.preprocessing import UnseenCategories
        from threat_ensemble.evaluation.explain import MAX_EXPLAINED, explanation_columns

        if not 1 <= explain <= MAX_EXPLAINED:
            raise InputError(f"params: explain must be from 1 to {MAX_EXPLAINED}, got {explain}")
        x = ensemble.encode(rows, UnseenCategories())  # warned about once already, when scored
        out = pd.concat([out, explanation_columns(ensemble, rows.frame, x, scores, explain, explain_all)], axis=1)
    return out


def pip_requirements() -> list[str]:
    """``name==version`` of each runtime dependency installed here (``torch`` without a local build
    tag such as ``+cpu``, which pip cannot find on PyPI)."""
    pins = []
    for name in RUNTIME_PACKAGES:
        try:
            pins.append(f"{name}=={metadata.version(name).split('+')[0]}")
        except metadata.PackageNotFoundError:
            pins.append(name)
    return pins


@contextmanager
def tracking_uri_set(uri: str) -> Iterator[None]:
    """Point mlflow's fluent API (``log_model``, ``register_model``) at ``uri`` for the block, then
    restore the previous URI and ``MLFLOW_TRACKING_URI``: a caller's own tracking setup, such as a
    Lightning logger's, is left as it was."""
    offline_mlflow()
    import mlflow

    with tracking_uri_kept():
        mlflow.set_tracking_uri(uri)
        yield


def log_pyfunc_model(
    bundle_dir: Path, run_id: str, tracking_uri: str, artifact_path: str = "model", ensemble: Any = None
) -> str:
    """Log the bundle as a pyfunc model into the existing run ``run_id``; returns the model's URI.

    With MLflow 3 that is ``models:/<model_id>``: it names this one logged model, whereas
    ``runs:/<run_id>/<artifact_path>`` (which also loads it) is ambiguous once a run logs the model
    twice, and makes ``register_model`` warn that the run has no such artifact. The bundle is
    verified first, so a damaged bundle is never published. The signature gives outputs and params;
    the input example (the bundle's training medians and categories) documents the columns. Nothing
    is fetched from the network: requirements are given, not inferred. ``ensemble``: the bundle's
    models already in memory (the trainer has them), saving a second load of the forests."""
    offline_mlflow()
    import mlflow

    with _model_files(bundle_dir, ensemble) as kwargs, tracking_uri_set(tracking_uri), _run(run_id):
        info = mlflow.pyfunc.log_model(name=artifact_path, **kwargs)
    return str(info.model_uri)


def save_pyfunc_model(bundle_dir: Path, path: Path, ensemble: Any = None) -> Path:
    """The same model as :func:`log_pyfunc_model`, saved to the folder ``path`` instead of a run
    (what ``mlflow.pyfunc.spark_udf`` and ``mlflow models serve -m PATH`` take)."""
    offline_mlflow()
    import mlflow

    with _model_files(bundle_dir, ensemble) as kwargs:
        mlflow.pyfunc.save_model(path=str(path), **kwargs)
    return Path(path)


@contextmanager
def _model_files(bundle_dir: Path, ensemble: Any = None) -> Iterator[dict[str, Any]]:
    """``log_model``/``save_model`` arguments for the verified bundle: code, artifacts, signature."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

    from threat_ensemble.models.bundle import verify_bundle
    from threat_ensemble.models.ensemble import ThreatEnsemble

    bundle = Path(bundle_dir).resolve()
    if ensemble is None:
        ensemble = ThreatEnsemble.load(bundle)
    else:
        verify_bundle(bundle, expect_digest=ensemble.digest)
    example = example_input(ensemble)
    predict_frame(ensemble, example)  # fail here, not inside mlflow, if the bundle cannot score
    # Outputs and params only: an input schema would make mlflow refuse inputs that score.py takes
    # (it will not convert an int64 column to the double it saw in the example); the input example
    # and the ``feature_names`` metadata document the expected columns instead.
    outputs = Schema([*(ColSpec("double", k) for k in OUTPUT_COLUMNS[:-1]), ColSpec("long", "verdict")])
    params = ParamSchema(
        [
            ParamSpec("impute", "boolean", False),
            ParamSpec("explain", "long", 0),
            ParamSpec("explain_all", "boolean", False),
        ]
    )
    with tempfile.TemporaryDirectory(prefix="threat-ensemble-code-") as tmp:
        code = Path(tmp) / PACKAGE_DIR.name
        shutil.copytree(PACKAGE_DIR, code, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.parquet"))
        model_code = Path(tmp) / "threat_ensemble_model.py"
        model_code.write_text(MODEL_CODE.format(digest=ensemble.digest), encoding="utf-8")
        yield {
            "python_model": str(model_code),
            "artifacts": {"bundle": str(bundle)},
            "code_paths": [str(code)],
            "signature": ModelSignature(inputs=None, outputs=outputs, params=params),
            "input_example": example,
            "pip_requirements": pip_requirements(),
            "metadata": {
                "feature_names": list(ensemble.preprocessing.encoder.feature_names),
                "bundle_digest": ensemble.digest,
            },
        }


@contextmanager
def _run(run_id: str) -> Iterator[None]:
    """Make ``run_id`` the active run for the fluent API and leave its status as it was: a run that
    Lightning is still writing to stays RUNNING (``start_run`` would end it as FINISHED)."""
    import mlflow

    active = mlflow.active_run()
    if active is not None and active.info.run_id == run_id:
        yield
        return
    client = mlflow.MlflowClient()
    status = client.get_run(run_id).info.status
    with mlflow.start_run(run_id=run_id):
        yield
    if status == "RUNNING":
        client.update_run(run_id, status="RUNNING")


def example_input(ensemble: Any, n_rows: int = EXAMPLE_ROWS) -> pd.DataFrame:
    """A few valid input rows built from the bundle alone (numeric columns at their training
    medians, text columns cycling through training categories), for the model's signature."""
    encoder = ensemble.preprocessing.encoder
    columns: dict[str, Any] = {}
    for name in encoder.feature_names:
        if name in encoder.numeric_columns:
            columns[name] = np.full(n_rows, float(encoder.medians.get(name, 0.0)))
        else:
            cats = encoder.categories.get(name) or [""]
            columns[name] = [str(cats[i % len(cats)]) for i in range(n_rows)]
    return pd.DataFrame(columns)


def gate_tags(gate: dict[str, Any]) -> dict[str, str]:
    """The gate result as model-version tags (strings): passed, each gate's value, bound and
    verdict, and the ensemble's F1 and PR-AUC, so the registry shows why a version was accepted."""
    tags = {"gate_passed": str(bool(gate.get("passed"))).lower()}
    for name, g in (gate.get("gates") or {}).items():
        tags[f"gate.{name}.value"] = f"{float(g['value']):.6g}"
        for bound in ("min", "max"):
            if bound in g:
                tags[f"gate.{name}.{bound}"] = f"{float(g[bound]):.6g}"
        tags[f"gate.{name}.passed"] = str(bool(g.get("passed"))).lower()
    metrics = gate.get("metrics") or {}
    for key in ("f1", "pr_auc"):
        if key in metrics and metrics[key] is not None:
            tags[f"ensemble_{key}"] = f"{float(metrics[key]):.6g}"
    for key in ("test_source", "n_test", "mlflow_run_id", "bundle_digest"):
        if gate.get(key) is not None:
            tags[key] = str(gate[key])
    return tags


def register_model(model_uri: str, name: str, gate: dict[str, Any], tracking_uri: str) -> str:
    """Register ``model_uri`` as a new version of ``name`` in the model registry, tagged with the
    gate result; returns the version. Whether a failed gate may be registered is the caller's
    decision (``--register-anyway``)."""
    offline_mlflow()
    import mlflow

    if not name or not name.strip():
        raise InputError("--register-model: the model name is empty")
    with tracking_uri_set(tracking_uri):
        version = mlflow.register_model(model_uri, name.strip(), tags=gate_tags(gate))
    return str(version.version)
