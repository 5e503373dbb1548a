from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from threat_ensemble.data.preprocessing import OTHER, FeatureEncoder, Preprocessing, RobustScaler


def test_encoder_one_hot_and_unseen_categories() -> None:
    train = pd.DataFrame({"n": [1.0, 2.0, 3.0], "proto": ["tcp", "udp", "tcp"]})
    enc = FeatureEncoder.fit(train)
    assert enc.encoded_names == ["n", "proto=tcp", "proto=udp", f"proto={OTHER}"]
    matrix, unseen = enc.transform(pd.DataFrame({"n": [5.0, 6.0], "proto": ["udp", "icmp"]}))
    assert unseen == 1
    assert matrix.tolist() == [[5.0, 0.0, 1.0, 0.0], [6.0, 0.0, 0.0, 1.0]]


def test_rare_categories_share_the_other_column() -> None:
    train = pd.DataFrame({"c": ["a"] * 5 + ["b"] * 3 + ["c"]})
    enc = FeatureEncoder.fit(train, max_categories=2)
    assert enc.categories == {"c": ["a", "b"]}
    matrix, unseen = enc.transform(pd.DataFrame({"c": ["c"]}))
    assert matrix.tolist() == [[0.0, 0.0, 1.0]] and unseen == 1


def test_missing_numeric_values_take_training_medians() -> None:
    enc = FeatureEncoder.fit(pd.DataFrame({"n": [1.0, 2.0, 100.0, np.nan]}))
    matrix, _ = enc.transform(pd.DataFrame({"n": [np.nan, np.inf, 4.0]}))
    assert matrix[:, 0].tolist() == [2.0, 2.0, 4.0]


def test_robust_scaler_uses_median_and_iqr_with_fallbacks() -> None:
    x = np.column_stack([np.arange(1.0, 101.0), np.r_[np.zeros(99), 50.0], np.full(100, 3.0)])
    scaler = RobustScaler.fit(x, log_compress=False)
    assert scaler.center.tolist() == pytest.approx([50.5, 0.0, 3.0])
    assert scaler.scale[0] == pytest.approx(49.5)
    assert scaler.scale[1] == pytest.approx(x[:, 1].std(), rel=1e-5)  # IQR 0: standard deviation
    assert scaler.scale[2] == 1.0  # constant column
    assert scaler.transform(x)[:, 2].tolist() == [0.0] * 100


def test_preprocessing_round_trips_through_json() -> None:
    train = pd.DataFrame({"n": [1.0, 2.0, 3.0, 9.0], "proto": ["tcp", "udp", "tcp", "tcp"]})
    enc = FeatureEncoder.fit(train)
    x, _ = enc.transform(train)
    pre = Preprocessing(enc, RobustScaler.fit(x))
    again = Preprocessing.from_dict(json.loads(json.dumps(pre.to_dict())))
    assert again.encoder == pre.encoder
    np.testing.assert_array_equal(again.scaler.transform(x), pre.scaler.transform(x))


def test_log_compression_tames_heavy_tails() -> None:
    from threat_ensemble.data.preprocessing import signed_log1p

    assert signed_log1p(np.array([-np.e + 1, 0.0, np.e - 1])).tolist() == pytest.approx([-1.0, 0.0, 1.0])
    rng = np.random.default_rng(0)
    x = np.column_stack([rng.lognormal(5, 3, 5000)])
    scaled = RobustScaler.fit(x).transform(x)
    raw = RobustScaler.fit(x, log_compress=False).transform(x)
    assert np.abs(scaled).max() < 10 < np.abs(raw).max()
    again = RobustScaler.from_dict(RobustScaler.fit(x).to_dict())
    np.testing.assert_array_equal(again.transform(x), scaled)
