"""The novel-attack benchmark's own parts (its runs are benchmarks, not tests): the NSL-KDD splits
hold what docs/quality.md says, and the scores it builds from validation rows mean what it says."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import NSL_KDD, few_trees, nsl_kdd_missing

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_novel  # noqa: E402


@pytest.mark.skipif(nsl_kdd_missing() is not None, reason=str(nsl_kdd_missing()))
def test_the_nsl_kdd_splits_leave_out_what_they_say() -> None:
    train, test, what = bench_novel.nsl_split("nsl-unseen", NSL_KDD)
    unseen = test[test[bench_novel.NSL_LABEL] != "normal"]
    assert len(unseen) == 3752 and unseen[bench_novel.NSL_LABEL].nunique() == 18  # the count
    assert not set(unseen[bench_novel.NSL_LABEL]) & set(train[bench_novel.NSL_LABEL])
    assert what.startswith("normal + 3752 rows of 18 names")
    for family in ("dos", "probe", "r2l", "u2r"):
        train, test, _ = bench_novel.nsl_split(f"nsl-{family}", NSL_KDD)
        train_families = set(bench_novel.nsl_family(train[bench_novel.NSL_LABEL]))
        test_families = set(bench_novel.nsl_family(test[bench_novel.NSL_LABEL]))
        assert family not in train_families and test_families == {"normal", family}
    _, test, _ = bench_novel.nsl_split("nsl-u2r", NSL_KDD)
    assert (test[bench_novel.NSL_LABEL] != "normal").sum() == 67


def test_the_evidence_of_a_row_is_the_sum_of_its_normal_tails() -> None:
    normal = {"a": np.arange(1.0, 100.0), "b": np.zeros(99)}  # 99 normal validation rows each
    rows = {"a": np.array([0.0, 50.0, 1000.0]), "b": np.array([0.0, 0.0, 1.0])}
    got = bench_novel.evidence(normal, rows, ("a", "b"))
    # a: 99, 50, 0 normal rows at least as high; b: 99, 99, 0
    expected = -np.log(np.array([100.0, 51.0, 1.0]) / 100) - np.log(np.array([100.0, 100.0, 1.0]) / 100)
    np.testing.assert_allclose(got, expected)


def test_the_or_of_two_scores_flags_a_row_either_flags() -> None:
    y_va = np.r_[np.zeros(100, int), np.ones(2, int)]
    rng = np.random.default_rng(0)
    first, second = rng.uniform(0, 1, 102), rng.uniform(0, 1, 102)
    test_first, test_second = np.array([0.5, 5.0, 0.5]), np.array([0.5, 0.5, 5.0])
    va, te = bench_novel.either((first, second), y_va, (first, test_first), (second, test_second))
    assert va.shape == (102,) and te[1] == te[2] == 1.0 > te[0]  # above every normal row of either: flagged


def test_an_extrapolated_tail_keeps_adding_evidence_past_every_normal_row() -> None:
    normal = np.arange(1.0, 101.0)  # 100 normal validation scores, 1..100
    rows = np.array([0.5, 50.0, 100.0, 110.0, 1000.0])
    got = bench_novel.tail_evidence(normal, rows, top=10)
    # at or below the 10th-highest normal score (91): the empirical -log((at least as high + 1) / 101)
    np.testing.assert_allclose(got[:2], -np.log(np.array([101.0, 52.0]) / 101))
    # above it: log(101 / 10) + (score - 91) / beta, beta the mean excess of 91..100 over 91 (4.5)
    np.testing.assert_allclose(got[2:], np.log(101 / 10) + (rows[2:] - 91.0) / 4.5)
    floor = -np.log(1 / 101)  # where evidence() saturates for any score past every normal row
    assert got[3] > floor and got[4] > got[3] + 100


def test_the_anomaly_side_of_stack_then_gets_only_the_budget_the_stack_left() -> None:
    normal = np.arange(200.0)  # 200 normal rows: a 5% budget allows 10
    flagged = np.zeros(200, bool)
    flagged[[3, 7, 11]] = True  # the stack already flags three of them
    cut = bench_novel.leftover_cut(normal, flagged, 0.05)
    assert int(((normal >= cut) & ~flagged).sum()) == 7  # ten allowed, three spent
    flagged[:] = False
    flagged[190:] = True  # it spent all ten on the highest: nothing left, the cut is past every other row
    cut = bench_novel.leftover_cut(normal, flagged, 0.05)
    assert not ((normal >= cut) & ~flagged).any() and cut < 190


def _run(split: str, seed: int, f1: float) -> dict:
    figures = {"precision": f1, "recall": f1, "f1": f1, "pr_auc": f1, "fpr": 0.01}
    baselines = {b: dict(figures) for b in bench_novel.BASELINES}
    return {"split": split, "seed": seed, "test": f"{split} rows", "ensemble": figures, "members": {},
            "baselines": baselines}  # fmt: skip


def test_merge_keeps_the_other_splits_runs_and_replaces_the_rerun_ones() -> None:
    earlier = {
        "options": {"target_fpr": 0.01, "max_epochs": None, "default_holdout": "scanner"},
        "runs": [_run("default-known", 42, 0.5), _run("nsl-dos", 42, 0.9), _run("nsl-dos", 1, 0.8),
                 _run("default-unseen", 42, 0.1)],
    }  # fmt: skip
    now = [_run("default-unseen", 42, 0.6), _run("default-unseen", 1, 0.7), _run("default-known", 42, 0.95)]
    merged = bench_novel.merge_runs(earlier, now, "last.json")
    assert [(r["split"], r["seed"], r["ensemble"]["f1"]) for r in merged] == [
        ("nsl-dos", 42, 0.9), ("nsl-dos", 1, 0.8), ("default-unseen", 42, 0.6), ("default-unseen", 1, 0.7),
        ("default-known", 42, 0.95),
    ]  # fmt: skip
    summary = bench_novel.summarise(merged)
    assert summary["nsl-dos"]["ensemble"]["f1"]["mean"] == pytest.approx(0.85)
    assert summary["default-unseen"]["ensemble"]["f1"]["mean"] == pytest.approx(0.65)
    options = {"target_fpr": 0.01, "max_epochs": None, "default_holdout": "scanner"}
    bench_novel.check_mergeable(earlier, options, "last.json")
    with pytest.raises(ValueError, match=r"last.json: its runs used target_fpr 0.01, this run 0.05; not merged"):
        bench_novel.check_mergeable(earlier, {**options, "target_fpr": 0.05}, "last.json")
    with pytest.raises(ValueError, match="last.json: not a bench_novel report"):
        bench_novel.merge_runs({"summary": {}}, now, "last.json")


def test_merge_with_a_file_that_is_no_report_stops_before_any_run(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    for name, text in (("broken.json", "{"), ("other.json", '{"runs": 3}')):
        (tmp_path / name).write_text(text)
        with pytest.raises(SystemExit) as stopped:
            bench_novel.main(["--splits", "default-unseen", "--merge", str(tmp_path / name), "--work", str(tmp_path)])
        assert stopped.value.code == 2
        last = capsys.readouterr().err.strip().splitlines()[-1]
        assert f"--merge {tmp_path / name}: " in last and ("unreadable" in last or "not a bench_novel report" in last)
    assert not (tmp_path / "default-unseen-42").exists()


def test_every_variant_is_measured_and_cut_at_the_validation_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    """``--variants`` on a stand-in ensemble (its members' scores made up, the forests and the
    gradient boosting real): every variant named in VARIANTS comes back, and scored on the validation
    rows themselves each flags at most the budget's share of their normal rows."""
    from types import SimpleNamespace

    rng = np.random.default_rng(0)
    x = rng.normal(size=(900, 4))
    y = (x[:, 0] + rng.normal(scale=0.5, size=900) > 1.0).astype(np.int64)

    def member_scores(rows: np.ndarray) -> dict[str, np.ndarray]:
        return {"ae_error": np.exp(rows[:, 1]), "if": 1 / (1 + np.exp(-rows[:, 2])), "rf_vote": np.zeros(len(rows))}

    scaler = SimpleNamespace(transform=lambda rows: rows)
    ens = SimpleNamespace(member_scores=member_scores, fuse=lambda s: s["ae_error"],
                          preprocessing=SimpleNamespace(scaler=scaler))  # fmt: skip
    kinds = np.where(y == 1, np.array(["a", "b", "c"])[rng.integers(0, 3, len(y))], "normal")  # attack names
    rows = bench_novel.Rows(x[:600], y[:600], x[600:], y[600:], x[600:], y[600:], kinds[:600], kinds[600:])
    monkeypatch.setattr(bench_novel, "AE_VARIANT_MAX_EPOCHS", 3)  # nor the autoencoders' training
    with few_trees():  # what is measured and where it is cut, not the forests' size
        got, (s_va, s_te) = bench_novel.variants(ens, rows, seed=0, fpr=0.05)
    assert list(got) == list(bench_novel.VARIANTS)
    assert {"stack", "hgb", "knn", "closest"} <= set(s_va) and set(s_va) == set(s_te)  # what breakdown() reads
    only, _ = bench_novel.variants(ens, rows, seed=0, fpr=0.05, groups=("allocation",))
    assert list(only) == list(bench_novel.VARIANT_GROUPS["allocation"])
    assert only == {k: got[k] for k in only}  # the same figures measured alone
    budget = int(0.05 * int((y[600:] == 0).sum()))
    for name, figures in got.items():
        assert figures["fpr"] <= round(budget / int((y[600:] == 0).sum()), 4), name  # figures have 4 decimals
        assert 0.0 <= figures["pr_auc"] <= 1.0 and figures["recall"] > 0, name


def test_the_novel_share_gives_the_budget_to_the_side_that_finds_what_the_supervised_models_never_saw() -> None:
    """``novelty_share`` on made-up validation scores: when the held-out kinds' rows are found only
    by the anomaly evidence (and the known attacks by the supervised score at any share), the
    supervised part gets a small share; when nothing is held out and the known attacks sit in the
    normal rows' tail of the supervised score, a large one. The folds' rows count only in their fold."""
    from types import SimpleNamespace

    rng = np.random.default_rng(1)
    n_normal, n_known, n_held = 400, 40, 40
    y = np.r_[np.zeros(n_normal, int), np.ones(n_known + n_held, int)]
    held = np.r_[np.zeros(n_normal + n_known, bool), np.ones(n_held, bool)]
    rows = SimpleNamespace(y_va=y)

    def scores(known: tuple[float, float], unseen: tuple[float, float]) -> np.ndarray:
        return np.r_[rng.uniform(0, 1, n_normal), rng.uniform(*known, n_known), rng.uniform(*unseen, n_held)]

    # the held-out kinds: in the normal rows' tail of both anomaly scores, in the supervised ones' normal range
    s_va = {"ae_error": scores((0, 1), (0.85, 1.02)), "knn": scores((0, 1), (0.85, 1.02))}
    s_va["rf+hgb"] = scores((2, 3), (0, 1))
    fold = {"rf_vote": scores((2, 3), (0, 1)), "hgb": scores((2, 3), (0, 1))}
    normal = {k: v[y == 0] for k, v in s_va.items()}
    names = ("ae_error", "knn")
    small = bench_novel.novelty_share(rows, s_va, normal, [(held, fold)], 0.05, names)
    assert small <= 30  # per cent
    # nothing held out, the known attacks in the supervised score's normal tail: the budget goes to it
    s_va["rf+hgb"] = scores((0.9, 1.05), (0, 1))
    normal = {k: v[y == 0] for k, v in s_va.items()}
    assert bench_novel.novelty_share(rows, s_va, normal, [], 0.05, names) >= 70
    # the fold's models finding the held-out kinds as well as the anomaly side does: no reason to starve them
    fold = {"rf_vote": scores((2, 3), (2, 3)), "hgb": scores((2, 3), (2, 3))}
    assert bench_novel.novelty_share(rows, s_va, normal, [(held, fold)], 0.05, names) >= 70


def _validation(n_normal: int = 400, n_attack: int = 40, seed: int = 0) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    y = np.r_[np.zeros(n_normal, int), np.ones(n_attack, int)]
    return y, {"stack": np.r_[rng.uniform(0, 0.5, n_normal), rng.uniform(0.6, 1, n_attack)],
               "ae_error": rng.uniform(0, 1, len(y)), "knn": rng.uniform(0, 1, len(y)),
               "hgb": np.r_[rng.uniform(0, 0.5, n_normal), rng.uniform(0.4, 1, n_attack)]}  # fmt: skip


def test_the_adaptive_fusion_gives_the_stack_the_smallest_weight_that_keeps_its_validation_f1() -> None:
    y, scores = _validation()
    normal = {k: v[y == 0] for k, v in scores.items()}
    va, te, weight = bench_novel.adaptive(normal, scores, scores, y, 0.01)
    stack_f1 = bench_novel.at_budget(scores["stack"], y, scores["stack"], y, 0.01)["f1"]
    chosen_f1 = bench_novel.at_budget(va, y, va, y, 0.01)["f1"]
    assert weight in bench_novel.ADAPTIVE_WEIGHTS and chosen_f1 >= stack_f1 - bench_novel.ADAPTIVE_SLACK
    smaller = [w for w in bench_novel.ADAPTIVE_WEIGHTS if w < weight]
    stack_e, anomaly_e = (bench_novel.evidence(normal, scores, names) for names in (("stack",), ("ae_error", "knn")))
    for w in smaller:  # every smaller weight gives up more validation F1 than the slack
        fused = w * stack_e + anomaly_e
        assert bench_novel.at_budget(fused, y, fused, y, 0.01)["f1"] < stack_f1 - bench_novel.ADAPTIVE_SLACK
    np.testing.assert_allclose(va, weight * stack_e + anomaly_e)
    np.testing.assert_array_equal(va, te)  # the same rows as test rows: the same scores


def test_share_or_flags_what_the_supervised_model_flags_at_its_share_and_the_evidence_with_the_rest() -> None:
    y, scores = _validation(n_normal=1000)
    normal = {k: v[y == 0] for k, v in scores.items()}
    va, _ = bench_novel.share_or(normal, scores, scores, "hgb", ("ae_error", "knn"), 0.5, 0.02)  # 20 normal rows
    from threat_ensemble.models.fusion import budget_cut

    supervised = scores["hgb"] >= budget_cut(normal["hgb"], 0.01)  # half the budget: 10 normal rows
    flagged = va >= budget_cut(va[y == 0], 0.02)
    assert flagged[supervised].all() and va[supervised].min() > va[~supervised].max()
    assert int((flagged & (y == 0)).sum()) == 20 and int((flagged & ~supervised & (y == 0)).sum()) == 10
    evidence = bench_novel.evidence(normal, scores, ("ae_error", "knn"))
    rest = ~supervised  # ordered by the evidence there
    assert (np.argsort(va[rest], kind="stable") == np.argsort(evidence[rest], kind="stable")).all()
    anomaly = ("ae_error", "knn")
    by_evidence, _ = bench_novel.share_or(normal, scores, scores, "hgb", anomaly, 0.5, 0.02, by_evidence=True)
    again = by_evidence >= budget_cut(by_evidence[y == 0], 0.02)
    np.testing.assert_array_equal(again, flagged)  # the same verdicts
    assert (np.argsort(by_evidence[flagged], kind="stable") == np.argsort(evidence[flagged], kind="stable")).all()
    assert by_evidence[flagged].min() > by_evidence[~flagged].max()  # every flagged row first, by its evidence


def test_merge_keeps_the_variants_and_the_breakdown_a_rerun_of_the_same_run_did_not_measure() -> None:
    earlier_run = {**_run("nsl-r2l", 42, 0.3), "variants": {"rf(leaf 5)": {"f1": 0.2}, "ae(no dropout)": {"f1": 0.1}},
                   "breakdown": {"flagged": {"stack": {"normal": 7}}, "test_rows": {"normal": 9}}}  # fmt: skip
    now = [{**_run("nsl-r2l", 42, 0.3), "variants": {"ae(no dropout)": {"f1": 0.4}}}]
    merged = bench_novel.merge_runs({"runs": [earlier_run]}, now, "variants.json")
    assert merged[0]["variants"] == {"rf(leaf 5)": {"f1": 0.2}, "ae(no dropout)": {"f1": 0.4}}
    assert merged[0]["breakdown"] == {"flagged": {"stack": {"normal": 7}}, "test_rows": {"normal": 9}}
    # a rerun whose breakdown counts fewer models: the others' counts are kept, its own replace theirs
    again = [{**_run("nsl-r2l", 42, 0.3), "breakdown": {"flagged": {"hgb": {"normal": 3}}, "test_rows": {"normal": 9}}}]
    merged = bench_novel.merge_runs({"runs": [earlier_run]}, again, "variants.json")
    assert merged[0]["breakdown"]["flagged"] == {"stack": {"normal": 7}, "hgb": {"normal": 3}}


def test_the_breakdown_table_shows_the_mean_count_of_the_seeds() -> None:
    names, shown = bench_novel.BREAKDOWNS["nsl-r2l"]
    counts = {name: 0 for name in (*names, "normal", "normal private")}
    train_rows = {"normal": 200, "normal private": 3, "attack": 100, "attack private": 40}
    test_rows = {"guess_passwd": 1231, "normal": 9711, "normal private": 852}
    flagged = [{m: {**counts, "guess_passwd": g, "normal": n} for m in shown} for g, n in ((10, 100), (20, 301))]
    runs = [{"split": "nsl-r2l", "breakdown": {"flagged": f, "test_rows": test_rows, "train_rows": train_rows}}
            for f in flagged]  # fmt: skip
    table = bench_novel.breakdown_markdown(runs, "nsl-r2l")
    assert "| guess_passwd (1231) |" in table and "| normal (9711) |" in table
    assert "| default ensemble (stack) | 15 | 0 | 0 | 0 | 0 | 200 | 0 |" in table
    assert bench_novel.breakdown_markdown([_run("nsl-r2l", 42, 0.3)], "nsl-r2l") == ""
    assert bench_novel.breakdown_markdown(runs, "nsl-unseen") == ""  # no run of that split
    assert "3 of 200 normal rows (1.5%) and 40 of 100 attack rows" in table
    assert "852 of 9,711 normal rows (8.8%)" in table
    del runs[1]["breakdown"]["flagged"]["knn"]  # a model one run did not score is left out of the table
    assert "knn(1 of 5000)" not in bench_novel.breakdown_markdown(runs, "nsl-r2l")


def test_breakdown_counts_what_each_model_flags_by_attack_name() -> None:
    y_va = np.r_[np.zeros(100, int), np.ones(5, int)]
    s_va = {"a": np.r_[np.arange(100.0), np.full(5, 500.0)]}  # a 2% budget: the cut flags 2 normal rows
    s_te = {"a": np.array([1000.0, 1000.0, 0.0, 1000.0, 99.0])}
    kinds = np.array(["x", "x", "x", "normal private", "normal"])
    rows = bench_novel.Rows(np.zeros((1, 1)), np.zeros(1, int), np.zeros((105, 1)), y_va, np.zeros((5, 1)),
                            np.array([1, 1, 1, 0, 0]), kinds, kinds)  # fmt: skip
    got = bench_novel.breakdown(s_va, s_te, rows, kinds, 0.02, ("x",), ("a", "not scored"))
    assert got == {"a": {"x": 2, "normal": 2, "normal private": 1}}


def test_the_standardised_distance_is_in_signed_log_units_of_the_normal_training_rows() -> None:
    from threat_ensemble.data.preprocessing import signed_log1p

    rng = np.random.default_rng(0)
    x_tr = np.c_[rng.exponential(1000.0, 50), rng.normal(size=50), np.full(50, 7.0)]  # bytes, a value, a constant
    y_tr = np.r_[np.zeros(40, int), np.ones(10, int)]
    logged = signed_log1p(x_tr[:40])
    shifted = x_tr[3].copy()  # normal row 3 with one more standard deviation (signed-log, normal rows) of bytes
    shifted[0] = np.expm1(logged[3, 0] + logged[:, 0].std())
    x_va = np.vstack([x_tr[3], shifted])
    kinds = y_tr.astype(str)
    rows = bench_novel.Rows(x_tr, y_tr, x_va, np.zeros(2, int), x_va, np.zeros(2, int), kinds, np.zeros(2, str))
    va, te = bench_novel.standardised_distance(rows, seed=0)
    np.testing.assert_array_equal(va, te)
    assert va[0] == pytest.approx(0.0, abs=1e-12)  # every normal row is in the sample (40 <= 5000)
    assert 0.0 < va[1] <= 1.0 + 1e-9  # one unit from row 3, or nearer to another normal row
