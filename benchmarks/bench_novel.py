#!/usr/bin/env python
"""Detection of attacks the forest has never seen: the ensemble next to simple baselines fitted on
the same rows in the same run, each cut at the same validation false-positive budget.

    python benchmarks/bench_novel.py                          # every split, seeds 42 1 2 (long)
    python benchmarks/bench_novel.py --splits nsl-dos --seeds 42 --max-epochs 3   # one quick look
    python benchmarks/bench_novel.py --quick                  # a smoke test (one small split, ~1 min)
    python benchmarks/bench_novel.py --write-doc              # also rewrite the table in docs/quality.md
    python benchmarks/bench_novel.py --splits default-unseen,default-known --candidates \
        --merge benchmarks/results/bench_novel-last-run.json --write-doc   # rerun two splits, keep the others
    python benchmarks/bench_novel.py --work runs --reuse --variants --json-out variants.json   # the variants
        # (forests, gradient boosting, autoencoders, budget splits, distances, a share chosen on held-out
        # kinds, a grid of shares) on an earlier run's bundles (docs/quality.md)
    python benchmarks/bench_novel.py --work runs --reuse --variants allocation \
        --merge benchmarks/results/bench_novel-variants.json --json-out variants.json   # one group, the others kept

Splits (NSL-KDD from --nsl-kdd, default ``../shared/data/nsl-kdd``; skipped when absent):

- ``nsl-dos``, ``nsl-probe``, ``nsl-r2l``, ``nsl-u2r``: leave one family out. Train on
  ``KDDTrain+_20Percent`` without the family's rows; test on ``KDDTest+``'s normal rows plus its
  rows of that family (U2R has 67 test rows: reported, not judged).
- ``nsl-unseen``: train on the whole 20% file; test on ``KDDTest+``'s normal rows plus its rows of
  the 18 attack names that never occur in the training file.
- ``default-unseen``: the built-in default data (its generator, ``datasets/default_traffic.py``,
  seed 42) with one attack kind (``--default-holdout``, ``scanner``) left out of training; tested on
  a seeded 15% of its normal rows (never trained on) plus every row of that kind.
- ``nsl-known``, ``default-known``: the known-attack figures: whole ``KDDTest+``, and the default
  data's own 15% test split.

For each split and seed, the ensemble is trained by the package's own engine
(``pipeline.train_tables``, every default but ``--max-epochs`` when given); the baselines are then
fitted on exactly the rows the ensemble trained its forests on (the engine's stratified 70/15/15 split
of the training table, ``stratified_split``), encoded with the run's own encoder, and each is cut
at the lowest score that flags at most ``--target-fpr`` of the normal *validation* rows
(``fusion.budget_cut``, as the ensemble's stacked fusion is). Nothing is fitted, cut or chosen on a
test row. Baselines: a class-weighted random forest alone, scikit-learn's
HistGradientBoostingClassifier, the kNN distance to normal training rows (scaled space, mean of
the 5 nearest of a seeded sample of at most 20,000 normal rows), and forest-OR-kNN (each member's
share of normal validation rows scoring at least as high, the smaller of the two taken, so one cut
is the OR of two). The ensemble's members are reported at the same budget too.

Prints progress on stderr and one JSON summary on stdout, also written to
``benchmarks/results/bench_novel-last-run.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
try:
    import threat_ensemble  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "datasets"))  # default_traffic.py: the default data's generator

DEFAULT_NSL = ROOT.parent / "shared" / "data" / "nsl-kdd"
RESULTS = HERE / "results" / "bench_novel-last-run.json"
DOC = ROOT / "docs" / "quality.md"

# The usual NSL-KDD attack-name -> family map (Tavallaee et al. 2009 and the KDD'99 task), for the
# names of both the train and the test file.
NSL_FAMILIES: dict[str, tuple[str, ...]] = {
    "dos": ("back", "land", "neptune", "pod", "smurf", "teardrop", "apache2", "mailbomb", "processtable",
            "udpstorm"),
    "probe": ("ipsweep", "nmap", "portsweep", "satan", "mscan", "saint"),
    "r2l": ("ftp_write", "guess_passwd", "imap", "multihop", "phf", "spy", "warezclient", "warezmaster",
            "named", "sendmail", "snmpgetattack", "snmpguess", "worm", "xlock", "xsnoop", "httptunnel"),
    "u2r": ("buffer_overflow", "loadmodule", "perl", "rootkit", "ps", "sqlattack", "xterm"),
}  # fmt: skip
ATTACK_FAMILY = {name: family for family, names in NSL_FAMILIES.items() for name in names}
NSL_LABEL, NSL_DIFFICULTY = "41", "42"
SPLITS = ("nsl-dos", "nsl-probe", "nsl-r2l", "nsl-u2r", "nsl-unseen", "default-unseen", "nsl-known", "default-known")
NOVEL = ("nsl-dos", "nsl-probe", "nsl-r2l", "nsl-u2r", "nsl-unseen", "default-unseen")
JUDGED = tuple(s for s in NOVEL if s != "nsl-u2r")  # U2R: 67 test rows, reported, not judged
BASELINES = ("rf_alone", "hgb", "knn", "rf_or_knn")
KNN_K, KNN_SAMPLE = 5, 20_000
TAIL_TOP = 50  # normal validation rows an extrapolated tail is fitted on (tail_evidence)


def log(msg: str) -> None:
    print(f"[bench_novel {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- data
def read_nsl(path: Path) -> pd.DataFrame:
    frame = pd.read_csv(path, header=None)
    frame.columns = [str(c) for c in frame.columns]  # as --no-header names them
    return frame


def nsl_family(names: pd.Series) -> pd.Series:
    """Each row's family (``normal`` for normal rows); an attack name not in the map is an error."""
    family = names.map(lambda n: "normal" if n == "normal" else ATTACK_FAMILY.get(n, "?"))
    unknown = sorted(set(names[family == "?"]))
    if unknown:
        raise SystemExit(f"bench_novel: attack names missing from NSL_FAMILIES: {unknown}")
    return family


def nsl_split(name: str, folder: Path) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """(training frame, test frame, what the test holds); both with the label column ``41``."""
    train, test = read_nsl(folder / "KDDTrain+_20Percent.txt"), read_nsl(folder / "KDDTest+.txt")
    train_family, test_family = nsl_family(train[NSL_LABEL]), nsl_family(test[NSL_LABEL])
    normal = test_family == "normal"
    if name == "nsl-known":
        return train, test, "all of KDDTest+"
    if name == "nsl-unseen":
        novel = ~test[NSL_LABEL].isin(set(train[NSL_LABEL])) & ~normal
        kinds = sorted(set(test.loc[novel, NSL_LABEL]))
        what = f"normal + {int(novel.sum())} rows of {len(kinds)} names absent from training"
        return train, test[normal | novel], what
    family = name.removeprefix("nsl-")
    held = test_family == family
    return train[train_family != family], test[normal | held], f"normal + {int(held.sum())} {family} rows"


def default_split(name: str, seed: int, holdout: str) -> tuple[pd.DataFrame, pd.DataFrame | None, str]:
    from default_traffic import generate_default_traffic

    frame = generate_default_traffic(20000, seed=42, with_family=True)
    if name == "default-known":
        return frame.drop(columns="family"), None, "its 15% test split"
    kind = frame["family"].astype(str)
    held = kind.str.removeprefix("body_") == holdout
    if not held.any():
        raise SystemExit(f"bench_novel: --default-holdout {holdout!r}: no such attack kind in {sorted(set(kind))}")
    normal_rows = np.flatnonzero((frame["label"] == 0).to_numpy())
    rng = np.random.default_rng(seed)
    test_normal = rng.choice(normal_rows, int(round(0.15 * len(normal_rows))), replace=False)
    in_test = held.to_numpy().copy()
    in_test[test_normal] = True
    train = frame[~in_test & ~held.to_numpy()].drop(columns="family")
    test = frame[in_test].drop(columns="family")
    return train, test, f"normal + {int(held.sum())} {holdout} rows"


# ----------------------------------------------------------------------------- scoring
def budget_metrics(y: np.ndarray, score: np.ndarray, cut: float) -> dict[str, float]:
    from threat_ensemble.evaluation.metrics import binary_metrics

    m = binary_metrics(y, score, cutoff=cut)
    return {k: round(float(m[k]), 4) for k in ("precision", "recall", "f1", "pr_auc", "fpr")}


def at_budget(score_val: np.ndarray, y_val: np.ndarray, score_test: np.ndarray, y_test: np.ndarray,
              fpr: float) -> dict[str, float]:  # fmt: skip
    from threat_ensemble.models.fusion import budget_cut

    cut = budget_cut(score_val[y_val == 0], fpr)
    return budget_metrics(y_test, score_test, cut)


def tail_share(reference: np.ndarray, score: np.ndarray) -> np.ndarray:
    """For each score, the share of ``reference`` (normal validation rows) scoring at least as high."""
    ordered = np.sort(reference)
    return (len(ordered) - np.searchsorted(ordered, score, side="left")) / len(ordered)


def knn_scores(reference: np.ndarray, k: int, *rows: np.ndarray) -> list[np.ndarray]:
    """Mean distance of each row to its ``k`` nearest rows of ``reference``."""
    from sklearn.neighbors import NearestNeighbors

    nn = NearestNeighbors(n_neighbors=k).fit(reference)
    return [nn.kneighbors(x)[0].mean(axis=1) for x in rows]


@dataclass
class Rows:
    """The rows of one run as its engine split them: the training table's train and validation
    splits (encoded with the run's own encoder) and the test rows."""

    x_tr: np.ndarray
    y_tr: np.ndarray
    x_va: np.ndarray
    y_va: np.ndarray
    x_te: np.ndarray
    y_te: np.ndarray
    kinds_tr: np.ndarray  # each training row's attack name ("normal" for normal rows)
    kinds_va: np.ndarray

    @classmethod
    def of(cls, ens: Any, train: pd.DataFrame, y: np.ndarray, test: pd.DataFrame, y_test: np.ndarray, seed: int,
           label: str) -> Rows:  # fmt: skip
        from threat_ensemble.data.datamodule import stratified_split

        tr, va, _ = stratified_split(y, seed)
        x_all, _ = ens.preprocessing.encoder.transform(train.drop(columns=[label]))
        x_te, _ = ens.preprocessing.encoder.transform(test.drop(columns=[label]))
        kinds = np.where(y == 0, "normal", train[label].astype(str).to_numpy())
        return cls(x_all[tr], y[tr], x_all[va], y[va], x_te, y_test, kinds[tr], kinds[va])


def baselines(ens: Any, rows: Rows, seed: int, fpr: float) -> dict[str, dict[str, float]]:
    """The baselines on the rows the run's forests were fitted on (train split) and cut on (validation)."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    from threat_ensemble.models.forests import DeterministicForest

    scaler = ens.preprocessing.scaler
    out: dict[str, dict[str, float]] = {}
    # scikit-learn's forest, its votes summed in tree order (the same bits on every run: a PR-AUC tie
    # then breaks the same way; RandomForestClassifier's thread order moved one figure by 1e-4)
    rf = DeterministicForest(n_estimators=100, class_weight="balanced", random_state=seed, n_jobs=-1)
    rf.fit(rows.x_tr, rows.y_tr)
    rf_va, rf_te = rf.predict_proba(rows.x_va)[:, 1], rf.predict_proba(rows.x_te)[:, 1]
    out["rf_alone"] = at_budget(rf_va, rows.y_va, rf_te, rows.y_te, fpr)
    hgb = HistGradientBoostingClassifier(random_state=seed).fit(rows.x_tr, rows.y_tr)
    hgb_va, hgb_te = hgb.predict_proba(rows.x_va)[:, 1], hgb.predict_proba(rows.x_te)[:, 1]
    out["hgb"] = at_budget(hgb_va, rows.y_va, hgb_te, rows.y_te, fpr)
    normal = normal_sample(scaler.transform(rows.x_tr[rows.y_tr == 0]), KNN_SAMPLE, seed)
    kn_va, kn_te = knn_scores(normal, KNN_K, scaler.transform(rows.x_va), scaler.transform(rows.x_te))
    out["knn"] = at_budget(kn_va, rows.y_va, kn_te, rows.y_te, fpr)
    either_va, either_te = either((rf_va, kn_va), rows.y_va, (rf_va, rf_te), (kn_va, kn_te))
    out["rf_or_knn"] = at_budget(either_va, rows.y_va, either_te, rows.y_te, fpr)
    return out


def normal_sample(normal: np.ndarray, n: int, seed: int) -> np.ndarray:
    """A seeded sample of at most ``n`` of the rows (all of them when fewer)."""
    if len(normal) <= n:
        return normal
    return normal[np.sort(np.random.default_rng(seed).choice(len(normal), n, replace=False))]


def either(reference: tuple[np.ndarray, ...], y_va: np.ndarray, *scores: tuple[np.ndarray, np.ndarray]
           ) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """The OR of several scores as one: each score's share of normal validation rows scoring at
    least as high, the smallest of them (as 1 - share, higher = more anomalous)."""
    refs = [r[y_va == 0] for r in reference]
    va = 1.0 - np.min([tail_share(ref, s[0]) for ref, s in zip(refs, scores, strict=True)], axis=0)
    te = 1.0 - np.min([tail_share(ref, s[1]) for ref, s in zip(refs, scores, strict=True)], axis=0)
    return va, te


def member_figures(ens: Any, rows: Rows, fpr: float) -> dict[str, dict[str, float]]:
    """Each member of the trained ensemble, cut at the same validation budget."""
    from threat_ensemble.models.fusion import MEMBERS

    s_va, s_te = ens.member_scores(rows.x_va), ens.member_scores(rows.x_te)
    raw = {"ae": "ae_error", "rf": "rf_vote"}  # the members' uncapped scores (the capped ones tie at 1)
    return {m: at_budget(s_va[raw.get(m, m)], rows.y_va, s_te[raw.get(m, m)], rows.y_te, fpr) for m in MEMBERS}


# ----------------------------------------------------------------------------- candidates
def evidence(normal: dict[str, np.ndarray], scores: dict[str, np.ndarray], names: tuple[str, ...]) -> np.ndarray:
    """Fisher's combination of the members' normal-tail shares: the sum over ``names`` of
    -log((rows of ``normal[name]`` scoring at least as high + 1) / (n + 1))."""
    total = np.zeros(len(scores[names[0]]))
    for name in names:
        ordered = np.sort(normal[name])
        above = len(ordered) - np.searchsorted(ordered, scores[name], side="left")
        total -= np.log((above + 1.0) / (len(ordered) + 1.0))
    return total


def pseudo_kinds(ens: Any, rows: Rows, seed: int, n: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Attack kinds when the labels name none: k-means clusters of the scaled training attack rows."""
    from sklearn.cluster import KMeans

    scaler = ens.preprocessing.scaler
    attack = scaler.transform(rows.x_tr[rows.y_tr == 1])
    km = KMeans(n_clusters=min(n, len(attack)), random_state=seed, n_init=4).fit(attack)
    kinds_tr = np.full(len(rows.y_tr), "normal", dtype=object)
    kinds_va = np.full(len(rows.y_va), "normal", dtype=object)
    kinds_tr[rows.y_tr == 1] = km.labels_.astype(str)
    kinds_va[rows.y_va == 1] = km.predict(scaler.transform(rows.x_va[rows.y_va == 1])).astype(str)
    return kinds_tr, kinds_va


def kind_folds(attack_kinds: np.ndarray, n: int = 5) -> list[list[str]]:
    """Up to ``n`` folds of the training attack rows' kinds, dealt by size (largest first, in turn)."""
    sizes = pd.Series(attack_kinds).value_counts()
    n_folds = min(n, len(sizes))
    return [list(sizes.index[i::n_folds]) for i in range(n_folds)]


def aware_stack(ens: Any, rows: Rows, s_va: dict[str, np.ndarray], s_te: dict[str, np.ndarray], seed: int,
                fpr: float, kinds: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """The stacked fusion fitted on the validation rows plus, for each fold of attack kinds, the
    validation rows of those kinds (and the normal ones) scored by a forest fitted without them: the
    fusion sees the forest meet attacks it has not seen. Cut on the plain validation rows."""
    from sklearn.linear_model import LogisticRegression

    from threat_ensemble.models.forests import N_TREES, RF_MAX_DEPTH, DeterministicForest
    from threat_ensemble.models.fusion import stack_features

    kinds_tr, kinds_va = kinds
    x_fit, y_fit = [stack_features(s_va, N_TREES)], [rows.y_va]
    for fold in kind_folds(kinds_tr[rows.y_tr == 1]):
        keep = ~np.isin(kinds_tr, fold)
        forest = DeterministicForest(n_estimators=N_TREES, max_depth=RF_MAX_DEPTH, class_weight="balanced",
                                     random_state=seed, n_jobs=-1).fit(rows.x_tr[keep], rows.y_tr[keep])  # fmt: skip
        chosen = (rows.y_va == 0) | np.isin(kinds_va, fold)
        if not rows.y_va[chosen].any():
            continue
        scores = {k: v[chosen] for k, v in s_va.items()}
        scores["rf_vote"] = forest.predict_proba(rows.x_va[chosen])[:, 1]
        x_fit.append(stack_features(scores, N_TREES))
        y_fit.append(rows.y_va[chosen])
    x, y = np.vstack(x_fit), np.concatenate(y_fit)
    mean, scale = x.mean(axis=0), np.where(x.std(axis=0) > 1e-12, x.std(axis=0), 1.0)
    model = LogisticRegression(max_iter=5000).fit((x - mean) / scale, y)
    va = model.decision_function((stack_features(s_va, N_TREES) - mean) / scale)
    te = model.decision_function((stack_features(s_te, N_TREES) - mean) / scale)
    return va, te


def tail_evidence(normal: np.ndarray, score: np.ndarray, top: int = TAIL_TOP) -> np.ndarray:
    """-log of a score's normal tail share, as in :func:`evidence`, with the tail beyond the ``top``-th
    highest normal validation score ``u`` extrapolated (peaks over threshold): an exponential whose
    mean is that of the ``top`` highest scores' excesses over ``u``, ``beta``, so a score past every
    normal row keeps adding evidence instead of saturating at log(n + 1):
    ``log((n + 1) / top) + (score - u) / beta`` above ``u``, the empirical -log((at least as high + 1) / (n + 1))
    at or below it."""
    ordered = np.sort(normal)
    n = len(ordered)
    top = max(1, min(top, n))
    above = n - np.searchsorted(ordered, score, side="left")
    empirical = -np.log((above + 1.0) / (n + 1.0))
    u = ordered[n - top]
    beta = max(float(np.mean(ordered[n - top :] - u)), 1e-12)
    return np.where(score > u, np.log((n + 1.0) / top) + (score - u) / beta, empirical)


def on_tail_scale(name: str, score: np.ndarray) -> np.ndarray:
    """Each member's score on the scale its tail is extrapolated on: the forest's vote as a logit
    (as the stacked fusion takes it), the stack's probability as a logit, the autoencoder's error and
    a distance as logs (heavy-tailed), the isolation forest's score as it is."""
    from threat_ensemble.models.forests import N_TREES

    if name == "rf_vote":
        vote = np.clip(score, 1.0 / (2 * N_TREES), 1.0 - 1.0 / (2 * N_TREES))
        return np.log(vote / (1.0 - vote))
    if name == "stack":
        p = np.clip(score, 1e-15, 1.0 - 1e-15)
        return np.log(p / (1.0 - p))
    if name in ("ae_error", "knn", "knn_es"):
        return np.log(np.maximum(score, 0.0) + 1e-6)
    return np.asarray(score, dtype=np.float64)


def fisher_tails(normal: dict[str, np.ndarray], scores: dict[str, np.ndarray], names: tuple[str, ...]) -> np.ndarray:
    """:func:`evidence` with each member's tail extrapolated (:func:`tail_evidence` on :func:`on_tail_scale`)."""
    return np.sum([tail_evidence(on_tail_scale(n, normal[n]), on_tail_scale(n, scores[n])) for n in names], axis=0)


def leftover_cut(normal: np.ndarray, flagged: np.ndarray, fpr: float) -> float:
    """The lowest cut on ``normal`` (the normal validation rows' scores) that flags, among the rows
    not already ``flagged``, at most what is left of the budget (``floor(fpr * n)`` less the rows
    flagged); above every such row when nothing is left."""
    from threat_ensemble.models.fusion import budget_cut

    n = len(normal)
    left = max(int(np.floor(fpr * n + 1e-9)) - int(flagged.sum()), 0)
    rest = normal[~flagged]
    if not rest.size:
        return float("inf")
    return budget_cut(rest, left / len(rest) + 1e-12)


def stack_then(normal: dict[str, np.ndarray], s_va: dict[str, np.ndarray], s_te: dict[str, np.ndarray],
               names: tuple[str, ...], y_va: np.ndarray, fpr: float) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Today's stack at its own cut first, the anomaly members' extrapolated evidence with what is
    left of the budget: ``max(S - cut_S, A - cut_A)``, flagged at >= 0, where S and A are the
    stack's and the evidence's extrapolated tails and cut_A flags no more normal validation rows
    than the stack left unspent."""
    from threat_ensemble.models.fusion import budget_cut

    stack = {k: on_tail_scale("stack", v) for k, v in (("va", s_va["stack"]), ("te", s_te["stack"]))}
    ref = on_tail_scale("stack", normal["stack"])
    s_tail = {k: tail_evidence(ref, v) for k, v in stack.items()}
    a_raw = {"va": fisher_tails(normal, s_va, names), "te": fisher_tails(normal, s_te, names)}
    a_tail = {k: tail_evidence(a_raw["va"][y_va == 0], v) for k, v in a_raw.items()}
    cut_s = budget_cut(s_tail["va"][y_va == 0], fpr)
    cut_a = leftover_cut(a_tail["va"][y_va == 0], s_tail["va"][y_va == 0] >= cut_s, fpr)
    return (
        np.maximum(s_tail["va"] - cut_s, a_tail["va"] - cut_a),
        np.maximum(s_tail["te"] - cut_s, a_tail["te"] - cut_a),
    )


CANDIDATES = (
    "knn(1 of 5000)", "knn_es(1 of 5000)", "evidence(rf,ae,if)", "evidence(rf,ae,knn)", "evidence(rf,ae,if,knn)",
    "evidence(rf,ae,knn_es)", "tail_evidence(rf,ae,knn)", "stack OR evidence(ae,knn)", "stack then evidence(ae,knn)",
    "aware_stack",
)  # fmt: skip


Scores = dict[str, np.ndarray]


def with_stack_and_distance(ens: Any, rows: Rows, seed: int) -> tuple[Scores, Scores, np.ndarray]:
    """The run's member scores of the validation and test rows, with today's stacked fusion
    (``stack``) and the distance to the nearest of a seeded sample of 5,000 scaled normal training
    rows (``knn``) beside them; and that sample (the candidates weigh it again)."""
    scaler = ens.preprocessing.scaler
    s_va, s_te = ens.member_scores(rows.x_va), ens.member_scores(rows.x_te)
    s_va["stack"], s_te["stack"] = ens.fuse(dict(s_va)), ens.fuse(dict(s_te))
    reference = normal_sample(scaler.transform(rows.x_tr[rows.y_tr == 0]), 5000, seed)
    s_va["knn"], s_te["knn"] = knn_scores(reference, 1, scaler.transform(rows.x_va), scaler.transform(rows.x_te))
    return s_va, s_te, reference


def candidates(ens: Any, rows: Rows, seed: int, fpr: float, named_kinds: bool) -> dict[str, dict[str, float]]:
    """Fusions and a member measured beside the default on the run's own bundle (nothing refitted
    but what each candidate adds), each cut at the same validation budget. See docs/quality.md."""
    scaler = ens.preprocessing.scaler
    s_va, s_te, reference = with_stack_and_distance(ens, rows, seed)
    # the same distance with each scaled feature divided by the autoencoder's typical error on it
    # (the square root of its error scale), so features normal traffic always reconstructs weigh more
    weight = 1.0 / np.sqrt(np.asarray(ens.error_scale if ens.error_scale is not None else 1.0, dtype=np.float64))
    s_va["knn_es"], s_te["knn_es"] = knn_scores(
        reference * weight, 1, scaler.transform(rows.x_va) * weight, scaler.transform(rows.x_te) * weight
    )
    normal = {k: v[rows.y_va == 0] for k, v in s_va.items()}
    out = {name: at_budget(s_va[m], rows.y_va, s_te[m], rows.y_te, fpr)
           for name, m in (("knn(1 of 5000)", "knn"), ("knn_es(1 of 5000)", "knn_es"))}  # fmt: skip
    for name, members in (("evidence(rf,ae,if)", ("rf_vote", "ae_error", "if")),
                          ("evidence(rf,ae,knn)", ("rf_vote", "ae_error", "knn")),
                          ("evidence(rf,ae,if,knn)", ("rf_vote", "ae_error", "if", "knn")),
                          ("evidence(rf,ae,knn_es)", ("rf_vote", "ae_error", "knn_es"))):  # fmt: skip
        va, te = evidence(normal, s_va, members), evidence(normal, s_te, members)
        out[name] = at_budget(va, rows.y_va, te, rows.y_te, fpr)
    members = ("rf_vote", "ae_error", "knn")
    va, te = fisher_tails(normal, s_va, members), fisher_tails(normal, s_te, members)
    out["tail_evidence(rf,ae,knn)"] = at_budget(va, rows.y_va, te, rows.y_te, fpr)
    anomaly_va, anomaly_te = (evidence(normal, s, ("ae_error", "knn")) for s in (s_va, s_te))
    va, te = either((s_va["stack"], anomaly_va), rows.y_va, (s_va["stack"], s_te["stack"]), (anomaly_va, anomaly_te))
    out["stack OR evidence(ae,knn)"] = at_budget(va, rows.y_va, te, rows.y_te, fpr)
    va, te = stack_then(normal, s_va, s_te, ("ae_error", "knn"), rows.y_va, fpr)
    out["stack then evidence(ae,knn)"] = at_budget(va, rows.y_va, te, rows.y_te, fpr)
    kinds = (rows.kinds_tr, rows.kinds_va) if named_kinds else pseudo_kinds(ens, rows, seed)
    va, te = aware_stack(ens, rows, s_va, s_te, seed, fpr, kinds)
    out["aware_stack"] = at_budget(va, rows.y_va, te, rows.y_te, fpr)
    return out


SHARES = (10, 20, 30, 40, 50, 60, 70, 80, 90)  # per cent of the budget for the supervised part (novelty, shares)
VARIANTS = (
    "rf(leaf 5)", "stack(rf leaf 5)", "rf(leaf 20)", "stack(rf leaf 20)", "rf(depth 10)", "stack(rf depth 10)",
    "rf(max_features 0.5)", "stack(rf max_features 0.5)", "evidence(hgb,ae,knn)", "evidence(rf,hgb,ae,knn)",
    "evidence(stack,ae,knn)", "ae(no dropout)", "ae(64-32-16, no dropout)", "adaptive(stack; ae,knn)",
    "hgb@50% OR evidence(ae,knn)", "hgb@50% OR evidence(ae,knn), by evidence",
    "rf+hgb@50% OR evidence(ae,knn), by evidence", "rf+hgb@90% OR evidence(ae,knn), by evidence",
    "knn_z(1 of 5000)", "rf+hgb@50% OR evidence(ae,knn_z), by evidence",
    "rf+hgb@novel share OR evidence(ae,knn), by evidence", "rf+hgb@novel share OR evidence(ae,knn_z), by evidence",
    *(f"rf+hgb@{share}% OR evidence(ae,knn_z), by evidence" for share in SHARES if share != 50),
    "knn_z(1 of 1000)", "rf+hgb@50% OR evidence(ae,knn_z 1 of 1000), by evidence",
    "knn_z(1 of 5000, 20 components)", "rf+hgb@50% OR evidence(ae,knn_z 20 components), by evidence",
)  # fmt: skip
VARIANT_GROUPS = {  # --variants GROUP,...: which of VARIANTS one run measures
    "forest": VARIANTS[:8], "evidence": VARIANTS[8:11], "autoencoder": VARIANTS[11:13], "allocation": VARIANTS[13:18],
    "distance": VARIANTS[18:20], "novelty": VARIANTS[20:22], "shares": VARIANTS[22:30],
    "affordable": VARIANTS[30:],
}
AE_VARIANTS = {"no dropout": (24, 12, 6), "64-32-16, no dropout": (64, 32, 16)}  # widths, no dropout
AE_VARIANT_MAX_EPOCHS = 100  # the engine's default --max-epochs
ADAPTIVE_WEIGHTS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)  # the stack's weight in adaptive(...), smallest first
ADAPTIVE_SLACK = 0.005  # validation F1 the adaptive fusion may give up against the stack alone
# What each model flags, by test attack name (those of at least 100 test rows), on the splits whose
# figures the docs explain with it: split -> (names, {model: its name in the table})
BREAKDOWNS: dict[str, tuple[tuple[str, ...], dict[str, str]]] = {
    "nsl-r2l": (("guess_passwd", "warezmaster", "snmpguess", "snmpgetattack", "httptunnel"),
                {"stack": "default ensemble (stack)", "ae_error": "member ae", "knn": "`knn(1 of 5000)`",
                 "hgb": "hgb"}),
    "nsl-unseen": (("mscan", "apache2", "processtable", "snmpguess", "saint", "mailbomb", "snmpgetattack",
                    "httptunnel"),
                   {"stack": "default ensemble (stack)", "rf_vote": "member rf", "hgb": "hgb",
                    "closest": "`rf+hgb@50% OR evidence(ae,knn), by evidence`"}),
}  # fmt: skip
FOREST_VARIANTS = {"leaf 5": {"min_samples_leaf": 5}, "leaf 20": {"min_samples_leaf": 20},
                   "depth 10": {"max_depth": 10}, "max_features 0.5": {"max_features": 0.5}}  # fmt: skip


def variants(ens: Any, rows: Rows, seed: int, fpr: float, groups: tuple[str, ...] = tuple(VARIANT_GROUPS),
             named_kinds: bool = True) -> tuple[dict[str, dict[str, float]], tuple[Scores, Scores]]:  # fmt: skip
    """Tried and lost (docs/quality.md, ``--variants``): a forest that flags fewer of NSL-KDD's shifted
    normal rows, and HistGradientBoosting as a member. Each forest variant is refitted on the run's
    training rows with the run's other settings (``forests.N_TREES`` trees, depth ``RF_MAX_DEPTH``,
    class-balanced) and one setting changed, and measured alone (its vote share) and as the member of
    a stacked fusion refitted on the validation rows (the run's autoencoder and isolation forest
    beside it); ``hgb`` is scikit-learn's HistGradientBoostingClassifier on the same rows, in the
    evidence sum beside the run's own members and the 1-NN distance of the candidates; the
    autoencoder retrained without dropout (:func:`autoencoder_variant`); the stack's share of the
    evidence chosen on validation rows (:func:`adaptive`); HistGradientBoosting OR the anomaly
    members' evidence (:func:`share_or`), with the supervised share chosen on validation rows that
    show the supervised models meeting attack kinds they were not fitted on (:func:`novelty_share`;
    ``named_kinds``: the training labels name the kinds, else k-means clusters stand for them). Only
    the variants of ``groups`` (VARIANT_GROUPS) are measured. Returns their figures, and the
    validation and test rows' scores (the members', the baselines' and, with ``allocation``, the
    closest model's as ``closest``) for :func:`breakdown`."""
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier

    from threat_ensemble.models.forests import N_TREES, RF_MAX_DEPTH
    from threat_ensemble.models.fusion import apply_stacked_fusion, fit_stacked_fusion, stack_features

    s_va, s_te, _ = with_stack_and_distance(ens, rows, seed)
    out: dict[str, dict[str, float]] = {}
    for name, setting in FOREST_VARIANTS.items() if "forest" in groups else ():
        forest = RandomForestClassifier(**{"n_estimators": N_TREES, "max_depth": RF_MAX_DEPTH, **setting},
                                        class_weight="balanced", random_state=seed, n_jobs=-1)  # fmt: skip
        forest.fit(rows.x_tr.astype(np.float32), rows.y_tr)
        va, te = dict(s_va), dict(s_te)
        va["rf_vote"], te["rf_vote"] = forest.predict_proba(rows.x_va)[:, 1], forest.predict_proba(rows.x_te)[:, 1]
        out[f"rf({name})"] = at_budget(va["rf_vote"], rows.y_va, te["rf_vote"], rows.y_te, fpr)
        fusion = fit_stacked_fusion(stack_features(va, N_TREES), rows.y_va, fpr)
        stacked_va, stacked_te = (apply_stacked_fusion(fusion, stack_features(x, N_TREES)) for x in (va, te))
        out[f"stack(rf {name})"] = at_budget(stacked_va, rows.y_va, stacked_te, rows.y_te, fpr)
    hgb = HistGradientBoostingClassifier(random_state=seed).fit(rows.x_tr, rows.y_tr)
    s_va["hgb"], s_te["hgb"] = hgb.predict_proba(rows.x_va)[:, 1], hgb.predict_proba(rows.x_te)[:, 1]
    normal = {k: v[rows.y_va == 0] for k, v in s_va.items()}
    # the forest and HistGradientBoosting as one supervised score: the sum of their evidence
    s_va["rf+hgb"], s_te["rf+hgb"] = (evidence(normal, s, ("rf_vote", "hgb")) for s in (s_va, s_te))
    normal["rf+hgb"] = s_va["rf+hgb"][rows.y_va == 0]
    for name, members in (("evidence(hgb,ae,knn)", ("hgb", "ae_error", "knn")),
                          ("evidence(rf,hgb,ae,knn)", ("rf_vote", "hgb", "ae_error", "knn")),
                          ("evidence(stack,ae,knn)", ("stack", "ae_error", "knn"))
                          ) if "evidence" in groups else ():  # fmt: skip
        va, te = evidence(normal, s_va, members), evidence(normal, s_te, members)
        out[name] = at_budget(va, rows.y_va, te, rows.y_te, fpr)
    if "autoencoder" in groups:
        scaler = ens.preprocessing.scaler
        scaled = [scaler.transform(x).astype(np.float32) for x in (rows.x_tr[rows.y_tr == 0], rows.x_va, rows.x_te)]
        for name, hidden in AE_VARIANTS.items():
            errors_va, errors_te = autoencoder_variant(*scaled, rows.y_va, hidden, seed)
            out[f"ae({name})"] = at_budget(errors_va, rows.y_va, errors_te, rows.y_te, fpr)
    if "allocation" in groups:
        va, te, _ = adaptive(normal, s_va, s_te, rows.y_va, fpr)
        out["adaptive(stack; ae,knn)"] = at_budget(va, rows.y_va, te, rows.y_te, fpr)
        va, te = share_or(normal, s_va, s_te, "hgb", ("ae_error", "knn"), 0.5, fpr)
        out["hgb@50% OR evidence(ae,knn)"] = at_budget(va, rows.y_va, te, rows.y_te, fpr)
        for supervised, share in (("hgb", 0.5), ("rf+hgb", 0.5), ("rf+hgb", 0.9)):
            va, te = share_or(normal, s_va, s_te, supervised, ("ae_error", "knn"), share, fpr, by_evidence=True)
            name = f"{supervised}@{100 * share:.0f}% OR evidence(ae,knn), by evidence"
            out[name] = at_budget(va, rows.y_va, te, rows.y_te, fpr)
            if name == "rf+hgb@50% OR evidence(ae,knn), by evidence":
                s_va["closest"], s_te["closest"] = va, te
    if {"distance", "novelty", "shares"} & set(groups):
        s_va["knn_z"], s_te["knn_z"] = standardised_distance(rows, seed)
        normal["knn_z"] = s_va["knn_z"][rows.y_va == 0]
    if "distance" in groups:
        out["knn_z(1 of 5000)"] = at_budget(s_va["knn_z"], rows.y_va, s_te["knn_z"], rows.y_te, fpr)
        va, te = share_or(normal, s_va, s_te, "rf+hgb", ("ae_error", "knn_z"), 0.5, fpr, by_evidence=True)
        out["rf+hgb@50% OR evidence(ae,knn_z), by evidence"] = at_budget(va, rows.y_va, te, rows.y_te, fpr)
    if "novelty" in groups:
        kinds = (rows.kinds_tr, rows.kinds_va) if named_kinds else pseudo_kinds(ens, rows, seed)
        folds = leave_kinds_out(rows, kinds, seed)
        for distance in ("knn", "knn_z"):
            names = ("ae_error", distance)
            share = novelty_share(rows, s_va, normal, folds, fpr, names)
            va, te = share_or(normal, s_va, s_te, "rf+hgb", names, share / 100, fpr, by_evidence=True)
            name = f"rf+hgb@novel share OR evidence(ae,{distance}), by evidence"
            out[name] = {**at_budget(va, rows.y_va, te, rows.y_te, fpr), "share": share / 100}
    for share in (s for s in SHARES if s != 50) if "shares" in groups else ():  # a check, not a choice
        va, te = share_or(normal, s_va, s_te, "rf+hgb", ("ae_error", "knn_z"), share / 100, fpr, by_evidence=True)
        out[f"rf+hgb@{share}% OR evidence(ae,knn_z), by evidence"] = at_budget(va, rows.y_va, te, rows.y_te, fpr)
    # the distance a scorer can afford (benchmarks/bench_distance.py): fewer rows, or fewer dimensions
    for key, (n, components), alone in (("knn_z 1 of 1000", (1000, None), "knn_z(1 of 1000)"),
                                        ("knn_z 20 components", (5000, 20), "knn_z(1 of 5000, 20 components)")
                                        ) if "affordable" in groups else ():  # fmt: skip
        s_va[key], s_te[key] = standardised_distance(rows, seed, n, components)
        normal[key] = s_va[key][rows.y_va == 0]
        out[alone] = at_budget(s_va[key], rows.y_va, s_te[key], rows.y_te, fpr)
        va, te = share_or(normal, s_va, s_te, "rf+hgb", ("ae_error", key), 0.5, fpr, by_evidence=True)
        out[f"rf+hgb@50% OR evidence(ae,{key}), by evidence"] = at_budget(va, rows.y_va, te, rows.y_te, fpr)
    return out, (s_va, s_te)


def breakdown(s_va: Scores, s_te: Scores, rows: Rows, test_kinds: np.ndarray, fpr: float, names: tuple[str, ...],
              models: tuple[str, ...]) -> dict[str, dict[str, int]]:  # fmt: skip
    """What each of ``models`` (keys of the scores, those present) flags at the budget's cut, by test
    attack name (``names``), with the normal test rows flagged and, of those, the rows of UDP service
    ``private`` (``test_kinds``: each test row's attack name, ``normal`` or ``normal private``)."""
    from threat_ensemble.models.fusion import budget_cut

    out: dict[str, dict[str, int]] = {}
    for model in (m for m in models if m in s_va):
        flagged = s_te[model] >= budget_cut(s_va[model][rows.y_va == 0], fpr)
        counts = {name: int(np.sum(flagged & (test_kinds == name))) for name in names}
        counts["normal"] = int(np.sum(flagged & (rows.y_te == 0)))
        counts["normal private"] = int(np.sum(flagged & (test_kinds == "normal private")))
        out[model] = counts
    return out


def autoencoder_variant(x_normal: np.ndarray, x_va: np.ndarray, x_te: np.ndarray, y_va: np.ndarray,
                        hidden: tuple[int, ...], seed: int) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """The package's autoencoder shape with ``hidden`` widths and no dropout, trained as the engine
    trains it (Adam, lr 3e-3, batch 1024, MSE on the normal training rows, early stopping after 10
    epochs without a lower loss on the normal validation rows, at most AE_VARIANT_MAX_EPOCHS, the best epoch
    kept), scored as the engine scores (mean squared error per feature over its mean on the normal
    validation rows): the validation and test rows' scores. A plain loop: a benchmark variant, not
    the product's training path."""
    import torch

    from threat_ensemble.models.autoencoder import build_autoencoder, error_scale, feature_errors, reconstruction_error

    torch.manual_seed(seed)
    net = build_autoencoder(x_normal.shape[1], hidden, dropout=0.0)
    optimiser = torch.optim.Adam(net.parameters(), lr=3e-3)
    train, val = torch.from_numpy(x_normal), torch.from_numpy(x_va[y_va == 0])
    order = torch.Generator().manual_seed(seed)
    best, best_state, waited = float("inf"), None, 0
    for _ in range(AE_VARIANT_MAX_EPOCHS):
        net.train()
        for batch in train[torch.randperm(len(train), generator=order)].split(1024):
            loss = ((net(batch) - batch) ** 2).mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        loss = float(feature_errors(net, val).mean())
        if loss < best:
            best, best_state, waited = loss, {k: v.clone() for k, v in net.state_dict().items()}, 0
        else:
            waited += 1
            if waited >= 10:
                break
    net.load_state_dict(best_state)
    scale = error_scale(feature_errors(net, val))
    return tuple(reconstruction_error(net, torch.from_numpy(x), scale=scale).numpy() for x in (x_va, x_te))


def standardiser(normal: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """Encoded rows -> float64 rows in ``knn_z``'s space: ``signed_log1p``, standardised by the mean
    and standard deviation of ``normal`` (encoded normal training rows) there; a constant column as
    it is."""
    from threat_ensemble.data.preprocessing import signed_log1p

    logged = signed_log1p(np.asarray(normal, np.float64))
    mean, spread = logged.mean(axis=0), logged.std(axis=0)
    spread = np.where(spread > 1e-9, spread, 1.0)
    return lambda x: (signed_log1p(np.asarray(x, np.float64)) - mean) / spread


def standardised_distance(rows: Rows, seed: int, n: int = 5000, components: int | None = None
                          ) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """The validation and test rows' distance to the nearest of a seeded sample of ``n`` normal
    training rows in :func:`standardiser`'s space (instead of the package's scaler: the normal rows'
    median and interquartile range, clipped at +-SCALED_BOUND); with ``components``, projected on
    that many principal components of the standardised normal training rows first."""
    from sklearn.decomposition import PCA

    normal = rows.x_tr[rows.y_tr == 0]
    to_z = standardiser(normal)
    z = [to_z(x) for x in (normal, rows.x_va, rows.x_te)]
    if components is not None:
        pca = PCA(n_components=min(components, *z[0].shape), random_state=seed).fit(z[0])
        z = [pca.transform(x) for x in z]
    va, te = knn_scores(normal_sample(z[0], n, seed), 1, z[1], z[2])
    return va, te


def leave_kinds_out(rows: Rows, kinds: tuple[np.ndarray, np.ndarray], seed: int) -> list[tuple[np.ndarray, Scores]]:
    """For each fold of the training attack kinds (:func:`kind_folds`; ``kinds``: each training and
    validation row's kind): which validation rows are
    of the fold's kinds, and every validation row's ``rf_vote`` and ``hgb`` from a forest (the run's
    settings) and a HistGradientBoosting fitted on the training rows without those kinds."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    from threat_ensemble.models.forests import N_TREES, RF_MAX_DEPTH, DeterministicForest

    kinds_tr, kinds_va = kinds
    out = []
    for fold in kind_folds(kinds_tr[rows.y_tr == 1]):
        held = np.isin(kinds_va, fold)
        if not held.any():
            continue
        keep = ~np.isin(kinds_tr, fold)
        if not rows.y_tr[keep].any():  # one attack kind only: no fold can hold it out
            continue
        forest = DeterministicForest(n_estimators=N_TREES, max_depth=RF_MAX_DEPTH, class_weight="balanced",
                                     random_state=seed, n_jobs=-1).fit(rows.x_tr[keep], rows.y_tr[keep])  # fmt: skip
        hgb = HistGradientBoostingClassifier(random_state=seed).fit(rows.x_tr[keep], rows.y_tr[keep])
        scores = {"rf_vote": forest.predict_proba(rows.x_va)[:, 1], "hgb": hgb.predict_proba(rows.x_va)[:, 1]}
        out.append((held, scores))
    return out


def novelty_share(rows: Rows, s_va: Scores, normal: Scores, folds: list[tuple[np.ndarray, Scores]], fpr: float,
                  names: tuple[str, ...]) -> int:  # fmt: skip
    """The share of the budget (per cent) for the supervised part of ``rf+hgb@share OR
    evidence(names)`` (:func:`share_or`), chosen from SHARES on validation rows only: the share whose verdicts catch
    the most of (the validation attack rows of each fold's held-out kinds, the supervised part being
    the fold's models, which never saw them: :func:`leave_kinds_out`) plus (every validation attack
    row, the supervised part being the run's models), each as a recall; a tie goes to the share
    nearest half. The validation budget holds at every share, by construction."""
    from threat_ensemble.models.fusion import budget_cut

    is_normal = rows.y_va == 0
    anomaly = evidence(normal, s_va, names)

    def flagged(supervised: np.ndarray, share: int) -> np.ndarray:
        cut = budget_cut(supervised[is_normal], share / 100 * fpr)
        return (supervised >= cut) | (anomaly >= leftover_cut(anomaly[is_normal], supervised[is_normal] >= cut, fpr))

    known = np.array([flagged(s_va["rf+hgb"], s)[~is_normal].mean() for s in SHARES])
    caught, held_rows = np.zeros(len(SHARES)), 0
    for held, fold in folds:
        supervised = evidence({k: v[is_normal] for k, v in fold.items()}, fold, ("rf_vote", "hgb"))
        caught += [flagged(supervised, s)[held].sum() for s in SHARES]
        held_rows += int(held.sum())
    objective = known + (caught / held_rows if held_rows else 0.0)
    best = [s for s, o in zip(SHARES, objective, strict=True) if o >= objective.max() - 1e-12]
    return min(best, key=lambda s: (abs(s - 50), s))


def adaptive(normal: Scores, s_va: Scores, s_te: Scores, y_va: np.ndarray, fpr: float
             ) -> tuple[np.ndarray, np.ndarray, float | None]:  # fmt: skip
    """``a * E(stack) + E(ae) + E(knn)``, ``E`` each score's -log normal tail (:func:`evidence`),
    with the stack's weight ``a`` chosen on the validation rows: the smallest of ADAPTIVE_WEIGHTS
    whose validation F1 at the budget's cut is within ADAPTIVE_SLACK of the stack's own (the stack
    alone when none is). The validation and test rows' scores, and ``a`` (None: the stack alone)."""
    from threat_ensemble.models.fusion import budget_cut

    def f1_on_validation(score: np.ndarray) -> float:
        return budget_metrics(y_va, score, budget_cut(score[y_va == 0], fpr))["f1"]

    stack_va, stack_te = evidence(normal, s_va, ("stack",)), evidence(normal, s_te, ("stack",))
    anomaly_va, anomaly_te = evidence(normal, s_va, ("ae_error", "knn")), evidence(normal, s_te, ("ae_error", "knn"))
    floor = f1_on_validation(s_va["stack"]) - ADAPTIVE_SLACK
    for weight in ADAPTIVE_WEIGHTS:
        if f1_on_validation(weight * stack_va + anomaly_va) >= floor:
            return weight * stack_va + anomaly_va, weight * stack_te + anomaly_te, weight
    return s_va["stack"], s_te["stack"], None


def share_or(normal: Scores, s_va: Scores, s_te: Scores, supervised: str, names: tuple[str, ...], share: float,
             fpr: float, by_evidence: bool = False) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """``supervised`` cut at ``share`` of the budget OR the evidence of ``names`` (:func:`evidence`)
    cut with what is left of it (:func:`leftover_cut`), as one score. The rows the supervised model
    flags rank first, then the others, each part ordered by the evidence; ``by_evidence``: every
    flagged row first, ordered by the evidence whichever part flagged it (the same verdicts)."""
    from threat_ensemble.models.fusion import budget_cut

    cut = budget_cut(normal[supervised], share * fpr)
    top = len(names) * np.log(len(normal[supervised]) + 1.0) + 1.0  # above any evidence of ``names``
    cut_e = min(leftover_cut(evidence(normal, normal, names), normal[supervised] >= cut, fpr), top)
    scores = []
    for s, e in ((s_va, evidence(normal, s_va, names)), (s_te, evidence(normal, s_te, names))):
        first = (s[supervised] >= cut) | ((e >= cut_e) if by_evidence else False)
        scores.append(np.where(first, top + e, e - cut_e))
    return scores[0], scores[1]


# ----------------------------------------------------------------------------- one run
def one_run(split: str, seed: int, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from threat_ensemble.config import TrainConfig
    from threat_ensemble.data.tables import labelled_table_from_frame
    from threat_ensemble.models.ensemble import ThreatEnsemble
    from threat_ensemble.pipeline import train_tables

    if split.startswith("nsl-"):
        train, test, what = nsl_split(split, args.nsl_kdd)
        train, test = train.drop(columns=[NSL_DIFFICULTY]), test.drop(columns=[NSL_DIFFICULTY])
        label, normal = NSL_LABEL, "normal"
    else:
        train, test, what = default_split(split, seed, args.default_holdout)
        label, normal = "label", "0"
    if args.quick:
        train = train.sample(n=min(len(train), 4000), random_state=seed)
    folder = work / f"{split}-{seed}"
    options: dict[str, Any] = {
        "label_column": label, "normal_label": normal, "seed": seed, "target_fpr": args.target_fpr,
        "output_dir": str(folder / "bundle"), "checkpoint_dir": str(folder / "ckpt"), "quiet": True,
        "tracking_uri": f"sqlite:///{work / 'mlflow.db'}", "experiment": "bench-novel",
    }  # fmt: skip
    if args.max_epochs:
        options["max_epochs"] = args.max_epochs
    cfg = TrainConfig(**options)
    opts = {"label_column": label, "normal_label": normal}
    table = labelled_table_from_frame(train.reset_index(drop=True), source=f"{split} train", **opts)
    y = table.y
    if test is None:  # default-known: the engine's own test split
        from threat_ensemble.data.datamodule import stratified_split

        test_table, test = None, train.iloc[stratified_split(y, seed)[2]]
        y_test = y[stratified_split(y, seed)[2]]
    else:
        test_table = labelled_table_from_frame(test.reset_index(drop=True), source=f"{split} test", **opts)
        y_test = test_table.y
    gate_file = folder / "bundle" / "gate.json"
    t0 = time.perf_counter()
    reused = bool(args.reuse and gate_file.is_file())
    if reused:  # a bundle this command trained before, in the same --work
        gate = json.loads(gate_file.read_text())
    else:
        gate = train_tables(cfg, table, test_table).gate or {}
    seconds = None if reused else time.perf_counter() - t0
    ens = ThreatEnsemble.load(folder / "bundle")
    rows = Rows.of(ens, train.reset_index(drop=True), y, test.reset_index(drop=True), y_test, seed, label)
    ensemble = {k: round(float(gate["metrics"][k]), 4) for k in ("precision", "recall", "f1", "pr_auc", "fpr")}
    row = {
        "split": split,
        "seed": seed,
        "test": what,
        "n_train": int(len(y)),
        "n_test": int(len(y_test)),
        "n_test_attack": int(np.sum(y_test)),
        "train_seconds": None if seconds is None else round(seconds, 1),  # None: --reuse took a bundle trained before
        "ensemble": ensemble,
        "members": member_figures(ens, rows, args.target_fpr),
        "baselines": baselines(ens, rows, seed, args.target_fpr),
    }
    if args.candidates:
        row["candidates"] = candidates(ens, rows, seed, args.target_fpr, named_kinds=split.startswith("nsl-"))
    if args.variants:
        row["variants"], (s_va, s_te) = variants(ens, rows, seed, args.target_fpr, args.variants,
                                                     named_kinds=split.startswith("nsl-"))
        if split in BREAKDOWNS:  # the attack names behind its figures, and where its normal rows flagged sit
            kinds = test[label].astype(str).to_numpy().copy()
            kinds[(kinds == "normal") & (test["2"] == "private").to_numpy()] = "normal private"
            names, shown = BREAKDOWNS[split]
            test_rows = {k: int(v) for k, v in zip(*np.unique(kinds, return_counts=True), strict=True)}
            private = (train["2"] == "private").to_numpy()
            row["breakdown"] = {
                "flagged": breakdown(s_va, s_te, rows, kinds, args.target_fpr, names, tuple(shown)),
                "test_rows": {**test_rows, "normal": int(np.sum(y_test == 0))},
                "train_rows": {"normal": int(np.sum(y == 0)), "normal private": int(np.sum(private & (y == 0))),
                               "attack": int(np.sum(y == 1)), "attack private": int(np.sum(private & (y == 1)))},
            }  # fmt: skip
    log(
        f"{split} seed {seed}: ensemble F1 {ensemble['f1']:.3f} PR-AUC {ensemble['pr_auc']:.3f} "
        f"FPR {ensemble['fpr']:.3f}"
        + "".join(f"; {b} {v['f1']:.3f}/{v['pr_auc']:.3f}" for b, v in row["baselines"].items())
        + (" (reused)" if seconds is None else f" ({seconds:.0f} s)")
    )
    return row


# ----------------------------------------------------------------------------- summary
def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and spread (min, max) over seeds of every figure, per split."""
    out: dict[str, Any] = {}
    for split in dict.fromkeys(r["split"] for r in rows):
        mine = [r for r in rows if r["split"] == split]
        entry: dict[str, Any] = {"test": mine[0]["test"], "seeds": [r["seed"] for r in mine]}
        models = {"ensemble": [r["ensemble"] for r in mine]}
        for group in ("members", "baselines", "candidates", "variants"):
            for name in mine[0].get(group, {}):
                models[f"{group[:-1]}:{name}"] = [r[group][name] for r in mine]
        for name, figures in models.items():
            entry[name] = {
                k: {
                    "mean": round(float(np.mean([f[k] for f in figures])), 4),
                    "min": round(float(np.min([f[k] for f in figures])), 4),
                    "max": round(float(np.max([f[k] for f in figures])), 4),
                }
                for k in ("f1", "pr_auc", "fpr", "recall")
            }
        best = max(BASELINES, key=lambda b: entry[f"baseline:{b}"]["f1"]["mean"])
        best_auc = max(BASELINES, key=lambda b: entry[f"baseline:{b}"]["pr_auc"]["mean"])
        entry["best_baseline_f1"] = best
        entry["best_baseline_pr_auc"] = best_auc
        entry["ensemble_wins"] = bool(
            entry["ensemble"]["f1"]["mean"] >= entry[f"baseline:{best}"]["f1"]["mean"]
            and entry["ensemble"]["pr_auc"]["mean"] >= entry[f"baseline:{best_auc}"]["pr_auc"]["mean"]
        )
        out[split] = entry
    return out


def _cell(fig: dict[str, Any], key: str) -> str:
    m = fig[key]
    spread = f" ±{(m['max'] - m['min']) / 2:.3f}" if m["max"] > m["min"] else ""
    return f"{m['mean']:.3f}{spread}"


def markdown(summary: dict[str, Any], target_fpr: float) -> str:
    """The main table: per split, the default ensemble, its members and the baselines."""
    lines = [
        f"F1 / PR-AUC / test FPR / recall, mean over seeds (± half the range); every model cut at "
        f"{100 * target_fpr:g}% of normal validation rows (the ensemble by its own fusion).",
        "",
        "| split | test rows | model | F1 | PR-AUC | test FPR | recall |",
        "|---|---|---|---|---|---|---|",
    ]
    for split, entry in summary.items():
        first = True
        names = ["ensemble", *[k for k in entry if k.startswith(("member:", "baseline:"))]]
        for name in names:
            fig = entry[name]
            shown = name.replace("member:", "member ").replace("baseline:", "")
            if name == "ensemble":
                verdict = " (wins)" if entry["ensemble_wins"] else " (loses)"
                shown = "**ensemble**" + (verdict if split in JUDGED else "")
            head = f"`{split}` (seeds {', '.join(map(str, entry['seeds']))})" if first else ""
            test = entry["test"] if first else ""
            lines.append(
                f"| {head} | {test} | {shown} | {_cell(fig, 'f1')} | {_cell(fig, 'pr_auc')} | "
                f"{_cell(fig, 'fpr')} | {_cell(fig, 'recall')} |"
            )
            first = False
    return "\n".join(lines)


def candidates_markdown(summary: dict[str, Any], group: str = "candidate", names: tuple[str, ...] = CANDIDATES) -> str:
    """F1 / PR-AUC (means over seeds) of each candidate (or ``--variants`` variant) per split, beside
    the default ensemble and the best baseline's F1 and PR-AUC."""
    splits = [s for s in summary if any(k.startswith(f"{group}:") for k in summary[s])]
    if not splits:
        return ""
    lines = ["| model | " + " | ".join(f"`{s}`" for s in splits) + " |", "|---|" + "---|" * len(splits)]

    def pair(entry: dict[str, Any], f1_model: str, auc_model: str) -> str:
        return f"{entry[f1_model]['f1']['mean']:.3f} / {entry[auc_model]['pr_auc']['mean']:.3f}"

    best = [pair(summary[s], f"baseline:{summary[s]['best_baseline_f1']}",
                 f"baseline:{summary[s]['best_baseline_pr_auc']}") for s in splits]  # fmt: skip
    lines.append("| best baseline (F1 / PR-AUC, each the best of four) | " + " | ".join(best) + " |")
    lines.append("| default ensemble | " + " | ".join(pair(summary[s], "ensemble", "ensemble") for s in splits) + " |")
    for name in names:
        key = f"{group}:{name}"
        cells = []
        for s in splits:
            entry = summary[s]
            if key not in entry:  # a merged run that did not measure it
                cells.append("–")
                continue
            f1, auc = entry[key]["f1"]["mean"], entry[key]["pr_auc"]["mean"]
            wins = (f1 >= entry[f"baseline:{entry['best_baseline_f1']}"]["f1"]["mean"]) + (
                auc >= entry[f"baseline:{entry['best_baseline_pr_auc']}"]["pr_auc"]["mean"]
            )
            cells.append(f"{f1:.3f} / {auc:.3f}" + (" ✓✓" if wins == 2 else " ✓" if wins == 1 else ""))
        lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def breakdown_markdown(rows: list[dict[str, Any]], split: str = "nsl-r2l") -> str:
    """The :func:`breakdown` of the runs of ``split`` (mean over seeds) as a table."""
    found = [r["breakdown"] for r in rows if r["split"] == split and "breakdown" in r]
    if not found:
        return ""
    runs = [f["flagged"] for f in found]
    totals, train = found[0]["test_rows"], found[0]["train_rows"]
    trained = (
        f" In its training file, {train['normal private']:,} of {train['normal']:,} normal rows "
        f"({100 * train['normal private'] / train['normal']:.1f}%) and {train['attack private']:,} of "
        f"{train['attack']:,} attack rows are of service `private`; in its test file, "
        f"{totals.get('normal private', 0):,} of {totals.get('normal', 0):,} normal rows "
        f"({100 * totals.get('normal private', 0) / max(totals.get('normal', 0), 1):.1f}%)."
    )
    names, shown = BREAKDOWNS[split]
    columns = [*names, "normal", "normal private"]
    lines = [
        f"Test rows flagged at the budget's cut, mean of {len(runs)} seeds (`{split}`; `normal private`: "
        "normal rows of UDP service `private`, counted in `normal` too)." + trained,
        "",
        "| model | " + " | ".join(f"{c} ({totals.get(c, 0)})" for c in columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for model, name in ((m, n) for m, n in shown.items() if all(m in run for run in runs)):
        cells = [f"{np.mean([run[model][c] for run in runs]):.0f}" for c in columns]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def merge_runs(earlier: dict[str, Any], rows: list[dict[str, Any]], source: str) -> list[dict[str, Any]]:
    """The runs of an earlier report whose splits were not run now, beside ``rows``, in the order of
    SPLITS (seeds in run order). An earlier report measured otherwise (another FPR budget, epoch
    count or held-out kind) is refused by name: its figures would not compare."""
    runs = earlier.get("runs") if isinstance(earlier, dict) else None
    if not isinstance(runs, list) or not all(isinstance(r, dict) and "split" in r for r in runs):
        raise ValueError(f"{source}: not a bench_novel report (no list of runs with a split each)")
    ran = {r["split"] for r in rows}
    before = {(r["split"], r.get("seed")): r for r in runs}
    for row in rows:  # the same run measured before: keep what this run did not measure again
        old = before.get((row["split"], row["seed"]), {})
        if isinstance(old.get("variants"), dict) and "variants" in row:
            row["variants"] = {**old["variants"], **row["variants"]}
        if isinstance(old.get("breakdown"), dict):  # and the models its breakdown counted that this run did not
            now = row.get("breakdown", {})
            flagged = {**old["breakdown"].get("flagged", {}), **now.get("flagged", {})}
            row["breakdown"] = {**old["breakdown"], **now, "flagged": flagged}
    merged = [r for r in runs if r["split"] not in ran] + rows
    order = {split: i for i, split in enumerate(SPLITS)}
    return sorted(merged, key=lambda r: order.get(r["split"], len(SPLITS)))


def earlier_options(earlier: Any) -> dict[str, Any]:
    """The options an earlier report was run with (empty when it records none)."""
    options = earlier.get("options") if isinstance(earlier, dict) else None
    return options if isinstance(options, dict) else {}


def check_mergeable(earlier: dict[str, Any], options: dict[str, Any], source: str) -> None:
    """Refuse to merge with a report whose runs used another budget, epoch count or held-out kind."""
    before = earlier_options(earlier)
    for key in ("target_fpr", "max_epochs", "default_holdout"):
        if key in before and before[key] != options[key]:
            raise ValueError(f"{source}: its runs used {key} {before[key]!r}, this run {options[key]!r}; not merged")


def write_doc(name: str, table: str) -> None:
    """Replace the block between ``<!-- bench_novel: NAME -->`` and ``<!-- /bench_novel: NAME -->``."""
    text = DOC.read_text()
    start_mark, end_mark = f"<!-- bench_novel: {name} -->", f"<!-- /bench_novel: {name} -->"
    start = text.index(start_mark) + len(start_mark)
    end = text.index(end_mark, start)
    DOC.write_text(text[:start] + "\n" + table + "\n" + text[end:])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)  # fmt: skip
    parser.add_argument("--nsl-kdd", type=Path, default=DEFAULT_NSL, help="folder with the NSL-KDD files")
    parser.add_argument("--splits", default=",".join(SPLITS), help=f"comma-separated, of {', '.join(SPLITS)}")
    parser.add_argument("--seeds", default="42,1,2")
    parser.add_argument("--target-fpr", type=float, default=0.01)
    parser.add_argument("--max-epochs", type=int, default=None, help="default: the trainer's")
    parser.add_argument("--default-holdout", default="scanner", help="attack kind of the default data left out")
    parser.add_argument("--work", type=Path, default=None, help="keep the runs' bundles here (default: a temp dir)")
    parser.add_argument("--reuse", action="store_true", help="score the bundles already in --work instead of training")
    parser.add_argument("--candidates", action="store_true", help="also measure the candidates of docs/quality.md")
    parser.add_argument("--variants", nargs="?", const=",".join(VARIANT_GROUPS), default=None, metavar="GROUPS",
                        help="also measure the variants of docs/quality.md (what lost): all, or the comma-separated "
                        f"groups of {', '.join(VARIANT_GROUPS)}")  # fmt: skip
    parser.add_argument("--json-out", type=Path, default=RESULTS)
    parser.add_argument("--write-doc", action="store_true", help=f"rewrite the table in {DOC.relative_to(ROOT)}")
    parser.add_argument("--quick", action="store_true", help="smoke test: nsl-dos or default-unseen, 4,000 rows")
    parser.add_argument(
        "--merge",
        type=Path,
        default=None,
        metavar="JSON",
        help="keep the runs of the other splits in this earlier report (such as the last run's): the summary, "
        "--json-out and --write-doc's tables then cover them all",
    )
    args = parser.parse_args(argv)
    earlier = None
    if args.merge is not None:
        try:
            earlier = json.loads(args.merge.read_text())
        except (OSError, ValueError) as exc:
            parser.error(f"--merge {args.merge}: unreadable ({type(exc).__name__}); expected a bench_novel JSON report")
    splits = [s.strip() for s in args.splits.split(",") if s.strip()]
    unknown = sorted(set(splits) - set(SPLITS))
    if unknown:
        parser.error(f"--splits: unknown {unknown}; choose from {', '.join(SPLITS)}")
    have_nsl = (args.nsl_kdd / "KDDTrain+_20Percent.txt").is_file() and (args.nsl_kdd / "KDDTest+.txt").is_file()
    if not have_nsl:
        log(f"NSL-KDD not found in {args.nsl_kdd}: its splits are skipped")
        splits = [s for s in splits if not s.startswith("nsl-")]
    seeds = [int(s) for s in args.seeds.split(",")]
    if args.variants is not None:
        args.variants = tuple(g.strip() for g in args.variants.split(",") if g.strip())
        wrong = sorted(set(args.variants) - set(VARIANT_GROUPS))
        if wrong or not args.variants:
            choices = ", ".join(VARIANT_GROUPS)
            parser.error(f"--variants: unknown group {wrong or args.variants!r}; choose from {choices}")
    if args.quick:
        splits, seeds = (["nsl-dos"] if have_nsl else ["default-unseen"]), seeds[:1]
        args.max_epochs = args.max_epochs or 2
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    options = {"splits": splits, "seeds": seeds, "target_fpr": args.target_fpr, "max_epochs": args.max_epochs,
               "default_holdout": args.default_holdout, "quick": args.quick}  # fmt: skip
    if earlier is not None:
        try:
            check_mergeable(earlier, options, str(args.merge))
            merge_runs(earlier, [], str(args.merge))  # refuse a file that is no report before the long runs
        except ValueError as exc:
            parser.error(f"--merge {exc}")
    with tempfile.TemporaryDirectory(prefix="bench-novel-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        rows = [one_run(split, seed, args, work) for split in splits for seed in seeds]
    if earlier is not None:
        rows = merge_runs(earlier, rows, str(args.merge))
        kept = [s for s in dict.fromkeys(r["split"] for r in rows) if s not in splits]
        options["merged"] = f"runs of {', '.join(kept) or 'no split'} kept from an earlier report"
        if earlier_options(earlier).get("note"):
            options["note"] = earlier_options(earlier)["note"]
        options["splits"] = list(dict.fromkeys(r["split"] for r in rows))
    summary = summarise(rows)
    report = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "options": options,
        "summary": summary,
        "runs": rows,
    }
    if not args.quick:  # the figures first: a long run's measurements are kept whatever comes after
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps(report, indent=1) + "\n")
    table, extra = markdown(summary, args.target_fpr), candidates_markdown(summary)
    tried = candidates_markdown(summary, "variant", VARIANTS)
    where = {split.removeprefix("nsl-"): breakdown_markdown(rows, split) for split in BREAKDOWNS}
    print("\n\n".join([table, extra, tried, *where.values()]), file=sys.stderr)
    if not args.quick:
        if args.write_doc:
            write_doc("table", table)
            if extra:
                write_doc("candidates", extra)
            if tried:
                write_doc("variants", tried)
            for tag, text in where.items():
                if text:
                    write_doc(tag, text)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
