from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from threat_ensemble.data.categories import OTHER
from threat_ensemble.data.preprocessing import FeatureEncoder, Preprocessing, RobustScaler


def test_encoder_one_hot_and_unseen_categories() -> None:
    train = pd.DataFrame({"n": [1.0, 2.0, 3.0], "proto": ["tcp", "udp", "tcp"]})
    enc = FeatureEncoder.fit(train)
    assert enc.encoded_names == ["n", "proto=tcp", "proto=udp", f"proto={OTHER}"]
    matrix, unseen = enc.transform(pd.DataFrame({"n": [5.0, 6.0], "proto": ["udp", "icmp"]}))
    assert unseen.total == 1 and unseen.counts == {"proto": 1} and unseen.values == {"proto": {"icmp": 1}}
    assert matrix.tolist() == [[5.0, 0.0, 1.0, 0.0], [6.0, 0.0, 0.0, 1.0]]


def test_rare_categories_share_the_other_column() -> None:
    train = pd.DataFrame({"c": ["a"] * 5 + ["b"] * 3 + ["c"]})
    enc = FeatureEncoder.fit(train, max_categories=2)
    assert enc.categories == {"c": ["a", "b"]}
    matrix, unseen = enc.transform(pd.DataFrame({"c": ["c"]}))
    assert matrix.tolist() == [[0.0, 0.0, 1.0]] and unseen.total == 1


def test_the_unseen_categories_warning_names_columns_and_a_few_values() -> None:
    """One line: the count, then each column (most unseen first) with its most frequent values,
    quoted and cut short, and how many more; chunks add up to the whole (issue 35, 4)."""
    import warnings

    from threat_ensemble.data.preprocessing import UnseenCategoryWarning, warn_unseen
    from threat_ensemble.data.tables import DataWarning

    enc = FeatureEncoder.fit(pd.DataFrame({"ext": ["html", "css", "js"] * 3, "method": ["GET"] * 9}))
    long = "x" * 5000 + "\n"
    ext = ["png"] * 5 + ["svg"] * 3 + ["webp", "avif", "gif", "html"]
    frame = pd.DataFrame({"ext": ext, "method": ["PROPFIND", long] + ["GET"] * 10})
    _, unseen = enc.transform(frame)
    assert unseen == enc.count_unseen(frame)
    assert unseen.counts == {"ext": 11, "method": 2}
    halves = enc.transform(frame.iloc[:6])[1] + enc.transform(frame.iloc[6:])[1]
    assert halves == unseen
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warn_unseen(unseen, "access.csv")
        warn_unseen(enc.count_unseen(frame.iloc[[11]]), "none.csv")  # nothing unseen: no warning
    assert len(caught) == 1 and issubclass(caught[0].category, UnseenCategoryWarning)
    assert issubclass(UnseenCategoryWarning, DataWarning)  # the CLIs print it as one warning: line
    text = str(caught[0].message)
    assert "\n" not in text and len(text) < 400
    assert text.startswith(
        "access.csv: 13 categorical values never seen in training were encoded as __other__: "
        "11 in 'ext' ('png', 'svg', 'avif', and 2 more), 2 in 'method' ("
    )
    assert "'PROPFIND'" in text and "'xxxx" in text and "... (" in text  # the long value cut short


def test_the_unseen_categories_warning_is_bounded_in_columns_and_values() -> None:
    from threat_ensemble.data import preprocessing

    columns = {f"c{i}": ["a"] * 4 for i in range(6)}
    enc = FeatureEncoder.fit(pd.DataFrame(columns))
    frame = pd.DataFrame({f"c{i}": [f"v{j}" for j in range(i + 1)] + ["a"] * (3 - i) if i < 3 else
                          [f"v{j}" for j in range(4)] for i in range(6)})  # fmt: skip
    text = enc.count_unseen(frame).message("t.csv")
    assert text.count(" in 'c") == preprocessing.MAX_UNSEEN_COLUMNS and text.endswith(", and 2 more columns")
    unseen = preprocessing.UnseenCategories()
    unseen.add("c", np.array([f"v{j}" for j in range(preprocessing.MAX_COUNTED_VALUES + 5)], dtype=object))
    assert len(unseen.values["c"]) == preprocessing.MAX_COUNTED_VALUES and unseen.counts["c"] == 1005
    assert unseen.message("t.csv").endswith("1,005 in 'c' ('v0', 'v1', 'v10', ...)")


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


def test_a_constant_float32_column_gets_no_spread_from_rounding() -> None:
    """A column of -1s in float32: its standard deviation is rounding noise (1.8e-7 over 1,000 rows),
    which the scaler once took as the scale, blowing one row with a real value up 10^6-fold."""
    x = np.full((1000, 1), -1.0, dtype=np.float32)
    assert np.std(np.sign(x) * np.log1p(np.abs(x))) > 0  # the noise the old fallback divided by
    scaler = RobustScaler.fit(x)
    assert scaler.scale.tolist() == [1.0]
    odd = scaler.transform(np.array([[-1.0], [1000.0]], dtype=np.float32))[:, 0]
    assert abs(odd[0]) < 1e-6 and odd[1] == pytest.approx(np.log1p(1000.0) + np.log(2.0), rel=1e-5)
    raw = RobustScaler.fit(x, log_compress=False)
    assert raw.scale.tolist() == [1.0] and raw.transform(np.array([[1e30]]))[0, 0] == raw.clip == 100.0


def test_the_bound_of_scaled_values_is_part_of_the_saved_scaler() -> None:
    x = np.column_stack([np.r_[np.zeros(999), 1.0], np.arange(1000.0)])
    scaler = RobustScaler.fit(x, clip=5.0)
    assert np.abs(scaler.transform(x * 1e6)).max() == 5.0
    again = RobustScaler.from_dict(json.loads(json.dumps(scaler.to_dict())))
    assert again.clip == 5.0
    np.testing.assert_array_equal(again.transform(x * 1e6), scaler.transform(x * 1e6))
    legacy = {k: v for k, v in scaler.to_dict().items() if k != "clip"}  # a bundle saved before the bound
    assert RobustScaler.from_dict(legacy).clip is None


def test_the_autoencoder_trains_beside_a_column_constant_in_its_training_rows(small_frame, tmp_path) -> None:
    """Split B of issue 32: a column that is -1 in every normal training row but two, both in the
    autoencoder's validation rows. Before the fix its scale was float32 rounding noise, the
    validation loss 1e8 from the first epoch, and early stopping kept an untrained epoch 1."""
    from conftest import fit_autoencoder
    from threat_ensemble.data.datamodule import ThreatDataModule
    from threat_ensemble.data.tables import LabelledTable

    frame = small_frame.copy()
    frame["odd"] = -1.0
    table = LabelledTable(frame.drop(columns="label"), frame["label"].to_numpy(), "small")
    probe = ThreatDataModule(table, batch_size=128, seed=0)
    probe.setup("fit")
    normal_train = probe.train_idx[table.y[probe.train_idx] == 0]
    frame.loc[frame.index[normal_train[probe.ae_val_rows[:2]]], "odd"] = 5000.0

    model, dm, _ = fit_autoencoder(frame, tmp_path, max_epochs=4)
    odd = dm.preprocessing.encoder.encoded_names.index("odd")
    assert dm.preprocessing.scaler.scale[odd] == 1.0
    assert float(dm.ae_val[:, odd].abs().max()) < 20
    assert float(model.best_val_loss) < 2.0


def test_unseen_categories_added_in_place_reach_the_callers_accumulator() -> None:
    """``unseen += found`` inside a callee must add to the caller's object (score_rows hands one to
    every chunk's scoring and warns once at the end): with only ``__add__`` it rebound the callee's
    name and the test rows' unseen categories were never warned about."""
    import numpy as np

    from threat_ensemble.data.preprocessing import UnseenCategories

    def callee(unseen: UnseenCategories) -> None:
        found = UnseenCategories()
        found.add("method", np.array(["PROPFIND", "PROPFIND", "MOVE"], dtype=object))
        unseen += found

    accumulator = UnseenCategories()
    callee(accumulator)
    callee(accumulator)
    assert accumulator.counts == {"method": 6} and accumulator.values == {"method": {"PROPFIND": 4, "MOVE": 2}}


def test_text_in_a_numeric_column_is_refused_naming_that_column_by_check_and_transform() -> None:
    """``check`` refuses what ``transform`` would, without encoding (the trainer checks a --test-data
    table with it before training). The column named is the one with text: a column of number
    strings before it is read as numbers (the first column of a text dtype was named before)."""
    from threat_ensemble.errors import InputError

    enc = FeatureEncoder.fit(pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, 4.0], "proto": ["tcp", "udp"]}))
    good = pd.DataFrame({"a": ["1.5", "2"], "b": [3.0, 4.0], "proto": ["tcp", "icmp"]})
    enc.check(good, "t.csv")
    assert enc.transform(good, "t.csv")[0][:, 0].tolist() == [1.5, 2.0]
    bad = pd.DataFrame({"a": ["1.5", "2"], "b": ["3", "oops"], "proto": ["tcp", "udp"]})
    for refuse in (enc.check, enc.transform):
        with pytest.raises(InputError, match=r"^t\.csv: column 'b' must be numeric, as in training$"):
            refuse(bad, "t.csv")
    with pytest.raises(InputError, match=r"^t\.csv: missing feature columns \['proto'\]$"):
        enc.check(bad.drop(columns="proto"), "t.csv")
