"""The steps after the autoencoder, one callback each: the forests and the fusion in ``on_fit_end``,
then (after Lightning's test loop has made the gate: ``evaluation/test_loop.py``) the bundle and
MLflow in ``on_test_end``. Each says what it reads of the engine's ``FitOutcome`` (``needs``) and
what it fills (``makes``), the engine orders them and the test loop by that
(:func:`in_dependency_order`), and no step reads another step's attributes.

Lightning calls ``on_fit_end`` after every fit: one that trained, and one resumed (through
``ckpt_path``) from a checkpoint whose autoencoder had already finished, where Lightning restores
the module, the data module and the callbacks and trains no further epoch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import MLFlowLogger

from threat_ensemble.callbacks.run_state import announcer, mark_run
from threat_ensemble.checkpointing import TREE_FILES, RunState, atomic_write_bytes
from threat_ensemble.config import FusionOptions, TrackingOptions, TrainConfig
from threat_ensemble.console import timed
from threat_ensemble.data.datamodule import LabelledDataModule
from threat_ensemble.data.preprocessing import UnseenCategories
from threat_ensemble.errors import first_line
from threat_ensemble.evaluation.plots import PLOT_FILES, loss_history, write_plots_or_warn
from threat_ensemble.evaluation.scoring import LabelledRows
from threat_ensemble.models.autoencoder import AutoencoderModule
from threat_ensemble.models.bundle import ONNX_FILE, BundleError, bundle_destination, read_regular_file
from threat_ensemble.models.ensemble import ThreatEnsemble
from threat_ensemble.models.forests import (
    CoreShare,
    fit_isolation_forest,
    fit_random_forest,
    forest_from_bytes,
    forest_to_bytes,
)
from threat_ensemble.models.fusion import describe_stacked_fusion
from threat_ensemble.tracking.logger import ResilientMLFlowLogger

CONFIG_FILE = "config.yaml"
BUNDLE_ARTIFACT = "bundle"  # the run's artifact folder for the bundle (a reference to the model's copy)
MODEL_REFERENCE = "model.json"  # in it: where the bundle's files are
BUNDLE_IN_MODEL = "artifacts/bundle"  # where a pyfunc model keeps its "bundle" artifact


def labelled_datamodule(trainer: L.Trainer) -> LabelledDataModule:
    dm = trainer.datamodule
    if not isinstance(dm, LabelledDataModule):
        raise TypeError("threat-ensemble callbacks need a ThreatDataModule or a StreamDataModule")
    return dm


def validation_rows(dm: LabelledDataModule, impute: bool) -> LabelledRows:
    """The validation split's labelled rows, served by the DataModule (the stacked fusion's rows)."""
    return LabelledRows(dm.val_chunks, "validation split", dm.n_val, impute)


def test_rows(dm: LabelledDataModule, impute: bool) -> LabelledRows:
    """The test rows, served by the DataModule (the gate's and the champion comparison's rows)."""
    return LabelledRows(dm.test_chunks, dm.test_source, dm.n_test, impute)


@dataclass
class FitOutcome:
    """What the end-of-fit steps hand on, owned by the engine: each step reads what the steps
    before it left here, never another step's attributes."""

    forests: dict[str, Any] = field(default_factory=dict)  # fitted, by TREE_FILES name
    forest_bytes: dict[str, bytes] = field(default_factory=dict)  # each as stored (skops), for the bundle
    ensemble: ThreatEnsemble | None = None
    scores: dict[str, np.ndarray] | None = None  # on the test rows
    y_test: np.ndarray | None = None  # their labels
    gate: dict[str, Any] | None = None
    bundle_dir: Path | None = None


class EndOfFitStep(Callback):
    """One job after the autoencoder, on rank 0. ``needs``: the fields of the engine's
    :class:`FitOutcome` it reads; ``makes``: those it fills. The engine orders the steps by these
    (:func:`in_dependency_order`), never by their place in a hand-kept list. What a step does when
    the fit ends is :meth:`after_fit`, which Lightning's ``on_fit_end`` calls (and the engine, in
    the main process, after a ``ddp_spawn`` fit whose processes took their results with them)."""

    needs: tuple[str, ...] = ()
    makes: tuple[str, ...] = ()

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            assert isinstance(pl_module, AutoencoderModule)
            self.after_fit(labelled_datamodule(trainer), pl_module, trainer)

    def after_fit(self, dm: LabelledDataModule, module: AutoencoderModule, trainer: L.Trainer) -> None:
        """The step's work when the fit ends (rank 0); none by default."""


class Step(Protocol):
    """What :func:`in_dependency_order` orders: an end-of-fit step, or the test loop's module."""

    needs: tuple[str, ...]
    makes: tuple[str, ...]


def in_dependency_order(steps: Sequence[Step]) -> list[Step]:
    """``steps`` ordered so that each comes after every step that makes what it needs (the standard
    library's topological sort; steps that do not depend on each other keep their given order). A
    need that no step makes, two steps making one field, or a circle: ValueError naming them."""
    from graphlib import CycleError, TopologicalSorter

    fields = {f.name for f in dataclasses.fields(FitOutcome)}
    maker: dict[str, int] = {}
    for i, step in enumerate(steps):
        for name in (*step.needs, *step.makes):
            if name not in fields:
                raise ValueError(f"{type(step).__name__}: {name!r} is not a field of FitOutcome")
        for name in step.makes:
            if name in maker:
                both = f"{type(steps[maker[name]]).__name__} and {type(step).__name__}"
                raise ValueError(f"{name!r} is made by both {both}")
            maker[name] = i
    graph: dict[int, set[int]] = {}
    for i, step in enumerate(steps):
        missing = [name for name in step.needs if name not in maker]
        if missing:
            raise ValueError(f"{type(step).__name__} needs {missing}, which no step makes")
        graph[i] = {maker[name] for name in step.needs}
    sorter = TopologicalSorter(graph)
    try:
        sorter.prepare()
    except CycleError as exc:
        raise ValueError(f"the end-of-fit steps depend on each other in a circle: {exc.args[1]}") from None
    order: list[int] = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready())  # the given order among steps ready together
        order.extend(ready)
        sorter.done(*ready)
    return [steps[i] for i in order]


def _timed_call(fit: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    return fit(), time.perf_counter() - start


def spare_cores(trainer: L.Trainer) -> int:
    """Cores that the training processes on this machine leave idle: on CPU each process computes
    with its torch threads, on an accelerator about one core drives each device."""
    from lightning.pytorch.accelerators import CPUAccelerator

    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    per_process = torch.get_num_threads() if isinstance(trainer.accelerator, CPUAccelerator) else 1
    return cpus - trainer.num_devices * per_process


class ForestCallback(EndOfFitStep):
    """Fits the random forest (train split, calibrated on the validation split) and the isolation
    forest (normal training rows) on rank 0 only (no collectives, so no rank waits on it), ready
    when the autoencoder is done. They need nothing from the autoencoder, so when the training
    processes leave cores idle the forests start on those cores at the start of training and take
    every core once training ends (``CoreShare``; the same trees either way). Each fitted forest is
    saved as a side file beside the checkpoints with its sha256 in the run state, so a resumed run
    reuses it instead of fitting again."""

    makes = ("forests", "forest_bytes")

    def __init__(
        self, seed: int, state: RunState, checkpoint_dir: str | Path, outcome: FitOutcome, quiet: bool = False
    ) -> None:
        self.seed = seed
        self.state = state
        self.checkpoint_dir = Path(checkpoint_dir)
        self.outcome = outcome  # where the fitted forests and their stored bytes go
        self.say = announcer(quiet)
        self._cores: CoreShare | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._pending: dict[str, Future[tuple[Any, float]]] = {}

    def _fitters(self, dm: LabelledDataModule, cores: CoreShare | None = None) -> dict[str, tuple[str, Any]]:
        """Each forest's progress label and the call that fits it."""
        return {
            "random_forest": (
                f"random forest: fitting on {len(dm.y_train)} rows, calibrating on {len(dm.y_val)}",
                lambda: fit_random_forest(dm.x_train, dm.y_train, dm.x_val, dm.y_val, self.seed, cores=cores),
            ),
            "isolation_forest": (
                f"isolation forest: fitting on {len(dm.x_normal_train)} normal rows",
                lambda: fit_isolation_forest(dm.x_normal_train, self.seed, cores=cores),
            ),
        }

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        spare = spare_cores(trainer)
        todo = [name for name in TREE_FILES if self.state.trees.get(name) is None]
        if spare < 1 or not todo:
            return
        self._cores = CoreShare(spare)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="forests")
        for name, (_label, fit) in self._fitters(labelled_datamodule(trainer), self._cores).items():
            if name in todo:
                self._pending[name] = self._executor.submit(_timed_call, fit)
        self.say(f"forests: fitting on {spare} spare core{'s' if spare > 1 else ''} while the autoencoder trains")

    def after_fit(self, dm: LabelledDataModule, module: AutoencoderModule, trainer: L.Trainer) -> None:
        self.fit_or_load(dm)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._stop_background()

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._stop_background()

    def _stop_background(self) -> None:
        """Stop a background fit between two steps (a failed or interrupted run must not wait for it)."""
        if self._cores is not None:
            self._cores.cancel()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
        self._pending.clear()

    def fit_or_load(self, dm: LabelledDataModule) -> None:
        if self._cores is not None:
            self._cores.release()  # the autoencoder is done: every core to the forests
        for name, (label, fit) in self._fitters(dm).items():
            model = self._load_side_file(name)
            pending = self._pending.pop(name, None)
            if model is None:
                model = self._wait_for(name, pending) if pending is not None else timed(label, fit, self.say)
                self._save_side_file(name, model)
            else:
                self.say(f"{name.replace('_', ' ')}: reusing the fitted model from {self.checkpoint_dir}")
            self.outcome.forests[name] = model

    def _wait_for(self, name: str, pending: Future[tuple[Any, float]]) -> Any:
        """The forest fitted in the background, once done; says how long it took and how much of
        that came after training."""
        start = time.perf_counter()
        model, seconds = pending.result()
        waited = time.perf_counter() - start
        self.say(f"{name.replace('_', ' ')}: done in {seconds:.1f}s beside the autoencoder ({waited:.1f}s after it)")
        return model

    def _load_side_file(self, name: str) -> Any:
        """The forest saved beside the checkpoints, when its bytes have the sha256 the run state
        recorded (read once, checked, then parsed: a skops file, never a pickle); else None."""
        expected = self.state.trees.get(name)
        path = self.checkpoint_dir / TREE_FILES[name]
        if expected is None or not path.exists():
            return None
        try:
            data = read_regular_file(path)
        except BundleError:
            return None
        if hashlib.sha256(data).hexdigest() != expected:
            return None
        self.outcome.forest_bytes[name] = data
        return forest_from_bytes(data, str(path))

    def _save_side_file(self, name: str, model: Any) -> None:
        data = forest_to_bytes(model)
        atomic_write_bytes(self.checkpoint_dir / TREE_FILES[name], data)
        self.outcome.forest_bytes[name] = data
        self.state.trees[name] = hashlib.sha256(data).hexdigest()
        self.state.save(self.checkpoint_dir)


def mlflow_logger(trainer: L.Trainer) -> MLFlowLogger | None:
    return trainer.logger if isinstance(trainer.logger, MLFlowLogger) else None


class FusionCallback(EndOfFitStep):
    """The trained ensemble as one object (the best epoch's autoencoder, the forests, the
    DataModule's preprocessing) with its fusion fitted on the validation split (rank 0)."""

    needs, makes = ("forests",), ("ensemble",)

    def __init__(
        self, options: FusionOptions, outcome: FitOutcome, *, impute: bool = False, quiet: bool = False
    ) -> None:
        self.options = options  # the fusion's section of the configuration, nothing else of it
        self.impute = impute  # how the validation rows were read (--impute)
        self.outcome = outcome
        self.say = announcer(quiet)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        assert isinstance(pl_module, AutoencoderModule)
        if not trainer.is_global_zero:  # every rank ends with the best weights; rank 0 in after_fit
            pl_module.restore_best_weights()
        super().on_fit_end(trainer, pl_module)

    def after_fit(self, dm: LabelledDataModule, module: AutoencoderModule, trainer: L.Trainer) -> None:
        module.restore_best_weights()
        self.outcome.ensemble = self.build(dm, module)

    def build(self, dm: LabelledDataModule, module: AutoencoderModule) -> ThreatEnsemble:
        assert dm.preprocessing is not None
        threshold = float(module.threshold)
        if not math.isfinite(threshold):
            raise RuntimeError("the autoencoder finished without a validation epoch; no threshold")
        ensemble = ThreatEnsemble(
            preprocessing=dm.preprocessing,
            autoencoder=module.net,
            threshold=threshold,
            random_forest=self.outcome.forests["random_forest"],
            isolation_forest=self.outcome.forests["isolation_forest"],
            fusion={"kind": "fixed", "weights": self.options.weight_map},
            error_scale=module.error_scale.detach().cpu().numpy(),
        )
        if self.options.fusion == "stack":

            def fit() -> None:
                # categories unseen in training are counted, not warned about: the test rows' are
                scores, y_val = validation_rows(dm, self.impute).score(ensemble, UnseenCategories())
                assert y_val is not None
                ensemble.fit_fusion_on(scores, y_val, self.options.target_fpr)

            timed(
                f"fusion: fitting the stacked fusion on {dm.n_val} validation rows "
                f"(false-positive budget {self.options.target_fpr:g})",
                fit,
                self.say,
            )
            self.say(describe_stacked_fusion(ensemble.fusion))
        return ensemble


class BundleCallback(EndOfFitStep):
    """Writes the bundle (the ensemble, gate.json, the configuration and the plots) atomically to
    --output-dir, or beside it when a failed gate would replace a passing bundle (rank 0), once the
    test loop has made the gate (``on_test_end``); the trained autoencoder (its best validation
    loss) is noted when the fit ends."""

    needs, makes = ("ensemble", "gate", "scores", "y_test", "forest_bytes"), ("bundle_dir",)

    def __init__(
        self, cfg: TrainConfig, outcome: FitOutcome, state: RunState, checkpoint_dir: str | Path, manifest_extra: dict
    ) -> None:
        self.cfg = cfg
        self.outcome = outcome
        self.state = state
        self.checkpoint_dir = Path(checkpoint_dir)
        self.manifest_extra = manifest_extra
        self.say = announcer(cfg.quiet)
        self.module: AutoencoderModule | None = None

    def after_fit(self, dm: LabelledDataModule, module: AutoencoderModule, trainer: L.Trainer) -> None:
        self.module = module

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            assert self.module is not None, "the fit did not end"
            self.write(labelled_datamodule(trainer), self.module, mlflow_logger(trainer))

    def write(self, dm: LabelledDataModule, module: AutoencoderModule, logger: MLFlowLogger | None) -> Path:
        outcome = self.outcome
        ensemble, gate, scores, y_test = outcome.ensemble, outcome.gate, outcome.scores, outcome.y_test
        assert ensemble is not None and gate is not None and scores is not None and y_test is not None
        history = _loss_history(logger)
        destination = bundle_destination(self.cfg.output_dir, bool(gate["passed"]))
        bundle = ensemble.save(
            destination,
            gate=gate,
            threshold_info={
                "percentile": self.cfg.threshold_percentile,
                "n_val": int(len(dm.ae_val)),
                "best_val_loss": float(module.best_val_loss),
            },
            manifest_extra={**self.manifest_extra, "mlflow_run_id": gate["mlflow_run_id"]},
            forest_bytes=self.outcome.forest_bytes,
            extra_files=lambda folder: [
                self._write_config(folder),
                *self._export(folder, ensemble, gate["mlflow_run_id"]),
                *write_plots_or_warn(
                    folder, y_test, scores, scores["ae_error"], ensemble.threshold, history, warn=print
                ),
            ],
        )
        gate["bundle_digest"] = ensemble.digest  # pins this bundle from outside (not in gate.json itself)
        self.outcome.bundle_dir = bundle
        if destination != Path(self.cfg.output_dir):
            print(f"gate failed: the passing bundle in {self.cfg.output_dir} is kept; this run's bundle is in {bundle}")
        self.say(f"bundle written to {bundle} (manifest sha256 {ensemble.digest})")
        self.state.bundle_dir, self.state.bundle_digest = str(bundle), ensemble.digest
        self.state.save(self.checkpoint_dir)
        return bundle

    def _export(self, folder: Path, ensemble: ThreatEnsemble, run_id: str | None) -> list[Path]:
        """--export onnx: the ensemble as one ONNX graph, in the bundle."""
        if self.cfg.export != "onnx":
            return []
        path = folder / ONNX_FILE
        info = ensemble.export_onnx(path, run_id=run_id)
        self.say(f"onnx graph: {ONNX_FILE} ({path.stat().st_size / 1e6:.1f} MB, version {info['version_id']})")
        return [path]

    def _write_config(self, folder: Path) -> Path:
        """The effective configuration, as YAML that ``--config`` accepts back."""
        path = folder / CONFIG_FILE
        path.write_text(self.cfg.to_yaml(), encoding="utf-8")
        return path


class TrackingCallback(EndOfFitStep):
    """Logs the results to the MLflow run (final metrics, the plots, the bundle's digest), logs the
    ensemble as a pyfunc model holding the bundle, with a reference to it under the run's
    ``bundle/``, registers it (--register-model), then marks the run completed in the run state
    (rank 0), after the bundle (``on_test_end``); the training's last losses are noted when the fit
    ends (the test loop starts with metrics of its own). Tracking trouble never hides the run's
    result."""

    needs = ("ensemble", "gate", "bundle_dir")

    def __init__(
        self,
        options: TrackingOptions,
        outcome: FitOutcome,
        state: RunState,
        checkpoint_dir: str | Path,
        tracking_uri: str,
        *,
        impute: bool = False,
        quiet: bool = False,
    ) -> None:
        self.options = options  # the tracking section of the configuration (registry, promotion)
        self.impute = impute  # how the test rows were read, for the champion comparison
        self.outcome = outcome
        self.state = state
        self.checkpoint_dir = Path(checkpoint_dir)
        self.tracking_uri = tracking_uri
        self.say = announcer(quiet)
        self.fit_metrics: dict[str, Any] = {}

    def after_fit(self, dm: LabelledDataModule, module: AutoencoderModule, trainer: L.Trainer) -> None:
        metrics = dict(trainer.callback_metrics)
        if "val_loss" not in metrics and module.last_val_loss is not None:  # no epoch ran in this process
            metrics["val_loss"] = module.last_val_loss
        self.fit_metrics = metrics

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        logger = mlflow_logger(trainer)
        if logger is not None:
            metrics = self.fit_metrics
            dm = labelled_datamodule(trainer)
            log = lambda: self.log_results(logger, metrics, dm)  # noqa: E731
            logger.guard("logging the run's results", log) if isinstance(logger, ResilientMLFlowLogger) else log()
        self.state.completed = True
        self.state.save(self.checkpoint_dir)

    def log_results(self, logger: MLFlowLogger, callback_metrics: dict[str, Any], dm: LabelledDataModule) -> None:
        ensemble, gate, bundle = self.outcome.ensemble, self.outcome.gate, self.outcome.bundle_dir
        assert ensemble is not None and gate is not None and bundle is not None
        final = {"ae_threshold": ensemble.threshold, "gate_passed": float(gate["passed"])}
        for key in ("train_loss", "val_loss"):
            if key in callback_metrics:
                final[f"ae_final_{key}"] = float(callback_metrics[key])
        for member, values in gate["per_model"].items():
            final.update({f"{member}_{k}": v for k, v in values.items()})
        final.update({f"ensemble_{k}": v for k, v in gate["metrics"].items()})
        logger.log_metrics({k: v for k, v in final.items() if math.isfinite(v)})
        for name in PLOT_FILES:
            if (bundle / name).is_file():
                logger.experiment.log_artifact(logger.run_id, str(bundle / name), artifact_path="plots")
        logger.experiment.set_tag(logger.run_id, "bundle_digest", gate["bundle_digest"])
        model_uri = self._log_model(logger, bundle, ensemble)
        self._log_bundle(logger, bundle, model_uri, gate["bundle_digest"])
        if model_uri is not None:
            self._register(logger, model_uri, gate, dm)
        mark_run(logger, "completed")

    def _log_model(self, logger: MLFlowLogger, bundle: Path, ensemble: ThreatEnsemble) -> str | None:
        """The bundle as an MLflow pyfunc model in this run (its URI), or None when that failed."""
        from threat_ensemble.tracking.pyfunc import log_pyfunc_model

        uri = self.tracking_uri or logger.experiment.tracking_uri
        try:
            model_uri = log_pyfunc_model(bundle, logger.run_id, uri, ensemble=ensemble)
        except Exception as exc:  # the bundle is complete and logged whole instead
            print(f"warning: could not log the MLflow pyfunc model: {first_line(exc, limit=300, named=True)}")
            if isinstance(logger, ResilientMLFlowLogger) and logger.failure is None:
                logger.failure = f"logging the pyfunc model: {type(exc).__name__}"
            return None
        self.say(f"mlflow model: {model_uri}")
        return model_uri

    def _log_bundle(self, logger: MLFlowLogger, bundle: Path, model_uri: str | None, digest: str) -> None:
        """The bundle's files are stored once per run, in its pyfunc model (the copy that the registry,
        serving and --promote use): the run's ``bundle/`` holds a reference to it, ``model.json`` (the
        bundle's digest, the model, and where the bundle lies in it). Logging the whole bundle there
        too had doubled the store's growth. Without a model (its logging failed), ``bundle/`` holds
        the bundle itself."""
        client, run_id = logger.experiment, logger.run_id
        if model_uri is None:
            client.log_artifacts(run_id, str(bundle), artifact_path=BUNDLE_ARTIFACT)
            return
        stored_at = client.get_logged_model(model_uri.rsplit("/", 1)[-1]).artifact_location.rstrip("/")
        bundle_uri = f"{stored_at}/{BUNDLE_IN_MODEL}"
        reference = {
            "bundle_digest": digest,
            "model_uri": model_uri,
            "bundle_uri": bundle_uri,
            "note": "the bundle's files are logged once, in this run's pyfunc model; download them with "
            f"mlflow artifacts download -u {bundle_uri}",
        }
        client.log_dict(run_id, reference, f"{BUNDLE_ARTIFACT}/{MODEL_REFERENCE}")

    def _register(self, logger: MLFlowLogger, model_uri: str, gate: dict[str, Any], dm: LabelledDataModule) -> None:
        """Registered under --register-model when the gate passed (or --register-anyway), then with
        --promote given the champion or the challenger alias (the comparison logged on the run);
        with --promote-force the champion alias when the gate passed, not compared."""
        from threat_ensemble.tracking.pyfunc import register_model

        name = self.options.register_model
        if not name:
            return
        if not (gate["passed"] or self.options.register_anyway):
            print(f"model not registered: the gate failed (add --register-anyway to register {name!r} anyway)")
            return
        uri = self.tracking_uri or logger.experiment.tracking_uri
        version = register_model(model_uri, name, gate, uri)
        print(f"registered model {name!r} version {version} ({model_uri})")
        if self.options.promote or self.options.promote_force:
            from threat_ensemble.tracking.champion import promote

            opts = self.options
            rows = test_rows(dm, self.impute)
            outcome = promote(name, version, gate, rows, opts.promote_tolerance, uri, opts.promote_force)
            print(outcome.line(name, version))
            if outcome.champion_metrics:
                logger.log_metrics({f"champion_{k}": v for k, v in outcome.champion_metrics.items()})
            logger.experiment.set_tag(logger.run_id, "promotion", f"{outcome.alias}: {outcome.reason}"[:5000])


def _loss_history(logger: MLFlowLogger | None) -> dict[str, list[float]] | None:
    """Per-epoch losses from the MLflow run (complete across a resume); None without a logger."""
    if logger is None:
        return None
    try:
        return loss_history(logger.experiment, logger.run_id)
    except Exception as exc:
        print(f"warning: could not read the loss history from MLflow: {exc}")
        return None
