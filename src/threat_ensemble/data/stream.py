"""More rows than memory (``--stream``): a Parquet dataset read one row group at a time (pyarrow's
dataset API: each row group a fragment of its own).

One pass over the data (the scan) reads every row group once: it checks it, gives each row its role
(train, validation or test, and the autoencoder's own validation rows) from a seeded hash of the
row's values (or of ``--split-key``), counts the classes and keeps bounded, seeded samples: the
class-stratified training rows the encoder, scaler, profile and forests are fitted on
(``--sample-rows``), the validation rows the random forest is calibrated on, and the autoencoder's
validation rows (at most ``AE_VAL_MAX_ROWS``). Of every other row only its role stays in memory (one
byte). Training then streams each rank's own row groups, shuffled within a bounded buffer
(``--shuffle-buffer-rows``); validation and test rows are scored a row group at a time, and only
their scores are kept, so the fusion's cut and the gate's metrics are exact over all of them."""

from __future__ import annotations

import hashlib
import itertools
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from threat_ensemble.data.tables import (
    LabelMixWarning,
    check_declared_size,
    check_parquet_dataset,
    decode_binary_columns,
    label_and_drops,
    labelled_table_from_frame,
)
from threat_ensemble.errors import InputError, first_line, quote
from threat_ensemble.limits import DEFAULT_MAX_DECOMPRESSED_MB, DEFAULT_SAMPLE_ROWS

TRAIN_SHARE, VAL_SHARE = 0.70, 0.15  # the rest is the test split, as in the in-memory 70/15/15 split
AE_VAL_SHARE = 0.15  # of the normal training rows: the autoencoder's validation rows ...
AE_VAL_MAX_ROWS = 100_000  # ... at most about this many (their per-feature errors are held in memory)
VAL_SAMPLE_SHARE = VAL_SHARE / TRAIN_SHARE  # the calibration sample's size relative to --sample-rows

ROLE_AE_TRAIN, ROLE_AE_VAL, ROLE_TRAIN_ATTACK, ROLE_VAL, ROLE_TEST = 0, 1, 2, 3, 4
N_ROLES = 5
PROGRESS_SECONDS = 10.0  # a long scan says how far it got this often
DISTINCT_COUNTED = 100_000  # the scan counts distinct rows (for check_splits' message) up to this many
TRAIN_ROLES = (ROLE_AE_TRAIN, ROLE_AE_VAL, ROLE_TRAIN_ATTACK)

# Odd 64-bit constants that make the split, the autoencoder's validation draw and the samples
# independent draws from one row hash (splitmix64's finaliser does the mixing).
_SPLIT_SALT, _AE_SALT, _SAMPLE_SALT = 0x9E3779B97F4A7C15, 0xD1B54A32D192ED03, 0x8CB92BA72F3D8DD7


def _mix(h: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, vectorised: a uint64 array to well-mixed uint64s."""
    with np.errstate(over="ignore"):
        z = h.astype(np.uint64, copy=True)
        z ^= z >> np.uint64(30)
        z *= np.uint64(0xBF58476D1CE4E5B9)
        z ^= z >> np.uint64(27)
        z *= np.uint64(0x94D049BB133111EB)
        z ^= z >> np.uint64(31)
    return z


def _draw(h: np.ndarray, salt: int, seed: int) -> np.ndarray:
    """A uniform number in [0, 1) per row, a pure function of its hash, ``salt`` and ``seed``."""
    with np.errstate(over="ignore"):
        key = _mix(np.array([salt ^ seed], dtype=np.uint64))[0]
        z = _mix(h ^ key)
    return (z >> np.uint64(11)).astype(np.float64) * 2.0**-53


def row_hashes(frame: pd.DataFrame) -> np.ndarray:
    """A stable 64-bit hash of each row's values (pandas' SipHash with its fixed key): the same row
    gets the same hash in any file, in any order, on any machine."""
    return pd.util.hash_pandas_object(frame, index=False).to_numpy(dtype=np.uint64)


@dataclass(frozen=True)
class RowGroup:
    file: Path
    index: int
    rows: int


class BottomK:
    """The ``k`` rows with the smallest keys among all rows offered: a bounded, seeded sample that
    does not depend on the order the rows come in. ``codes`` travel with the rows."""

    def __init__(self, k: int) -> None:
        self.k = k
        self.keys = np.empty(0, np.float64)
        self.codes = np.empty(0, np.int64)
        self.frame: pd.DataFrame | None = None

    def offer(self, keys: np.ndarray, frame: pd.DataFrame, codes: np.ndarray) -> None:
        """Keep the ``k`` smallest keys of those held and ``keys`` (with their rows and codes)."""
        if self.k <= 0 or not len(keys):
            return
        if len(self.keys) >= self.k:
            take = keys < self.keys.max()
            keys, frame, codes = keys[take], frame[take], codes[take]
            if not len(keys):
                return
        keys = np.concatenate([self.keys, keys])
        codes = np.concatenate([self.codes, codes])
        frame = frame if self.frame is None else pd.concat([self.frame, frame], ignore_index=True)
        if len(keys) > self.k:
            keep = np.sort(np.argpartition(keys, self.k - 1)[: self.k])
            keys, codes, frame = keys[keep], codes[keep], frame.iloc[keep]
        self.keys, self.codes, self.frame = keys, codes, frame.reset_index(drop=True)

    def smallest(self, n: int) -> tuple[pd.DataFrame, np.ndarray]:
        """The ``n`` rows with the smallest keys, in key order (the same order on every run)."""
        if self.frame is None:
            raise RuntimeError("empty sample")
        order = np.argsort(self.keys, kind="stable")[:n]
        return self.frame.iloc[order].reset_index(drop=True), self.codes[order]


@dataclass
class ScanResult:
    counts: np.ndarray  # [role, label] -> rows
    fingerprint: str


class ParquetStream:
    """A sharded Parquet dataset (a folder or a glob) read a row group at a time. ``scan`` reads it
    once and must run before anything else; ``test_only`` makes every row a test row (--test-data)."""

    def __init__(
        self,
        spec: str,
        *,
        label_column: str = "label",
        normal_label: str = "0",
        drop_columns: list[str] | tuple[str, ...] = (),
        impute: bool = False,
        seed: int = 42,
        split_key: str | None = None,
        sample_rows: int = DEFAULT_SAMPLE_ROWS,
        test_only: bool = False,
        max_decompressed_mb: int = DEFAULT_MAX_DECOMPRESSED_MB,
    ) -> None:
        import pyarrow.dataset as ds
        import pyarrow.fs

        self.source = str(spec)
        if Path(spec).is_file() and not self.source.lower().endswith(".parquet"):
            raise InputError(
                f"{spec}: --stream reads Parquet (a folder, a glob or a .parquet file); "
                "write this table as Parquet, or train without --stream"
            )
        named = label_column if not str(label_column).lstrip("-").isdigit() else None
        self.files, schema = check_parquet_dataset(self.source, required=named)
        empty = schema.empty_table().to_pandas()
        empty.columns = [str(c) for c in empty.columns]
        self.columns = list(empty.columns)
        self.label, self.dropped = label_and_drops(empty, label_column, drop_columns, self.source)
        if split_key is not None and split_key not in self.columns:
            raise InputError(f"{self.source}: --split-key names {quote(split_key)}, which is not a column")
        self.normal_label, self.impute, self.seed = normal_label, impute, seed
        self.split_key, self.sample_rows, self.test_only = split_key, sample_rows, test_only
        self.groups: list[RowGroup] = []
        self.format, self.filesystem = ds.ParquetFileFormat(), pyarrow.fs.LocalFileSystem()
        for f in self.files:  # pyarrow's dataset API: each file a fragment, each row group one of its own
            try:
                fragment = self.format.make_fragment(str(f), self.filesystem)
                fragment.ensure_complete_metadata()
                row_groups = [(rg.id, rg.num_rows, rg.total_byte_size) for rg in fragment.row_groups]
            except Exception as exc:  # pyarrow's ArrowInvalid/OSError family
                raise InputError(f"{f}: not a readable Parquet file ({first_line(exc)})") from None
            for index, rows, data_bytes in row_groups:  # a row group is read whole: each one bounded
                check_declared_size(f"{f}: row group {index}", rows, len(self.columns), data_bytes, max_decompressed_mb)
                self.groups.append(RowGroup(f, index, rows))
        self.n_rows = sum(g.rows for g in self.groups)
        if self.n_rows == 0:
            raise InputError(f"{self.source}: its {len(self.files)} Parquet files hold no rows")
        self.ae_val_share = min(AE_VAL_SHARE, AE_VAL_MAX_ROWS / max(1.0, TRAIN_SHARE * self.n_rows))
        self.roles: list[np.ndarray] = []
        self.feature_names: list[str] = []
        self.numeric: frozenset[str] = frozenset()
        self.scanned: ScanResult | None = None
        self._warned: set[tuple[type[Warning], str | None]] = set()  # a kind of warning (of a column)
        self._label_mix: LabelMixWarning | None = None  # added up over the scan's row groups, said once after it
        self._distinct: np.ndarray | None = np.empty(0, np.uint64)  # the split's distinct hashes, while few

    # ------------------------------------------------------------------ reading
    def read(self, group: RowGroup) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
        """One row group: (its raw columns, its feature columns as training sees them, its labels),
        with the same checks as a whole table and an error naming the file otherwise."""
        try:
            fragment = self.format.make_fragment(str(group.file), self.filesystem, row_groups=[group.index])
            raw = decode_binary_columns(fragment.to_table().to_pandas())
        except Exception as exc:  # a damaged page, a truncated file
            raise InputError(f"{group.file}: row group {group.index} cannot be read ({first_line(exc)})") from None
        raw.columns = [str(c) for c in raw.columns]
        if len(raw) == 0:
            return raw, raw.drop(columns=[self.label, *self.dropped]), np.empty(0, np.int64)
        options = {
            "source": str(group.file),
            "label_column": self.label,
            "normal_label": self.normal_label,
            "drop_columns": self.dropped,
            "impute": self.impute,
            "text_columns": frozenset(self.feature_names) - self.numeric,  # decided by the first row group
        }
        if self.scanned is not None:  # read again after the scan, which gave its warnings
            table = labelled_table_from_frame(raw, warn=False, **options)
        else:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                table = labelled_table_from_frame(raw, **options)
            for w in caught:  # once per kind of warning for the whole dataset, not once per row group
                if isinstance(w.message, LabelMixWarning):  # its counts are the whole dataset's
                    mix = self._label_mix
                    self._label_mix = w.message if mix is None else mix.merged(w.message, self.source)
                elif (key := (w.category, getattr(w.message, "column", None))) not in self._warned:
                    self._warned.add(key)
                    warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        numeric = frozenset(c for c in table.features.columns if pd.api.types.is_numeric_dtype(table.features[c]))
        if not self.feature_names:
            self.feature_names, self.numeric, self._first = list(table.features.columns), numeric, group.file
        elif numeric != self.numeric:
            column = sorted(numeric ^ self.numeric)[0]
            was = "numbers" if column in self.numeric else "text"
            raise InputError(
                f"{group.file}: column {quote(column)} holds {'numbers' if column in numeric else 'text'} here "
                f"but {was} in {self._first}"
            )
        return raw, table.features, table.y

    def _roles(self, raw: pd.DataFrame, y: np.ndarray, h: np.ndarray) -> np.ndarray:
        if self.test_only:
            return np.full(len(y), ROLE_TEST, np.uint8)
        split_hash = h if self.split_key is None else row_hashes(raw[[self.split_key]])
        if self._distinct is not None:  # how many distinct rows (or keys) there are, while there are few
            distinct = np.union1d(self._distinct, split_hash)
            self._distinct = distinct if len(distinct) <= DISTINCT_COUNTED else None
        split = _draw(split_hash, _SPLIT_SALT, self.seed)
        ae_val = _draw(h, _AE_SALT, self.seed) < self.ae_val_share
        train = np.where(y == 1, ROLE_TRAIN_ATTACK, np.where(ae_val, ROLE_AE_VAL, ROLE_AE_TRAIN))
        rest = np.where(split < TRAIN_SHARE + VAL_SHARE, ROLE_VAL, ROLE_TEST)
        return np.where(split < TRAIN_SHARE, train, rest).astype(np.uint8)

    # ------------------------------------------------------------------ the scan
    def scan(self, progress: Callable[[str], None] | None = None) -> ScanResult:
        """Read every row group once: roles, class counts, the data's fingerprint and the samples."""
        if self.scanned is not None:
            return self.scanned
        k = max(1, self.sample_rows)
        self.train_sample = {label: BottomK(k) for label in (0, 1)}
        self.val_sample = {label: BottomK(max(1, int(round(k * VAL_SAMPLE_SHARE)))) for label in (0, 1)}
        ae_val_frames: list[pd.DataFrame] = []
        counts = np.zeros((N_ROLES, 2), np.int64)
        digest = hashlib.sha256("\x1f".join(self.columns).encode())
        started = last = time.monotonic()
        for i, group in enumerate(self.groups):
            raw, features, y = self.read(group)
            h = row_hashes(raw)
            digest.update(h.tobytes())
            roles = self._roles(raw, y, h)
            self.roles.append(roles)
            np.add.at(counts, (roles, y), 1)
            if not self.test_only:
                key = _draw(h, _SAMPLE_SALT, self.seed)
                for label in (0, 1):
                    for sample, wanted in (
                        (self.train_sample, np.isin(roles, TRAIN_ROLES)),
                        (self.val_sample, roles == ROLE_VAL),
                    ):
                        mask = wanted & (y == label)
                        sample[label].offer(key[mask], features[mask], roles[mask].astype(np.int64) * 2 + label)
                ae_val_frames.append(features[roles == ROLE_AE_VAL])
            if progress is not None and time.monotonic() - last > PROGRESS_SECONDS and i + 1 < len(self.groups):
                last = time.monotonic()
                done = sum(g.rows for g in self.groups[: i + 1])
                progress(f"data: scanned {done:,} of {self.n_rows:,} rows ({last - started:.0f}s)")
        if not self.feature_names:
            raise InputError(f"{self.source}: its {len(self.files)} Parquet files hold no rows")
        self.ae_val_frame = pd.concat(ae_val_frames, ignore_index=True) if ae_val_frames else None
        if self._label_mix is not None:
            mix = self._label_mix
            warnings.warn(LabelMixWarning(self.source, mix.column, mix.normal_label, mix.kinds), stacklevel=2)
        self.scanned = ScanResult(counts, digest.hexdigest())
        return self.scanned

    def check_splits(self, with_test: bool = True) -> None:
        """Refuse, right after the scan and before anything is fitted, a split that leaves a part of
        training without rows: rows split by a hash of their values (or of ``--split-key``), so
        identical rows share one split and data of few distinct rows can leave a split empty."""
        needs = [
            (ROLE_AE_TRAIN, 0, 1, "normal training rows for the autoencoder"),
            (ROLE_AE_VAL, 0, 2, "normal rows held out as the autoencoder's validation rows"),
            (ROLE_TRAIN_ATTACK, 1, 1, "attack training rows"),
            (ROLE_VAL, 0, 1, "normal validation rows"),
            (ROLE_VAL, 1, 1, "attack validation rows"),
        ]
        if with_test:
            needs += [(ROLE_TEST, 0, 1, "normal test rows"), (ROLE_TEST, 1, 1, "attack test rows")]
        for role, label, least, what in needs:
            got = int(self.counts[role, label])
            if got >= least:
                continue
            by = "its --split-key value" if self.split_key is not None else "its values"
            unit = f"{quote(self.split_key)} values" if self.split_key is not None else "rows"
            few = ""
            if self._distinct is not None:
                few = f"; these {self.n_rows:,} rows hold {len(self._distinct):,} distinct {unit}"
            raise InputError(
                f"{self.source}: the split leaves {got} {what} (at least {least} needed): each row's split is drawn "
                f"from a hash of {by}, so identical ones share a split{few}; train without --stream "
                "(which splits row by row) or on more varied rows"
            )

    @property
    def counts(self) -> np.ndarray:
        assert self.scanned is not None, "scan() has not run"
        return self.scanned.counts

    @property
    def n_features(self) -> int:
        return len(self.feature_names)

    @property
    def n_attack(self) -> int:
        return int(self.counts[:, 1].sum())

    @property
    def n_normal(self) -> int:
        return int(self.counts[:, 0].sum())

    def rows_of(self, *roles: int) -> int:
        return int(self.counts[list(roles)].sum())

    def training_sample(self) -> tuple[pd.DataFrame, np.ndarray]:
        """The class-stratified training sample: each class's share of ``sample_rows`` as in the
        training split, its rows drawn by the seeded hash. Returns (features, codes): a row's code
        is ``2 * role + label``."""
        return self._stratified(self.train_sample, TRAIN_ROLES, self.sample_rows)

    def calibration_sample(self) -> tuple[pd.DataFrame, np.ndarray]:
        """The class-stratified sample of validation rows the random forest is calibrated on."""
        size = self.val_sample[0].k
        return self._stratified(self.val_sample, (ROLE_VAL,), size)

    def _stratified(
        self, samples: dict[int, BottomK], roles: tuple[int, ...], size: int
    ) -> tuple[pd.DataFrame, np.ndarray]:
        per_class = self.counts[list(roles)].sum(axis=0)
        total = int(per_class.sum())
        frames, codes = [], []
        for label in (0, 1):
            if per_class[label] == 0:
                continue
            n = max(1, int(round(size * per_class[label] / total))) if total > size else int(per_class[label])
            frame, code = samples[label].smallest(n)
            frames.append(frame)
            codes.append(code)
        return pd.concat(frames, ignore_index=True), np.concatenate(codes)

    def rows_by_role(
        self, wanted: tuple[int, ...], groups: list[int] | None = None
    ) -> Iterator[tuple[pd.DataFrame, np.ndarray, np.ndarray]]:
        """(features, labels, roles) of the rows whose role is in ``wanted``, a row group at a time."""
        for i in range(len(self.groups)) if groups is None else groups:
            roles = self.roles[i]
            mask = np.isin(roles, wanted)
            if not mask.any():
                continue
            _, features, y = self.read(self.groups[i])
            yield features[mask].reset_index(drop=True), y[mask], roles[mask]


# ---------------------------------------------------------------------- the autoencoder's train stream
def assign_groups(rows: np.ndarray, world: int) -> list[list[int]]:
    """Row groups shared out to ``world`` ranks, disjoint and about equal in rows (largest first,
    each to the rank with the fewest rows so far)."""
    shares: list[list[int]] = [[] for _ in range(world)]
    totals = np.zeros(world, np.int64)
    for i in np.argsort(-rows, kind="stable"):
        rank = int(np.argmin(totals))
        shares[rank].append(int(i))
        totals[rank] += int(rows[i])
    return [sorted(s) for s in shares]


class StreamedBatches:
    """One rank's autoencoder batches for an epoch: its row groups in an order drawn from
    ``(seed, epoch, rank)``, each group's autoencoder-training rows encoded and scaled, and served
    from a buffer of at least ``buffer_rows`` rows shuffled with the same generator. Exactly
    ``n_batches`` per epoch (the same on every rank, so DDP's collectives line up)."""

    def __init__(
        self,
        stream: ParquetStream,
        transform: Callable[[pd.DataFrame], np.ndarray],
        groups: list[int],
        n_batches: int,
        *,
        batch_size: int,
        buffer_rows: int,
        seed: int,
        rank: int = 0,
    ) -> None:
        self.stream, self.transform, self.groups = stream, transform, groups
        self.n_batches, self.batch_size, self.buffer_rows = n_batches, batch_size, max(buffer_rows, batch_size)
        self.seed, self.rank = seed, rank
        self.last_groups: list[int] = []  # the row groups the latest epoch read, in order (tests look)

    def epoch(self, epoch: int, skip: int = 0) -> Iterator[Any]:
        """The epoch's batches as tensors, the first ``skip`` of them left out (a resumed epoch)."""
        import torch

        rng = np.random.default_rng([self.seed, epoch, self.rank])
        order = [self.groups[i] for i in rng.permutation(len(self.groups))]
        self.last_groups = order
        batches = itertools.islice(self._batches(order, rng), self.n_batches)
        for batch in itertools.islice(batches, skip, None):
            yield torch.from_numpy(batch)

    def _batches(self, order: list[int], rng: np.random.Generator) -> Iterator[np.ndarray]:
        bs = self.batch_size
        pending: list[np.ndarray] = []
        held = 0
        for features, _, _ in self.stream.rows_by_role((ROLE_AE_TRAIN,), order):
            x = self.transform(features)
            pending.append(x)
            held += len(x)
            if held >= self.buffer_rows:
                block = np.concatenate(pending)
                block = block[rng.permutation(len(block))]
                full = len(block) // bs * bs
                for start in range(0, full, bs):
                    yield block[start : start + bs]
                pending, held = [block[full:]], len(block) - full
        if held:
            block = np.concatenate(pending)
            block = block[rng.permutation(len(block))]
            for start in range(0, len(block), bs):
                yield block[start : start + bs]
