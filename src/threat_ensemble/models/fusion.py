"""Each member's score in [0, 1] and how the three are fused into one: the reference's fixed weighted
mean, or a logistic regression stacked on the validation split with a false-positive budget (vectorised)."""

from __future__ import annotations

from typing import Any

import numpy as np

CUTOFF = 0.5
MEMBERS = ("ae", "rf", "if")  # the ensemble's members, in the order every report lists them
# What ThreatEnsemble.score returns for each row (and score.py writes): member scores, the raw
# outputs the stacked fusion uses, the fused score and the verdict.
SCORE_COLUMNS = (*MEMBERS, "ae_error", "rf_vote", "ensemble", "verdict")


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


# ----------------------------------------------------------------------------- stacked fusion
STACK_INPUTS = ("rf", "rf_share", "ae", "if")
LEGACY_STACK_INPUTS = ("rf", "ae", "if")  # fusions saved before ``rf_share`` existed


def stack_features(raw: dict[str, np.ndarray], n_trees: int, inputs: tuple[str, ...] = STACK_INPUTS) -> np.ndarray:
    """Inputs of the stacked fusion, one column each, on scales where a linear model works:

    - ``rf``: the logit of the forest's raw vote share (calibration squashes the few votes that a
      novel attack collects to 0; the logit spreads them out),
    - ``rf_share``: the vote share itself. Beside the logit it bends the forest's link where the
      logit alone is too flat: in the middle, where feature vectors that occur with both labels
      sit (a credential-stuffing login looks exactly like a real one),
    - ``ae``: the log of the reconstruction error (heavy-tailed; the capped member score discards
      how far past the threshold a row is),
    - ``if``: the isolation-forest score."""
    eps = 1.0 / (2.0 * n_trees)
    share = np.asarray(raw["rf_vote"], dtype=np.float64)
    vote = np.clip(share, eps, 1.0 - eps)
    columns = {
        "rf": lambda: np.log(vote / (1.0 - vote)),
        "rf_share": lambda: share,
        "ae": lambda: np.log(np.maximum(np.asarray(raw["ae_error"], dtype=np.float64), 1e-12)),
        "if": lambda: np.asarray(raw["if"], dtype=np.float64),
    }
    unknown = sorted(set(inputs) - set(columns))
    if unknown:
        raise ValueError(f"unknown stacked-fusion inputs {unknown}; known: {sorted(columns)}")
    return np.column_stack([columns[name]() for name in inputs])


def stack_inputs(state: dict[str, Any]) -> tuple[str, ...]:
    """The input columns a saved stacked fusion was fitted on."""
    return tuple(state.get("inputs", LEGACY_STACK_INPUTS))


def budget_cut(normal_logits: np.ndarray, target_fpr: float) -> float:
    """The lowest cut that flags (``>= cut``) at most ``floor(target_fpr * n)`` of ``n`` normal rows.

    Not a plain quantile: identical feature vectors give identical logits, and a quantile that
    lands on a group of them flags the whole group (10% of the normal rows when 10% are one
    vector). The cut sits halfway between the highest logit left unflagged and the next higher
    distinct one, so rounding in the fused score cannot move a row across it."""
    ordered = np.sort(np.asarray(normal_logits, dtype=np.float64))
    n = len(ordered)
    if n == 0:
        raise ValueError("stacked fusion: the validation split has no normal rows to set the cut on")
    allowed = int(np.floor(target_fpr * n + 1e-9))
    highest_kept = ordered[n - allowed - 1]  # this row and every row tied with it stay unflagged
    above = ordered[ordered > highest_kept]
    if above.size:
        return float((highest_kept + above[0]) / 2.0)
    return float(highest_kept + max(1e-6, 1e-9 * abs(highest_kept)))


def fit_stacked_fusion(
    x_val: np.ndarray,
    y_val: np.ndarray,
    target_fpr: float,
    c: float = 1.0,
    inputs: tuple[str, ...] = STACK_INPUTS,
) -> dict[str, Any]:
    """Logistic regression on the labelled validation split, its cut moved so that at most a share
    ``target_fpr`` of normal validation rows is flagged (:func:`budget_cut`). Returns plain numbers (JSON): standardise,
    weigh, add the intercept, sigmoid; attack when >= 0.5.

    The cut comes from a false-positive budget, not the validation split's best F1: validation
    rows hold only attack kinds seen in training and separate almost perfectly, so a best-F1 cut
    sits far too high for attacks never seen (measured on NSL-KDD: F1 0.77 vs 0.85)."""
    from sklearn.linear_model import LogisticRegression

    if x_val.ndim != 2 or x_val.shape[1] != len(inputs):
        raise ValueError(f"stacked fusion: columns {list(inputs)} expected, got an array of shape {x_val.shape}")
    y_val = np.asarray(y_val)
    mean = x_val.mean(axis=0)
    scale = x_val.std(axis=0)
    scale = np.where(scale > 1e-12, scale, 1.0)
    z = (x_val - mean) / scale
    model = LogisticRegression(C=c, max_iter=5000).fit(z, y_val)
    coef, intercept = model.coef_[0], float(model.intercept_[0])
    cut = budget_cut((z @ coef + intercept)[y_val == 0], target_fpr)
    return {
        "kind": "stack",
        "inputs": list(inputs),
        "mean": mean.tolist(),
        "scale": scale.tolist(),
        "coef": coef.tolist(),
        "intercept": intercept - cut,
        "cut": cut,  # the budget's shift of the intercept: intercept + cut gives calibrated odds
        "target_fpr": float(target_fpr),
        "c": float(c),
        "n_val": int(len(y_val)),
    }


def fusion_weights(state: dict[str, Any]) -> dict[str, float]:
    """The weights a fusion actually fuses with, by input: the fixed fusion's share of each member
    in its weighted mean, or the stacked fusion's coefficient of each input on the standardised
    scale (what the run prints; they compare with each other)."""
    if state.get("kind") == "stack":
        return {name: float(c) for name, c in zip(stack_inputs(state), state["coef"], strict=True)}
    return {name: float(w) for name, w in state["weights"].items()}


def describe_stacked_fusion(state: dict[str, Any]) -> str:
    """One line a user can read: each input's weight on the standardised scale, so the weights
    compare (how much the fused verdict leans on each member), and what the cut was set to."""
    weights = ", ".join(f"{name} {coef:+.2f}" for name, coef in zip(stack_inputs(state), state["coef"], strict=True))
    return (
        f"fusion: weights {weights} (standardised inputs); "
        f"cut flags {100 * float(state['target_fpr']):g}% of normal validation rows"
    )


def apply_stacked_fusion(state: dict[str, Any], x: np.ndarray) -> np.ndarray:
    z = (x - np.asarray(state["mean"])) / np.asarray(state["scale"])
    logits = z @ np.asarray(state["coef"]) + float(state["intercept"])
    return 1.0 / (1.0 + np.exp(-np.clip(logits, -500, 500)))
