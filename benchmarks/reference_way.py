"""The reference pipeline (shared/reference/SPEC.md) written the reference's way, as a baseline for
``bench_train.py``. Not used by the package: it exists only to be measured against.

Its way: ordinal-encoded numeric matrix, stratified 70/15/15 split, SMOTE (k=5, ratio 0.3) on the
train split, median/IQR scaler (IQR 0 -> 1) fitted on the first 85% of the normal train rows, a
plain PyTorch loop over ``DataLoader(TensorDataset)`` at batch 256 (AdamW, ReduceLROnPlateau,
clip 1.0, early stopping, best weights restored), a random forest wrapped in isotonic
``CalibratedClassifierCV(cv=3)`` on 80% of the resampled train split, an isolation forest on the
unscaled normal train rows, models written to disk, then read back and fused sample by sample in
a Python loop.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

SEED = 42
SMOTE_RATIO = 0.3
SMOTE_K = 5
WEIGHTS = {"ae": 0.4, "rf": 0.4, "if": 0.2}


# ----------------------------------------------------------------------------- data
def ordinal_matrix(features: pd.DataFrame) -> np.ndarray:
    """The reference's input: every column numeric, categoricals ordinal-encoded."""
    columns = []
    for name in features.columns:
        col = features[name]
        if pd.api.types.is_numeric_dtype(col):
            columns.append(col.to_numpy(np.float64))
        else:
            codes, _ = pd.factorize(col.astype(str), sort=True)
            columns.append(codes.astype(np.float64))
    return np.column_stack(columns)


def smote(x: np.ndarray, y: np.ndarray, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """Minimal SMOTE (k=5): interpolate new minority rows up to minority/majority = 0.3, only when
    the ratio is below 0.3 and the minority has at least 6 rows (as the reference applies it)."""
    from sklearn.neighbors import NearestNeighbors

    minority = x[y == 1]
    n_major = int((y == 0).sum())
    if len(minority) < SMOTE_K + 1 or len(minority) / max(n_major, 1) >= SMOTE_RATIO:
        return x, y
    n_new = int(SMOTE_RATIO * n_major) - len(minority)
    rng = np.random.default_rng(seed)
    _, neighbours = NearestNeighbors(n_neighbors=SMOTE_K + 1).fit(minority).kneighbors(minority)
    base = rng.integers(0, len(minority), n_new)
    other = neighbours[base, rng.integers(1, SMOTE_K + 1, n_new)]
    gap = rng.random((n_new, 1))
    new = minority[base] + gap * (minority[other] - minority[base])
    return np.vstack([x, new]), np.r_[y, np.ones(n_new, dtype=y.dtype)]


@dataclass
class Split:
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    x_normal_train: np.ndarray
    x_resampled: np.ndarray
    y_resampled: np.ndarray


def prepare_training_data(x: np.ndarray, y: np.ndarray, seed: int = SEED) -> Split:
    from sklearn.model_selection import train_test_split

    x_train, x_tmp, y_train, y_tmp = train_test_split(x, y, test_size=0.30, stratify=y, random_state=seed)
    x_val, x_test, y_val, y_test = train_test_split(x_tmp, y_tmp, test_size=0.50, stratify=y_tmp, random_state=seed)
    x_res, y_res = smote(x_train, y_train, seed)
    return Split(x_train, y_train, x_val, y_val, x_test, y_test, x_train[y_train == 0], x_res, y_res)


def robust_scaler(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    q25, median, q75 = np.percentile(x, [25, 50, 75], axis=0)
    iqr = q75 - q25
    return median, np.where(iqr == 0, 1.0, iqr)


# ----------------------------------------------------------------------------- autoencoder
@dataclass
class LoopHistory:
    """Per epoch: train seconds (the batch loop alone), cumulative wall seconds at the end of the
    epoch (validation included), train and validation loss."""

    train_seconds: list[float] = field(default_factory=list)
    wall: list[float] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    samples_per_epoch: int = 0


def per_row_mse(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    net.eval()
    with torch.no_grad():
        err = ((net(x) - x) ** 2).mean(dim=1)
    net.train()
    return err


class PlainLoop:
    """The reference's plain loop, one epoch per ``epoch()`` call so a benchmark can interleave it
    with another trainer's epochs (both then see the same machine load)."""

    def __init__(
        self,
        x_train: torch.Tensor,
        x_val: torch.Tensor,
        *,
        epochs: int = 100,
        batch_size: int = 256,
        lr: float = 1e-3,
        patience: int = 10,
        seed: int = SEED,
    ) -> None:
        from threat_ensemble.models.autoencoder import build_autoencoder

        torch.manual_seed(seed)
        self.x_val = x_val
        self.net = build_autoencoder(x_train.shape[1])
        self.optimizer = torch.optim.AdamW(self.net.parameters(), lr=lr, weight_decay=1e-5, betas=(0.9, 0.999))
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.optimizer, mode="min", factor=0.5, patience=5, min_lr=1e-6
        )
        self.loader = DataLoader(
            TensorDataset(x_train), batch_size=batch_size, shuffle=True, drop_last=len(x_train) > batch_size
        )
        self.loss_fn = nn.MSELoss()
        self.epochs, self.patience = epochs, patience
        self.history = LoopHistory(samples_per_epoch=len(self.loader) * batch_size)
        self.best, self.best_state, self.waited = math.inf, None, 0
        self.clock = 0.0  # this loop's own wall seconds, validation included
        self.done = False

    def epoch(self) -> float:
        """Train one epoch, validate, step the schedule; returns the validation loss."""
        t_start = time.perf_counter()
        net, optimizer = self.net, self.optimizer
        net.train()
        total, batches = 0.0, 0
        for (batch,) in self.loader:
            optimizer.zero_grad()
            loss = self.loss_fn(net(batch), batch)
            loss.backward()
            nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            optimizer.step()
            total += loss.item()
            batches += 1
        self.history.train_seconds.append(time.perf_counter() - t_start)
        val_loss = float(per_row_mse(net, self.x_val).mean())
        self.scheduler.step(val_loss)
        self.history.train_loss.append(total / max(batches, 1))
        self.history.val_loss.append(val_loss)
        if val_loss < self.best:
            self.best, self.waited = val_loss, 0
            self.best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        else:
            self.waited += 1
        self.clock += time.perf_counter() - t_start
        self.history.wall.append(self.clock)
        if self.waited >= self.patience or len(self.history.val_loss) >= self.epochs:
            self.done = True
        return val_loss

    def finish(self) -> nn.Module:
        while not self.done:
            self.epoch()
        if self.best_state is not None:
            self.net.load_state_dict(self.best_state)
        self.net.eval()
        return self.net


def train_autoencoder_plain(
    x_train: torch.Tensor, x_val: torch.Tensor, **options: Any
) -> tuple[nn.Module, LoopHistory]:
    loop = PlainLoop(x_train, x_val, **options)
    return loop.finish(), loop.history


# ----------------------------------------------------------------------------- the pipeline
def run_reference(
    features: pd.DataFrame,
    y: np.ndarray,
    out_dir: Path,
    *,
    epochs: int,
    patience: int | None = None,
    clock: Callable[[str, float], None] | None = None,
) -> dict[str, Any]:
    """Run the whole reference pipeline; ``clock(stage, seconds)`` receives each stage's wall time.
    ``patience=None`` trains exactly ``epochs`` epochs (no early stop)."""
    import joblib
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.ensemble import IsolationForest, RandomForestClassifier
    from sklearn.metrics import average_precision_score, f1_score, precision_score, recall_score, roc_auc_score
    from sklearn.model_selection import train_test_split

    times: dict[str, float] = {}

    def stage(name: str, fn: Callable[[], Any]) -> Any:
        t0 = time.perf_counter()
        result = fn()
        times[name] = time.perf_counter() - t0
        if clock:
            clock(name, times[name])
        return result

    x_all = stage("preprocessing_encode", lambda: ordinal_matrix(features))
    split = stage("split", lambda: prepare_training_data(x_all, y))

    def preprocess() -> tuple[torch.Tensor, torch.Tensor, np.ndarray, np.ndarray]:
        n = len(split.x_normal_train)
        n_val = int(0.15 * n)
        ae_train_raw, ae_val_raw = split.x_normal_train[: n - n_val], split.x_normal_train[n - n_val :]
        center, scale = robust_scaler(ae_train_raw)
        scale_fn = lambda a: torch.from_numpy(((a - center) / scale).astype(np.float32))  # noqa: E731
        return scale_fn(ae_train_raw), scale_fn(ae_val_raw), center, scale

    ae_train, ae_val, center, scale = stage("preprocessing", preprocess)
    times["preprocessing"] += times.pop("preprocessing_encode")

    def autoencoder() -> tuple[nn.Module, float, LoopHistory]:
        net, hist = train_autoencoder_plain(ae_train, ae_val, epochs=epochs, patience=patience or epochs + 1)
        threshold = float(np.percentile(per_row_mse(net, ae_val).numpy(), 99.5))
        return net, threshold, hist

    net, threshold, hist = stage("autoencoder", autoencoder)

    def random_forest() -> tuple[Any, dict[str, float]]:
        x_fit, x_eval, y_fit, y_eval = train_test_split(
            split.x_resampled, split.y_resampled, test_size=0.2, stratify=split.y_resampled, random_state=SEED
        )
        forest = RandomForestClassifier(
            n_estimators=200, max_depth=20, class_weight="balanced", random_state=SEED, n_jobs=-1
        )
        model = CalibratedClassifierCV(forest, method="isotonic", cv=3).fit(x_fit, y_fit)
        pred = model.predict(x_eval)
        return model, {"f1": float(f1_score(y_eval, pred))}

    rf, _rf_metrics = stage("random_forest", random_forest)
    iforest = stage(
        "isolation_forest",
        lambda: IsolationForest(n_estimators=200, contamination="auto", random_state=SEED, n_jobs=-1).fit(
            split.x_normal_train
        ),
    )

    def bundle() -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        torch.save(net.state_dict(), out_dir / "autoencoder.pt")
        joblib.dump(rf, out_dir / "random_forest.joblib")
        joblib.dump(iforest, out_dir / "isolation_forest.joblib")
        (out_dir / "scaler.json").write_text(
            json.dumps({"center": center.tolist(), "scale": scale.tolist(), "n_features": int(len(center))})
        )
        (out_dir / "threshold.json").write_text(json.dumps({"threshold": threshold}))

    stage("bundle", bundle)

    def validation() -> dict[str, float]:
        from threat_ensemble.models.autoencoder import build_autoencoder

        # read everything back from disk, as the reference's validate_ensemble does
        ae = build_autoencoder(len(center))
        ae.load_state_dict(torch.load(out_dir / "autoencoder.pt", weights_only=True))
        ae.eval()
        rf_model = joblib.load(out_dir / "random_forest.joblib")
        if_model = joblib.load(out_dir / "isolation_forest.joblib")
        sc = json.loads((out_dir / "scaler.json").read_text())
        thr = json.loads((out_dir / "threshold.json").read_text())["threshold"]
        scaled = torch.from_numpy(
            ((split.x_test - np.asarray(sc["center"])) / np.asarray(sc["scale"])).astype(np.float32)
        )
        errors = per_row_mse(ae, scaled).numpy()
        rf_prob = rf_model.predict_proba(split.x_test)[:, 1]
        decision = if_model.decision_function(split.x_test)
        fused = []
        for i in range(len(split.x_test)):  # the reference's per-sample fusion
            ae_s = min(float(errors[i]) / (2 * thr), 1.0) if thr > 0 else 0.0
            if_s = (1.0 - float(decision[i])) / 2.0
            fused.append(WEIGHTS["ae"] * ae_s + WEIGHTS["rf"] * float(rf_prob[i]) + WEIGHTS["if"] * if_s)
        score = np.asarray(fused)
        pred = (score >= 0.5).astype(int)
        return {
            "precision": float(precision_score(split.y_test, pred, zero_division=0)),
            "recall": float(recall_score(split.y_test, pred, zero_division=0)),
            "f1": float(f1_score(split.y_test, pred, zero_division=0)),
            "pr_auc": float(average_precision_score(split.y_test, score)),
            "roc_auc": float(roc_auc_score(split.y_test, score)),
        }

    metrics = stage("validation", validation)
    return {
        "stages_s": {k: round(v, 3) for k, v in times.items()},
        "metrics": metrics,
        "ae_epochs": len(hist.val_loss),
        "ae_best_val_loss": float(min(hist.val_loss)),
        "n_features": int(x_all.shape[1]),
        "n_test": int(len(split.y_test)),
    }
