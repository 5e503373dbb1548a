"""Champion and challenger in the MLflow model registry, with aliases (the registry's current way;
stages are deprecated): a newly registered version takes the ``champion`` alias only when its gate
passed and, scored on this run's test rows next to the current champion, it is not worse."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from threat_ensemble.errors import first_line
from threat_ensemble.evaluation.metrics import binary_metrics
from threat_ensemble.evaluation.scoring import LabelledRows

CHAMPION, CHALLENGER = "champion", "challenger"
COMPARED = ("pr_auc", "f1")


@dataclass
class Promotion:
    """Which alias the new version got, and why; the champion's figures on the same rows."""

    alias: str
    reason: str
    previous: str | None = None  # the champion's version before this run
    champion_metrics: dict[str, float] | None = None

    def line(self, name: str, version: str) -> str:
        return f"promotion: {name!r} version {version} is the {self.alias} ({self.reason})"


def compare(new: dict[str, float], champion: dict[str, float], tolerance: float) -> tuple[bool, str]:
    """Whether ``new`` is not worse than ``champion`` on every compared metric (within
    ``tolerance``), and the figures side by side."""
    worse = [k for k in COMPARED if new[k] < champion[k] - tolerance]
    figures = ", ".join(f"{k} {new[k]:.4f} vs {champion[k]:.4f}" for k in COMPARED)
    return not worse, (f"worse on {', '.join(worse)}: " if worse else "not worse: ") + figures


def promote(
    name: str,
    version: str,
    gate: dict[str, Any],
    test_rows: LabelledRows,
    tolerance: float,
    tracking_uri: str,
    force: bool = False,
) -> Promotion:
    """Give ``version`` of ``name`` the champion or the challenger alias. A failed gate never
    touches the champion; the first version whose gate passed becomes it; after that the current
    champion's bundle is fetched from the registry, verified and scored on this run's test rows by
    the one scoring function (``test_rows.score``: each chunk checked and encoded by the champion's
    own preprocessing, as score.py would), and the new version must be no worse on PR-AUC and F1 (each within
    ``tolerance``). ``force`` (--promote-force): a version whose gate passed becomes the champion
    without the comparison, the way out when the champion's bundle is gone or cannot score."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from threat_ensemble.tracking.pyfunc import tracking_uri_set

    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    try:
        current = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:  # no champion yet
        current = None
    previous = str(current.version) if current is not None else None
    if not gate["passed"]:
        outcome = Promotion(CHALLENGER, "its gate failed; the champion is untouched", previous)
    elif current is None:
        outcome = Promotion(CHAMPION, "the first version whose gate passed")
    elif force:
        reason = f"--promote-force: its gate passed; not compared with version {previous}"
        outcome = Promotion(CHAMPION, reason, previous)
    else:
        try:
            with tracking_uri_set(tracking_uri):
                scores, y_test = test_rows.score(champion_ensemble(f"models:/{name}/{previous}"))
        except Exception as exc:  # its bundle deleted, another feature set, a model this package cannot load
            reason = (
                f"the champion, version {previous}, could not be fetched or could not score these rows "
                f"({first_line(exc, 160, True)}); not compared, and while it stands no version can be promoted: "
                "add --promote-force to make a version whose gate passed the champion without the comparison"
            )
            return _set(client, name, version, Promotion(CHALLENGER, reason, previous))
        assert y_test is not None, "the run's test rows are labelled"
        metrics = binary_metrics(y_test, np.asarray(scores["ensemble"], dtype=np.float64))
        champion = {k: float(metrics[k]) for k in COMPARED}
        better, figures = compare({k: float(gate["metrics"][k]) for k in COMPARED}, champion, tolerance)
        alias = CHAMPION if better else CHALLENGER
        outcome = Promotion(alias, f"{figures} of version {previous} on the same rows", previous, champion)
    return _set(client, name, version, outcome)


def champion_ensemble(model_uri: str) -> Any:
    """The ensemble of the bundle inside a logged model, verified against the digest the model
    carries. The model's own code is never run here (loading it as a pyfunc model would import the
    code stored with it into the trainer)."""
    import tempfile
    from pathlib import Path

    from mlflow.artifacts import download_artifacts
    from mlflow.models import Model

    from threat_ensemble.models.ensemble import ThreatEnsemble

    with tempfile.TemporaryDirectory(prefix="threat-ensemble-champion-") as tmp:
        local = Path(download_artifacts(artifact_uri=model_uri, dst_path=tmp)).resolve()
        model = Model.load(str(local))
        relative = model.flavors["python_function"]["artifacts"]["bundle"]["path"]
        bundle = (local / relative).resolve()
        if not bundle.is_relative_to(local):
            raise ValueError(f"{model_uri}: its bundle path {relative!r} leaves the model folder")
        return ThreatEnsemble.load(bundle, expect_digest=model.metadata["bundle_digest"])


def _set(client: Any, name: str, version: str, outcome: Promotion) -> Promotion:
    client.set_registered_model_alias(name, outcome.alias, version)
    return outcome
