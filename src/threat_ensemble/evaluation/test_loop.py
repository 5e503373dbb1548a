"""The gate as Lightning runs evaluation. After ``Trainer.fit`` (the autoencoder, then the forests and
the fusion at the fit's end), the engine calls ``Trainer.test(EnsembleEvaluation(...), datamodule)``:
Lightning's test loop serves the DataModule's test rows a labelled raw chunk a step; each
``test_step`` scores its chunk through :func:`evaluation.scoring.score_rows` (the one scoring
function) and keeps the scores and labels as metric state (:class:`ScoresAndLabels`, a torchmetrics
``Metric``: concatenated in order in one process, gathered across ranks under DDP); at the end of
the test epoch :func:`evaluation.metrics.gate_report` makes the gate of them, into the engine's
``FitOutcome``. The bundle and MLflow steps follow in ``on_test_end``."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import lightning as L
import numpy as np
import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from threat_ensemble.callbacks.end_of_fit import FitOutcome, labelled_datamodule, mlflow_logger
from threat_ensemble.callbacks.run_state import announcer
from threat_ensemble.config import GateOptions
from threat_ensemble.data.preprocessing import UnseenCategories, warn_unseen
from threat_ensemble.evaluation import scoring
from threat_ensemble.evaluation.metrics import gate_report, small_test_warning
from threat_ensemble.evaluation.scoring import Scores
from threat_ensemble.models.fusion import CUTOFF, SCORE_COLUMNS, fusion_weights


class ScoresAndLabels(Metric):
    """The test rows' scores (one state per score column) and labels, a chunk per ``update``, held
    as float64 tensors (exact for the float64 and float32 scores and the 0/1 columns). ``compute``
    gives them back concatenated in order, each column in the dtype it came in. Under DDP,
    torchmetrics gathers every rank's states before ``compute`` (in rank order), so what rank 0
    computes covers the rows of every rank."""

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        for name in SCORE_COLUMNS:
            self.add_state(f"scores_{name}", default=[], dist_reduce_fx="cat")
        self.add_state("labels", default=[], dist_reduce_fx="cat")
        self.column_dtypes: dict[str, np.dtype] = {}  # each column's dtype as scored (not state: never gathered)

    def _tensor(self, values: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(values, np.float64), device=self.device)

    def update(self, scores: Scores, labels: np.ndarray) -> None:
        """One chunk's scores (every column of ``SCORE_COLUMNS``) and 0/1 labels; ``{}`` and no
        labels: a rank's share of no rows (every rank gathers, so every rank updates)."""
        for name in SCORE_COLUMNS:
            values = np.asarray(scores[name]) if name in scores else np.empty(0)
            if name in scores:
                self.column_dtypes.setdefault(name, values.dtype)
            getattr(self, f"scores_{name}").append(self._tensor(values))
        self.labels.append(self._tensor(labels))

    def compute(self) -> tuple[Scores, np.ndarray]:
        def column(state: Any) -> np.ndarray:
            return dim_zero_cat(state).cpu().numpy()

        scores = {
            name: column(getattr(self, f"scores_{name}")).astype(self.column_dtypes.get(name, np.float64), copy=False)
            for name in SCORE_COLUMNS
        }
        return scores, column(self.labels).astype(np.int64)


class EnsembleEvaluation(L.LightningModule):
    """Lightning's test loop over the test rows: the members' and the ensemble's metrics and the
    gate, from the trained ensemble the fusion step left in the engine's :class:`FitOutcome`.
    Rank 0 scores (it alone holds the forests; the DataModule serves it every chunk and any other
    rank a chunk of no rows), every rank joins the gathering of the metric state, and rank 0 makes
    the gate. ``needs``/``makes``: as the end-of-fit steps', for the engine's ordering."""

    needs, makes = ("ensemble",), ("scores", "y_test", "gate")

    def __init__(self, options: GateOptions, outcome: FitOutcome, *, impute: bool = False, quiet: bool = False) -> None:
        super().__init__()
        self.options = options  # the gate's section of the configuration, nothing else of it
        self.outcome = outcome
        self.impute = impute  # how the test rows were read (--impute)
        self.quiet = quiet
        self.rows = ScoresAndLabels()
        self.unseen = UnseenCategories()
        self._started = 0.0

    def _say(self, message: str) -> None:
        announcer(self.quiet)(message)

    def on_test_epoch_start(self) -> None:
        self.rows.reset()
        self.unseen = UnseenCategories()
        self._started = time.perf_counter()
        if self.trainer.is_global_zero:
            dm = labelled_datamodule(self.trainer)
            self._say(f"ensemble: scoring {dm.n_test} rows of the {dm.test_source} ...")

    def test_step(self, batch: tuple[Any, np.ndarray], batch_idx: int) -> None:
        rows, labels = batch  # raw rows and labels: Lightning moves no tensor here, they are scored on the host
        if not self.trainer.is_global_zero:  # no rows here: rank 0 scores them all
            self.rows.update({}, labels)
            return
        ensemble = self.outcome.ensemble
        assert ensemble is not None, "the fusion step left no ensemble"
        source = labelled_datamodule(self.trainer).test_source
        # scored as the fit's end scored it: at full precision whatever --precision trained with
        with torch.autocast("cpu", enabled=False):
            scores, y = scoring.score_rows(ensemble, [(rows, labels)], source, impute=self.impute, unseen=self.unseen)
        assert y is not None
        self.rows.update(scores, y)

    def on_test_epoch_end(self) -> None:
        scores, y_test = self.rows.compute()  # every rank: the states are gathered across ranks
        if not self.trainer.is_global_zero:
            return
        dm = labelled_datamodule(self.trainer)
        warn_unseen(self.unseen, dm.test_source)
        self._say(f"ensemble: done in {time.perf_counter() - self._started:.1f}s")
        logger = mlflow_logger(self.trainer)
        self.gate(scores, y_test, dm.test_source, logger.run_id if logger is not None else None)

    def gate(self, scores: Scores, y_test: np.ndarray, source: str, run_id: str | None) -> dict[str, Any]:
        """gate.json's content from the test rows' scores and labels, into the outcome with them."""
        ensemble = self.outcome.ensemble
        assert ensemble is not None
        small = small_test_warning(y_test, source)
        if small:
            print(small)
        self.outcome.scores, self.outcome.y_test = scores, y_test
        fusion = ensemble.fusion
        used = {"target_fpr": float(fusion["target_fpr"])} if fusion["kind"] == "stack" else {}
        self.outcome.gate = {
            **gate_report(y_test, scores, source, **dataclasses.asdict(self.options)),
            "weights": fusion_weights(fusion),  # the fusion this run used, not --weights when it stacked
            "fusion": fusion["kind"],
            **used,
            "cutoff": CUTOFF,
            "mlflow_run_id": run_id,
        }
        return self.outcome.gate
