from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from threat_ensemble.data.datamodule import ArrayDataset, ThreatDataModule, stratified_split
from threat_ensemble.data.preprocessing import RobustScaler
from threat_ensemble.data.tables import LabelledTable, check_class_counts
from threat_ensemble.errors import InputError


def _table(small_frame: pd.DataFrame) -> LabelledTable:
    return LabelledTable(small_frame.drop(columns="label"), small_frame["label"].to_numpy(), "small")


def test_split_is_stratified_70_15_15_and_disjoint() -> None:
    y = np.r_[np.zeros(800, int), np.ones(200, int)]
    train, val, test = stratified_split(y, seed=3)
    assert (len(train), len(val), len(test)) == (700, 150, 150)
    assert len(set(train) | set(val) | set(test)) == 1000
    for part in (train, val, test):
        assert y[part].mean() == pytest.approx(0.2, abs=0.01)


def test_datamodule_fits_preprocessing_on_training_rows_only(small_frame: pd.DataFrame) -> None:
    dm = ThreatDataModule(_table(small_frame), batch_size=64, seed=1)
    dm.setup("fit")
    assert (dm.y_train[:, None] == 0).sum() == len(dm.x_normal_train)
    # scaler fitted on the autoencoder's own training rows, nothing else
    expected = RobustScaler.fit(dm.x_normal_train[dm.ae_train_rows])
    np.testing.assert_array_equal(dm.preprocessing.scaler.center, expected.center)
    # autoencoder validation rows are a shuffled 15%, not the last 15%
    n = len(dm.x_normal_train)
    assert len(dm.ae_val_rows) == round(0.15 * n)
    assert not np.array_equal(dm.ae_val_rows, np.arange(n - len(dm.ae_val_rows), n))
    assert set(dm.ae_val_rows).isdisjoint(dm.ae_train_rows)
    # the test split is served as read (the ensemble encodes what it scores), labelled
    (frame, y_test), *more = list(dm.test_chunks())
    assert not more and len(frame) == len(y_test) == len(dm.test_idx)
    assert list(frame.columns) == list(dm.table.features.columns)
    np.testing.assert_array_equal(y_test, dm.table.y[dm.test_idx])


def test_train_loader_serves_shuffled_whole_batches(small_frame: pd.DataFrame) -> None:
    dm = ThreatDataModule(_table(small_frame), batch_size=100, seed=1)
    dm.setup("fit")
    batches = list(dm.train_dataloader())
    assert all(b.shape == (100, dm.n_features) for b in batches)  # drop_last
    assert len(batches) == len(dm.ae_train) // 100
    x, idx = next(iter(dm.val_dataloader()))
    assert torch.equal(x, dm.ae_val[idx])


def test_array_dataset_batches_match_single_items() -> None:
    data = torch.arange(20.0).reshape(10, 2)
    ds = ArrayDataset(data, with_index=True)
    x, idx = ds.__getitems__([3, 1])
    assert torch.equal(x, torch.stack([ds[3][0], ds[1][0]]))
    assert idx.tolist() == [3, 1]


@pytest.mark.parametrize(
    "n_normal, n_attack, message",
    [
        (0, 30, "no normal rows"),
        (100, 0, "no attack rows"),
        (20, 30, "20 normal rows; the autoencoder needs at least 50"),
        (100, 3, "3 attack rows; at least 10"),
    ],
)
def test_class_counts_are_checked(n_normal: int, n_attack: int, message: str) -> None:
    y = np.r_[np.zeros(n_normal, int), np.ones(n_attack, int)]
    table = LabelledTable(pd.DataFrame({"a": np.arange(len(y), dtype=float)}), y, "t.csv")
    with pytest.raises(InputError, match=message):
        check_class_counts(table)


def test_test_table_is_served_as_read_and_encoded_with_training_categories(small_frame: pd.DataFrame) -> None:
    test = small_frame.iloc[:50].copy()
    test["method"] = "PATCH"  # never seen in training
    test_table = LabelledTable(test.drop(columns="label"), test["label"].to_numpy(), "test.csv")
    dm = ThreatDataModule(_table(small_frame), test_table, seed=1)
    dm.setup("fit")
    [(frame, y)] = list(dm.test_chunks())
    assert frame["method"].tolist() == ["PATCH"] * 50 and y.tolist() == test["label"].tolist()
    with pytest.warns(UserWarning, match="50 categorical values never seen"):
        x = dm.preprocessing.encode(frame, dm.test_source)
    names = dm.preprocessing.encoder.encoded_names
    assert x[:, names.index("method=__other__")].tolist() == [1.0] * 50
    assert dm.test_source == "test.csv"


def test_each_rank_keeps_a_batch_when_rows_per_rank_are_fewer_than_a_batch(small_frame: pd.DataFrame) -> None:
    # found with batch 1024 on two processes: dropping each rank's only (ragged) batch trained nothing
    from types import SimpleNamespace

    dm = ThreatDataModule(_table(small_frame), batch_size=1024, seed=1)
    dm.setup("fit")
    n = len(dm.ae_train)
    assert 1024 < n < 2048
    assert dm.train_dataloader().drop_last  # one process: a full batch, the ragged rest dropped
    dm.trainer = SimpleNamespace(world_size=2)  # type: ignore[assignment]
    assert not dm.train_dataloader().drop_last  # two: each rank's n/2 rows are its only batch
