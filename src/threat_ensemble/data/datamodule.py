"""The LightningDataModule: split, preprocessing fitted on training rows, and the autoencoder's loaders."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
import torch
from sklearn.model_selection import train_test_split
from torch.utils.data import DataLoader, Dataset, Sampler

from threat_ensemble.data.preprocessing import FeatureEncoder, Preprocessing, RobustScaler
from threat_ensemble.data.profile import FeatureProfile
from threat_ensemble.data.tables import LabelledTable, check_same_columns

AE_VAL_FRACTION = 0.15
EVAL_BATCH_SIZE = 8192


def stratified_split(y: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row indices of a stratified 70/15/15 train/validation/test split."""
    index = np.arange(len(y))
    train, rest = train_test_split(index, test_size=0.30, stratify=y, random_state=seed)
    val, test = train_test_split(rest, test_size=0.50, stratify=y[rest], random_state=seed)
    return np.sort(train), np.sort(val), np.sort(test)


def _passthrough(batch: Any) -> Any:
    return batch


class ArrayDataset(Dataset):
    """An in-memory tensor dataset that serves whole batches with one indexing op (``__getitems__``)
    instead of collating sample by sample, as ``TensorDataset`` does."""

    def __init__(self, x: torch.Tensor, with_index: bool = False) -> None:
        self.x = x
        self.with_index = with_index

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> Any:
        return (self.x[i], torch.tensor(i)) if self.with_index else self.x[i]

    def __getitems__(self, indices: list[int]) -> Any:
        idx = torch.as_tensor(indices, dtype=torch.long)
        return (self.x[idx], idx) if self.with_index else self.x[idx]


class EpochOrder(Sampler[int]):
    """Each epoch's shuffled order of ``n`` rows, drawn from ``(seed, epoch)`` alone (Lightning calls
    ``set_epoch``), so a resumed epoch can be rebuilt; ``start`` rows of it are skipped once."""

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed, self.epoch, self.start = n, seed, 0, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.n, generator=generator)[self.start :]
        self.start = 0
        return iter(order.tolist())


class ResumableLoader(DataLoader):
    """The autoencoder's shuffling train loader, resumable mid-epoch: Lightning stores its
    ``state_dict`` in every checkpoint (a loader with one is ``_Stateful`` to Lightning) and hands it
    back on resume, and the resumed epoch serves exactly the batches training had not finished, in
    the same order (none twice, none skipped). The batches training has finished are the batches
    served: Lightning's data fetcher does not read ahead of a loader whose length it knows."""

    def __init__(self, dataset: Dataset, *, batch_size: int, drop_last: bool, seed: int, collate_fn: Any) -> None:
        self.order = EpochOrder(len(dataset), seed)  # type: ignore[arg-type]
        super().__init__(
            dataset,
            batch_size=batch_size,
            sampler=self.order,
            drop_last=drop_last,
            collate_fn=collate_fn,
            # the loader's own seed source: starting an epoch's iterator must not draw from torch's
            # global generator, whose state (dropout) a mid-epoch checkpoint restores
            generator=torch.Generator().manual_seed(seed),
        )
        self._served = 0
        self._resume: tuple[int, int] | None = None  # (epoch, batches finished) from a checkpoint

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        skip = 0
        if self._resume is not None and self._resume[0] == self.order.epoch:
            skip = self._resume[1]
        self._resume = None
        self.order.start = skip * int(self.batch_size or 1)
        self._served = skip
        for batch in super().__iter__():
            self._served += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        return {"epoch": int(self.order.epoch), "batches": int(self._served)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._resume = (int(state_dict["epoch"]), int(state_dict["batches"]))


class ThreatDataModule(L.LightningDataModule):
    """Owns the data: the 70/15/15 split, the encoder and scaler (fitted on training rows only),
    the autoencoder's normal-traffic train/validation sets, and the labelled splits the trees and
    the gate use."""

    def __init__(
        self,
        table: LabelledTable,
        test_table: LabelledTable | None = None,
        batch_size: int = 256,
        seed: int = 42,
    ) -> None:
        super().__init__()
        self.table = table
        self.test_table = test_table
        self.batch_size = batch_size
        self.seed = seed
        self.preprocessing: Preprocessing | None = None

    # ---------------------------------------------------------------- Lightning hooks
    def setup(self, stage: str | None = None) -> None:
        if self.preprocessing is not None:
            return
        table = self.table
        y = table.y
        self.train_idx, self.val_idx, self.test_idx = stratified_split(y, self.seed)
        encoder = FeatureEncoder.fit(table.features.iloc[self.train_idx])
        encoded, _ = encoder.transform(table.features, table.source)
        x_normal_train = encoded[self.train_idx][y[self.train_idx] == 0]

        rng = np.random.default_rng(self.seed)
        order = rng.permutation(len(x_normal_train))
        n_ae_val = max(2, int(round(AE_VAL_FRACTION * len(order))))
        self.ae_val_rows, self.ae_train_rows = np.sort(order[:n_ae_val]), np.sort(order[n_ae_val:])
        scaler = RobustScaler.fit(x_normal_train[self.ae_train_rows])
        profile = FeatureProfile.fit(table.features.iloc[self.train_idx], y[self.train_idx], encoder)
        self._apply(Preprocessing(encoder, scaler, profile), encoded)

    def _apply(self, preprocessing: Preprocessing, encoded: np.ndarray | None = None) -> None:
        """Split and scale with ``preprocessing`` (fitted here, or restored from a checkpoint);
        ``encoded`` is the whole table already encoded with it, when the caller has it."""
        table, y = self.table, self.table.y
        self.preprocessing = preprocessing
        if encoded is None:
            encoded, _ = preprocessing.encoder.transform(table.features, table.source)
        self.x_train, self.y_train = encoded[self.train_idx], y[self.train_idx]
        self.x_val, self.y_val = encoded[self.val_idx], y[self.val_idx]
        self.x_normal_train = self.x_train[self.y_train == 0]
        scaled = preprocessing.scaler.transform(self.x_normal_train)
        self.ae_train = torch.from_numpy(scaled[self.ae_train_rows])
        self.ae_val = torch.from_numpy(scaled[self.ae_val_rows])
        if self.test_table is not None:
            test_frame = check_same_columns(table.features, self.test_table.features, self.test_table.source)
            self.x_test = preprocessing.encode(test_frame, self.test_table.source)
            self.y_test = self.test_table.y
            self.test_source = self.test_table.source
        else:
            self.x_test, self.y_test = encoded[self.test_idx], y[self.test_idx]
            self.test_source = "test split"

    def test_rows(self) -> pd.DataFrame:
        """The test rows' feature columns as read (before encoding): what a logged model scores."""
        if self.test_table is not None:
            return self.test_table.features
        return self.table.features.iloc[self.test_idx].reset_index(drop=True)

    def state_dict(self) -> dict[str, Any]:
        """Plain JSON-like data only, so checkpoints load with ``weights_only=True``."""
        return {"preprocessing": self.preprocessing.to_dict() if self.preprocessing else None}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Lightning calls this after ``setup``: re-encode with the checkpoint's preprocessing so the
        restored autoencoder sees exactly the inputs it was trained on."""
        saved = state_dict.get("preprocessing")
        if saved is not None:
            self._apply(Preprocessing.from_dict(saved))

    def train_dataloader(self) -> DataLoader:
        # drop the ragged last batch only when each rank still has a full one: with several
        # processes each rank sees 1/world of the rows, and dropping its only batch trains nothing
        world = max(int(getattr(self.trainer, "world_size", 1) or 1), 1)
        rows_per_rank = -(-len(self.ae_train) // world)
        drop_last = rows_per_rank > self.batch_size
        if world > 1:  # Lightning gives each process its share of rows (DistributedSampler)
            return DataLoader(
                ArrayDataset(self.ae_train),
                batch_size=self.batch_size,
                shuffle=True,
                drop_last=drop_last,
                collate_fn=_passthrough,
            )
        return ResumableLoader(
            ArrayDataset(self.ae_train),
            batch_size=self.batch_size,
            drop_last=drop_last,
            seed=self.seed,
            collate_fn=_passthrough,
        )

    def val_dataloader(self) -> DataLoader:
        return DataLoader(
            ArrayDataset(self.ae_val, with_index=True),
            batch_size=EVAL_BATCH_SIZE,
            shuffle=False,
            collate_fn=_passthrough,
        )

    # ---------------------------------------------------------------- facts for logging
    @property
    def n_features(self) -> int:
        assert self.preprocessing is not None, "setup() has not run"
        return len(self.preprocessing.encoder.encoded_names)

    def summary(self) -> dict[str, int]:
        return {
            "n_samples": len(self.table.y),
            "n_attack": self.table.n_attack,
            "n_normal": self.table.n_normal,
            "n_features": int(self.table.features.shape[1]),
            "n_encoded_features": self.n_features,
            "n_train": len(self.train_idx),
            "n_val": len(self.val_idx),
            "n_test": len(self.y_test),
            "n_ae_train": len(self.ae_train),
            "n_ae_val": len(self.ae_val),
        }
