"""--stream: a Parquet dataset read a row group at a time. The split and the samples are a pure
function of the rows (not of files, row groups or their order); each epoch trains every
autoencoder-training row once; the bounded samples are bounded; bad shards are named; a run
trains end to end and gates on exact metrics over every test row."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from in_process import run_train
from threat_ensemble.data.stream import (
    ROLE_AE_TRAIN,
    ROLE_AE_VAL,
    ROLE_TEST,
    ROLE_TRAIN_ATTACK,
    ROLE_VAL,
    TRAIN_ROLES,
    BottomK,
    ParquetStream,
    StreamedBatches,
    assign_groups,
)
from threat_ensemble.errors import InputError


def write_shards(folder: Path, frame: pd.DataFrame, files: int = 3, row_group: int = 500) -> list[Path]:
    """``frame`` as ``files`` Parquet files of row groups of ``row_group`` rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, part in enumerate(np.array_split(np.arange(len(frame)), files)):
        path = folder / f"part-{i:03d}.parquet"
        pq.write_table(pa.Table.from_pandas(frame.iloc[part], preserve_index=False), path, row_group_size=row_group)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def flows() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    n = 6000
    label = (rng.random(n) < 0.2).astype(int)
    return pd.DataFrame(
        {
            "row_id": np.arange(n),
            "bytes": rng.lognormal(6, 1, n) * (1 + 4 * label),
            "packets": rng.poisson(10, n) + 30 * label,
            "proto": rng.choice(["tcp", "udp", "icmp"], n),
            "label": label,
        }
    )


def _roles_by_id(stream: ParquetStream) -> pd.Series:
    stream.scan()
    ids = np.concatenate([stream.read(g)[0]["row_id"].to_numpy() for g in stream.groups])
    return pd.Series(np.concatenate(stream.roles), index=ids).sort_index()


def test_roles_and_samples_depend_on_the_rows_not_on_files_or_order(tmp_path: Path, flows: pd.DataFrame) -> None:
    write_shards(tmp_path / "a", flows, files=3, row_group=500)
    write_shards(tmp_path / "b", flows.sample(frac=1.0, random_state=1), files=5, row_group=777)
    a, b = ParquetStream(str(tmp_path / "a"), sample_rows=900), ParquetStream(str(tmp_path / "b"), sample_rows=900)
    roles_a, roles_b = _roles_by_id(a), _roles_by_id(b)
    assert roles_a.equals(roles_b)
    assert a.scanned is not None and b.scanned is not None
    shares = np.bincount(roles_a.to_numpy(), minlength=5) / len(roles_a)
    train, val, test = shares[list(TRAIN_ROLES)].sum(), shares[ROLE_VAL], shares[ROLE_TEST]
    assert abs(train - 0.70) < 0.03 and abs(val - 0.15) < 0.03 and abs(test - 0.15) < 0.03
    normal_train = shares[ROLE_AE_TRAIN] + shares[ROLE_AE_VAL]
    assert abs(shares[ROLE_AE_VAL] / normal_train - 0.15) < 0.03
    labels = flows.set_index("row_id")["label"].sort_index()
    assert (labels[roles_a == ROLE_TRAIN_ATTACK] == 1).all() and (labels[roles_a == ROLE_AE_TRAIN] == 0).all()
    # the samples: the same rows, in the same order, class shares as in the training split
    for pick in ("training_sample", "calibration_sample"):
        (fa, ca), (fb, cb) = getattr(a, pick)(), getattr(b, pick)()
        assert fa["row_id"].tolist() == fb["row_id"].tolist() and np.array_equal(ca, cb)
    frame, codes = a.training_sample()
    assert len(frame) == 900 and set(codes // 2) <= set(TRAIN_ROLES)
    attack_share = labels[roles_a.isin(TRAIN_ROLES)].mean()  # the training split's, from the rows themselves
    assert abs((codes % 2).mean() - attack_share) < 0.005  # stratified: rounding only
    assert (labels[frame["row_id"]].to_numpy() == codes % 2).all()
    # another seed, another split
    assert not _roles_by_id(ParquetStream(str(tmp_path / "a"), seed=7)).equals(roles_a)


def test_dropping_the_label_column_is_refused_before_any_row_group_is_read(tmp_path: Path, flows: pd.DataFrame) -> None:
    """The label and --drop-columns are resolved as for a table in memory (tables.label_and_drops),
    on the dataset's schema: the same refusal, naming the dataset, before the scan."""
    write_shards(tmp_path / "d", flows)
    with pytest.raises(InputError, match=r"d: --drop-columns names the label column 'label'$"):
        ParquetStream(str(tmp_path / "d"), drop_columns=["label"])


def test_a_split_key_keeps_rows_that_share_it_together(tmp_path: Path, flows: pd.DataFrame) -> None:
    frame = flows.assign(client=flows["row_id"] // 10)
    write_shards(tmp_path / "k", frame)
    roles = _roles_by_id(ParquetStream(str(tmp_path / "k"), split_key="client", drop_columns=["client"]))
    split = np.select([np.isin(roles, TRAIN_ROLES), roles == ROLE_VAL], [0, 1], 2)
    per_client = pd.Series(split).groupby(frame["client"].to_numpy()).nunique()
    assert (per_client == 1).all()


def test_bottom_k_keeps_the_k_smallest_keys_whatever_the_order() -> None:
    rng = np.random.default_rng(0)
    keys = rng.random(5000)
    frame = pd.DataFrame({"i": np.arange(5000)})
    expected = sorted(np.argsort(keys)[:300].tolist())
    for order in (np.arange(5000), rng.permutation(5000)):
        sample = BottomK(300)
        for chunk in np.array_split(order, 17):
            sample.offer(keys[chunk], frame.iloc[chunk].reset_index(drop=True), chunk.astype(np.int64))
        got, codes = sample.smallest(300)
        assert sorted(got["i"].tolist()) == expected and np.array_equal(got["i"].to_numpy(), codes)
        assert np.all(np.diff(keys[codes]) > 0)  # key order


def test_row_groups_are_shared_out_disjoint_and_balanced() -> None:
    rows = np.array([500, 500, 500, 120, 480, 500, 30, 500])
    shares = assign_groups(rows, 2)
    assert sorted(shares[0] + shares[1]) == list(range(8)) and not set(shares[0]) & set(shares[1])
    totals = [rows[s].sum() for s in shares]
    assert abs(totals[0] - totals[1]) <= rows.max()


def test_an_epoch_trains_every_row_once_and_a_resumed_epoch_the_rest(tmp_path: Path, flows: pd.DataFrame) -> None:
    write_shards(tmp_path / "d", flows, files=3, row_group=400)
    stream = ParquetStream(str(tmp_path / "d"))
    stream.scan()

    def ids(frame: pd.DataFrame) -> np.ndarray:
        return frame[["row_id"]].to_numpy(np.float32)

    n = stream.rows_of(ROLE_AE_TRAIN)
    batches = StreamedBatches(stream, ids, list(range(len(stream.groups))), -(-n // 64), batch_size=64,
                              buffer_rows=1000, seed=1)  # fmt: skip
    epoch = [b.numpy().ravel() for b in batches.epoch(0)]
    seen = np.concatenate(epoch)
    roles = _roles_by_id(stream)
    assert sorted(seen.astype(int).tolist()) == roles.index[roles == ROLE_AE_TRAIN].tolist()  # each once
    assert all(len(b) == 64 for b in epoch[:-1])
    assert not np.array_equal(seen, np.sort(seen))  # shuffled
    again = [b.numpy().ravel() for b in batches.epoch(0, skip=5)]
    assert len(again) == len(epoch) - 5 and all(np.array_equal(x, y) for x, y in zip(again, epoch[5:], strict=True))
    other = np.concatenate([b.numpy().ravel() for b in batches.epoch(1)])
    assert not np.array_equal(other, seen) and sorted(other.tolist()) == sorted(seen.tolist())


def test_bad_shards_are_named(tmp_path: Path, flows: pd.DataFrame) -> None:
    paths = write_shards(tmp_path / "nolabel", flows)
    flows.iloc[:100].drop(columns=["label"]).to_parquet(paths[1], index=False)
    with pytest.raises(InputError, match=rf"{paths[1].name}: no column 'label' in this shard"):
        ParquetStream(str(tmp_path / "nolabel"))

    paths = write_shards(tmp_path / "corrupt", flows, files=4)
    data = paths[2].read_bytes()
    paths[2].write_bytes(data[:4] + b"\0" * 2000 + data[2004:])  # pages damaged, footer intact
    stream = ParquetStream(str(tmp_path / "corrupt"))
    with pytest.raises(InputError, match=rf"{paths[2].name}: row group \d+ cannot be read"):
        stream.scan()

    paths = write_shards(tmp_path / "cut", flows)
    paths[1].write_bytes(paths[1].read_bytes()[:-100])  # the footer gone
    with pytest.raises(InputError, match=rf"{paths[1].name}: not a readable Parquet file"):
        ParquetStream(str(tmp_path / "cut"))

    paths = write_shards(tmp_path / "kinds", flows)
    flows.iloc[:100].assign(packets=lambda f: f["packets"].astype(str) + "x").to_parquet(paths[2], index=False)
    with pytest.raises(InputError, match=rf"{paths[2].name}: column 'packets' is (large_)?string here"):
        ParquetStream(str(tmp_path / "kinds"))

    flows.to_csv(tmp_path / "flows.csv", index=False)
    with pytest.raises(InputError, match="flows.csv: --stream reads Parquet"):
        ParquetStream(str(tmp_path / "flows.csv"))

    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no Parquet files"):
        ParquetStream(str(tmp_path / "empty"))


def test_a_binary_column_is_refused_as_a_feature_and_streams_when_dropped(tmp_path: Path, flows: pd.DataFrame) -> None:
    blob = flows.assign(blob=[b"\xff\x00", b"ok"] * (len(flows) // 2))  # Parquet binary, not UTF-8 text
    write_shards(tmp_path / "blob", blob)
    with pytest.raises(InputError) as caught:
        ParquetStream(str(tmp_path / "blob")).scan()
    assert str(caught.value) == (
        f"{tmp_path / 'blob' / 'part-000.parquet'}: column 'blob' holds binary values that are not UTF-8 text "
        "(data row 1: b'\\xff\\x00'); expected numbers or text (--drop-columns it if it is not a feature)"
    )
    stream = ParquetStream(str(tmp_path / "blob"), drop_columns=["blob"])
    assert stream.scan().counts.sum() == len(flows) and "blob" not in stream.feature_names


def test_each_timestamp_or_half_text_column_warns_once_for_the_whole_stream(
    tmp_path: Path, flows: pd.DataFrame
) -> None:
    """One line per such column (a stream gave one line per kind of warning: the second column went
    unsaid), and not one per row group."""
    import warnings

    from threat_ensemble.data.tables import TextCategoryWarning

    minutes = pd.date_range("2026-12-01", periods=len(flows), freq="min").astype(str)
    sizes = ["unknown" if i % 4 == 0 else str(i) for i in range(len(flows))]
    write_shards(tmp_path / "ts", flows.assign(ts=minutes, size=sizes))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ParquetStream(str(tmp_path / "ts")).scan()
    said = [str(w.message) for w in caught if issubclass(w.category, TextCategoryWarning)]
    assert [line.split(": ", 2)[1] for line in said] == [
        "column 'ts' looks like timestamps",
        "column 'size' is 75% numbers and 25% text ('unknown')",
    ]


@pytest.mark.slow
def test_a_streamed_run_trains_and_gates_on_every_test_row(tmp_path: Path) -> None:
    from synthetic import make_default_dataset

    frame = make_default_dataset(8000, seed=5)
    write_shards(tmp_path / "flows", frame, files=4, row_group=700)
    args = ["--data", "flows", "--stream", "--drop-columns", "family", "--sample-rows", "3000", "--max-epochs", "3",
            "--batch-size", "128", "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}", "--quiet"]  # fmt: skip
    proc = run_train(tmp_path, *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    gate = json.loads((tmp_path / "artifacts" / "gate.json").read_text())
    stream = ParquetStream(str(tmp_path / "flows"), drop_columns=["family"])
    stream.scan()
    assert gate["n_test"] == stream.rows_of(ROLE_TEST)  # every test row scored, none sampled
    assert gate["metrics"]["f1"] > 0.9 and gate["passed"]
    manifest = json.loads((tmp_path / "artifacts" / "manifest.json").read_text())
    summary = manifest["data_summary"]
    assert summary["n_train_sample"] == 3000 and summary["n_samples"] == 8000
    assert summary["n_ae_train"] == stream.rows_of(ROLE_AE_TRAIN)

    # the bundle scores a table like any other (score.py reads it whole)
    from threat_ensemble.models.ensemble import ThreatEnsemble

    ensemble = ThreatEnsemble.load(tmp_path / "artifacts")
    assert ensemble.preprocessing.encoder.feature_names == stream.feature_names


@pytest.mark.slow
def test_promote_scores_the_champion_on_every_streamed_test_row(tmp_path: Path) -> None:
    """--register-model with --promote on a stream: the champion's bundle, fetched from the registry,
    scores the same test rows a row group at a time; the same model on the same rows gives exactly
    its own gate figures."""
    import mlflow

    from synthetic import make_default_dataset

    write_shards(tmp_path / "flows", make_default_dataset(6000, seed=7), files=3, row_group=600)
    store = f"sqlite:///{tmp_path / 'm.db'}"
    args = ["--data", "flows", "--stream", "--drop-columns", "family", "--sample-rows", "2000", "--max-epochs", "2",
            "--batch-size", "128", "--tracking-uri", store, "--quiet"]  # fmt: skip
    args += ["--register-model", "detector", "--promote"]
    first = run_train(tmp_path, *args, "--output-dir", "first", "--checkpoint-dir", "first-ckpt")
    assert first.returncode == 0, first.stderr[-3000:]
    assert "promotion: 'detector' version 1 is the champion (the first version whose gate passed)" in first.stdout
    weak = ["--fusion", "fixed", "--weights", "ae=1,rf=0,if=0", "--min-f1", "0", "--min-pr-auc", "0"]
    second = run_train(tmp_path, *args, *weak, "--output-dir", "weak", "--checkpoint-dir", "weak-ckpt")
    assert second.returncode == 0, second.stderr[-3000:]
    assert "promotion: 'detector' version 2 is the challenger (worse on" in second.stdout

    client = mlflow.MlflowClient(tracking_uri=store)
    run = client.get_run(client.get_model_version("detector", "2").run_id)
    champion_gate = json.loads((tmp_path / "first" / "gate.json").read_text())["metrics"]
    for key in ("f1", "pr_auc"):
        assert run.data.metrics[f"champion_{key}"] == pytest.approx(champion_gate[key], rel=1e-12)
    assert run.data.metrics["champion_f1"] > run.data.metrics["ensemble_f1"]


def test_the_cli_refuses_a_bad_shard_in_one_line_before_training(tmp_path: Path, flows: pd.DataFrame) -> None:
    paths = write_shards(tmp_path / "flows", flows, files=3)
    flows.iloc[:100].drop(columns=["label"]).to_parquet(paths[1], index=False)
    store = f"sqlite:///{tmp_path / 'm.db'}"
    proc = run_train(tmp_path, "--data", "flows", "--stream", "--quiet", "--tracking-uri", store)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: {Path('flows') / paths[1].name}: no column 'label' in this shard; every file needs the label column"
    ]
    assert not (tmp_path / "artifacts").exists() and not (tmp_path / "m.db").exists()

    usage = run_train(tmp_path, "--stream", "--quiet")
    assert usage.returncode == 2 and "--stream needs --data" in usage.stderr


def test_the_benchmark_generator_writes_shards_a_shard_at_a_time(tmp_path: Path) -> None:
    import sys

    import pyarrow.parquet as pq

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from make_parquet_shards import write_shards as make_shards

    made = make_shards(1000, tmp_path / "flows", shard_rows=300, row_group_rows=100)
    files = sorted((tmp_path / "flows").glob("*.parquet"))
    assert made["rows"] == 1000 and made["shards"] == len(files) == 4
    assert [pq.ParquetFile(f).metadata.num_row_groups for f in files] == [3, 3, 3, 1]
    stream = ParquetStream(str(tmp_path / "flows"), drop_columns=["family"])
    stream.scan()
    assert stream.n_rows == 1000 and stream.n_attack > 0 and "family" not in stream.feature_names


@pytest.mark.slow
def test_a_shard_that_fails_mid_training_stops_in_one_line_and_keeps_the_checkpoint(
    tmp_path: Path, flows: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A row group that cannot be read once training runs (the disk, the network file system):
    exit 2 with one line naming the file, the last epoch's checkpoint kept, and --resume finishes."""
    write_shards(tmp_path / "flows", flows, files=3, row_group=500)
    read, calls = ParquetStream.read, []

    def read_then_fail(self: ParquetStream, group: Any) -> Any:
        if self.scanned is not None:  # training's reads: the second epoch's fifth row group fails
            calls.append(group)
            if len(calls) == len(self.groups) + 5:
                raise InputError(f"{group.file}: row group {group.index} cannot be read (IOError: stale file handle)")
        return read(self, group)

    monkeypatch.setattr(ParquetStream, "read", read_then_fail)
    args = ["--data", "flows", "--stream", "--max-epochs", "3", "--batch-size", "128", "--quiet",
            "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}"]  # fmt: skip
    proc = run_train(tmp_path, *args)
    assert proc.returncode == 2, proc.stderr[-2000:]
    error = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "cannot be read (IOError: stale file handle)" in error[0] and "part-" in error[0]
    assert "Traceback" not in proc.stderr
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file() and not (tmp_path / "artifacts").exists()

    monkeypatch.setattr(ParquetStream, "read", read)
    resumed = run_train(tmp_path, *args, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert json.loads((tmp_path / "artifacts" / "gate.json").read_text())["passed"]


def test_streamed_test_data_must_have_the_training_columns_and_kinds(tmp_path: Path, flows: pd.DataFrame) -> None:
    from threat_ensemble.config import TrainConfig
    from threat_ensemble.data.training_data import load_streams

    write_shards(tmp_path / "train", flows)
    write_shards(tmp_path / "renamed", flows.rename(columns={"bytes": "octets"}))
    write_shards(tmp_path / "texts", flows.assign(packets=flows["packets"].astype(str) + " pkts"))
    write_shards(tmp_path / "good", flows.iloc[:900])
    cfg = {"data": str(tmp_path / "train"), "stream": True, "quiet": True}
    with pytest.raises(InputError, match=r"renamed: columns differ from the training data: missing \['bytes'\]"):
        load_streams(TrainConfig(**cfg, test_data=str(tmp_path / "renamed")))
    with pytest.raises(InputError, match="texts: column 'packets' holds numbers in the training data but not here"):
        load_streams(TrainConfig(**cfg, test_data=str(tmp_path / "texts")))
    train, test = load_streams(TrainConfig(**cfg, test_data=str(tmp_path / "good")))
    assert test.rows_of(ROLE_TEST) == test.n_rows == 900 and train.n_rows == len(flows)


def test_a_split_left_empty_by_duplicate_rows_is_refused_right_after_the_scan(tmp_path: Path) -> None:
    """Rows are split by a hash of their values: 20 distinct rows copied 500 times land in at most 20
    splits' worth of places, leaving the validation split without normal rows. Refused after the scan,
    before anything is fitted (it used to fail with a traceback at the calibration sample, 88 s in)."""
    from threat_ensemble.config import TrainConfig
    from threat_ensemble.data.training_data import load_inputs

    rng = np.random.default_rng(1)
    distinct = pd.DataFrame({"a": rng.normal(size=20), "b": rng.normal(size=20), "label": [0] * 15 + [1] * 5})
    write_shards(tmp_path / "dup", pd.concat([distinct] * 500, ignore_index=True))
    expected = (
        f"{tmp_path / 'dup'}: the split leaves 0 normal validation rows (at least 1 needed): each row's split is "
        "drawn from a hash of its values, so identical ones share a split; these 10,000 rows hold 20 distinct rows; "
        "train without --stream (which splits row by row) or on more varied rows"
    )
    with pytest.raises(InputError) as caught:
        load_inputs(TrainConfig(data=str(tmp_path / "dup"), stream=True))  # before Lightning is imported
    assert str(caught.value) == expected
    proc = run_train(tmp_path, "--data", "dup", "--stream", "--quiet", "--output-dir", "out", "--checkpoint-dir", "ck")
    assert proc.returncode == 2 and proc.stderr.strip() == f"error: {expected}".replace(str(tmp_path / "dup"), "dup")
    assert not (tmp_path / "out").exists()
    with pytest.raises(InputError, match=r"leaves 0 normal validation rows .* hash of its --split-key value, .*; "
                       r"these 10,000 rows hold 3 distinct 'key' values"):  # fmt: skip
        keyed = pd.concat([distinct] * 500, ignore_index=True).assign(key=np.arange(10_000) % 3)
        write_shards(tmp_path / "keyed", keyed)
        load_inputs(TrainConfig(data=str(tmp_path / "keyed"), stream=True, split_key="key", drop_columns=["key"]))
