"""Each end-of-fit step on small fitted members: the steps hand on their results through FitOutcome
only (the forests, the ensemble and its fusion, the gate, the bundle). The gate is made by
Lightning's test loop (a real ``Trainer.test``), the other steps are called directly."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import few_trees, fit_autoencoder, logged_bundle
from threat_ensemble.callbacks.end_of_fit import BundleCallback, FitOutcome, FusionCallback
from threat_ensemble.checkpointing import RunState
from threat_ensemble.config import TrainConfig
from threat_ensemble.evaluation.test_loop import EnsembleEvaluation
from threat_ensemble.models.ensemble import ThreatEnsemble
from threat_ensemble.models.forests import fit_isolation_forest, fit_random_forest, forest_to_bytes


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> tuple:
    from synthetic import make_default_dataset

    frame = make_default_dataset(3000, seed=7).drop(columns=["family"])
    module, dm, _ = fit_autoencoder(frame, tmp_path_factory.mktemp("ae"), max_epochs=3)
    module.restore_best_weights()
    with few_trees():  # the steps' subject is what they hand on, not the forests' size
        forests = {
            "random_forest": fit_random_forest(dm.x_train, dm.y_train, dm.x_val, dm.y_val, seed=0, n_jobs=1),
            "isolation_forest": fit_isolation_forest(dm.x_normal_train, seed=0, n_jobs=1),
        }
    _FOREST_BYTES[id(forests)] = {k: forest_to_bytes(v) for k, v in forests.items()}  # stored once, not per step
    return module, dm, forests


_FOREST_BYTES: dict[int, dict[str, bytes]] = {}


def _outcome(forests: dict) -> FitOutcome:
    return FitOutcome(forests=dict(forests), forest_bytes=dict(_FOREST_BYTES[id(forests)]))


def _without_plots(monkeypatch: pytest.MonkeyPatch) -> None:
    """The bundle step writes no plots (about 1.4 s a bundle): for tests whose subject is where a
    bundle goes, not what it holds."""
    from threat_ensemble.callbacks import end_of_fit

    monkeypatch.setattr(end_of_fit, "write_plots_or_warn", lambda *args, **kwargs: [])


def _test_loop(evaluation: EnsembleEvaluation, dm: object, tmp_path: Path) -> None:
    """Lightning's test loop, as the engine runs it after the fit (no logger here)."""
    import lightning as L

    quiet = {"logger": False, "enable_progress_bar": False, "enable_model_summary": False}
    trainer = L.Trainer(accelerator="cpu", devices=1, enable_checkpointing=False, default_root_dir=tmp_path, **quiet)
    trainer.test(evaluation, datamodule=dm, verbose=False)


def _steps(fitted: tuple, tmp_path: Path, **options: object) -> tuple[FitOutcome, TrainConfig, RunState]:
    module, dm, forests = fitted
    cfg = TrainConfig(output_dir=str(tmp_path / "bundle"), checkpoint_dir=str(tmp_path / "ckpt"), quiet=True, **options)
    outcome = _outcome(forests)
    outcome.ensemble = FusionCallback(cfg.fusion_options, outcome, quiet=True).build(dm, module)
    _test_loop(EnsembleEvaluation(cfg.gate_options, outcome, quiet=True), dm, tmp_path)
    return outcome, cfg, RunState("fp", {})


def test_fusion_step_builds_one_ensemble_with_a_fitted_stack(fitted: tuple, tmp_path: Path) -> None:
    module, dm, _ = fitted
    outcome, _, _ = _steps(fitted, tmp_path)
    ensemble = outcome.ensemble
    assert ensemble is not None and ensemble.fusion["kind"] == "stack"
    assert ensemble.threshold == pytest.approx(float(module.threshold))
    fixed, _, _ = _steps(fitted, tmp_path / "fixed", fusion="fixed")
    assert fixed.ensemble is not None and fixed.ensemble.fusion["kind"] == "fixed"


def test_validation_step_gates_the_test_rows_it_scored(fitted: tuple, tmp_path: Path) -> None:
    _, dm, _ = fitted
    outcome, _, _ = _steps(fitted, tmp_path)
    gate, scores = outcome.gate, outcome.scores
    assert gate is not None and scores is not None
    assert gate["n_test"] == len(dm.y_test) == len(scores["ensemble"])
    assert set(gate["per_model"]) == {"ae", "rf", "if"} and gate["mlflow_run_id"] is None  # no MLflow run here
    flagged = scores["ensemble"] >= gate["cutoff"]
    recall = float((flagged & (dm.y_test == 1)).sum() / (dm.y_test == 1).sum())
    assert gate["metrics"]["recall"] == pytest.approx(recall)
    assert gate["passed"] == (gate["metrics"]["f1"] >= 0.80 and gate["metrics"]["pr_auc"] >= 0.85)


def test_the_gate_is_made_in_lightnings_test_loop_from_its_metric_state(
    fitted: tuple, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 33, 4: Lightning's test loop runs the gate. The DataModule's test_dataloader serves the
    test rows a labelled raw chunk a step (here three chunks, as a streamed table's row groups
    come), each test_step scores one through score_rows into the metric state, and at the epoch's
    end gate_report gets exactly that state: every chunk's scores and labels, in order."""
    from threat_ensemble.evaluation import test_loop
    from threat_ensemble.evaluation.metrics import gate_report
    from threat_ensemble.evaluation.scoring import score_rows

    module, dm, forests = fitted
    cfg = TrainConfig(quiet=True)
    outcome = _outcome(forests)
    outcome.ensemble = FusionCallback(cfg.fusion_options, outcome, quiet=True).build(dm, module)
    frame, y = dm.test_frame, dm.y_test
    cuts = [0, len(y) // 3, 2 * len(y) // 3, len(y)]

    def three_chunks() -> object:
        return ((frame.iloc[a:b].reset_index(drop=True), y[a:b]) for a, b in zip(cuts, cuts[1:], strict=False))

    monkeypatch.setattr(dm, "test_chunks", three_chunks)
    hooks: list[str] = []
    gated: list[tuple] = []

    class Recorded(EnsembleEvaluation):
        def on_test_epoch_start(self) -> None:
            hooks.append("epoch start")
            super().on_test_epoch_start()

        def test_step(self, batch: tuple, batch_idx: int) -> None:
            hooks.append(f"step {batch_idx}: {len(batch[1])} rows")
            super().test_step(batch, batch_idx)

        def on_test_epoch_end(self) -> None:
            hooks.append("epoch end")
            super().on_test_epoch_end()

    def spy(y_true: np.ndarray, scores: dict, source: str, **bounds: object) -> dict:
        gated.append((y_true, scores))
        return gate_report(y_true, scores, source, **bounds)  # type: ignore[arg-type]

    monkeypatch.setattr(test_loop, "gate_report", spy)
    evaluation = Recorded(cfg.gate_options, outcome, quiet=True)
    _test_loop(evaluation, dm, tmp_path)
    steps = [f"step {i}: {b - a} rows" for i, (a, b) in enumerate(zip(cuts, cuts[1:], strict=False))]
    assert hooks == ["epoch start", *steps, "epoch end"]
    assert len(gated) == 1
    y_gated, scores_gated = gated[0]
    state_scores, state_y = evaluation.rows.compute()
    expected, y_expected = score_rows(outcome.ensemble, three_chunks(), "test split")
    assert y_expected is not None and len(y_expected) == len(y)
    for got in (y_gated, state_y, outcome.y_test):
        assert got is not None and got.dtype == np.int64
        np.testing.assert_array_equal(got, y_expected)
    assert outcome.scores is not None and set(scores_gated) == set(expected)
    for key, values in expected.items():
        for got in (scores_gated[key], state_scores[key], outcome.scores[key]):
            assert got.dtype == values.dtype, key
            np.testing.assert_array_equal(got, values, err_msg=key)
    assert outcome.gate is not None
    report = gate_report(y_expected, expected, "test split", **dataclasses.asdict(cfg.gate_options))
    assert {k: outcome.gate[k] for k in report} == report


def test_the_gate_holds_the_weights_of_the_fusion_the_run_used(fitted: tuple, tmp_path: Path) -> None:
    """A stacked run's gate.json held the fixed fusion's --weights, which it never used."""
    stacked, cfg, _ = _steps(fitted, tmp_path, weights="ae=1,rf=0,if=0")
    assert stacked.gate is not None and stacked.ensemble is not None
    fusion = stacked.ensemble.fusion
    assert stacked.gate["fusion"] == "stack" and stacked.gate["target_fpr"] == cfg.target_fpr
    assert stacked.gate["weights"] == dict(zip(fusion["inputs"], fusion["coef"], strict=True))
    assert list(stacked.gate["weights"]) == ["rf", "rf_share", "ae", "if"]
    fixed, cfg, _ = _steps(fitted, tmp_path / "fixed", fusion="fixed", weights="ae=1,rf=1,if=2")
    assert fixed.gate is not None
    assert fixed.gate["fusion"] == "fixed" and "target_fpr" not in fixed.gate
    assert fixed.gate["weights"] == cfg.weight_map == {"ae": 0.25, "rf": 0.25, "if": 0.5}


def test_bundle_step_writes_what_the_earlier_steps_made(fitted: tuple, tmp_path: Path) -> None:
    module, dm, _ = fitted
    outcome, cfg, state = _steps(fitted, tmp_path)
    bundle = BundleCallback(cfg, outcome, state, tmp_path / "ckpt", {"data_fingerprint": "fp"}).write(dm, module, None)
    assert bundle == outcome.bundle_dir == Path(cfg.output_dir)
    loaded = ThreatEnsemble.load(bundle, expect_digest=state.bundle_digest)
    assert outcome.gate is not None and outcome.gate["bundle_digest"] == state.bundle_digest
    again = loaded.score(dm.test_frame)
    assert outcome.scores is not None
    for key in ("ae", "rf", "if", "ensemble"):
        np.testing.assert_array_equal(again[key], outcome.scores[key], err_msg=key)
    assert (bundle / "config.yaml").is_file() and (bundle / "gate.json").is_file()


def test_a_failed_gate_does_not_replace_a_passing_bundle(
    fitted: tuple, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _without_plots(monkeypatch)
    module, dm, _ = fitted
    outcome, cfg, state = _steps(fitted, tmp_path)
    assert outcome.gate is not None and outcome.gate["passed"], "the small run must pass for this test"
    good = BundleCallback(cfg, outcome, state, tmp_path / "ckpt", {}).write(dm, module, None)
    failing, cfg2, state2 = _steps(fitted, tmp_path, min_pr_auc=1.0, min_f1=1.0)
    assert failing.gate is not None and not failing.gate["passed"]
    cfg2.output_dir = cfg.output_dir
    rejected = BundleCallback(cfg2, failing, state2, tmp_path / "ckpt", {}).write(dm, module, None)
    assert rejected != good and rejected.exists()
    assert pd.read_json(good / "gate.json", typ="series")["passed"]


def test_a_failed_gate_keeps_a_passing_bundle_that_holds_a_users_file(
    fitted: tuple, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The folder of a passing bundle also holds the user's notes: still a passing bundle, so the
    failing run's bundle goes beside it, and the notes stay."""
    from threat_ensemble.models.bundle import read_bundle

    _without_plots(monkeypatch)
    module, dm, _ = fitted
    outcome, cfg, state = _steps(fitted, tmp_path)
    assert outcome.gate is not None and outcome.gate["passed"], "the small run must pass for this test"
    good = BundleCallback(cfg, outcome, state, tmp_path / "ckpt", {}).write(dm, module, None)
    digest = state.bundle_digest
    (good / "notes.txt").write_text("mine")
    failing, cfg2, state2 = _steps(fitted, tmp_path, min_pr_auc=1.0, min_f1=1.0)
    cfg2.output_dir = cfg.output_dir
    rejected = BundleCallback(cfg2, failing, state2, tmp_path / "ckpt", {}).write(dm, module, None)
    assert rejected == Path(f"{cfg.output_dir}.rejected") and read_bundle(rejected).json("gate.json")["passed"] is False
    assert (good / "notes.txt").read_text() == "mine"
    assert read_bundle(good, expect_digest=digest, ignore_unlisted=True).json("gate.json")["passed"] is True


# ----------------------------------------------------------------------------- resume decisions
def _run_state_callback(tmp_path: Path):  # noqa: ANN202
    from threat_ensemble.callbacks.run_state import RunStateCallback

    return RunStateCallback(RunState("fp", {}), tmp_path, params=None, quiet=True)


@pytest.mark.parametrize(
    ("epoch", "max_epochs", "stopped", "finished"),
    [(3, 4, False, True), (1, 4, False, False), (1, 4, True, True)],
    ids=["last epoch", "mid-run", "stopped early"],
)
def test_each_checkpoint_records_whether_the_autoencoder_is_finished(
    tmp_path: Path, epoch: int, max_epochs: int, stopped: bool, finished: bool
) -> None:
    from types import SimpleNamespace

    callback = _run_state_callback(tmp_path)
    callback._trainer = SimpleNamespace(should_stop=stopped, current_epoch=epoch, max_epochs=max_epochs)
    assert callback.state_dict()["ae_finished"] is finished


@pytest.mark.parametrize("finished", [True, False])
def test_a_resumed_finished_autoencoder_trains_no_further_epoch(tmp_path: Path, finished: bool) -> None:
    """Lightning runs no epoch at --max-epochs by itself; an early-stopped one is told to stop."""
    from types import SimpleNamespace

    import torch

    callback = _run_state_callback(tmp_path)
    callback.load_state_dict({"torch_rng": torch.get_rng_state(), "ae_finished": finished})
    trainer = SimpleNamespace(should_stop=False)
    callback.on_train_start(trainer, None)
    assert trainer.should_stop is finished


@pytest.mark.usefixtures("tracking_uri")  # the store at tmp_path / "mlflow.db", made once
def test_a_run_stores_each_bundle_file_once_and_its_bundle_folder_refers_to_the_model(
    fitted: tuple, tmp_path: Path
) -> None:
    """The bundle was logged twice per run (under the run's bundle/ and inside its pyfunc model):
    every file of it is now stored once in the run's artifacts, the plots a second time under
    plots/ for the MLflow UI."""
    import json

    import mlflow
    from lightning.pytorch.loggers import MLFlowLogger

    from threat_ensemble.callbacks.end_of_fit import TrackingCallback
    from threat_ensemble.evaluation.plots import PLOT_FILES

    module, dm, _ = fitted
    outcome, cfg, state = _steps(fitted, tmp_path)
    bundle = BundleCallback(cfg, outcome, state, tmp_path / "ckpt", {"data_fingerprint": "fp"}).write(dm, module, None)
    uri, store = f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "mlartifacts"
    logger = MLFlowLogger(experiment_name="once", tracking_uri=uri, artifact_location=store.as_uri())
    TrackingCallback(cfg.tracking_options, outcome, state, tmp_path / "ckpt", uri).log_results(logger, {}, dm)
    stored = [p for p in store.rglob("*") if p.is_file()]
    files = sorted(bundle.iterdir())
    assert len(files) >= 8 and any(f.name in PLOT_FILES for f in files)
    for f in files:
        copies = [p for p in stored if p.name == f.name and p.read_bytes() == f.read_bytes()]
        assert len(copies) == (2 if f.name in PLOT_FILES else 1), (f.name, copies)
    client = mlflow.MlflowClient(uri)
    assert {a.path for a in client.list_artifacts(logger.run_id, "bundle")} == {"bundle/model.json"}
    plots = {f"plots/{f.name}" for f in files if f.name in PLOT_FILES}
    assert {a.path for a in client.list_artifacts(logger.run_id, "plots")} == plots
    local = logged_bundle(uri, logger.run_id, tmp_path / "fetched")
    assert sorted(p.name for p in local.iterdir()) == [f.name for f in files]
    ThreatEnsemble.load(local, expect_digest=state.bundle_digest)
    reference = json.loads(
        Path(client.download_artifacts(logger.run_id, "bundle/model.json", str(tmp_path / "ref"))).read_text()
    )
    assert reference["bundle_digest"] == state.bundle_digest and reference["model_uri"].startswith("models:/")


@pytest.mark.usefixtures("tracking_uri")  # the store at tmp_path / "mlflow.db", made once
def test_a_run_whose_model_cannot_be_logged_keeps_the_whole_bundle_under_bundle(
    fitted: tuple, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import mlflow
    from lightning.pytorch.loggers import MLFlowLogger

    from threat_ensemble.callbacks.end_of_fit import TrackingCallback
    from threat_ensemble.tracking import pyfunc

    def refuse(*args: object, **kwargs: object) -> str:
        raise RuntimeError("no model today")

    monkeypatch.setattr(pyfunc, "log_pyfunc_model", refuse)
    _without_plots(monkeypatch)
    module, dm, _ = fitted
    outcome, cfg, state = _steps(fitted, tmp_path)
    bundle = BundleCallback(cfg, outcome, state, tmp_path / "ckpt", {"data_fingerprint": "fp"}).write(dm, module, None)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    logger = MLFlowLogger(experiment_name="fallback", tracking_uri=uri, artifact_location=(tmp_path / "a").as_uri())
    TrackingCallback(cfg.tracking_options, outcome, state, tmp_path / "ckpt", uri).log_results(logger, {}, dm)
    assert "could not log the MLflow pyfunc model: RuntimeError: no model today" in capsys.readouterr().out
    logged = {a.path for a in mlflow.MlflowClient(uri).list_artifacts(logger.run_id, "bundle")}
    assert logged == {f"bundle/{f.name}" for f in bundle.iterdir()}


@pytest.mark.usefixtures("tracking_uri")  # the store at tmp_path / "mlflow.db", made once
def test_fusion_gate_promotion_score_py_and_the_model_all_score_through_score_rows(
    fitted: tuple, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One scoring function (issue 33): the stacked fusion's fit, the gate, the champion comparison of
    --promote, score.py and the MLflow model each score rows by ``evaluation.scoring.score_rows``, so a
    member added to ``ThreatEnsemble.score`` is scored the same way everywhere."""
    import mlflow

    from threat_ensemble.cli.score import score_file
    from threat_ensemble.evaluation import scoring
    from threat_ensemble.tracking import champion
    from threat_ensemble.tracking.pyfunc import predict_frame

    module, dm, _ = fitted
    real, calls = scoring.score_rows, []

    def spy(ensemble: object, chunks: object, source: str, **options: object) -> object:
        calls.append(source)
        return real(ensemble, chunks, source, **options)  # type: ignore[arg-type]

    monkeypatch.setattr(scoring, "score_rows", spy)
    _without_plots(monkeypatch)
    outcome, cfg, state = _steps(fitted, tmp_path)
    assert calls == ["validation split", "test split"]  # the fusion's fit, then the gate
    bundle = BundleCallback(cfg, outcome, state, tmp_path / "ckpt", {"data_fingerprint": "fp"}).write(dm, module, None)

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri)
    client.create_registered_model("detector")
    for _ in (1, 2):
        client.create_model_version("detector", source=str(bundle))
    client.set_registered_model_alias("detector", "champion", "1")
    monkeypatch.setattr(champion, "champion_ensemble", lambda uri: ThreatEnsemble.load(bundle))
    assert outcome.gate is not None
    rows = scoring.LabelledRows(dm.test_chunks, dm.test_source, dm.n_test)
    promoted = champion.promote("detector", "2", outcome.gate, rows, 0.0, uri)
    assert calls[2:] == ["test split"]
    assert promoted.alias == "champion" and promoted.champion_metrics is not None  # the same model: not worse
    assert promoted.champion_metrics["f1"] == pytest.approx(outcome.gate["metrics"]["f1"], rel=1e-12)

    table = dm.test_frame.assign(label=dm.y_test)
    table.to_csv(tmp_path / "week.csv", index=False)
    scored = score_file(bundle=bundle, data=tmp_path / "week.csv", output=tmp_path / "scores.csv", normal_label="0")
    assert calls[3:] == [str(tmp_path / "week.csv")] and scored.metrics is not None
    assert scored.metrics["ensemble"]["f1"] == pytest.approx(outcome.gate["metrics"]["f1"], rel=1e-12)
    served = predict_frame(ThreatEnsemble.load(bundle), dm.test_frame)
    assert calls[4:] == ["model input"]
    assert outcome.scores is not None
    np.testing.assert_array_equal(served["ensemble"].to_numpy(), outcome.scores["ensemble"])


def test_the_steps_run_in_the_order_their_needs_give_whatever_order_they_are_listed_in(tmp_path: Path) -> None:
    """No step depends on its place in a hand-kept list (issue 33): each says what it needs of the
    FitOutcome and what it makes, and the engine orders them by that."""
    import itertools

    from threat_ensemble.callbacks.end_of_fit import ForestCallback, TrackingCallback, in_dependency_order

    cfg, outcome, state = TrainConfig(quiet=True), FitOutcome(), RunState("fp", {})
    steps = [
        ForestCallback(0, state, tmp_path, outcome, quiet=True),
        FusionCallback(cfg.fusion_options, outcome),
        EnsembleEvaluation(cfg.gate_options, outcome),
        BundleCallback(cfg, outcome, state, tmp_path, {}),
        TrackingCallback(cfg.tracking_options, outcome, state, tmp_path, "sqlite:///x.db"),
    ]
    expected = [type(s).__name__ for s in steps]
    for listed in itertools.permutations(steps):
        assert [type(s).__name__ for s in in_dependency_order(list(listed))] == expected
    with pytest.raises(ValueError, match=r"BundleCallback needs \['ensemble', 'gate', 'scores', 'y_test'\], which no"):
        in_dependency_order([steps[0], steps[3]])

    class Twice(FusionCallback):
        makes = ("ensemble",)

    with pytest.raises(ValueError, match="'ensemble' is made by both FusionCallback and Twice"):
        in_dependency_order([*steps, Twice(cfg.fusion_options, outcome)])


@pytest.mark.parametrize("quiet", [False, True])
def test_every_step_can_be_pickled_as_ddp_spawn_pickles_it(tmp_path: Path, quiet: bool) -> None:
    """``--strategy ddp_spawn --quiet`` crashed with a traceback: ``ddp_spawn`` pickles the trainer's
    callbacks into the processes it starts, and ``--quiet``'s announcer was a lambda."""
    import pickle

    from threat_ensemble.callbacks.end_of_fit import ForestCallback, TrackingCallback
    from threat_ensemble.callbacks.run_state import RunStateCallback

    cfg, outcome, state = TrainConfig(quiet=quiet), FitOutcome(), RunState("fp", {})
    steps = [
        RunStateCallback(state, tmp_path, params=None, quiet=quiet),
        ForestCallback(0, state, tmp_path, outcome, quiet=quiet),
        FusionCallback(cfg.fusion_options, outcome, quiet=quiet),
        EnsembleEvaluation(cfg.gate_options, outcome, quiet=quiet),
        BundleCallback(cfg, outcome, state, tmp_path, {}),
        TrackingCallback(cfg.tracking_options, outcome, state, tmp_path, "sqlite:///x.db", quiet=quiet),
    ]
    for step in steps:
        again = pickle.loads(pickle.dumps(step))
        assert type(again) is type(step)
        if hasattr(step, "say"):  # the test loop's step announces through its quiet flag
            assert again.say.__name__ == step.say.__name__ == ("_say_nothing" if quiet else "rank_zero_info")
