"""Per-model scores in [0, 1], their fusion, detection metrics and the quality gate (all vectorised)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torchmetrics.functional.classification import (
    binary_auroc,
    binary_average_precision,
    binary_confusion_matrix,
)

CUTOFF = 0.5


def ae_score(errors: np.ndarray, threshold: float) -> np.ndarray:
    """``min(err / (2 * threshold), 1)``: 0.5 exactly at the threshold; 0 when the threshold is <= 0."""
    errors = np.asarray(errors, dtype=np.float64)
    if not threshold > 0:
        return np.zeros_like(errors)
    return np.minimum(errors / (2.0 * threshold), 1.0)


def if_score(decision: np.ndarray) -> np.ndarray:
    """``(1 - d) / 2`` of scikit-learn's decision function (negative = anomalous), kept in [0, 1]."""
    return np.clip((1.0 - np.asarray(decision, dtype=np.float64)) / 2.0, 0.0, 1.0)


def fuse(scores: dict[str, np.ndarray], weights: dict[str, float]) -> np.ndarray:
    """Weighted mean of the member scores, weights normalised to sum to one."""
    keys = [k for k, w in weights.items() if w > 0]
    matrix = np.stack([np.asarray(scores[k], dtype=np.float64) for k in keys], axis=1)
    w = np.array([weights[k] for k in keys], dtype=np.float64)
    return matrix @ (w / w.sum())


def binary_metrics(y_true: np.ndarray, score: np.ndarray, cutoff: float = CUTOFF) -> dict[str, Any]:
    """Precision, recall, F1 and FPR at ``score >= cutoff``, PR-AUC (average precision) and ROC-AUC."""
    target = torch.as_tensor(np.asarray(y_true), dtype=torch.long)
    preds = torch.as_tensor(np.asarray(score, dtype=np.float64))
    cm = binary_confusion_matrix((preds >= cutoff).long(), target).tolist()
    (tn, fp), (fn, tp) = cm
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    both_classes = 0 < int(target.sum()) < len(target)
    return {
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
        "pr_auc": float(binary_average_precision(preds, target)) if both_classes else float("nan"),
        "roc_auc": float(binary_auroc(preds, target)) if both_classes else float("nan"),
        "fpr": float(fp / (fp + tn)) if fp + tn else 0.0,
        "confusion_matrix": [[int(tn), int(fp)], [int(fn), int(tp)]],
    }


def evaluate_gate(metrics: dict[str, Any], min_pr_auc: float, min_f1: float) -> dict[str, Any]:
    """Each gate with its value, bound and verdict; NaN never passes."""
    gates = {}
    for name, bound in (("pr_auc", min_pr_auc), ("f1", min_f1)):
        value = float(metrics[name])
        gates[name] = {"value": value, "min": float(bound), "passed": bool(value >= bound)}
    return {"passed": all(g["passed"] for g in gates.values()), "gates": gates}
