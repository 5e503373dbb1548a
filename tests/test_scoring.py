from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, f1_score, precision_score, recall_score, roc_auc_score

from threat_ensemble.evaluation.metrics import binary_metrics, evaluate_gate
from threat_ensemble.models.fusion import ae_score, fuse, if_score


def test_ae_score_is_half_at_threshold_and_capped() -> None:
    errors = np.array([0.0, 1.0, 2.0, 10.0])
    assert ae_score(errors, 2.0).tolist() == [0.0, 0.25, 0.5, 1.0]
    assert ae_score(errors, 0.0).tolist() == [0.0, 0.0, 0.0, 0.0]


def test_if_score_maps_decision_function() -> None:
    assert if_score(np.array([0.0, 0.2, -0.2, -3.0])).tolist() == pytest.approx([0.5, 0.4, 0.6, 1.0])


def test_fuse_is_the_weighted_mean() -> None:
    rng = np.random.default_rng(0)
    scores = {k: rng.random(50) for k in ("ae", "rf", "if")}
    weights = {"ae": 0.4, "rf": 0.4, "if": 0.2}
    expected = [0.4 * a + 0.4 * r + 0.2 * i for a, r, i in zip(scores["ae"], scores["rf"], scores["if"], strict=True)]
    assert fuse(scores, weights) == pytest.approx(expected)
    # a zero weight ignores that member entirely, even if its scores are missing
    assert fuse({"ae": scores["ae"], "rf": scores["rf"]}, {"ae": 1.0, "rf": 1.0, "if": 0.0}) == pytest.approx(
        (scores["ae"] + scores["rf"]) / 2
    )


def test_metrics_agree_with_scikit_learn() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 400)
    score = np.clip(y * 0.3 + rng.random(400) * 0.7, 0, 1)
    m = binary_metrics(y, score)
    pred = (score >= 0.5).astype(int)
    assert m["precision"] == pytest.approx(precision_score(y, pred))
    assert m["recall"] == pytest.approx(recall_score(y, pred))
    assert m["f1"] == pytest.approx(f1_score(y, pred))
    assert m["pr_auc"] == pytest.approx(average_precision_score(y, score), abs=1e-6)
    assert m["roc_auc"] == pytest.approx(roc_auc_score(y, score), abs=1e-6)
    (tn, fp), (fn, tp) = m["confusion_matrix"]
    assert m["fpr"] == pytest.approx(fp / (fp + tn))
    assert tn + fp + fn + tp == 400


def test_score_equal_to_cutoff_is_an_attack() -> None:
    m = binary_metrics(np.array([0, 1]), np.array([0.49, 0.5]))
    assert m["confusion_matrix"] == [[1, 0], [0, 1]]


def test_gate_records_each_bound() -> None:
    gate = evaluate_gate({"pr_auc": 0.9, "f1": 0.79}, 0.85, 0.80)
    assert gate["passed"] is False
    assert gate["gates"]["pr_auc"] == {"value": 0.9, "min": 0.85, "passed": True}
    assert gate["gates"]["f1"]["passed"] is False
    assert evaluate_gate({"pr_auc": float("nan"), "f1": 1.0}, 0.5, 0.5)["passed"] is False


def _member_outputs(
    seed: int, n_normal: int, n_attack: int, normal_vote_b: float
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Raw member outputs that separate the classes well but not perfectly, normal rows first."""
    rng = np.random.default_rng(seed)
    y = np.r_[np.zeros(n_normal, int), np.ones(n_attack, int)]
    raw = {
        "rf_vote": np.r_[rng.beta(1, normal_vote_b, n_normal), rng.beta(8, 2, n_attack)],
        "ae_error": np.r_[rng.lognormal(0, 1, n_normal), rng.lognormal(1.5, 1, n_attack)],
        "if": np.r_[rng.normal(0.45, 0.03, n_normal), rng.normal(0.55, 0.05, n_attack)],
    }
    return raw, y


def test_stacked_fusion_cut_respects_the_false_positive_budget() -> None:
    import json

    from threat_ensemble.models.fusion import apply_stacked_fusion, fit_stacked_fusion, stack_features

    n_normal = 4000
    raw, y = _member_outputs(seed=3, n_normal=n_normal, n_attack=400, normal_vote_b=20)
    x = stack_features(raw, n_trees=200)
    state = fit_stacked_fusion(x, y, target_fpr=0.02)
    json.dumps(state)  # plain numbers only
    score = apply_stacked_fusion(state, x)
    assert ((score >= 0) & (score <= 1)).all()
    flagged_normal = (score[y == 0] >= 0.5).mean()
    assert 0.02 - 1 / n_normal <= flagged_normal <= 0.02  # the budget, to the row
    assert (score[y == 1] >= 0.5).mean() > 0.9
    # every member's evidence pushes towards "attack"
    assert all(c > 0 for c in state["coef"])


def test_budget_holds_when_many_normal_rows_tie_at_the_cut() -> None:
    """Duplicated feature vectors give identical logits; a quantile landing on such a group flagged
    all of it (10% of normal rows for a 1% budget). The cut now stops below the budget."""
    from threat_ensemble.models.fusion import apply_stacked_fusion, budget_cut, fit_stacked_fusion, stack_features

    raw, y = _member_outputs(seed=5, n_normal=2000, n_attack=300, normal_vote_b=30)
    duplicated = np.arange(200)  # one normal vector repeated: 10% of the normal rows, scoring high
    raw["rf_vote"][duplicated], raw["ae_error"][duplicated], raw["if"][duplicated] = 0.3, 5.0, 0.5
    x = stack_features(raw, n_trees=200)
    score = apply_stacked_fusion(fit_stacked_fusion(x, y, target_fpr=0.01), x)
    assert (score[y == 0] >= 0.5).mean() <= 0.01
    assert (score[duplicated] < 0.5).all()

    assert budget_cut(np.array([0.0, 1.0, 2.0, 3.0]), 0.25) == 2.5  # one of four flagged, halfway
    assert budget_cut(np.array([1.0, 1.0, 1.0, 1.0]), 0.5) > 1.0  # a tie that would break it: none
    assert budget_cut(np.array([0.0, 1.0, 2.0]), 0.001) > 2.0  # a budget under one row: none


def test_stack_features_are_finite_at_the_extremes() -> None:
    from threat_ensemble.models.fusion import stack_features

    raw = {"rf_vote": np.array([0.0, 1.0]), "ae_error": np.array([0.0, 1e9]), "if": np.array([0.2, 0.8])}
    x = stack_features(raw, n_trees=200)
    assert np.isfinite(x).all()
    assert x[0, 0] < 0 < x[1, 0]


def test_stack_features_keep_the_vote_share_beside_its_logit() -> None:
    from threat_ensemble.models.fusion import STACK_INPUTS, stack_features

    raw = {"rf_vote": np.array([0.0, 0.3, 0.74, 1.0]), "ae_error": np.ones(4), "if": np.full(4, 0.5)}
    x = stack_features(raw, n_trees=200)
    assert x.shape == (4, len(STACK_INPUTS))
    np.testing.assert_array_equal(x[:, STACK_INPUTS.index("rf_share")], raw["rf_vote"])
    assert np.all(np.diff(x[:, STACK_INPUTS.index("rf")]) > 0)
    with pytest.raises(ValueError, match="unknown stacked-fusion inputs"):
        stack_features(raw, n_trees=200, inputs=("rf", "votes"))


def test_vote_share_input_fits_a_forest_whose_link_is_not_logit_linear() -> None:
    """A balanced forest's votes over-state the attack rate in the middle (rows with both labels
    there): the rate rises steeply around a vote of 0.6, linearly in the share's logit. The vote's
    logit alone cannot bend that way; with the share beside it, held-out rows fit better."""
    from sklearn.metrics import log_loss

    from threat_ensemble.models.fusion import (
        LEGACY_STACK_INPUTS,
        STACK_INPUTS,
        apply_stacked_fusion,
        fit_stacked_fusion,
        stack_features,
    )

    rng = np.random.default_rng(11)

    def draw(n: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
        vote = rng.integers(0, 201, n) / 200
        y = (rng.random(n) < 1 / (1 + np.exp(-12 * (vote - 0.6)))).astype(int)
        return {"rf_vote": vote, "ae_error": rng.lognormal(0, 1, n), "if": rng.normal(0.5, 0.03, n)}, y

    (fit_raw, fit_y), (held_raw, held_y) = draw(6000), draw(6000)
    losses = {}
    for inputs in (LEGACY_STACK_INPUTS, STACK_INPUTS):
        state = fit_stacked_fusion(stack_features(fit_raw, 200, inputs), fit_y, target_fpr=0.05, inputs=inputs)
        calibrated = dict(state, intercept=state["intercept"] + state["cut"])  # undo the budget's shift
        losses[inputs] = log_loss(held_y, apply_stacked_fusion(calibrated, stack_features(held_raw, 200, inputs)))
    assert losses[STACK_INPUTS] < losses[LEGACY_STACK_INPUTS] - 0.001, losses  # paired rows: ~0.004 apart


def test_a_fusion_saved_before_the_vote_share_input_still_scores() -> None:
    """Bundles written before ``rf_share`` hold three coefficients and no ``inputs`` key."""
    from threat_ensemble.models.ensemble import ThreatEnsemble as Ensemble
    from threat_ensemble.models.fusion import stack_inputs

    legacy = {
        "kind": "stack",
        "members": ["rf", "ae", "if"],
        "mean": [0.0, 0.0, 0.5],
        "scale": [1.0, 1.0, 0.1],
        "coef": [1.0, 0.5, 0.2],
        "intercept": -1.0,
        "target_fpr": 0.01,
    }
    raw = {"rf_vote": np.array([0.01, 0.99]), "ae_error": np.array([0.5, 4.0]), "if": np.array([0.45, 0.6])}
    assert stack_inputs(legacy) == ("rf", "ae", "if")
    score = Ensemble(None, None, 0.0, None, None, fusion=legacy).fuse(raw)  # type: ignore[arg-type]
    assert score[0] < 0.5 < score[1]


def test_fusion_line_names_each_input_with_its_weight() -> None:
    from threat_ensemble.models.fusion import describe_stacked_fusion

    state = {"inputs": ["rf", "rf_share", "ae", "if"], "coef": [2.274, 1.927, 1.21, -0.3], "target_fpr": 0.01}
    line = describe_stacked_fusion(state)
    assert line == (
        "fusion: weights rf +2.27, rf_share +1.93, ae +1.21, if -0.30 (standardised inputs); "
        "cut flags 1% of normal validation rows"
    )
    legacy = {"members": ["rf", "ae", "if"], "coef": [1.0, 0.5, 0.2], "target_fpr": 0.02}
    assert describe_stacked_fusion(legacy).startswith("fusion: weights rf +1.00, ae +0.50, if +0.20 ")


def test_optional_gates() -> None:
    metrics = {"pr_auc": 0.9, "f1": 0.9, "recall": 0.7, "fpr": 0.02}
    gate = evaluate_gate(metrics, 0.85, 0.8, min_recall=0.8, max_fpr=0.05)
    assert gate["gates"]["recall"] == {"value": 0.7, "min": 0.8, "passed": False}
    assert gate["gates"]["fpr"] == {"value": 0.02, "max": 0.05, "passed": True}
    assert gate["passed"] is False
    assert set(evaluate_gate(metrics, 0.85, 0.8)["gates"]) == {"pr_auc", "f1"}


def test_a_test_split_too_small_for_the_gate_is_said_out_loud() -> None:
    from threat_ensemble.evaluation.metrics import MIN_GATE_ROWS_PER_CLASS, small_test_warning

    y = np.array([1] * 5 + [0] * 200)
    assert small_test_warning(y, "test split") == (
        f"warning: the test split holds 5 attack and 200 normal rows; with fewer than {MIN_GATE_ROWS_PER_CLASS} "
        "of either, the gate's figures rest on a handful of rows"
    )
    assert small_test_warning(np.array([1] * 40 + [0] * 40), "test split") is None


def test_gate_report_is_the_gate_of_one_labelled_table() -> None:
    from threat_ensemble.evaluation.metrics import gate_bounds, gate_report

    rng = np.random.default_rng(3)
    y = np.r_[np.zeros(300, int), np.ones(100, int)]
    scores = {m: np.clip(y * 0.6 + rng.uniform(0, 0.5, len(y)), 0, 1) for m in ("ae", "rf", "if", "ensemble")}
    report = gate_report(y, scores, "week.csv", min_pr_auc=0.85, min_f1=0.8, max_fpr=0.01)
    assert report["metrics"]["f1"] == pytest.approx(f1_score(y, scores["ensemble"] >= 0.5))
    assert set(report["per_model"]) == {"ae", "rf", "if"} and "confusion_matrix" not in report["per_model"]["ae"]
    assert report["confusion_matrix"] == [[int((scores["ensemble"][y == 0] < 0.5).sum()),
                                           int((scores["ensemble"][y == 0] >= 0.5).sum())],
                                          [int((scores["ensemble"][y == 1] < 0.5).sum()),
                                           int((scores["ensemble"][y == 1] >= 0.5).sum())]]  # fmt: skip
    assert (report["n_test"], report["test_source"]) == (400, "week.csv")
    assert set(report["gates"]) == {"pr_auc", "f1", "fpr"}
    # the bounds a gate.json records are the bounds it is evaluated with again
    assert gate_bounds(report) == {"min_pr_auc": 0.85, "min_f1": 0.8, "min_recall": None, "max_fpr": 0.01}
    again = gate_report(y, scores, "week.csv", **gate_bounds(report))
    assert again == report
    with pytest.raises(ValueError, match="unknown gate"):
        gate_bounds({"gates": {"speed": {"min": 1.0}}})
    with pytest.raises(ValueError, match="no finite bound"):
        gate_bounds({"gates": {"f1": {"min": "high"}}})
