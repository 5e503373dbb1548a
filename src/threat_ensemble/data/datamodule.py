"""The LightningDataModules: they serve data, never score it. The split, the preprocessing fitted on
training rows, the autoencoder's loaders, the forests' training arrays, and the labelled raw rows
of the validation and test splits as chunks (one in memory, one per row group when streamed), which
``evaluation.scoring.score_rows`` scores."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
import torch
from sklearn.model_selection import train_test_split
from torch.utils.data import DataLoader, Dataset, IterableDataset, Sampler

from threat_ensemble.data.preprocessing import FeatureEncoder, Preprocessing, RobustScaler
from threat_ensemble.data.profile import FeatureProfile
from threat_ensemble.data.stream import (
    ROLE_AE_TRAIN,
    ROLE_TEST,
    ROLE_VAL,
    TRAIN_ROLES,
    ParquetStream,
    StreamedBatches,
    assign_groups,
)
from threat_ensemble.data.tables import LabelledTable, check_same_columns
from threat_ensemble.errors import InputError
from threat_ensemble.limits import DEFAULT_SHUFFLE_ROWS

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


class MidEpochLoader(DataLoader):
    """A train loader resumable mid-epoch: Lightning stores its ``state_dict`` (epoch, batches
    served) in every checkpoint (a loader with one is ``_Stateful`` to Lightning) and hands it back
    on resume, and the resumed epoch serves exactly the batches training had not finished, in the
    same order (none twice, none skipped). The batches training has finished are the batches
    served: Lightning's data fetcher does not read ahead of a loader whose length it knows.
    Subclasses say which epoch runs and how to leave out its first batches."""

    _served = 0
    _resume: tuple[int, int] | None = None  # (epoch, batches finished) from a checkpoint

    def _epoch(self) -> int:
        raise NotImplementedError

    def _skip(self, batches: int) -> None:
        raise NotImplementedError

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        epoch = self._epoch()
        skip = self._resume[1] if self._resume is not None and self._resume[0] == epoch else 0
        self._resume = None
        self._skip(skip)
        self._served = skip
        for batch in super().__iter__():
            self._served += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        return {"epoch": int(self._epoch()), "batches": int(self._served)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._resume = (int(state_dict["epoch"]), int(state_dict["batches"]))


class ResumableLoader(MidEpochLoader):
    """The autoencoder's shuffling train loader for a table in memory: each epoch's order comes from
    the seed and the epoch alone (:class:`EpochOrder`), so a resumed epoch can be rebuilt."""

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

    def _epoch(self) -> int:
        return self.order.epoch

    def _skip(self, batches: int) -> None:
        self.order.start = batches * int(self.batch_size or 1)


# labelled raw rows: the feature columns as read (not encoded) and their 0/1 labels
Chunk = tuple[pd.DataFrame, np.ndarray]


class ChunkStream(IterableDataset):
    """Labelled raw chunks as a dataset for Lightning's loops: ``chunks()`` serves them anew on
    every pass (a DataModule's :meth:`LabelledDataModule.test_chunks`)."""

    def __init__(self, chunks: Callable[[], Iterator[Chunk]]) -> None:
        self.chunks = chunks

    def __iter__(self) -> Iterator[Chunk]:
        return iter(self.chunks())


def _no_rows() -> Iterator[Chunk]:
    yield pd.DataFrame(), np.empty(0, np.int64)


class LabelledDataModule(L.LightningDataModule):
    """What both DataModules serve, set by each one's ``setup`` (fitted) or ``load_state_dict``
    (restored from a checkpoint) through ``_apply``: the preprocessing; the forests' training rows
    (``x_train``/``y_train``, ``x_normal_train``) and calibration rows (``x_val``/``y_val``),
    encoded; the autoencoder's validation rows (``ae_val``, scaled); and the validation and test
    splits as labelled raw chunks (:meth:`val_chunks`, :meth:`test_chunks`)."""

    preprocessing: Preprocessing | None
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_normal_train: np.ndarray
    ae_val: torch.Tensor
    test_source: str

    def __init__(self, batch_size: int, seed: int) -> None:
        super().__init__()
        self.batch_size = batch_size
        self.seed = seed
        self.preprocessing = None

    def _apply(self, preprocessing: Preprocessing, encoded: np.ndarray | None = None) -> None:
        raise NotImplementedError

    @property
    def n_val(self) -> int:
        raise NotImplementedError

    @property
    def n_test(self) -> int:
        raise NotImplementedError

    def val_chunks(self) -> Iterator[Chunk]:
        """The validation split's rows, as read, with their labels (the stacked fusion is fitted on them)."""
        raise NotImplementedError

    def test_chunks(self) -> Iterator[Chunk]:
        """The test rows (the test split, or --test-data), as read, with their labels (the gate's rows)."""
        raise NotImplementedError

    def summary(self) -> dict[str, int]:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """Plain JSON-like data only, so checkpoints load with ``weights_only=True``."""
        return {"preprocessing": self.preprocessing.to_dict() if self.preprocessing else None}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Lightning calls this after ``setup``: re-encode with the checkpoint's preprocessing so the
        restored autoencoder sees exactly the inputs it was trained on."""
        saved = state_dict.get("preprocessing")
        if saved is not None:
            self._apply(Preprocessing.from_dict(saved, "checkpoint preprocessing"))

    def test_dataloader(self) -> DataLoader:
        """Lightning's test loop over the test rows (the gate's): one labelled raw chunk a step, as
        :meth:`test_chunks` serves them (one in memory, one per row group streamed). Rank 0 is
        served every chunk (it alone holds the forests); any other rank one chunk of no rows, so
        that its test loop runs too and joins in gathering the rows' results on rank 0."""
        trainer = self.trainer
        rank = int(getattr(trainer, "global_rank", 0) or 0) if trainer is not None else 0
        chunks = ChunkStream(self.test_chunks if rank == 0 else _no_rows)
        return DataLoader(chunks, batch_size=None, collate_fn=_passthrough)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(
            ArrayDataset(self.ae_val, with_index=True),
            batch_size=EVAL_BATCH_SIZE,
            shuffle=False,
            collate_fn=_passthrough,
        )

    @property
    def n_features(self) -> int:
        assert self.preprocessing is not None, "setup() has not run"
        return len(self.preprocessing.encoder.encoded_names)


class ThreatDataModule(LabelledDataModule):
    """A table in memory: the 70/15/15 split, the encoder and scaler (fitted on training rows only),
    the autoencoder's normal-traffic train/validation sets, and the labelled splits the trees and
    the gate use."""

    def __init__(
        self,
        table: LabelledTable,
        test_table: LabelledTable | None = None,
        batch_size: int = 256,
        seed: int = 42,
    ) -> None:
        super().__init__(batch_size, seed)
        self.table = table
        self.test_table = test_table

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
        profile = FeatureProfile.fit(
            table.features.iloc[self.train_idx], y[self.train_idx], encoder.numeric_columns, encoder.categories
        )
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
            self.test_frame = check_same_columns(table.features, self.test_table.features, self.test_table.source)
            # refused now, before training, if the encoder cannot take it (text where training had numbers);
            # its categories never seen in training are counted when its rows are scored
            preprocessing.encoder.check(self.test_frame, self.test_table.source)
            self.y_test = self.test_table.y
            self.test_source = self.test_table.source
        else:
            self.test_frame = table.features.iloc[self.test_idx].reset_index(drop=True)
            self.y_test = y[self.test_idx]
            self.test_source = "test split"

    @property
    def n_val(self) -> int:
        return len(self.y_val)

    @property
    def n_test(self) -> int:
        return len(self.y_test)

    def val_chunks(self) -> Iterator[Chunk]:
        yield self.table.features.iloc[self.val_idx].reset_index(drop=True), self.y_val

    def test_chunks(self) -> Iterator[Chunk]:
        yield self.test_frame, self.y_test

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


# ---------------------------------------------------------------------- more rows than memory
class _EpochStream(IterableDataset):
    """The epoch's batches from :class:`StreamedBatches`, the first ``skip`` left out once."""

    def __init__(self, batches: StreamedBatches, epoch_of: Callable[[], int]) -> None:
        self.batches, self.epoch_of, self.skip = batches, epoch_of, 0

    def __len__(self) -> int:
        return self.batches.n_batches

    def __iter__(self) -> Iterator[torch.Tensor]:
        skip, self.skip = self.skip, 0
        return self.batches.epoch(self.epoch_of(), skip)


class StreamLoader(MidEpochLoader):
    """The streamed train loader (``--stream``): the epoch's row-group order and shuffle buffer
    come from the seed, the epoch and the rank, so a resumed epoch rebuilds the same batches; the
    ones already trained are read again, not trained again."""

    def __init__(self, batches: StreamedBatches, epoch_of: Callable[[], int]) -> None:
        self.source = _EpochStream(batches, epoch_of)
        # its own seed source, as ResumableLoader's
        generator = torch.Generator().manual_seed(batches.seed)
        super().__init__(self.source, batch_size=None, collate_fn=_passthrough, generator=generator)
        self.epoch_of = epoch_of

    def _epoch(self) -> int:
        return self.epoch_of()

    def _skip(self, batches: int) -> None:
        self.source.skip = batches


class StreamDataModule(LabelledDataModule):
    """The DataModule for ``--stream``: the same parts as :class:`ThreatDataModule`, from a
    :class:`ParquetStream` that was scanned. ``x_train``/``y_train`` (and ``x_normal_train``) are
    the class-stratified training sample the forests are fitted on, ``x_val``/``y_val`` the
    calibration sample; the autoencoder's training rows are streamed; validation and test rows are
    served a row group at a time (whoever scores them keeps their scores, not their features)."""

    def __init__(
        self,
        stream: ParquetStream,
        test_stream: ParquetStream | None = None,
        batch_size: int = 256,
        seed: int = 42,
        shuffle_buffer_rows: int = DEFAULT_SHUFFLE_ROWS,
    ) -> None:
        super().__init__(batch_size, seed)
        self.stream, self.test_stream = stream, test_stream
        self.shuffle_buffer_rows = shuffle_buffer_rows
        self.test_source = test_stream.source if test_stream is not None else "test split"

    def setup(self, stage: str | None = None) -> None:
        if self.preprocessing is not None:
            return
        self.stream.scan()
        frame, codes = self.stream.training_sample()
        encoder = FeatureEncoder.fit(frame)
        encoded, _ = encoder.transform(frame, self.stream.source)
        scaler = RobustScaler.fit(encoded[codes // 2 == ROLE_AE_TRAIN])
        profile = FeatureProfile.fit(frame, codes % 2, encoder.numeric_columns, encoder.categories)
        self._apply(Preprocessing(encoder, scaler, profile), encoded)

    def _apply(self, preprocessing: Preprocessing, encoded: np.ndarray | None = None) -> None:
        """As :meth:`ThreatDataModule._apply`; ``encoded`` is the training sample already encoded."""
        self.preprocessing = preprocessing
        encoder, source = preprocessing.encoder, self.stream.source
        frame, codes = self.stream.training_sample()
        if encoded is None:
            encoded, _ = encoder.transform(frame, source)
        self.x_train, self.y_train = encoded, codes % 2
        self.x_normal_train = self.x_train[self.y_train == 0]
        frame, codes = self.stream.calibration_sample()
        self.x_val, self.y_val = encoder.transform(frame, source)[0], codes % 2
        if self.stream.ae_val_frame is None or len(self.stream.ae_val_frame) < 2:
            raise InputError(f"{source}: too few normal training rows to hold out the autoencoder's validation rows")
        ae_val = encoder.transform(self.stream.ae_val_frame, source)[0]
        self.ae_val = torch.from_numpy(preprocessing.scaler.transform(ae_val))

    def _transform(self, frame: pd.DataFrame) -> np.ndarray:
        assert self.preprocessing is not None
        encoded, _ = self.preprocessing.encoder.transform(frame, self.stream.source)
        return self.preprocessing.scaler.transform(encoded)

    def train_dataloader(self) -> DataLoader:
        trainer = self.trainer
        world = max(int(getattr(trainer, "world_size", 1) or 1), 1)
        rank = int(getattr(trainer, "global_rank", 0) or 0)
        rows = np.array([int((roles == ROLE_AE_TRAIN).sum()) for roles in self.stream.roles], np.int64)
        shares = assign_groups(rows, world)
        per_rank = [int(rows[share].sum()) for share in shares]
        if sum(per_rank) == 0:
            raise InputError(f"{self.stream.source}: no normal training rows left to train the autoencoder on")
        if world == 1:
            n = per_rank[0]
            n_batches = n // self.batch_size if n > self.batch_size else 1
        else:  # every rank runs the same number of steps: the smallest share's full batches
            n_batches = min(per_rank) // self.batch_size
            if n_batches == 0:
                raise InputError(
                    f"{self.stream.source}: a rank's share of row groups holds {min(per_rank)} training rows, "
                    f"less than one batch of {self.batch_size}; use fewer processes or smaller row groups"
                )
        batches = StreamedBatches(
            self.stream,
            self._transform,
            shares[rank],
            n_batches,
            batch_size=self.batch_size,
            buffer_rows=self.shuffle_buffer_rows,
            seed=self.seed,
            rank=rank,
        )
        return StreamLoader(batches, lambda: int(self.trainer.current_epoch))

    # ------------------------------------------------------------------ labelled rows, a row group at a time
    @property
    def n_val(self) -> int:
        return self.stream.rows_of(ROLE_VAL)

    @property
    def n_test(self) -> int:
        return self.test_stream.n_rows if self.test_stream is not None else self.stream.rows_of(ROLE_TEST)

    def val_chunks(self) -> Iterator[Chunk]:
        for features, y, _ in self.stream.rows_by_role((ROLE_VAL,)):
            yield features, y

    def test_chunks(self) -> Iterator[Chunk]:
        for features, y, _ in (self.test_stream or self.stream).rows_by_role((ROLE_TEST,)):
            yield features, y

    def summary(self) -> dict[str, int]:
        s = self.stream
        return {
            "n_samples": s.n_rows,
            "n_attack": s.n_attack,
            "n_normal": s.n_normal,
            "n_features": len(s.feature_names),
            "n_encoded_features": self.n_features,
            "n_train": s.rows_of(*TRAIN_ROLES),
            "n_val": self.n_val,
            "n_test": self.n_test,
            "n_ae_train": s.rows_of(ROLE_AE_TRAIN),
            "n_ae_val": len(self.ae_val),
            "n_train_sample": len(self.y_train),
            "n_train_sample_attack": int(self.y_train.sum()),
        }
