"""How well a score detects attacks (precision, recall, F1, PR-AUC, ROC-AUC and FPR, with
torchmetrics) and the quality gate over the ensemble's metrics."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torchmetrics.functional.classification import (
    binary_auroc,
    binary_average_precision,
    binary_confusion_matrix,
)

from threat_ensemble.models.fusion import CUTOFF, MEMBERS


def binary_metrics(y_true: np.ndarray, score: np.ndarray, cutoff: float = CUTOFF) -> dict[str, Any]:
    """Precision, recall, F1 and FPR at ``score >= cutoff``, PR-AUC (average precision) and ROC-AUC."""
    # copies: torch warns about (and may write into) read-only arrays such as pandas' column views
    target = torch.from_numpy(np.array(y_true, dtype=np.int64))
    preds = torch.from_numpy(np.array(score, dtype=np.float64))
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


def detection_metrics(y_true: np.ndarray, scores: dict[str, np.ndarray]) -> dict[str, dict[str, Any]]:
    """:func:`binary_metrics` of each member's score and of the fused one (``ensemble``)."""
    return {name: binary_metrics(y_true, scores[name]) for name in (*MEMBERS, "ensemble")}


# Below this many rows of either class in the test data, the gate's figures swing with a handful of
# rows; the run says so (it still gates).
MIN_GATE_ROWS_PER_CLASS = 30


def small_test_warning(y_true: np.ndarray, source: str) -> str | None:
    """One line when the test data is too small for the gate to mean much, else None."""
    n_attack = int(np.asarray(y_true).sum())
    n_normal = len(y_true) - n_attack
    if min(n_attack, n_normal) >= MIN_GATE_ROWS_PER_CLASS:
        return None
    return (
        f"warning: the {source} holds {n_attack} attack and {n_normal} normal rows; with fewer than "
        f"{MIN_GATE_ROWS_PER_CLASS} of either, the gate's figures rest on a handful of rows"
    )


def evaluate_gate(
    metrics: dict[str, Any],
    min_pr_auc: float | None,
    min_f1: float | None,
    *,
    min_recall: float | None = None,
    max_fpr: float | None = None,
) -> dict[str, Any]:
    """Each gate with its value, bound and verdict; NaN never passes. Recall and FPR gates are
    optional and appear only when a bound is given."""
    gates: dict[str, dict[str, Any]] = {}
    for name, bound in (("pr_auc", min_pr_auc), ("f1", min_f1), ("recall", min_recall)):
        if bound is not None:
            value = float(metrics[name])
            gates[name] = {"value": value, "min": float(bound), "passed": bool(value >= bound)}
    if max_fpr is not None:
        value = float(metrics["fpr"])
        gates["fpr"] = {"value": value, "max": float(max_fpr), "passed": bool(value <= max_fpr)}
    return {"passed": all(g["passed"] for g in gates.values()), "gates": gates}


def gate_bounds(gate: dict[str, Any]) -> dict[str, float | None]:
    """The bounds a gate.json was evaluated with, as :func:`evaluate_gate`'s keyword arguments
    (a bundle re-gated on another table is held to the bounds it was trained under)."""
    gates = gate.get("gates")
    if not isinstance(gates, dict):
        raise ValueError("gate.json holds no gates")
    bounds: dict[str, float | None] = {"min_pr_auc": None, "min_f1": None, "min_recall": None, "max_fpr": None}
    for name, entry in gates.items():
        key = f"max_{name}" if name == "fpr" else f"min_{name}"
        if key not in bounds or not isinstance(entry, dict):
            raise ValueError(f"gate.json: unknown gate {name!r}")
        bound = entry.get("max" if name == "fpr" else "min")
        if not isinstance(bound, (int, float)) or isinstance(bound, bool) or not math.isfinite(bound):
            raise ValueError(f"gate.json: gate {name!r} has no finite bound")
        bounds[key] = float(bound)
    return bounds


def gate_report(
    y_true: np.ndarray,
    scores: dict[str, np.ndarray],
    source: str,
    *,
    min_pr_auc: float | None,
    min_f1: float | None,
    min_recall: float | None = None,
    max_fpr: float | None = None,
) -> dict[str, Any]:
    """What gate.json says of one labelled table: each member's and the ensemble's metrics, the
    ensemble's confusion matrix and each gate. The trainer's gate and ``score.py --gate`` are both
    this function, so a bundle re-gated on its run's own test table gives the run's figures."""
    per_model = detection_metrics(y_true, scores)
    metrics = per_model.pop("ensemble")
    confusion = metrics.pop("confusion_matrix")
    for member in per_model.values():
        member.pop("confusion_matrix")
    gate = evaluate_gate(metrics, min_pr_auc, min_f1, min_recall=min_recall, max_fpr=max_fpr)
    return {
        **gate,
        "metrics": metrics,
        "per_model": per_model,
        "confusion_matrix": confusion,
        "n_test": int(len(y_true)),
        "test_source": source,
    }
