"""--register-model NAME --promote: the champion alias moves only to a version whose gate passed and
that is no worse than the champion on the same test rows; otherwise the version is the challenger."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from conftest import train_cmd
from in_process import run_train
from threat_ensemble.tracking.champion import compare

SMALL = ["--default-rows", "3000", "--max-epochs", "4", "--quiet", "--register-model", "detector", "--promote"]


def test_compare_allows_the_tolerance_on_each_metric_and_no_more() -> None:
    champion = {"pr_auc": 0.95, "f1": 0.90}
    assert compare({"pr_auc": 0.95, "f1": 0.90}, champion, 0.005)[0]
    assert compare({"pr_auc": 0.946, "f1": 0.91}, champion, 0.005)[0]
    ok, text = compare({"pr_auc": 0.96, "f1": 0.89}, champion, 0.005)
    assert not ok and text.startswith("worse on f1:") and "f1 0.8900 vs 0.9000" in text


@pytest.mark.slow
def test_only_a_version_no_worse_than_the_champion_takes_its_alias(tmp_path: Path) -> None:
    """Against a real MLflow tracking server (its own process, HTTP), as an operator runs it."""
    from test_tracking_server import running_server

    with running_server(tmp_path) as server:
        _promotions(server["url"], tmp_path)


def _promotions(uri: str, tmp_path: Path) -> None:
    import mlflow

    def train(name: str, *extra: str) -> subprocess.CompletedProcess:
        args = [
            *SMALL,
            "--tracking-uri",
            uri,
            "--output-dir",
            str(tmp_path / name),
            "--checkpoint-dir",
            str(tmp_path / f"{name}-ckpt"),
        ]
        return run_train(tmp_path, *args, *extra)

    client = mlflow.MlflowClient(tracking_uri=uri)

    def alias(name: str) -> str:
        return str(client.get_model_version_by_alias("detector", name).version)

    kept = os.environ.get("MLFLOW_TRACKING_URI")
    first = train("first")
    assert first.returncode == 0, first.stderr[-3000:]
    # a run in this process leaves MLflow's tracking URI as it was (the server is gone after this test)
    assert os.environ.get("MLFLOW_TRACKING_URI") == kept and mlflow.get_tracking_uri() != uri
    assert "promotion: 'detector' version 1 is the champion (the first version whose gate passed)" in first.stdout
    # the autoencoder alone with the gate's bounds lowered: it passes, but is far worse than the champion
    weak = train("weak", "--fusion", "fixed", "--weights", "ae=1,rf=0,if=0", "--min-f1", "0", "--min-pr-auc", "0")
    assert weak.returncode == 0, weak.stderr[-3000:]
    assert "promotion: 'detector' version 2 is the challenger (worse on" in weak.stdout
    assert (alias("champion"), alias("challenger")) == ("1", "2")
    run = client.get_run(client.get_model_version("detector", "2").run_id)
    assert run.data.tags["promotion"].startswith("challenger: worse on")
    assert run.data.metrics["champion_f1"] > run.data.metrics["ensemble_f1"]
    first_gate = json.loads((tmp_path / "first" / "gate.json").read_text())["metrics"]
    for key in ("f1", "pr_auc"):  # the champion on the same test rows: exactly its own gate figures
        assert run.data.metrics[f"champion_{key}"] == pytest.approx(first_gate[key], rel=1e-12)
    # the first run's settings again: the same model, so not worse
    again = train("again")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "version 3 is the champion (not worse: pr_auc" in again.stdout
    assert alias("champion") == "3"
    # a failed gate, registered anyway, never takes the champion's alias
    failed = train("failed", "--min-f1", "1.0", "--register-anyway")
    assert failed.returncode == 3, failed.stderr[-3000:]
    assert "version 4 is the challenger (its gate failed; the champion is untouched)" in failed.stdout
    assert (alias("champion"), alias("challenger")) == ("3", "4")


def test_promote_needs_a_registered_model_name() -> None:
    done = subprocess.run(train_cmd("--promote"), capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: --promote needs --register-model NAME (the registered model to promote in)"
    ]


def test_a_champion_whose_bundle_is_gone_is_said_and_promote_force_is_the_way_out(
    tmp_path: Path, tracking_uri: str
) -> None:
    """With the champion's artifacts deleted no version could ever be promoted, and the line only said
    'could not score these rows (MlflowException)'. It says so and names --promote-force, which
    promotes a version whose gate passed without the comparison (never one whose gate failed)."""
    import shutil

    import mlflow

    from threat_ensemble.evaluation.scoring import LabelledRows
    from threat_ensemble.tracking.champion import promote

    uri = tracking_uri
    client = mlflow.MlflowClient(tracking_uri=uri)
    client.create_registered_model("detector")
    for n in (1, 2, 3, 4):
        (tmp_path / f"model-{n}").mkdir()
        client.create_model_version("detector", source=str(tmp_path / f"model-{n}"))
    client.set_registered_model_alias("detector", "champion", "1")
    shutil.rmtree(tmp_path / "model-1")  # the champion's artifacts deleted

    def nothing_to_score() -> list:
        raise AssertionError("nothing to score with")

    never_scored = LabelledRows(nothing_to_score, "test rows")

    passed = {"passed": True, "metrics": {"pr_auc": 0.99, "f1": 0.99}}
    stuck = promote("detector", "2", passed, never_scored, 0.005, uri)
    assert stuck.alias == "challenger"
    assert stuck.line("detector", "2").startswith(
        "promotion: 'detector' version 2 is the challenger (the champion, version 1, could not be fetched or could "
        "not score these rows (MlflowException: "
    )
    assert stuck.reason.endswith(
        "not compared, and while it stands no version can be promoted: add --promote-force to make a version whose "
        "gate passed the champion without the comparison"
    )
    failed = promote("detector", "3", {**passed, "passed": False}, never_scored, 0.005, uri, force=True)
    assert failed.alias == "challenger"
    forced = promote("detector", "4", passed, never_scored, 0.005, uri, force=True)
    assert forced.line("detector", "4") == (
        "promotion: 'detector' version 4 is the champion "
        "(--promote-force: its gate passed; not compared with version 1)"
    )
    assert str(client.get_model_version_by_alias("detector", "champion").version) == "4"


def test_promote_force_needs_a_registered_model_name() -> None:
    done = subprocess.run(train_cmd("--promote-force"), capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: --promote-force needs --register-model NAME (the registered model to promote in)"
    ]
