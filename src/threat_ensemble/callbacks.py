"""End-of-training callbacks: the tree stage, then ensemble validation, the gate and the bundle."""

from __future__ import annotations

import math
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import MLFlowLogger
from lightning.pytorch.utilities import rank_zero_info

from threat_ensemble.artifacts import write_bundle
from threat_ensemble.config import TrainConfig
from threat_ensemble.data import ThreatDataModule
from threat_ensemble.ensemble import Ensemble, fit_isolation_forest, fit_random_forest, timed
from threat_ensemble.model import HIDDEN, AutoencoderModule
from threat_ensemble.scoring import binary_metrics, evaluate_gate

MEMBERS = ("ae", "rf", "if")


def _datamodule(trainer: L.Trainer) -> ThreatDataModule:
    dm = trainer.datamodule
    if not isinstance(dm, ThreatDataModule):
        raise TypeError("threat-ensemble callbacks need a ThreatDataModule")
    return dm


def _say(quiet: bool) -> Any:
    return (lambda _msg: None) if quiet else rank_zero_info


class ForestCallback(Callback):
    """Fits the random forest (train split, calibrated on the validation split) and the isolation
    forest (normal training rows) once the autoencoder is done. Rank 0 only: no collectives, so
    other ranks never wait on it."""

    def __init__(self, seed: int, quiet: bool = False, n_jobs: int = -1) -> None:
        self.seed = seed
        self.n_jobs = n_jobs
        self.say = _say(quiet)
        self.random_forest: Any = None
        self.isolation_forest: Any = None

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        dm = _datamodule(trainer)
        self.random_forest = timed(
            f"random forest: fitting on {len(dm.y_train)} rows, calibrating on {len(dm.y_val)}",
            lambda: fit_random_forest(dm.x_train, dm.y_train, dm.x_val, dm.y_val, self.seed, self.n_jobs),
            self.say,
        )
        self.isolation_forest = timed(
            f"isolation forest: fitting on {len(dm.x_normal_train)} normal rows",
            lambda: fit_isolation_forest(dm.x_normal_train, self.seed, self.n_jobs),
            self.say,
        )


class EnsembleValidationCallback(Callback):
    """Restores the autoencoder's best weights, fuses the three members' scores on the test set,
    computes per-model and ensemble metrics, evaluates the gate, writes the bundle and logs it all
    to MLflow (rank 0)."""

    def __init__(self, cfg: TrainConfig, forests: ForestCallback, manifest_extra: dict[str, Any]) -> None:
        self.cfg = cfg
        self.forests = forests
        self.manifest_extra = manifest_extra
        self.say = _say(cfg.quiet)
        self.gate: dict[str, Any] | None = None

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        assert isinstance(pl_module, AutoencoderModule)
        pl_module.restore_best_weights()
        if not trainer.is_global_zero:
            return
        dm = _datamodule(trainer)
        assert dm.preprocessing is not None
        threshold = float(pl_module.threshold)
        if not math.isfinite(threshold):
            raise RuntimeError("the autoencoder finished without a validation epoch; no threshold")
        ensemble = Ensemble(
            preprocessing=dm.preprocessing,
            autoencoder=pl_module.net,
            threshold=threshold,
            random_forest=self.forests.random_forest,
            isolation_forest=self.forests.isolation_forest,
            weights=self.cfg.weight_map,
        )
        scores = timed(
            f"ensemble: scoring {len(dm.y_test)} rows of the {dm.test_source}",
            lambda: ensemble.score(dm.x_test),
            self.say,
        )
        per_model = {k: binary_metrics(dm.y_test, scores[k]) for k in MEMBERS}
        metrics = binary_metrics(dm.y_test, scores["ensemble"])
        confusion = metrics.pop("confusion_matrix")
        for member in per_model.values():
            member.pop("confusion_matrix")
        run_id = trainer.logger.run_id if isinstance(trainer.logger, MLFlowLogger) else None
        self.gate = {
            **evaluate_gate(metrics, self.cfg.min_pr_auc, self.cfg.min_f1),
            "metrics": metrics,
            "per_model": per_model,
            "confusion_matrix": confusion,
            "n_test": int(len(dm.y_test)),
            "test_source": dm.test_source,
            "weights": self.cfg.weight_map,
            "cutoff": 0.5,
            "mlflow_run_id": run_id,
        }
        threshold_doc = {
            "threshold": threshold,
            "percentile": self.cfg.threshold_percentile,
            "n_val": int(len(dm.ae_val)),
            "best_val_loss": float(pl_module.best_val_loss),
        }
        bundle = write_bundle(
            self.cfg.output_dir,
            autoencoder={
                "state_dict": {k: v.detach().cpu() for k, v in pl_module.net.state_dict().items()},
                "n_features": int(pl_module.hparams.n_inputs),
                "hidden": list(HIDDEN),
            },
            random_forest=self.forests.random_forest,
            isolation_forest=self.forests.isolation_forest,
            preprocessing=dm.preprocessing.to_dict(),
            threshold=threshold_doc,
            gate=self.gate,
            manifest_extra={**self.manifest_extra, "mlflow_run_id": run_id},
        )
        self.say(f"bundle written to {bundle}")
        self._log_to_mlflow(trainer, threshold, per_model, metrics, bundle)

    def _log_to_mlflow(
        self,
        trainer: L.Trainer,
        threshold: float,
        per_model: dict[str, dict[str, float]],
        metrics: dict[str, float],
        bundle: Any,
    ) -> None:
        logger = trainer.logger
        if not isinstance(logger, MLFlowLogger) or self.gate is None:
            return
        final = {"ae_threshold": threshold, "gate_passed": float(self.gate["passed"])}
        for key in ("train_loss", "val_loss"):
            if key in trainer.callback_metrics:
                final[f"ae_final_{key}"] = float(trainer.callback_metrics[key])
        for member, values in per_model.items():
            final.update({f"{member}_{k}": v for k, v in values.items()})
        final.update({f"ensemble_{k}": v for k, v in metrics.items()})
        logger.log_metrics({k: v for k, v in final.items() if math.isfinite(v)})
        logger.experiment.log_artifacts(logger.run_id, str(bundle), artifact_path="bundle")
