"""A fast synthetic table of per-request HTTP features (normal traffic and seven attack
families), drawn directly as numbers: the tests' and benchmarks' data, at any size in a blink.
The trainer's built-in default data is generated raw traffic run through the featurizer
(``datasets/default_traffic.py``).

Attack rows start as normal rows and change only their family's signature features, so classes
overlap: scanners and brute force are loud in the per-client rates, injections in the query
features, and a "low and slow" family differs from normal traffic only slightly, which keeps every
model below perfect.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from threat_ensemble.data.tables import LabelledTable

ATTACK_SHARE = 0.17
FAMILIES = {
    "sqli": 0.22,
    "xss": 0.14,
    "traversal": 0.12,
    "cmdi": 0.08,
    "scanner": 0.18,
    "bruteforce": 0.10,
    "low_and_slow": 0.16,
}


def _normal_traffic(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Normal browsing with benign oddities: bots, long search queries, harmless encoding."""
    bot = rng.random(n) < 0.05
    has_query = rng.random(n) < 0.4
    long_search = rng.random(n) < 0.03
    encoded_ok = rng.random(n) < 0.05
    depth = rng.poisson(2.0, n) + 1
    query_len = np.where(has_query, rng.lognormal(3.0, 0.7, n), 0.0)
    query_len = np.where(long_search, rng.lognormal(5.0, 0.5, n), query_len)
    status = rng.choice([200, 304, 404, 301, 302, 500], n, p=[0.85, 0.06, 0.05, 0.015, 0.015, 0.01])
    weekday = rng.integers(0, 7, n)
    req_1m = np.where(bot, rng.poisson(20, n), rng.poisson(3, n))
    req_5m = req_1m * 4 + rng.poisson(2, n)
    req_10m = req_5m * 2 + rng.poisson(3, n)
    mean_iat = np.where(bot, rng.lognormal(0.5, 0.5, n), rng.lognormal(2.5, 0.8, n))
    return dict(
        {
            "method": rng.choice(["GET", "POST", "HEAD", "PUT"], n, p=[0.80, 0.17, 0.02, 0.01]),
            "path_depth": depth,
            "path_entropy": rng.normal(3.6, 0.35, n),
            "path_length": np.maximum(1.0, depth * 8 + rng.normal(6, 4, n)).round(),
            "query_length": query_len.round(),
            "query_param_count": np.where(query_len > 0, rng.poisson(1.5, n) + 1, 0),
            "pct_encoded_chars": np.where(encoded_ok, rng.poisson(6, n), rng.poisson(0.5, n) * has_query),
            "double_encoded": (rng.random(n) < 0.002).astype(int),
            "status_code": status,
            "status_class": status // 100,
            "response_size": rng.lognormal(8.5, 1.2, n).round(),
            "hour": np.mod(rng.normal(14, 4, n), 24).astype(int),
            "weekday": weekday,
            "is_weekend": (weekday >= 5).astype(int),
            "ua_length": np.where(bot, rng.normal(60, 15, n), rng.normal(110, 20, n)).round(),
            "ua_entropy": rng.normal(4.6, 0.2, n),
            "is_known_bot": bot.astype(int),
            "attack_pattern": (rng.random(n) < 0.01).astype(int),
            "special_char_ratio": rng.beta(2, 40, n),
            "file_extension": rng.choice(
                ["none", "html", "php", "js", "css", "png"], n, p=[0.5, 0.15, 0.1, 0.1, 0.08, 0.07]
            ),
            "is_private_ip": (rng.random(n) < 0.1).astype(int),
            "req_count_1m": req_1m,
            "req_count_5m": req_5m,
            "req_count_10m": req_10m,
            "error_rate_5m": rng.beta(1, 30, n),
            "distinct_paths_5m": np.minimum(req_5m, rng.poisson(5, n) + 1),
            "distinct_ua_10m": 1 + (rng.random(n) < 0.05).astype(int),
            "iat_mean": mean_iat,
            "iat_std": mean_iat * rng.uniform(0.3, 1.2, n),
        }
    )


def _apply_family(cols: dict[str, np.ndarray], rows: np.ndarray, family: str, rng: np.random.Generator) -> None:
    """Overwrite, in place, the signature features of one attack family on ``rows``."""
    n = len(rows)
    if n == 0:
        return

    def put(**values: object) -> None:
        for name, value in values.items():
            cols[name][rows] = value

    def flag(p: float) -> np.ndarray:
        return (rng.random(n) < p).astype(int)

    if family in {"sqli", "xss", "cmdi"}:
        strength = {"sqli": (4.2, 6, 30, 0.7, 8), "xss": (4.5, 8, 25, 0.6, 10), "cmdi": (3.8, 5, 30, 0.5, 4)}
        mu, a, b, p_flag, enc = strength[family]
        put(
            query_length=rng.lognormal(mu, 0.6, n).round(),
            query_param_count=rng.poisson(2, n) + 1,
            special_char_ratio=rng.beta(a, b, n),
            attack_pattern=flag(p_flag),
            pct_encoded_chars=rng.poisson(enc, n),
        )
        if family == "cmdi":
            put(method=np.where(rng.random(n) < 0.6, "POST", "GET"))
    elif family == "traversal":
        depth = rng.poisson(7, n) + 3
        status = rng.choice([404, 400, 200], n, p=[0.5, 0.2, 0.3])
        put(
            path_depth=depth,
            path_length=depth * 6 + rng.poisson(10, n),
            double_encoded=flag(0.4),
            pct_encoded_chars=rng.poisson(6, n),
            attack_pattern=flag(0.5),
            file_extension=rng.choice(["none", "php", "html"], n, p=[0.7, 0.2, 0.1]),
            status_code=status,
            status_class=status // 100,
        )
    elif family == "scanner":
        req_1m = rng.poisson(60, n)
        status = rng.choice([404, 403, 200], n, p=[0.7, 0.1, 0.2])
        iat = rng.lognormal(-1.0, 0.5, n)
        put(
            is_known_bot=flag(0.5),
            ua_length=rng.normal(40, 10, n).round(),
            req_count_1m=req_1m,
            req_count_5m=req_1m * 5 + rng.poisson(10, n),
            req_count_10m=req_1m * 10 + rng.poisson(20, n),
            distinct_paths_5m=rng.poisson(120, n),
            error_rate_5m=rng.beta(8, 5, n),
            status_code=status,
            status_class=status // 100,
            iat_mean=iat,
            iat_std=iat * rng.uniform(0.05, 0.3, n),
        )
    elif family == "bruteforce":
        req_1m = rng.poisson(30, n)
        status = rng.choice([401, 200], n, p=[0.9, 0.1])
        put(
            method="POST",
            path_depth=2,
            req_count_1m=req_1m,
            req_count_5m=req_1m * 5,
            req_count_10m=req_1m * 10,
            distinct_paths_5m=1,
            error_rate_5m=rng.beta(10, 3, n),
            status_code=status,
            status_class=status // 100,
        )
    elif family == "low_and_slow":
        put(
            special_char_ratio=rng.beta(3, 40, n),
            attack_pattern=flag(0.25),
            hour=np.mod(rng.normal(3, 2, n), 24).astype(int),
            pct_encoded_chars=rng.poisson(1.5, n),
        )
    else:  # pragma: no cover - FAMILIES lists every family
        raise ValueError(family)


def make_default_dataset(n_rows: int = 20000, seed: int = 42) -> pd.DataFrame:
    """The default table: feature columns plus ``label`` (0 normal, 1 attack) and ``family``."""
    rng = np.random.default_rng(seed)
    n_attack = int(round(ATTACK_SHARE * n_rows))
    cols = {k: np.asarray(v) for k, v in _normal_traffic(n_rows, rng).items()}
    family = np.full(n_rows, "normal", dtype=object)
    attack_rows = rng.choice(n_rows, n_attack, replace=False)
    shares = np.array(list(FAMILIES.values()))
    assigned = rng.choice(len(FAMILIES), n_attack, p=shares / shares.sum())
    for k, name in enumerate(FAMILIES):
        rows = attack_rows[assigned == k]
        _apply_family(cols, rows, name, rng)
        family[rows] = name
    frame = pd.DataFrame(cols)
    frame["label"] = (family != "normal").astype(int)
    frame["family"] = family
    return frame


def default_table(n_rows: int = 20000, seed: int = 42) -> LabelledTable:
    frame = make_default_dataset(n_rows, seed)
    features = frame.drop(columns=["label", "family"])
    return LabelledTable(features=features, y=frame["label"].to_numpy(np.int64), source="default data")
